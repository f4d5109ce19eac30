package planner_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func ptr[T any](v T) *T { return &v }

// orders is the example of SPEC.md (schemadef's testdata/orders.yaml), parsed, normalized
// and validated. Each call returns a fresh copy that a case may change.
func orders(t *testing.T) schemadef.Definition {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "schemadef", "testdata", "orders.yaml"))
	require.NoError(t, err)
	def, err := schemadef.Parse(data)
	require.NoError(t, err)
	def.Normalize()
	require.NoError(t, def.Validate())
	return def
}

// clone deep-copies a definition, so that a change to the copy never reaches the original.
func clone(t *testing.T, d schemadef.Definition) schemadef.Definition {
	t.Helper()
	raw, err := json.Marshal(d)
	require.NoError(t, err)
	var out schemadef.Definition
	require.NoError(t, json.Unmarshal(raw, &out))
	return out
}

func fieldIndex(t *testing.T, d *schemadef.Definition, name string) int {
	t.Helper()
	i := slices.IndexFunc(d.Spec.Fields, func(f schemadef.Field) bool { return f.Name == name })
	require.GreaterOrEqual(t, i, 0, "field %q", name)
	return i
}

// field returns a pointer to the named field of d, for a case to change in place.
func field(t *testing.T, d *schemadef.Definition, name string) *schemadef.Field {
	t.Helper()
	return &d.Spec.Fields[fieldIndex(t, d, name)]
}

// render is the golden form of a plan: a header that says what it is, then the script.
func render(p planner.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "-- key: %s\n-- from version %d to version %d\n", p.Key, p.FromVersion, p.ToVersion)
	if len(p.Breaking) == 0 {
		b.WriteString("-- breaking: none\n")
	}
	for _, r := range p.Breaking {
		fmt.Fprintf(&b, "-- breaking: %s\n", r)
	}
	b.WriteString("\n")
	b.WriteString(p.SQL())
	return b.String()
}

// golden compares got with testdata/name.golden, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test ./internal/planner -update")
	require.Equal(t, string(want), got, "Plan(%q) differs from %s (run with -update if the change is intended)", name, path)
}

// alterCase is one change from an old definition to a new one.
type alterCase struct {
	name string
	// old changes the base definition before it is the applied one (nil: orders as is).
	old func(t *testing.T, d *schemadef.Definition)
	// next changes a copy of old into the definition being applied.
	next func(t *testing.T, d *schemadef.Definition)
	// breaking is whether the change must be refused without policy.breakingChanges: allow.
	breaking bool
	// contains are fragments of SQL the plan must hold, as a readable check beside the golden.
	contains []string
}

