package planner_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
)

// contacts is a definition with every kind of field rule: customer_email is masked (partial)
// and written by admins only, secret_note hidden, salary redacted, code masked in full, tier
// (with a default) written by admins only, region open. Admins see everything; editors write
// but may not read the ruled fields; viewers read.
func contacts(t *testing.T) schemadef.Definition {
	t.Helper()
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "contacts"},
		Spec: schemadef.Spec{
			Org: "acme", App: "crm", Domain: "sales", Object: "contacts", Version: 1,
			Fields: []schemadef.Field{
				{Name: "customer_email", Type: schemadef.TypeString},
				{Name: "secret_note", Type: schemadef.TypeText},
				{Name: "salary", Type: schemadef.TypeDecimal},
				{Name: "code", Type: schemadef.TypeString},
				{Name: "tier", Type: schemadef.TypeEnum, Values: []string{"basic", "gold"}, Default: json.RawMessage(`"basic"`)},
				{Name: "region", Type: schemadef.TypeString, Filterable: true},
			},
			Access: schemadef.Access{
				Roles: map[string][]string{
					"admin":  {"read", "create", "update", "delete", "history", "restore"},
					"editor": {"read", "create", "update", "history"},
					"viewer": {"read", "history"},
				},
				Fields: map[string]schemadef.FieldAccess{
					"customer_email": {Read: []string{"admin"}, Write: []string{"admin"}, Mask: schemadef.MaskPartial},
					"secret_note":    {Read: []string{"admin"}},
					"salary":         {Read: []string{"admin"}, Mask: schemadef.MaskRedact},
					"code":           {Read: []string{"admin"}, Mask: schemadef.MaskFull},
					"tier":           {Write: []string{"admin"}},
				},
			},
		},
	}
	def.Normalize()
	require.NoError(t, def.Validate())
	return def
}

func TestFieldRulesCreate(t *testing.T) {
	t.Parallel()
	sql := planner.Build(nil, contacts(t)).SQL()
	admin := `(SELECT velocity.current_actor_roles() && ARRAY['admin']::text[])`
	for _, want := range []string{
		// The read view: masked, hidden and redacted fields keep their names and types.
		`CASE WHEN ` + admin + ` THEN "customer_email" ELSE velocity.mask_partial("customer_email") END AS "customer_email"`,
		`CASE WHEN ` + admin + ` THEN "secret_note" ELSE NULL::text END AS "secret_note"`,
		`CASE WHEN ` + admin + ` THEN "salary" ELSE NULL::numeric END AS "salary"`,
		`CASE WHEN ` + admin + ` THEN "code" ELSE velocity.mask_full("code") END AS "code"`,
		`"tier", "region" FROM "acme__crm"."sales__contacts"`,
		`WITH (security_barrier)`,
		// The history view: the same rules on each image.
		`CREATE OR REPLACE VIEW "acme__crm"."sales__contacts__history_read" AS SELECT h.event_id, h.xid, h.at, h.record_id, h.op, h.version, h.actor, h.reason, h.request_id, `,
		`CASE WHEN ` + admin + ` OR h.image ->> 'customer_email' IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('customer_email', velocity.mask_partial(h.image ->> 'customer_email')) END`,
		`- CASE WHEN ` + admin + ` THEN '{}'::text[] ELSE ARRAY['secret_note'] END`,
		`CASE WHEN ` + admin + ` OR NOT h.image ? 'salary' THEN '{}'::jsonb ELSE jsonb_build_object('salary', NULL) END`,
		`jsonb_build_object('code', velocity.mask_full(h.image ->> 'code'))`,
		`AS image, h.redacted FROM "acme__crm"."sales__contacts__history" h`,
		`ALTER TABLE "acme__crm"."sales__contacts__history" FORCE ROW LEVEL SECURITY`,
		`CREATE POLICY velocity_history_write ON "acme__crm"."sales__contacts__history" FOR INSERT WITH CHECK (true)`,
		`CREATE TRIGGER velocity_history_guard_statement BEFORE UPDATE OR DELETE ON "acme__crm"."sales__contacts__history" FOR EACH STATEMENT`,
		// The field-write trigger: tier is compared with its default on insert.
		`CREATE OR REPLACE FUNCTION "acme__crm"."sales__contacts__field_write"() RETURNS trigger`,
		`LANGUAGE plpgsql SECURITY INVOKER`,
		`roles pg_catalog.text[] := velocity.current_actor_roles();`,
		`WHEN NOT (roles OPERATOR(pg_catalog.&&) ARRAY['admin']::pg_catalog.text[]) AND (NEW."customer_email" IS NOT NULL) THEN 'customer_email'`,
		`(NEW."tier" IS NULL) OPERATOR(pg_catalog.<>) ('basic'::pg_catalog.text IS NULL) OR NEW."tier" OPERATOR(pg_catalog.<>) 'basic'::pg_catalog.text`,
		`(NEW."tier" IS NULL) OPERATOR(pg_catalog.<>) (OLD."tier" IS NULL) OR NEW."tier" OPERATOR(pg_catalog.<>) OLD."tier"`,
		`USING ERRCODE = '42501', COLUMN = refused, HINT = 'velocity:layer5'`,
		`CREATE TRIGGER velocity_field_write BEFORE INSERT OR UPDATE ON "acme__crm"."sales__contacts" FOR EACH ROW EXECUTE FUNCTION "acme__crm"."sales__contacts__field_write"()`,
		// Audit entries: salary nulled, the masked fields masked.
		`'{"salary":null}'::pg_catalog.jsonb OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('customer_email', velocity.mask_partial(image OPERATOR(pg_catalog.->>) 'customer_email'), 'code', velocity.mask_full(image OPERATOR(pg_catalog.->>) 'code'))`,
		// Grants: every role reads history through the view; the editor writes but may read
		// only the columns open to it.
		`GRANT SELECT ON "acme__crm"."sales__contacts__history_read" TO "velocity_r_viewer"`,
		`GRANT SELECT ON "acme__crm"."sales__contacts__history_read" TO velocity_api`,
		`GRANT SELECT ("id", "version", "created_at", "updated_at", "created_by", "updated_by", "tier", "region") ON "acme__crm"."sales__contacts" TO "velocity_r_editor"`,
		`GRANT SELECT ON "acme__crm"."sales__contacts" TO "velocity_r_admin"`,
	} {
		require.Contains(t, sql, want, "Plan(%q) lacks %q", "contacts", want)
	}
	require.NotContains(t, sql, `ON "acme__crm"."sales__contacts__history" TO "velocity_r_`, "Plan(%q): a group role may read the history table past the masks", "contacts")
	// The read view names every column once, in table order.
	require.Equal(t, 1, strings.Count(sql, `AS "customer_email"`))
}

