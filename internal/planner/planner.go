// Package planner turns the current and the new version of a SchemaDefinition into one
// ordered, deterministic plan of SQL: the table, constraints, indexes, triggers, RLS policies,
// grants and views that the new version needs.
package planner

import (
	"fmt"
	"slices"
	"strings"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

// Step is one statement of a plan with the reason it is there.
type Step struct {
	Comment string `json:"comment"`
	SQL     string `json:"sql"`
}

// Plan is what applying a definition version does, in order.
type Plan struct {
	Key         string `json:"key"`
	FromVersion int    `json:"from_version"`
	ToVersion   int    `json:"to_version"`
	Steps       []Step `json:"steps"`
	// Breaking lists every change that can lose data or reject existing rows; a plan with
	// breaking changes is applied only when the definition's policy allows it.
	Breaking []string `json:"breaking,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Steps) == 0 }

// SQL renders the plan as a script, one commented statement after another.
func (p Plan) SQL() string {
	var b strings.Builder
	for _, s := range p.Steps {
		if s.Comment != "" {
			b.WriteString("-- " + s.Comment + "\n")
		}
		b.WriteString(s.SQL)
		b.WriteString(";\n")
	}
	return b.String()
}

// verbPolicies maps each RBAC verb that Postgres enforces to its policy. The other verbs
// (search, history, restore, archive, purge) are checked by the API and by the functions
// that serve them.
var verbPolicies = []struct {
	verb, name, command string
}{
	{"read", "velocity_read", "SELECT"},
	{"create", "velocity_create", "INSERT"},
	{"update", "velocity_update", "UPDATE"},
	{"delete", "velocity_delete", "DELETE"},
}

type builder struct {
	plan  Plan
	names schemadef.Names
	table string // qualified
	view  string // qualified
}

func (b *builder) add(comment, format string, args ...any) {
	b.plan.Steps = append(b.plan.Steps, Step{Comment: comment, SQL: fmt.Sprintf(format, args...)})
}

func (b *builder) breaking(format string, args ...any) {
	b.plan.Breaking = append(b.plan.Breaking, fmt.Sprintf(format, args...))
}

// Build returns the plan that takes the database from old (nil when the schema is new) to
// next. Both must be valid; Build does not validate them. Identical inputs always give the
// identical plan.
func Build(old *schemadef.Definition, next schemadef.Definition) Plan {
	names := schemadef.NamesOf(next.Spec)
	b := &builder{
		plan:  Plan{Key: next.Spec.Key(), ToVersion: next.Spec.Version},
		names: names,
		table: sqlbuild.Qualified(names.Schema, names.Table),
		view:  sqlbuild.Qualified(names.Schema, names.View),
	}
	if old == nil {
		b.create(next.Spec)
		return b.plan
	}
	b.plan.FromVersion = old.Spec.Version
	b.alter(old.Spec, next.Spec)
	return b.plan
}

// Refresh returns the plan that brings the objects an older planner derived from def, which
// is applied, up to what Build generates for it now: the read view and the history view (with
// the field rules), the field-write trigger, the history writer, the history table's forced
// RLS with the writer's insert policy and statement guard, and every group role's grants. It
// leaves the table and its data alone. Every step can run again, so a refresh of a current
// table only re-grants.
func Refresh(def schemadef.Definition) Plan {
	s := def.Spec
	names := schemadef.NamesOf(s)
	b := &builder{
		plan:  Plan{Key: s.Key(), FromVersion: s.Version, ToVersion: s.Version},
		names: names,
		table: sqlbuild.Qualified(names.Schema, names.Table),
		view:  sqlbuild.Qualified(names.Schema, names.View),
	}
	b.add("the read view with the field rules", "%s", b.viewSQL(s, true))
	if FieldWriter(s) != "" {
		b.addFieldWriter(s, true)
	} else {
		b.dropFieldWriter()
	}
	b.addHistoryForcedRLS(true)
	b.addHistoryView(s)
	b.addHistoryWriter(s)
	// A table applied before the row filter was enforced has none: drop and recreate.
	if s.Access.RowFilter != "" {
		b.dropRowFilter()
		b.addRowFilter(s)
	}
	b.addGrants(&s, s)
	return b.plan
}

func (b *builder) create(s schemadef.Spec) {
	schema := sqlbuild.Ident(b.names.Schema)
	b.add("the org/app schema", "CREATE SCHEMA IF NOT EXISTS %s", schema)
	b.add("", "GRANT USAGE ON SCHEMA %s TO velocity_api", schema)

	cols := []string{
		"id uuid PRIMARY KEY DEFAULT velocity.uuid_v7()",
		"version integer NOT NULL DEFAULT 1",
		"created_at timestamptz NOT NULL DEFAULT now()",
		"updated_at timestamptz NOT NULL DEFAULT now()",
		"created_by text NOT NULL DEFAULT ''",
		"updated_by text NOT NULL DEFAULT ''",
	}
	for _, f := range s.Fields {
		cols = append(cols, columnDef(f))
	}
	b.add("the table: system fields, then user fields in definition order",
		"CREATE TABLE %s (\n  %s\n)", b.table, strings.Join(cols, ",\n  "))
	for _, f := range s.Fields {
		b.addFieldObjects(f)
	}
	b.add("Postgres keeps the system fields, whoever writes",
		"CREATE TRIGGER velocity_system_fields BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION velocity.set_system_fields()", b.table)
	b.addFieldWriter(s, false)
	b.add("layer 7: every row goes through RLS, the owner included", "ALTER TABLE %s ENABLE ROW LEVEL SECURITY", b.table)
	b.add("", "ALTER TABLE %s FORCE ROW LEVEL SECURITY", b.table)
	b.addPolicies(s.Access)
	b.addView(s)
	b.addHistory(s)
	b.addRowFilter(s)
	b.addGrants(nil, s)
}

// columnDef is the column clause of a user field; constraints that have their own names
// (CHECK, UNIQUE) are added separately so they can be changed one by one.
func columnDef(f schemadef.Field) string {
	def := sqlbuild.Ident(f.Name) + " " + columnType(f.Type)
	if f.Required {
		def += " NOT NULL"
	}
	if d := defaultExpr(f); d != "" {
		def += " DEFAULT " + d
	}
	return def
}

func columnType(t schemadef.FieldType) string { return sqlbuild.ColumnType(t) }

// defaultExpr renders a validated default as a typed SQL constant.
func defaultExpr(f schemadef.Field) string {
	if lit := defaultLiteral(f); lit != "" {
		return lit + "::" + columnType(f.Type)
	}
	return ""
}

// defaultLiteral is a validated default as an untyped SQL string constant, or "" for none.
func defaultLiteral(f schemadef.Field) string {
	if len(f.Default) == 0 || string(f.Default) == "null" {
		return ""
	}
	// The same conversion as a request value, so 1e3 or 2.0 for an integer become 1000 and 2.
	v, msg := sqlbuild.Value(schemadef.Field{Name: f.Name, Type: f.Type, Values: f.Values}, f.Default)
	if msg != "" || v == nil {
		panic(fmt.Sprintf("planner: default of %q is not valid (%s): validate the definition first", f.Name, msg))
	}
	return sqlbuild.Literal(*v)
}

// checkExpr is the CHECK constraint body a field needs, or "".
func checkExpr(f schemadef.Field) string {
	col := sqlbuild.Ident(f.Name)
	switch {
	case f.Type == schemadef.TypeEnum:
		return fmt.Sprintf("%s IN (%s)", col, sqlbuild.LiteralList(f.Values))
	case (f.Type == schemadef.TypeString || f.Type == schemadef.TypeText) && f.MaxLength != nil:
		return fmt.Sprintf("char_length(%s) <= %d", col, *f.MaxLength)
	}
	return ""
}

func (b *builder) constraintName(field, suffix string) string {
	return sqlbuild.Ident(schemadef.IndexName(b.names, field, suffix))
}

func (b *builder) indexName(field, suffix string) string {
	return sqlbuild.Qualified(b.names.Schema, schemadef.IndexName(b.names, field, suffix))
}

// addFieldObjects adds the named constraints and indexes of a field.
func (b *builder) addFieldObjects(f schemadef.Field) {
	if c := checkExpr(f); c != "" {
		b.add("", "ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)", b.table, b.constraintName(f.Name, "check"), c)
	}
	if f.Unique {
		b.add("", "ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s)", b.table, b.constraintName(f.Name, "key"), sqlbuild.Ident(f.Name))
	}
	if needsBtree(f) {
		// id follows the field: lists are in id order after their sort keys (keyset pages), so
		// a filter on the field (?region=eu) or a sort by it walks the index in page order
		// and stops at the page, instead of sorting every matching row.
		b.add("", "CREATE INDEX %s ON %s (%s, id)", b.constraintName(f.Name, "idx"), b.table, sqlbuild.Ident(f.Name))
	}
	if needsTrigram(f) {
		b.add("", "CREATE INDEX %s ON %s USING gin (%s velocity_ext.gin_trgm_ops)", b.constraintName(f.Name, "trgm"), b.table, sqlbuild.Ident(f.Name))
	}
}

func needsBtree(f schemadef.Field) bool {
	// A unique field already has the unique constraint's index.
	return (f.Filterable || f.Sortable) && !f.Unique && f.Type != schemadef.TypeJSON
}

func needsTrigram(f schemadef.Field) bool {
	return f.IsSearchable() && (f.Type == schemadef.TypeString || f.Type == schemadef.TypeText)
}

func policyRoles(a schemadef.Access, verb string) string {
	roles := a.RolesFor(verb)
	if len(roles) == 0 {
		return "'{}'::text[]"
	}
	return "ARRAY[" + sqlbuild.LiteralList(roles) + "]::text[]"
}

// addPolicies writes one permissive policy per verb. The actor's roles come from a scalar
// subquery so Postgres evaluates them once per statement.
func (b *builder) addPolicies(a schemadef.Access) {
	for _, p := range verbPolicies {
		check := fmt.Sprintf("(SELECT velocity.current_actor_roles() && %s)", policyRoles(a, p.verb))
		comment := fmt.Sprintf("layer 1 in Postgres: roles with %q", p.verb)
		switch p.command {
		case "INSERT":
			b.add(comment, "CREATE POLICY %s ON %s FOR INSERT WITH CHECK (%s)", p.name, b.table, check)
		case "UPDATE":
			b.add(comment, "CREATE POLICY %s ON %s FOR UPDATE USING (%s) WITH CHECK (%s)", p.name, b.table, check, check)
		default:
			b.add(comment, "CREATE POLICY %s ON %s FOR %s USING (%s)", p.name, b.table, p.command, check)
		}
	}
}

func (b *builder) history() string { return sqlbuild.Qualified(b.names.Schema, b.names.History) }

func (b *builder) dropPolicies() {
	for _, p := range verbPolicies {
		b.add("", "DROP POLICY IF EXISTS %s ON %s", p.name, b.table)
	}
}

// addView creates the read view the API and BI logins read through. It is owned by
// velocity_owner and the table's RLS is forced, so rows are filtered for the actor of the
// session reading it; its columns apply the field rules for that actor (viewColumn).
func (b *builder) addView(s schemadef.Spec) {
	b.add("the read view", "%s", b.viewSQL(s, false))
	b.add("", "GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO velocity_api", b.table)
	b.add("", "GRANT SELECT ON %s TO velocity_api", b.view)
}

// addGrants gives each role's Postgres group role the privileges its verbs need, for BI
// logins; RLS still decides which rows. Roles of old that are not in next lose everything.
// Group roles read through the views, never the history table, so the field rules hold for
// BI logins too.
func (b *builder) addGrants(old *schemadef.Spec, next schemadef.Spec) {
	roles := map[string]bool{}
	if old != nil {
		for r := range old.Access.Roles {
			roles[r] = true
		}
	}
	for r := range next.Access.Roles {
		roles[r] = true
	}
	for _, role := range sortedKeys(roles) {
		group := sqlbuild.Ident(schemadef.RoleName(role))
		b.add(fmt.Sprintf("group role for Velocity role %q", role), "SELECT velocity.ensure_group_role(%s)", sqlbuild.Literal(role))
		if old != nil {
			b.add("", "REVOKE ALL ON %s, %s, %s, %s FROM %s", b.table, b.view, b.history(), b.historyView(), group)
		}
		verbs, ok := next.Access.Roles[role]
		if !ok {
			continue
		}
		b.add("", "GRANT USAGE ON SCHEMA %s TO %s", sqlbuild.Ident(b.names.Schema), group)
		has := map[string]bool{}
		for _, v := range verbs {
			has[v] = true
		}
		if has["read"] {
			b.add("", "GRANT SELECT ON %s TO %s", b.view, group)
		}
		if has["read"] && has["history"] {
			b.add("", "GRANT SELECT ON %s TO %s", b.historyView(), group)
		}
		if has["create"] {
			b.add("", "GRANT INSERT ON %s TO %s", b.table, group)
		}
		switch {
		case (has["update"] || has["delete"]) && has["read"]:
			// Writers filter rows by their columns; RLS still picks the rows. A field the role
			// may not read plainly stays out, or its values could be found one WHERE at a time.
			if cols, all := readableColumns(next, role); all {
				b.add("", "GRANT SELECT ON %s TO %s", b.table, group)
			} else {
				b.add("", "GRANT SELECT (%s) ON %s TO %s", cols, b.table, group)
			}
		case has["update"] || has["delete"]:
			// Enough to address rows by id without reading what the role may not read.
			b.add("", "GRANT SELECT (id, version) ON %s TO %s", b.table, group)
		}
		if has["update"] {
			b.add("", "GRANT UPDATE ON %s TO %s", b.table, group)
		}
		if has["delete"] {
			b.add("", "GRANT DELETE ON %s TO %s", b.table, group)
		}
	}
}

// readableColumns lists, quoted, the columns of the table that role may read plainly: the
// system fields and every field whose read list is empty or holds role. all reports whether
// that is every column.
func readableColumns(s schemadef.Spec, role string) (cols string, all bool) {
	var out []string
	for _, name := range schemadef.SystemFields {
		out = append(out, sqlbuild.Ident(name))
	}
	all = true
	for _, f := range s.Fields {
		if restricted, fa := readRule(s, f.Name); restricted && !slices.Contains(fa.Read, role) {
			all = false
			continue
		}
		out = append(out, sqlbuild.Ident(f.Name))
	}
	return strings.Join(out, ", "), all
}