// alterCases is shared with the integration test, which applies every one of them.
func alterCases() []alterCase {
	return []alterCase{
		{
			name: "add_field",
			next: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "notes", Type: schemadef.TypeText})
			},
			contains: []string{`ADD COLUMN "notes" text`, `"sales__orders__notes__trgm"`, `CREATE VIEW`},
		},
		{
			name: "add_required_field_with_default",
			next: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "quantity", Type: schemadef.TypeInteger,
					Required: true, Default: json.RawMessage(`1`), Filterable: true})
			},
			contains: []string{`ADD COLUMN "quantity" bigint NOT NULL DEFAULT '1'::bigint`, `"sales__orders__quantity__idx"`},
		},
		{
			name: "add_required_field_without_default",
			next: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "quantity", Type: schemadef.TypeInteger, Required: true})
			},
			breaking: true,
			contains: []string{`ADD COLUMN "quantity" bigint NOT NULL`},
		},
		{
			name: "add_index",
			old: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "region").Filterable = false
			},
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "region").Filterable = true
			},
			contains: []string{`CREATE INDEX "sales__orders__region__idx" ON "acme__shop"."sales__orders" ("region")`},
		},
		{
			name: "drop_index",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "region").Filterable = false
			},
			contains: []string{`DROP INDEX "acme__shop"."sales__orders__region__idx"`},
		},
		{
			name: "widen_string_to_text",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "region").Type = schemadef.TypeText
			},
		},
		{
			name: "widen_integer_to_decimal",
			old: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "quantity", Type: schemadef.TypeInteger, Sortable: true})
			},
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "quantity").Type = schemadef.TypeDecimal
			},
			contains: []string{`ALTER COLUMN "quantity" TYPE numeric USING "quantity"::numeric`},
		},
		{
			name: "integer_to_number",
			old: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "quantity", Type: schemadef.TypeInteger})
			},
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "quantity").Type = schemadef.TypeNumber
			},
			breaking: true,
			contains: []string{`ALTER COLUMN "quantity" TYPE double precision USING "quantity"::double precision`},
		},
		{
			name: "raise_max_length",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "customer_email").MaxLength = ptr(500)
			},
			contains: []string{`DROP CONSTRAINT "sales__orders__customer_email__check"`, `char_length("customer_email") <= 500`},
		},
		{
			name: "add_enum_value",
			next: func(t *testing.T, d *schemadef.Definition) {
				f := field(t, d, "status")
				f.Values = append(f.Values, "refunded")
			},
			contains: []string{`"status" IN ('pending', 'paid', 'shipped', 'refunded')`},
		},
		{
			name: "drop_field",
			next: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = slices.Delete(d.Spec.Fields, fieldIndex(t, d, "region"), fieldIndex(t, d, "region")+1)
				d.Spec.Access.RowFilter = "" // it reads region
			},
			breaking: true,
			contains: []string{`DROP COLUMN "region"`},
		},
		{
			name: "narrow_type",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "total").Type = schemadef.TypeInteger
			},
			breaking: true,
			contains: []string{`ALTER COLUMN "total" TYPE bigint USING "total"::bigint`},
		},
		{
			name: "narrow_text_to_integer",
			old: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "code", Type: schemadef.TypeString,
					MaxLength: ptr(12), Default: json.RawMessage(`"7"`)})
			},
			next: func(t *testing.T, d *schemadef.Definition) {
				f := field(t, d, "code")
				f.Type, f.MaxLength, f.Default = schemadef.TypeInteger, nil, json.RawMessage(`7`)
			},
			breaking: true,
			contains: []string{`ALTER COLUMN "code" TYPE bigint USING "code"::bigint`, `DROP INDEX "acme__shop"."sales__orders__code__trgm"`},
		},
		{
			name: "drop_enum_value",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "status").Values = []string{"pending", "paid"}
			},
			breaking: true,
			contains: []string{`"status" IN ('pending', 'paid')`},
		},
		{
			name: "shrink_max_length",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "customer_email").MaxLength = ptr(100)
			},
			breaking: true,
			contains: []string{`char_length("customer_email") <= 100`},
		},
		{
			name: "make_required",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "region").Required = true
			},
			breaking: true,
			contains: []string{`ALTER COLUMN "region" SET NOT NULL`},
		},
		{
			name: "make_optional",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "customer_email").Required = false
			},
			contains: []string{`ALTER COLUMN "customer_email" DROP NOT NULL`},
		},
		{
			name: "roles_change",
			next: func(t *testing.T, d *schemadef.Definition) {
				delete(d.Spec.Access.Roles, "viewer")
				d.Spec.Access.Roles["auditor"] = []string{"read", "history"}
				d.Spec.Access.Roles["editor"] = []string{"read", "search", "create", "update", "delete"}
			},
			contains: []string{
				`DROP POLICY IF EXISTS velocity_read`,
				`CREATE POLICY velocity_delete ON "acme__shop"."sales__orders" FOR DELETE USING ((SELECT velocity.current_actor_roles() && ARRAY['admin', 'editor']::text[]))`,
				`REVOKE ALL ON "acme__shop"."sales__orders", "acme__shop"."sales__orders__read", "acme__shop"."sales__orders__history", "acme__shop"."sales__orders__history_read" FROM "velocity_r_viewer"`,
				`GRANT SELECT ON "acme__shop"."sales__orders__read" TO "velocity_r_auditor"`,
			},
		},
		{
			name: "unique_on",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "customer_email").Unique = true
			},
			contains: []string{
				`ADD CONSTRAINT "sales__orders__customer_email__key" UNIQUE ("customer_email")`,
				// The unique constraint's index replaces the btree index.
				`DROP INDEX "acme__shop"."sales__orders__customer_email__idx"`,
			},
		},
		{
			name: "unique_off",
			old: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "customer_email").Unique = true
			},
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "customer_email").Unique = false
			},
			contains: []string{
				`DROP CONSTRAINT "sales__orders__customer_email__key"`,
				`CREATE INDEX "sales__orders__customer_email__idx"`,
			},
		},
		{
			name: "default_change",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "status").Default = json.RawMessage(`"paid"`)
			},
			contains: []string{`ALTER COLUMN "status" SET DEFAULT 'paid'::text`},
		},
		{
			name: "default_dropped",
			next: func(t *testing.T, d *schemadef.Definition) {
				field(t, d, "status").Default = nil
			},
			contains: []string{`ALTER COLUMN "status" DROP DEFAULT`},
		},
		{
			name: "field_rules_change",
			next: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Access.Fields = map[string]schemadef.FieldAccess{
					"customer_email": {Read: []string{"admin"}, Write: []string{"admin", "editor"}, Mask: schemadef.MaskFull},
					"region":         {Read: []string{"admin", "editor"}},
				}
			},
			contains: []string{
				// The views keep their columns: replaced in place, no DROP VIEW.
				`CREATE OR REPLACE VIEW "acme__shop"."sales__orders__read" WITH (security_barrier)`,
				`ELSE velocity.mask_full("customer_email") END AS "customer_email"`,
				`THEN "region" ELSE NULL::text END AS "region"`,
				`CREATE OR REPLACE VIEW "acme__shop"."sales__orders__history_read"`,
				`CREATE OR REPLACE FUNCTION "acme__shop"."sales__orders__field_write"()`,
				// The editor may no longer read customer_email from the table.
				`GRANT SELECT ("id", "version", "created_at", "updated_at", "created_by", "updated_by", "status", "region", "total") ON "acme__shop"."sales__orders" TO "velocity_r_editor"`,
			},
		},
		{
			name: "field_rules_removed",
			next: func(t *testing.T, d *schemadef.Definition) {
				d.Spec.Access.Fields = nil
			},
			contains: []string{
				`DROP TRIGGER IF EXISTS velocity_field_write ON "acme__shop"."sales__orders"`,
				`"customer_email", "status", "region", "total" FROM "acme__shop"."sales__orders"`,
				`h.image AS image`,
			},
		},
		{
			name: "version_only",
			next: func(t *testing.T, d *schemadef.Definition) {},
		},
	}
}

