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
// "history", and the generated trigger that writes one event and one outbox row per change
// in the transaction of the change.
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
	b.addHistoryPolicy(s.Access)
	b.add("", "GRANT SELECT ON %s TO velocity_api", hist)
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
	b.add(`roles with "read" and "history"`, "CREATE POLICY velocity_history_read ON %s FOR SELECT USING ((SELECT velocity.current_actor_roles()) && %s)",
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

// auditMasked lists the fields whose values never enter an audit entry: the sensitive ones
// and those history redacts.
func auditMasked(s schemadef.Spec) []string {
	var out []string
	for _, f := range s.Fields {
		if f.Sensitive || slices.Contains(s.History.Redact, f.Name) {
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
// leads to its history event; its record image has the masked fields set to null.
//
// It runs as the owner (SECURITY DEFINER) but has no SET search_path: a SET clause on a
// SECURITY DEFINER function made every write pay for two search-path switches (measured at
// about a tenth of the writer's cost). Instead every name in it is schema-qualified (types,
// functions, operators, casts), so the caller's search_path, pg_temp included, cannot
// redirect any of them; TestHistoryWriterIgnoresTheCallersSearchPath tries.
func HistoryWriter(s schemadef.Spec, opt WriterOptions) string {
	names := schemadef.NamesOf(s)
	table := sqlbuild.Qualified(names.Schema, names.Table)
	redact := ""
	if len(s.History.Redact) > 0 {
		list := fmt.Sprintf("ARRAY[%s]::pg_catalog.text[]", sqlbuild.LiteralList(sortedCopy(s.History.Redact)))
		redact = fmt.Sprintf("\n  image := velocity.history_redact(image, %s);\n  ev_redacted := %s;", list, list)
	}
	audit := ""
	if !opt.NoAudit {
		record := "image"
		if masked := auditMasked(s); len(masked) > 0 {
			nulls := map[string]any{}
			for _, f := range masked {
				nulls[f] = nil
			}
			record = fmt.Sprintf("image OPERATOR(pg_catalog.||) %s::pg_catalog.jsonb", sqlbuild.Literal(jsonText(nulls)))
		}
		audit = fmt.Sprintf(`
  audit_detail := pg_catalog.jsonb_build_object('version', ver, 'record', %s);`, record)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `CREATE OR REPLACE FUNCTION %s() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $velocity$
DECLARE
  image pg_catalog.jsonb;
  audit_detail pg_catalog.jsonb;
  ev_op velocity.event_op := TG_OP::velocity.event_op;
  ev_at pg_catalog.timestamptz;
  rid pg_catalog.uuid;
  ver pg_catalog.int4;
  ev_id pg_catalog.int8;
  ev_xid pg_catalog.xid8;
  ev_redacted pg_catalog.text[] := '{}';
  ev_actor pg_catalog.text := velocity.current_actor_id();
  ev_reason pg_catalog.text := velocity.setting_or_null('velocity.reason');
  ev_request pg_catalog.text := velocity.setting_or_null('velocity.request_id');
BEGIN
  IF TG_RELID OPERATOR(pg_catalog.<>) %s::pg_catalog.regclass THEN
    RAISE EXCEPTION 'this history writer serves %s only' USING ERRCODE = '42501';
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
    image := pg_catalog.to_jsonb(OLD);
    ev_at := pg_catalog.clock_timestamp();
    rid := OLD.id;
    ver := OLD.version;
  ELSE
    image := pg_catalog.to_jsonb(NEW);
    ev_at := NEW.updated_at;
    rid := NEW.id;
    ver := NEW.version;
    IF velocity.current_write_op() OPERATOR(pg_catalog.=) 'RESTORE' THEN
      ev_op := 'RESTORE';
    END IF;
  END IF;`, sqlbuild.Qualified(names.Schema, names.HistoryWriter), sqlbuild.Literal(table), table)
	// The audit record is taken before history's keyed hashes replace the redacted values.
	b.WriteString(audit)
	b.WriteString(redact)
	fmt.Fprintf(&b, `
  ev_id := pg_catalog.nextval('velocity.event_seq'::pg_catalog.regclass);
  ev_xid := pg_catalog.pg_current_xact_id();
  INSERT INTO %s (event_id, xid, at, record_id, op, version, actor, reason, request_id, image, redacted)
  VALUES (ev_id, ev_xid, ev_at, rid, ev_op, ver, ev_actor, ev_reason, ev_request, image, ev_redacted);
  INSERT INTO velocity.outbox (id, xid, at, schema_key, record_id, op, version)
  VALUES (ev_id, ev_xid, ev_at, %s, rid, ev_op, ver);`, sqlbuild.Qualified(names.Schema, names.History), sqlbuild.Literal(s.Key()))
	if !opt.NoAudit {
		fmt.Fprintf(&b, `
  INSERT INTO velocity.audit_entry (id, xid, at, action, outcome, actor, schema_key, record_id, reason, request_id, detail)
  VALUES (ev_id, ev_xid, ev_at, 'record.' OPERATOR(pg_catalog.||) pg_catalog.lower(ev_op::pg_catalog.text), 'allowed', ev_actor, %s,
          rid::pg_catalog.text, ev_reason, ev_request, audit_detail);`,
			sqlbuild.Literal(s.Key()))
	}
	b.WriteString(`
  RETURN NULL;
END
$velocity$`)
	return b.String()
}

// alterHistory rebuilds what of the history depends on a changed definition: the writer when
// the redacted or masked fields change, the policy when the roles do.
func (b *builder) alterHistory(old, next schemadef.Spec) {
	if !slices.Equal(sortedCopy(old.History.Redact), sortedCopy(next.History.Redact)) || !slices.Equal(auditMasked(old), auditMasked(next)) {
		b.addHistoryWriter(next)
	}
	if !reflect.DeepEqual(old.Access.Roles, next.Access.Roles) {
		b.add("", "DROP POLICY IF EXISTS velocity_history_read ON %s", sqlbuild.Qualified(b.names.Schema, b.names.History))
		b.addHistoryPolicy(next.Access)
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
