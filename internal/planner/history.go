package planner

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// HistoryMonthsAhead is how many months of history partitions a new table gets beyond the
// current one; the partition job keeps the same margin.
const HistoryMonthsAhead = 3

// addHistory creates the history of the table: a table partitioned by month with a default
// partition, append-only for everyone, readable under RLS by roles with both "read" and
// "history" through the history view that applies the field rules, and the generated trigger
// that writes one event and one outbox row per change in the transaction of the change.
func (b *builder) addHistory(s schemadef.Spec) {
	hist := sqlbuild.Qualified(b.names.Schema, b.names.History)
	dflt := sqlbuild.Qualified(b.names.Schema, b.names.HistoryDefault)
	b.add("history: one event per change with the full row image, partitioned by month", `CREATE TABLE %s (
  event_id bigint NOT NULL,
  xid xid8 NOT NULL,
  at timestamptz NOT NULL,
  record_id uuid NOT NULL,
  op velocity.event_op NOT NULL,
  version integer NOT NULL,
  actor text NOT NULL,
  reason text,
  request_id text,
  image jsonb NOT NULL,
  redacted text[] NOT NULL DEFAULT '{}'
) PARTITION BY RANGE (at)`, hist)
	b.add("point-in-time reads and a record's history", "CREATE INDEX %s ON %s (record_id, at, event_id)", sqlbuild.Ident(b.names.History+"_record"), hist)
	b.add("the event stream, in commit-safe order", "CREATE INDEX %s ON %s (xid, event_id)", sqlbuild.Ident(b.names.History+"_xid"), hist)
	b.add("a write never fails for want of a monthly partition", "CREATE TABLE %s PARTITION OF %s DEFAULT", dflt, hist)
	b.add("history is append-only, for the owner too", "CREATE TRIGGER velocity_history_guard BEFORE UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION velocity.history_guard()", hist)
	for _, t := range []string{hist, dflt} {
		b.add("", "CREATE TRIGGER velocity_history_guard_truncate BEFORE TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION velocity.history_guard()", t)
	}
	b.add("", "ALTER TABLE %s ENABLE ROW LEVEL SECURITY", hist)
	b.addHistoryForcedRLS(false)
	b.addHistoryPolicy(s.Access)
	// The API reads history through the view; restore reads the raw image, to write back the
	// values, not their masks.
	b.add("", "GRANT SELECT ON %s TO velocity_api", hist)
	b.addHistoryView(s)
	b.add("this month's partition and the next ones; the partition job keeps them ahead",
		"SELECT velocity.history_partitions_ensure(%s, %s, now(), %d)", sqlbuild.Literal(b.names.Schema), sqlbuild.Literal(b.names.History), HistoryMonthsAhead)
	b.addHistoryWriter(s)
	b.add("", "CREATE TRIGGER velocity_history AFTER INSERT OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION %s()", b.table, b.writer())
	// The system-fields trigger bumps the version exactly when a field changes (it owns the
	// version; a writer cannot set it), so comparing versions is comparing rows, at the cost
	// of one column: Postgres re-parses a trigger's WHEN in every statement, and the whole-row
	// form grows with the table.
	b.add("an UPDATE that changes nothing writes no event",
		"CREATE TRIGGER velocity_history_update AFTER UPDATE ON %s FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version) EXECUTE FUNCTION %s()", b.table, b.writer())
}

// addHistoryForcedRLS forces the history table's RLS: the history view belongs to the owner,
// and a view reads its tables with its owner's rights, which an RLS that is only enabled
// lets through. The history writer, which runs as the owner, gets an insert policy of its
// own; privileges keep everyone else from inserting. With RLS forced, the owner's UPDATE or
// DELETE finds no row for the row guard to refuse, so a statement guard refuses it instead.
// orReplace for a table that may have them already.
func (b *builder) addHistoryForcedRLS(orReplace bool) {
	hist := b.history()
	create := "CREATE TRIGGER"
	if orReplace {
		create = "CREATE OR REPLACE TRIGGER"
	}
	b.add("the history view is the owner's and must not pass RLS: forced, as on the table", "ALTER TABLE %s FORCE ROW LEVEL SECURITY", hist)
	b.add("", "%s velocity_history_guard_statement BEFORE UPDATE OR DELETE ON %s FOR EACH STATEMENT EXECUTE FUNCTION velocity.history_guard()", create, hist)
	if orReplace {
		b.add("", "DROP POLICY IF EXISTS velocity_history_write ON %s", hist)
	}
	b.add("the history writer runs as the owner", "CREATE POLICY velocity_history_write ON %s FOR INSERT WITH CHECK (true)", hist)
}