// plans returns the old and the new definition of c.
func (c alterCase) defs(t *testing.T) (schemadef.Definition, schemadef.Definition) {
	t.Helper()
	old := orders(t)
	if c.old != nil {
		c.old(t, &old)
	}
	require.NoError(t, old.Validate(), "old definition of %s", c.name)
	next := clone(t, old)
	next.Spec.Version = old.Spec.Version + 1
	c.next(t, &next)
	require.NoError(t, next.Validate(), "new definition of %s", c.name)
	return old, next
}

func TestBuildCreate(t *testing.T) {
	t.Parallel()
	def := orders(t)
	plan := planner.Build(nil, def)

	require.Equal(t, "acme.shop.sales.orders", plan.Key)
	require.Equal(t, 0, plan.FromVersion)
	require.Equal(t, 1, plan.ToVersion)
	require.Empty(t, plan.Breaking, "a new table breaks nothing")
	require.False(t, plan.Empty())
	sql := plan.SQL()
	for _, want := range []string{
		`CREATE SCHEMA IF NOT EXISTS "acme__shop"`,
		`CREATE TABLE "acme__shop"."sales__orders"`,
		`"customer_email" text NOT NULL`,
		`"status" text DEFAULT 'pending'::text`,
		`"total" numeric`,
		`ALTER TABLE "acme__shop"."sales__orders" ENABLE ROW LEVEL SECURITY`,
		`ALTER TABLE "acme__shop"."sales__orders" FORCE ROW LEVEL SECURITY`,
		`CREATE POLICY velocity_read ON "acme__shop"."sales__orders" FOR SELECT USING ((SELECT velocity.current_actor_roles() && ARRAY['admin', 'editor', 'viewer']::text[]))`,
		`CREATE POLICY velocity_delete ON "acme__shop"."sales__orders" FOR DELETE USING ((SELECT velocity.current_actor_roles() && ARRAY['admin']::text[]))`,
		`CREATE VIEW "acme__shop"."sales__orders__read" WITH (security_barrier)`,
		`CHECK ("status" IN ('pending', 'paid', 'shipped'))`,
		`CHECK (char_length("customer_email") <= 320)`,
		`CREATE INDEX "sales__orders__total__idx"`,
		`CREATE INDEX "sales__orders__customer_email__trgm" ON "acme__shop"."sales__orders" USING gin ("customer_email" velocity_ext.gin_trgm_ops)`,
		`SELECT velocity.ensure_group_role('viewer')`,
	} {
		require.Contains(t, sql, want, "Plan(%q) lacks %q", "create_orders", want)
	}
	// A new table has no grants to revoke; only the history writer's default EXECUTE is.
	require.Equal(t, 1, strings.Count(sql, "REVOKE"))
	require.Contains(t, sql, `REVOKE ALL ON FUNCTION "acme__shop"."sales__orders__history_write"() FROM PUBLIC`)
	golden(t, "create_orders", render(plan))
}