func TestFieldRulesAbsent(t *testing.T) {
	t.Parallel()
	// Without field rules, the views are the plain ones and there is no field-write trigger.
	def := contacts(t)
	def.Spec.Access.Fields = nil
	require.NoError(t, def.Validate())
	sql := planner.Build(nil, def).SQL()
	require.Contains(t, sql, `AS SELECT "id", "version", "created_at", "updated_at", "created_by", "updated_by", "customer_email", "secret_note", "salary", "code", "tier", "region" FROM`)
	require.Contains(t, sql, `h.request_id, h.image AS image, h.redacted FROM`)
	require.NotContains(t, sql, "field_write")
	require.NotContains(t, sql, "mask_")
	require.Empty(t, planner.FieldWriter(def.Spec))
}

// A change of field rules alone replaces the views in place (they keep their columns and
// grants), replaces, adds or drops the field-write trigger, and re-grants only when the
// columns a role may read change.
func TestFieldRulesAlter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		change   func(d *schemadef.Definition)
		contains []string
		lacks    []string
	}{
		{
			name: "mask changes",
			change: func(d *schemadef.Definition) {
				d.Spec.Access.Fields["customer_email"] = schemadef.FieldAccess{Read: []string{"admin"}, Write: []string{"admin"}, Mask: schemadef.MaskFull}
			},
			contains: []string{
				`CREATE OR REPLACE VIEW "acme__crm"."sales__contacts__read" WITH (security_barrier)`,
				`ELSE velocity.mask_full("customer_email") END AS "customer_email"`,
				`jsonb_build_object('customer_email', velocity.mask_full(h.image ->> 'customer_email'))`,
				// The audit entries mask it the new way.
				`CREATE OR REPLACE FUNCTION "acme__crm"."sales__contacts__history_write"()`,
			},
			lacks: []string{"DROP VIEW", `REVOKE ALL ON "acme__crm"."sales__contacts"`, "field_write", "CREATE POLICY"},
		},
		{
			name: "read opens to editors",
			change: func(d *schemadef.Definition) {
				d.Spec.Access.Fields["secret_note"] = schemadef.FieldAccess{Read: []string{"admin", "editor"}}
			},
			contains: []string{
				`ARRAY['admin', 'editor']::text[]) THEN "secret_note" ELSE NULL::text END`,
				`CREATE OR REPLACE VIEW "acme__crm"."sales__contacts__history_read"`,
				`REVOKE ALL ON "acme__crm"."sales__contacts", "acme__crm"."sales__contacts__read", "acme__crm"."sales__contacts__history", "acme__crm"."sales__contacts__history_read" FROM "velocity_r_editor"`,
				`GRANT SELECT ("id", "version", "created_at", "updated_at", "created_by", "updated_by", "secret_note", "tier", "region") ON "acme__crm"."sales__contacts" TO "velocity_r_editor"`,
			},
			lacks: []string{"DROP VIEW", "field_write", "history_write"},
		},
		{
			name: "write opens to editors",
			change: func(d *schemadef.Definition) {
				d.Spec.Access.Fields["tier"] = schemadef.FieldAccess{Write: []string{"admin", "editor"}}
			},
			contains: []string{
				`CREATE OR REPLACE FUNCTION "acme__crm"."sales__contacts__field_write"()`,
				`ARRAY['admin', 'editor']::pg_catalog.text[]`,
			},
			lacks: []string{"VIEW", "REVOKE", "CREATE TRIGGER", "history_write"},
		},
		{
			name: "no write rules",
			change: func(d *schemadef.Definition) {
				d.Spec.Access.Fields["customer_email"] = schemadef.FieldAccess{Read: []string{"admin"}, Mask: schemadef.MaskPartial}
				delete(d.Spec.Access.Fields, "tier")
			},
			contains: []string{
				`DROP TRIGGER IF EXISTS velocity_field_write ON "acme__crm"."sales__contacts"`,
				`DROP FUNCTION IF EXISTS "acme__crm"."sales__contacts__field_write"()`,
			},
			lacks: []string{"VIEW", "REVOKE", "history_write"},
		},
		{
			name:     "no rules at all",
			change:   func(d *schemadef.Definition) { d.Spec.Access.Fields = nil },
			contains: []string{`DROP TRIGGER IF EXISTS velocity_field_write`, `h.image AS image`, `GRANT SELECT ON "acme__crm"."sales__contacts" TO "velocity_r_editor"`},
		},
		{
			name: "a ruled field is dropped",
			change: func(d *schemadef.Definition) {
				d.Spec.Fields = d.Spec.Fields[:len(d.Spec.Fields)-2] // tier, region
				delete(d.Spec.Access.Fields, "tier")
				d.Spec.Policy.BreakingChanges = schemadef.BreakingAllow
			},
			contains: []string{`DROP VIEW IF EXISTS "acme__crm"."sales__contacts__read"`, `DROP COLUMN "tier"`,
				// The trigger function no longer checks tier.
				"-- the field write rules change\nCREATE OR REPLACE FUNCTION \"acme__crm\".\"sales__contacts__field_write\"()"},
			lacks: []string{`NEW."tier"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			old := contacts(t)
			next := clone(t, old)
			next.Spec.Version++
			tt.change(&next)
			require.NoError(t, next.Validate())
			plan := planner.Build(&old, next)
			sql := plan.SQL()
			for _, want := range tt.contains {
				require.Contains(t, sql, want, "Plan(%q) got %q, want it to contain %q", tt.name, sql, want)
			}
			for _, not := range tt.lacks {
				require.NotContains(t, sql, not, "Plan(%q) got %q, want no %q", tt.name, sql, not)
			}
			for range 10 {
				o, n := clone(t, old), clone(t, next)
				require.Equal(t, plan, planner.Build(&o, n), "Plan(%q) differs between builds", tt.name)
			}
		})
	}
}

// Refresh re-creates what an older planner made of an applied definition, idempotently.
func TestRefresh(t *testing.T) {
	t.Parallel()
	def := contacts(t)
	plan := planner.Refresh(def)
	require.Equal(t, plan, planner.Refresh(clone(t, def)))
	sql := plan.SQL()
	for _, want := range []string{
		`CREATE OR REPLACE VIEW "acme__crm"."sales__contacts__read" WITH (security_barrier)`,
		`CREATE OR REPLACE TRIGGER velocity_field_write`,
		`CREATE OR REPLACE VIEW "acme__crm"."sales__contacts__history_read"`,
		`ALTER TABLE "acme__crm"."sales__contacts__history" FORCE ROW LEVEL SECURITY`,
		`CREATE OR REPLACE TRIGGER velocity_history_guard_statement`,
		`DROP POLICY IF EXISTS velocity_history_write`,
		`CREATE OR REPLACE FUNCTION "acme__crm"."sales__contacts__history_write"()`,
		`REVOKE ALL ON "acme__crm"."sales__contacts", "acme__crm"."sales__contacts__read", "acme__crm"."sales__contacts__history", "acme__crm"."sales__contacts__history_read" FROM "velocity_r_viewer"`,
	} {
		require.Contains(t, sql, want, "Refresh(contacts) lacks %q", want)
	}
	require.NotContains(t, sql, "CREATE TABLE")
	require.NotContains(t, sql, "DROP VIEW")
}