func (b *builder) writer() string { return sqlbuild.Qualified(b.names.Schema, b.names.HistoryWriter) }

// addHistoryPolicy lets a role read history when it may both read records and read their
// history: "you see only what you can read now".
func (b *builder) addHistoryPolicy(a schemadef.Access) {
	var roles []string
	for _, r := range a.RolesFor("read") {
		if slices.Contains(a.RolesFor("history"), r) {
			roles = append(roles, r)
		}
	}
	list := "'{}'::text[]"
	if len(roles) > 0 {
		list = "ARRAY[" + sqlbuild.LiteralList(roles) + "]::text[]"
	}
	b.add(`roles with "read" and "history"`, "CREATE POLICY velocity_history_read ON %s FOR SELECT USING ((SELECT velocity.current_actor_roles() && %s))",
		sqlbuild.Qualified(b.names.Schema, b.names.History), list)
}

// WriterOptions choose what a generated history writer records besides the history event
// and the outbox row. The planner always writes audit entries; the benchmark builds a writer
// without them to measure what they cost.
type WriterOptions struct {
	NoAudit bool
}

// addHistoryWriter adds the table's trigger function and takes EXECUTE away from everyone.
func (b *builder) addHistoryWriter(s schemadef.Spec) {
	b.add("writes the history event, the outbox row and the audit entry of each change", "%s", HistoryWriter(s, WriterOptions{}))
	// SECURITY DEFINER: nobody may call it, or attach it to a table of their own to forge
	// events. A trigger runs its function without an EXECUTE check.
	b.add("", "REVOKE ALL ON FUNCTION %s() FROM PUBLIC", sqlbuild.Qualified(schemadef.NamesOf(s).Schema, schemadef.NamesOf(s).HistoryWriter))
}

