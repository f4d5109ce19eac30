package planner

import (
	"fmt"
	"slices"
	"strings"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// Field rules (layers 5 and 6) are enforced in Postgres, for the API and for every login:
//   - the read view shows a field plainly to the roles of its read list and, to everyone else,
//     masked (partial, full) or as NULL (redact, or hidden when it has no mask);
//   - the history view does the same to each event's image: a hidden field's key is removed,
//     a masked one's value masked;
//   - a trigger refuses a write that sets or changes a field with write roles, unless the
//     actor holds one of them.
//
// Whether the actor holds a role is (SELECT velocity.current_actor_roles() && ARRAY[...]), an
// InitPlan evaluated once per statement, as in the policies: each row then tests a boolean.

// actorHolds is the SQL condition that the current actor holds one of roles.
func actorHolds(roles []string) string {
	return "(SELECT velocity.current_actor_roles() && " + roleArray(roles, "text[]") + ")"
}

// roleArray is roles as a text[] constant of type typ (sorted: the plan must not depend on the
// order a definition lists them in).
func roleArray(roles []string, typ string) string {
	if len(roles) == 0 {
		return "'{}'::" + typ
	}
	return "ARRAY[" + sqlbuild.LiteralList(sortedCopy(roles)) + "]::" + typ
}

// readRule returns the read rule of field f: whether some roles only may read it, and its mask.
func readRule(s schemadef.Spec, f string) (restricted bool, fa schemadef.FieldAccess) {
	fa, ok := s.Access.Fields[f]
	return ok && len(fa.Read) > 0, fa
}

// maskable reports whether mask (partial or full) can apply to field f, which must then be
// text. Validation allows those masks on string and text fields only; any other field gets
// NULL, so a definition that slipped past validation hides rather than shows the value.
func maskable(f schemadef.Field, mask string) bool {
	return (mask == schemadef.MaskPartial || mask == schemadef.MaskFull) && columnType(f.Type) == "text"
}

// maskFunction is the velocity.* function of a partial or full mask.
func maskFunction(mask string) string {
	if mask == schemadef.MaskPartial {
		return "velocity.mask_partial"
	}
	return "velocity.mask_full"
}

// viewColumn is the select-list item of field f in the read view.
func viewColumn(s schemadef.Spec, f schemadef.Field) string {
	col := sqlbuild.Ident(f.Name)
	restricted, fa := readRule(s, f.Name)
	if !restricted {
		return col
	}
	other := "NULL::" + columnType(f.Type)
	if maskable(f, fa.Mask) {
		other = maskFunction(fa.Mask) + "(" + col + ")"
	}
	return fmt.Sprintf("CASE WHEN %s THEN %s ELSE %s END AS %s", actorHolds(fa.Read), col, other, col)
}

// viewSQL is the CREATE [OR REPLACE] VIEW of the read view. Its columns never change with the
// field rules (a masked or hidden column keeps its name and type), so a change of rules only
// replaces it and it keeps its grants.
func (b *builder) viewSQL(s schemadef.Spec, replace bool) string {
	cols := make([]string, 0, len(schemadef.SystemFields)+len(s.Fields))
	for _, name := range schemadef.SystemFields {
		cols = append(cols, sqlbuild.Ident(name))
	}
	for _, f := range s.Fields {
		cols = append(cols, viewColumn(s, f))
	}
	create := "CREATE VIEW"
	if replace {
		create = "CREATE OR REPLACE VIEW"
	}
	return fmt.Sprintf("%s %s WITH (security_barrier) AS SELECT %s FROM %s", create, b.view, strings.Join(cols, ", "), b.table)
}

// historyImage is the image column of the history view: h.image with, for an actor not in a
// field's read list, the field's key removed (no mask), its value masked (partial, full: any
// value but null, as its text) or set to null (redact). Each field adds one level that names
// the level below once, so the expression grows with the rules, not exponentially.
func historyImage(s schemadef.Spec) string {
	img := "h.image"
	for _, f := range s.Fields {
		restricted, fa := readRule(s, f.Name)
		if !restricted {
			continue
		}
		key := sqlbuild.Literal(f.Name)
		switch {
		case fa.Mask == "":
			img = fmt.Sprintf("(%s - CASE WHEN %s THEN '{}'::text[] ELSE ARRAY[%s] END)", img, actorHolds(fa.Read), key)
		case maskable(f, fa.Mask):
			img = fmt.Sprintf("(%s || CASE WHEN %s OR h.image ->> %s IS NULL THEN '{}'::jsonb ELSE jsonb_build_object(%s, %s(h.image ->> %s)) END)",
				img, actorHolds(fa.Read), key, key, maskFunction(fa.Mask), key)
		default: // redact
			img = fmt.Sprintf("(%s || CASE WHEN %s OR NOT h.image ? %s THEN '{}'::jsonb ELSE jsonb_build_object(%s, NULL) END)",
				img, actorHolds(fa.Read), key, key)
		}
	}
	return img
}

// historyViewSQL is the CREATE OR REPLACE VIEW of the history view. It filters no rows (the
// history table's forced RLS does), so it needs no security_barrier, which would keep the
// API's conditions on record_id, at and xid (not all of them leakproof) from the indexes.
func (b *builder) historyViewSQL(s schemadef.Spec) string {
	return fmt.Sprintf("CREATE OR REPLACE VIEW %s AS SELECT h.event_id, h.xid, h.at, h.record_id, h.op, h.version, h.actor, h.reason, h.request_id, %s AS image, h.redacted FROM %s h",
		b.historyView(), historyImage(s), b.history())
}

func (b *builder) historyView() string {
	return sqlbuild.Qualified(b.names.Schema, b.names.HistoryView)
}

// addHistoryView creates the history view that the API and BI logins read history through.
func (b *builder) addHistoryView(s schemadef.Spec) {
	b.add("history as an actor may read it: the field rules applied to each image", "%s", b.historyViewSQL(s))
	b.add("", "GRANT SELECT ON %s TO velocity_api", b.historyView())
}

// writeRuled lists, in definition order, the fields that have write roles.
func writeRuled(s schemadef.Spec) []schemadef.Field {
	var out []schemadef.Field
	for _, f := range s.Fields {
		if fa, ok := s.Access.Fields[f.Name]; ok && len(fa.Write) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// catalogTypes are the column types of sqlbuild.ColumnType by their pg_catalog names, for SQL
// that is parsed with the caller's search_path (pg_temp is searched first for types).
var catalogTypes = map[string]string{
	"text": "pg_catalog.text", "bigint": "pg_catalog.int8", "double precision": "pg_catalog.float8",
	"numeric": "pg_catalog.numeric", "boolean": "pg_catalog.bool", "timestamptz": "pg_catalog.timestamptz",
	"date": "pg_catalog.date", "uuid": "pg_catalog.uuid", "jsonb": "pg_catalog.jsonb",
}

func catalogType(t schemadef.FieldType) string {
	typ, ok := catalogTypes[columnType(t)]
	if !ok {
		panic(fmt.Sprintf("planner: no pg_catalog name for column type %q", columnType(t)))
	}
	return typ
}

// distinct is "a IS DISTINCT FROM b" spelled with pg_catalog's operators: IS DISTINCT FROM
// looks up = on the caller's search_path. Null when both are null, which IF takes as false.
func distinct(a, b string) string {
	if b == "NULL" {
		return a + " IS NOT NULL"
	}
	return fmt.Sprintf("(%s IS NULL) OPERATOR(pg_catalog.<>) (%s IS NULL) OR %s OPERATOR(pg_catalog.<>) %s", a, b, a, b)
}

// FieldWriter is the CREATE OR REPLACE FUNCTION of the table's field-write trigger function
// (layer 5), or "" when no field has write roles. On INSERT, a field with write roles whose
// value is not its column default (the definition's default, or NULL) needs one of those
// roles; on UPDATE, so does a change of its value. A restore is a write like any other. It
// refuses with SQLSTATE 42501 naming the field in COLUMN, which the API answers with a 403
// (layer 5).
//
// Row-level security and these rules hold for the same sessions: a session that bypasses RLS
// (a superuser, a BYPASSRLS role) bypasses them too; the owner does not (RLS is forced). The
// check runs only once a field would be refused, so the common write never pays for it.
//
// It runs as the writer (SECURITY INVOKER), without SET search_path, which would cost every
// write two search-path switches: every name in it is schema-qualified instead.
func FieldWriter(s schemadef.Spec) string {
	fields := writeRuled(s)
	if len(fields) == 0 {
		return ""
	}
	names := schemadef.NamesOf(s)
	refusal := func(old func(schemadef.Field) string) string {
		var b strings.Builder
		b.WriteString("refused := CASE")
		for _, f := range fields {
			col := "NEW." + sqlbuild.Ident(f.Name)
			fmt.Fprintf(&b, "\n      WHEN NOT (roles OPERATOR(pg_catalog.&&) %s) AND (%s) THEN %s",
				roleArray(s.Access.Fields[f.Name].Write, "pg_catalog.text[]"), distinct(col, old(f)), sqlbuild.Literal(f.Name))
		}
		b.WriteString("\n    END;")
		return b.String()
	}
	insert := refusal(func(f schemadef.Field) string {
		if lit := defaultLiteral(f); lit != "" {
			return lit + "::" + catalogType(f.Type)
		}
		return "NULL"
	})
	update := refusal(func(f schemadef.Field) string { return "OLD." + sqlbuild.Ident(f.Name) })
	return fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $velocity$
DECLARE
  roles pg_catalog.text[] := velocity.current_actor_roles();
  refused pg_catalog.text;
BEGIN
  IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN
    %s
  ELSE
    %s
  END IF;
  IF refused IS NOT NULL THEN
    IF pg_catalog.row_security_active(TG_RELID) THEN
      RAISE EXCEPTION 'field %% may not be written by your roles', refused
        USING ERRCODE = '42501', COLUMN = refused, HINT = 'velocity:layer5';
    END IF;
  END IF;
  RETURN NEW;
END
$velocity$`, sqlbuild.Qualified(names.Schema, names.FieldWriter), insert, update)
}

func (b *builder) fieldWriter() string {
	return sqlbuild.Qualified(b.names.Schema, b.names.FieldWriter)
}

// addFieldWriter creates the field-write trigger when some field has write roles; orReplace
// for a table that may have it already.
func (b *builder) addFieldWriter(s schemadef.Spec, orReplace bool) {
	fn := FieldWriter(s)
	if fn == "" {
		return
	}
	create := "CREATE TRIGGER"
	if orReplace {
		create = "CREATE OR REPLACE TRIGGER"
	}
	b.add("layer 5 in Postgres: fields that only some roles may write", "%s", fn)
	b.add("", "%s velocity_field_write BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s()", create, b.table, b.fieldWriter())
}

func (b *builder) dropFieldWriter() {
	b.add("no field has write roles", "DROP TRIGGER IF EXISTS velocity_field_write ON %s", b.table)
	b.add("", "DROP FUNCTION IF EXISTS %s()", b.fieldWriter())
}

// alterFieldWriter replaces, adds or drops the field-write trigger when what it checks changed
// (write roles, or a checked field's default or type).
func (b *builder) alterFieldWriter(old, next schemadef.Spec) {
	before, after := FieldWriter(old), FieldWriter(next)
	switch {
	case before == after:
	case after == "":
		b.dropFieldWriter()
	case before == "":
		b.addFieldWriter(next, false)
	default:
		b.add("the field write rules change", "%s", after)
	}
}

// auditMaskedValues are the pairs of jsonb_build_object that mask, in an audit entry's record,
// the fields with a partial or full mask that auditMasked does not already null: the entry
// shows what an actor outside the read list would see. Redact masks are in auditMasked.
func auditMaskedValues(s schemadef.Spec) []string {
	nulled := auditMasked(s)
	var out []string
	for _, f := range s.Fields {
		restricted, fa := readRule(s, f.Name)
		if !restricted || !maskable(f, fa.Mask) || slices.Contains(nulled, f.Name) {
			continue
		}
		key := sqlbuild.Literal(f.Name)
		out = append(out, fmt.Sprintf("%s, %s(image OPERATOR(pg_catalog.->>) %s)", key, maskFunction(fa.Mask), key))
	}
	return out
}