func TestBuildAlter(t *testing.T) {
	t.Parallel()
	for _, c := range alterCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			old, next := c.defs(t)
			plan := planner.Build(&old, next)

			require.Equal(t, old.Spec.Version, plan.FromVersion)
			require.Equal(t, next.Spec.Version, plan.ToVersion)
			require.Equal(t, c.breaking, len(plan.Breaking) > 0,
				"Plan(%q) got breaking %q, want breaking=%v", c.name, plan.Breaking, c.breaking)
			sql := plan.SQL()
			for _, want := range c.contains {
				require.Contains(t, sql, want, "Plan(%q) got %q, want it to contain %q", c.name, sql, want)
			}
			golden(t, c.name, render(plan))
		})
	}
}

func TestBuildAlterScope(t *testing.T) {
	t.Parallel()
	// What each change must leave alone: a change to one field rebuilds the view and the
	// grants, but not the policies; a change of roles rebuilds policies and grants, but not
	// the view; a version bump alone changes nothing.
	tests := []struct {
		name                        string
		view, policies, grants, any bool
	}{
		{name: "add_field", view: true, grants: true, any: true},
		{name: "add_index", view: true, grants: true, any: true},
		{name: "roles_change", policies: true, grants: true, any: true},
		{name: "default_change", view: true, grants: true, any: true},
		{name: "version_only"},
	}
	cases := map[string]alterCase{}
	for _, c := range alterCases() {
		cases[c.name] = c
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, ok := cases[tt.name]
			require.True(t, ok)
			old, next := c.defs(t)
			plan := planner.Build(&old, next)
			sql := plan.SQL()
			require.Equal(t, tt.any, !plan.Empty(), "Plan(%q) got %d steps", tt.name, len(plan.Steps))
			require.Equal(t, tt.view, strings.Contains(sql, "CREATE VIEW"), "Plan(%q) got %q: view rebuilt?", tt.name, sql)
			require.Equal(t, tt.view, strings.Contains(sql, "DROP VIEW"), "Plan(%q) got %q: view dropped?", tt.name, sql)
			require.Equal(t, tt.policies, strings.Contains(sql, "CREATE POLICY"), "Plan(%q) got %q: policies rebuilt?", tt.name, sql)
			require.Equal(t, tt.grants, strings.Contains(sql, "REVOKE ALL"), "Plan(%q) got %q: grants rebuilt?", tt.name, sql)
			if tt.view {
				// The view goes first (it names every column) and comes back after the changes.
				require.True(t, strings.HasPrefix(plan.Steps[0].SQL, "DROP VIEW IF EXISTS"), "Plan(%q) starts with %q", tt.name, plan.Steps[0].SQL)
			}
		})
	}
}