// auditMasked lists the fields whose values never enter an audit entry: the sensitive ones,
// those history redacts, and those masked with redact (or with a mask their type cannot take)
// for the roles outside their read list.
func auditMasked(s schemadef.Spec) []string {
	var out []string
	for _, f := range s.Fields {
		restricted, fa := readRule(s, f.Name)
		if f.Sensitive || slices.Contains(s.History.Redact, f.Name) || restricted && fa.Mask != "" && !maskable(f, fa.Mask) {
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}

// HistoryWriter is the CREATE OR REPLACE FUNCTION of the table's trigger function: static SQL
// into its own history table, the outbox and the audit log, no dynamic EXECUTE on the write
// path. The event time of an insert, update or restore is the row's updated_at, so
// ?at=<updated_at> reads that version. The audit entry shares the event's id, so an entry
// leads to its history event; its record image has the sensitive and redacted fields set to
// null and the fields with a partial or full mask masked (auditMasked, auditMaskedValues).
//
// It runs as the owner (SECURITY DEFINER) but has no SET search_path: a SET clause on a
// SECURITY DEFINER function made every write pay for two search-path switches (measured at
// about a tenth of the writer's cost). Instead every name in it is schema-qualified (types,
// functions, operators, casts), so the caller's search_path, pg_temp included, cannot
// redirect any of them; TestHistoryWriterIgnoresTheCallersSearchPath tries.
func HistoryWriter(s schemadef.Spec, opt WriterOptions) string {
	names := schemadef.NamesOf(s)
	table := sqlbuild.Qualified(names.Schema, names.Table)
	key := sqlbuild.Literal(s.Key())
	// History stores the redacted fields as keyed hashes; the audit entry's record has the
	// masked fields set to null. Both start from the raw image.
	histImage, redacted := "image", "'{}'::pg_catalog.text[]"
	if len(s.History.Redact) > 0 {
		redacted = fmt.Sprintf("ARRAY[%s]::pg_catalog.text[]", sqlbuild.LiteralList(sortedCopy(s.History.Redact)))
		histImage = fmt.Sprintf("velocity.history_redact(image, %s)", redacted)
	}
	auditRecord := "image"
	if masked := auditMasked(s); len(masked) > 0 {
		nulls := map[string]any{}
		for _, f := range masked {
			nulls[f] = nil
		}
		auditRecord = fmt.Sprintf("image OPERATOR(pg_catalog.||) %s::pg_catalog.jsonb", sqlbuild.Literal(jsonText(nulls)))
	}
	if pairs := auditMaskedValues(s); len(pairs) > 0 {
		auditRecord = fmt.Sprintf("%s OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object(%s)", auditRecord, strings.Join(pairs, ", "))
	}
	// One statement writes the event, the outbox row and the audit entry: the values are
	// computed once in e (materialized, so nextval runs once), and the inserts share one plan
	// and one executor start. Measured against the same writes as plpgsql variables and three
	// INSERTs: about 50 µs less Postgres CPU per change (most of it plpgsql re-initializing
	// each simple expression in every transaction).
	change := func(row, at, op string) string {
		var b strings.Builder
		fmt.Fprintf(&b, `WITH e AS MATERIALIZED (
      SELECT pg_catalog.nextval('velocity.event_seq'::pg_catalog.regclass) AS id, pg_catalog.pg_current_xact_id() AS xid,
             %[2]s AS at, %[1]s.id AS rid, %[3]s AS op, %[1]s.version AS ver, pg_catalog.to_jsonb(%[1]s) AS image,
             velocity.current_actor_id() AS actor, velocity.setting_or_null('velocity.reason') AS reason,
             velocity.setting_or_null('velocity.request_id') AS request),
    h AS (INSERT INTO %[4]s (event_id, xid, at, record_id, op, version, actor, reason, request_id, image, redacted)
          SELECT id, xid, at, rid, op, ver, actor, reason, request, %[5]s, %[6]s FROM e)`,
			row, at, op, sqlbuild.Qualified(names.Schema, names.History), histImage, redacted)
		outbox := fmt.Sprintf(`INSERT INTO velocity.outbox (id, xid, at, schema_key, record_id, op, version)
    SELECT id, xid, at, %s, rid, op, ver FROM e`, key)
		if opt.NoAudit {
			fmt.Fprintf(&b, "\n    %s;", outbox)
			return b.String()
		}
		fmt.Fprintf(&b, `,
    o AS (%s)
    INSERT INTO velocity.audit_entry (id, xid, at, action, outcome, actor, schema_key, record_id, reason, request_id, detail)
    SELECT id, xid, at, 'record.' OPERATOR(pg_catalog.||) pg_catalog.lower(op::pg_catalog.text), 'allowed', actor, %s,
           rid::pg_catalog.text, reason, request, pg_catalog.jsonb_build_object('version', ver, 'record', %s) FROM e;`,
			strings.ReplaceAll(outbox, "\n    ", "\n          "), key, auditRecord)
		return b.String()
	}
	return fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $velocity$
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) %s::pg_catalog.regclass THEN
    RAISE EXCEPTION 'this history writer serves %s only' USING ERRCODE = '42501';
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    %s
  ELSE
    %s
  END IF;
  RETURN NULL;
END
$velocity$`, sqlbuild.Qualified(names.Schema, names.HistoryWriter), sqlbuild.Literal(table), table,
		change("OLD", "pg_catalog.clock_timestamp()", "'DELETE'::velocity.event_op"),
		change("NEW", "NEW.updated_at", "CASE WHEN velocity.current_write_op() OPERATOR(pg_catalog.=) 'RESTORE' THEN 'RESTORE'::velocity.event_op ELSE TG_OP::velocity.event_op END"))
}

// alterHistory rebuilds what of the history depends on a changed definition: the writer when
// the redacted or masked fields change, the policy when the roles do, the view when the field
// rules do. The view keeps its columns, so it is replaced and keeps its grants.
func (b *builder) alterHistory(old, next schemadef.Spec) {
	if HistoryWriter(old, WriterOptions{}) != HistoryWriter(next, WriterOptions{}) {
		b.addHistoryWriter(next)
	}
	if !reflect.DeepEqual(old.Access.Roles, next.Access.Roles) {
		b.add("", "DROP POLICY IF EXISTS velocity_history_read ON %s", sqlbuild.Qualified(b.names.Schema, b.names.History))
		b.addHistoryPolicy(next.Access)
	}
	if view := b.historyViewSQL(next); view != b.historyViewSQL(old) {
		b.add("the field rules of history change", "%s", view)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// jsonText is v as JSON; v is built here from field names, so it always encodes.
func jsonText(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("planner: encode %v: %v", v, err))
	}
	return string(raw)
}