func TestBuildDeterministic(t *testing.T) {
	t.Parallel()
	// Maps (roles, field access) iterate in random order; the plan must not.
	def := orders(t)
	first := planner.Build(nil, def)
	for range 20 {
		require.Equal(t, first, planner.Build(nil, clone(t, def)), "Plan(%q) differs between builds", "create_orders")
	}
	for _, c := range alterCases() {
		old, next := c.defs(t)
		first := planner.Build(&old, next)
		for range 20 {
			o, n := c.defs(t)
			require.Equal(t, first, planner.Build(&o, n), "Plan(%q) differs between builds", c.name)
		}
	}
}

func TestBuildIdenticalIsEmpty(t *testing.T) {
	t.Parallel()
	// Applying the applied definition again plans nothing.
	def := orders(t)
	same := clone(t, def)
	plan := planner.Build(&def, same)
	require.True(t, plan.Empty(), "Plan(%q) got %q, want no steps", "identical", plan.SQL())
	require.Empty(t, plan.Breaking)
	require.Equal(t, "", plan.SQL())
}

func TestBuildBreakingReasons(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want []string
	}{
		{"drop_field", []string{`field "region" is dropped with its data`}},
		{"narrow_type", []string{`field "total" changes type from decimal to integer, which can fail or lose data`}},
		{"drop_enum_value", []string{`field "status": enum values [shipped] are dropped`}},
		{"shrink_max_length", []string{`field "customer_email": maxLength shrinks to 100`}},
		{"make_required", []string{`field "region" becomes required, which fails if a row has no value`}},
		{"integer_to_number", []string{`field "quantity" changes type from integer to number, which can fail or lose data`}},
		{"add_required_field_without_default", []string{`field "quantity" is added as required without a default, which fails if the table has rows`}},
	}
	cases := map[string]alterCase{}
	for _, c := range alterCases() {
		cases[c.name] = c
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old, next := cases[tt.name].defs(t)
			got := planner.Build(&old, next).Breaking
			require.Equal(t, tt.want, got, "Plan(%q) got %q, want %q", tt.name, got, tt.want)
		})
	}
}

func TestBuildQuotesHostileText(t *testing.T) {
	t.Parallel()
	// Enum values and defaults reach DDL as literals, where parameters cannot go: a quote
	// in them must stay inside the literal.
	def := orders(t)
	f := field(t, &def, "region")
	f.Default = json.RawMessage(`"it's'; DROP TABLE x; --"`)
	require.NoError(t, def.Validate())
	sql := planner.Build(nil, def).SQL()
	require.Contains(t, sql, `DEFAULT 'it''s''; DROP TABLE x; --'::text`)

	enum := orders(t)
	field(t, &enum, "status").Values = []string{"a:b", "c-d", "e.f"}
	field(t, &enum, "status").Default = json.RawMessage(`"a:b"`)
	require.NoError(t, enum.Validate())
	require.Contains(t, planner.Build(nil, enum).SQL(), `"status" IN ('a:b', 'c-d', 'e.f')`)
}

func TestPlanJSON(t *testing.T) {
	t.Parallel()
	// The plan is what `schema apply --dry-run -o json` prints.
	old, next := alterCases()[0].defs(t)
	raw, err := json.Marshal(planner.Build(&old, next))
	require.NoError(t, err)
	var back planner.Plan
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Equal(t, planner.Build(&old, next), back)
	require.NotContains(t, string(raw), `"breaking"`, "an empty breaking list is omitted")
}

// The history writer holds the masked and redacted field lists, so a change to either
// regenerates it; other changes leave it alone.
func TestBuildRegeneratesWriterForMasks(t *testing.T) {
	t.Parallel()
	base := orders(t)
	for _, c := range []struct {
		name   string
		change func(d *schemadef.Definition)
		writer bool
	}{
		{"sensitive on", func(d *schemadef.Definition) { d.Spec.Fields[1].Sensitive = !d.Spec.Fields[1].Sensitive }, true},
		{"redact", func(d *schemadef.Definition) {
			d.Spec.History.Redact = append(d.Spec.History.Redact, "total") // not region: the row filter reads it
		}, true},
		{"version only", func(*schemadef.Definition) {}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			next := orders(t)
			next.Spec.Version++
			c.change(&next)
			require.NoError(t, next.Validate())
			sql := planner.Build(&base, next).SQL()
			require.Equal(t, c.writer, strings.Contains(sql, "__history_write"), sql)
		})
	}
}
