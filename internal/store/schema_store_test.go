package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

const (
	ordersKey   = "acme.shop.sales.orders"
	ordersTable = "acme__shop.sales__orders"
)

func TestApplySchemaCreates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	def := orders(t)

	res, err := e.st.ApplySchema(ctx, def, false, "user:alice")
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	require.Equal(t, "orders", res.Name)
	require.Equal(t, ordersKey, res.Plan.Key)
	require.Equal(t, 1, res.Plan.ToVersion)
	require.False(t, res.Plan.Empty())

	// The table: owned by the owner role, RLS enabled and forced.
	var owner string
	var rls, force bool
	require.NoError(t, e.super.QueryRow(ctx, `
		SELECT pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'acme__shop' AND c.relname = 'sales__orders' AND c.relkind = 'r'`).Scan(&owner, &rls, &force))
	require.Equal(t, store.OwnerRole, owner)
	require.True(t, rls, "relrowsecurity")
	require.True(t, force, "relforcerowsecurity")

	// The columns: system fields first, then user fields in definition order.
	rows, err := e.super.Query(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
		  FROM pg_attribute a WHERE a.attrelid = 'acme__shop.sales__orders'::regclass AND a.attnum > 0 AND NOT a.attisdropped
		 ORDER BY a.attnum`)
	require.NoError(t, err)
	type column struct {
		name, typ string
		notNull   bool
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.name, &c.typ, &c.notNull)
	})
	require.NoError(t, err)
	require.Equal(t, []column{
		{"id", "uuid", true}, {"version", "integer", true},
		{"created_at", "timestamp with time zone", true}, {"updated_at", "timestamp with time zone", true},
		{"created_by", "text", true}, {"updated_by", "text", true},
		{"customer_email", "text", true}, {"status", "text", false}, {"region", "text", false}, {"total", "numeric", false},
	}, cols)

	// The read view.
	require.Equal(t, "v", scalar[string](t, e.super, `
		SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE n.nspname = 'acme__shop' AND c.relname = 'sales__orders__read'`))

	// One policy per verb that Postgres enforces, and the restrictive row filter over all of them.
	policies := scalar[[]string](t, e.super, `
		SELECT array_agg(policyname || ':' || cmd ORDER BY policyname) FROM pg_policies
		 WHERE schemaname = 'acme__shop' AND tablename = 'sales__orders'`)
	require.Equal(t, []string{"velocity_create:INSERT", "velocity_delete:DELETE", "velocity_read:SELECT", "velocity_row_filter:ALL", "velocity_update:UPDATE"}, policies)

	// The indexes and constraints of the fields.
	indexes := scalar[[]string](t, e.super, `
		SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes
		 WHERE schemaname = 'acme__shop' AND tablename = 'sales__orders'`)
	require.Equal(t, []string{
		"sales__orders__customer_email__idx", "sales__orders__customer_email__trgm",
		"sales__orders__region__idx", "sales__orders__region__trgm",
		"sales__orders__status__idx", "sales__orders__total__idx", "sales__orders_pkey",
	}, indexes)
	checks := scalar[[]string](t, e.super, `
		SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint
		 WHERE conrelid = 'acme__shop.sales__orders'::regclass AND contype = 'c'`)
	require.Equal(t, []string{"sales__orders__customer_email__check", "sales__orders__status__check"}, checks)

	// A group role per Velocity role, with the grants of its verbs.
	for _, role := range []string{"viewer", "editor", "admin"} {
		group := schemadef.RoleName(role)
		require.True(t, scalar[bool](t, e.super, `SELECT has_table_privilege($1, 'acme__shop.sales__orders__read', 'SELECT')`, group), group)
	}
	require.False(t, scalar[bool](t, e.super, `SELECT has_table_privilege('velocity_r_viewer', 'acme__shop.sales__orders', 'INSERT')`))
	require.True(t, scalar[bool](t, e.super, `SELECT has_table_privilege('velocity_r_editor', 'acme__shop.sales__orders', 'INSERT')`))
	require.True(t, scalar[bool](t, e.super, `SELECT has_table_privilege('velocity_r_admin', 'acme__shop.sales__orders', 'DELETE')`))

	// The registry: one version row with the exact plan, and the current definition.
	var version int
	var plan, planHash, appliedBy string
	var breaking []string
	var recorded []byte
	require.NoError(t, e.super.QueryRow(ctx, `
		SELECT version, plan, plan_hash, breaking, applied_by, definition FROM velocity.schema_versions WHERE schema_key = $1`,
		ordersKey).Scan(&version, &plan, &planHash, &breaking, &appliedBy, &recorded))
	require.Equal(t, 1, version)
	require.Equal(t, res.Plan.SQL(), plan)
	sum := sha256.Sum256([]byte(plan))
	require.Equal(t, hex.EncodeToString(sum[:]), planHash)
	require.Empty(t, breaking)
	require.Equal(t, "user:alice", appliedBy)
	var back schemadef.Definition
	require.NoError(t, json.Unmarshal(recorded, &back))
	require.Equal(t, def, back)

	var name string
	var current int
	require.NoError(t, e.super.QueryRow(ctx, `SELECT name, current_version FROM velocity.schemas WHERE key = $1`, ordersKey).Scan(&name, &current))
	require.Equal(t, "orders", name)
	require.Equal(t, 1, current)

	// The API pool reads the registry back.
	schemas, err := e.st.Schemas(ctx)
	require.NoError(t, err)
	require.Len(t, schemas, 1)
	require.Equal(t, ordersKey, schemas[0].Key)
	require.Equal(t, 1, schemas[0].Version)
	require.Equal(t, def, schemas[0].Definition)
	versions, err := e.st.SchemaVersions(ctx, ordersKey)
	require.NoError(t, err)
	require.Len(t, versions, 1)
	require.Equal(t, hex.EncodeToString(sum[:]), versions[0].PlanHash)
	require.Equal(t, []string{}, versions[0].Breaking)
}

func TestApplySchemaIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	def := orders(t)
	e.apply(t, def)

	res, err := e.st.ApplySchema(ctx, orders(t), false, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusUnchanged, res.Status)
	require.True(t, res.Plan.Empty())
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))

	// A dry run of the applied version is a no-op too.
	res, err = e.st.ApplySchema(ctx, def, true, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusUnchanged, res.Status)
}

func TestApplySchemaIdempotentWithJSONDefault(t *testing.T) {
	t.Parallel()
	// The registry keeps the definition as jsonb, which reorders object keys; the same file
	// applied again must still be recognised as the same.
	ctx := context.Background()
	e := newEnv(t)
	def := orders(t)
	def.Spec.Fields = append(def.Spec.Fields, schemadef.Field{Name: "meta", Type: schemadef.TypeJSON,
		Default: json.RawMessage(`{"zz":1,"a":[true,{"y":2,"b":null}]}`)})
	require.NoError(t, def.Validate())
	e.apply(t, def)

	res, err := e.st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err, "re-applying the same definition")
	require.Equal(t, store.StatusUnchanged, res.Status)
}

func TestApplySchemaVersionConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.apply(t, orders(t))

	other := next(t, orders(t), func(d *schemadef.Definition) {
		d.Spec.Version = 1
		d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "notes", Type: schemadef.TypeText})
	})
	_, err := e.st.ApplySchema(ctx, other, false, "test")
	require.ErrorIs(t, err, store.ErrVersionConflict)
	require.False(t, scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'acme__shop.sales__orders'::regclass AND attname = 'notes')`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))

	// A dry run is refused the same way: it has no plan to show.
	_, err = e.st.ApplySchema(ctx, other, true, "test")
	require.ErrorIs(t, err, store.ErrVersionConflict)
}

func TestApplySchemaVersionLower(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	v2 := next(t, v1, nil)
	v3 := next(t, v2, nil)
	e.apply(t, v1)
	e.apply(t, v3)

	for _, d := range []schemadef.Definition{v1, v2} {
		_, err := e.st.ApplySchema(ctx, d, false, "test")
		require.ErrorIs(t, err, store.ErrVersionLower, "version %d", d.Spec.Version)
	}
	require.Equal(t, 3, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Equal(t, []int32{3, 1}, scalar[[]int32](t, e.super, `SELECT array_agg(version ORDER BY version DESC) FROM velocity.schema_versions`))
}

func TestApplySchemaAddFieldKeepsRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email, status, region, total)
		VALUES ('a@example.com', 'paid', 'eu', 10.50), ('b@example.com', DEFAULT, 'us', NULL)`)
	require.NoError(t, err)
	before := scalar[[]string](t, e.super, `SELECT array_agg(id::text || version ORDER BY id) FROM `+ordersTable)

	v2 := next(t, v1, func(d *schemadef.Definition) {
		d.Spec.Fields = append(d.Spec.Fields, schemadef.Field{Name: "quantity", Type: schemadef.TypeInteger,
			Required: true, Default: json.RawMessage(`1`), Filterable: true})
	})
	res := e.apply(t, v2)
	require.Equal(t, store.StatusApplied, res.Status)
	require.Empty(t, res.Plan.Breaking)

	// The same rows, untouched by the trigger (same version), with the new field's default.
	require.Equal(t, before, scalar[[]string](t, e.super, `SELECT array_agg(id::text || version ORDER BY id) FROM `+ordersTable))
	require.Equal(t, []int64{1, 1}, scalar[[]int64](t, e.super, `SELECT array_agg(quantity) FROM `+ordersTable))
	require.Equal(t, "10.50", scalar[string](t, e.super, `SELECT total::text FROM `+ordersTable+` WHERE customer_email = 'a@example.com'`))
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))

	// The rebuilt view shows the new field to the API, with the old rows.
	var got []map[string]any
	err = e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `SELECT row_to_json(v) FROM acme__shop.sales__orders__read v ORDER BY customer_email`}},
		func(_ int, rows pgx.Rows) error {
			var err error
			got, err = pgx.CollectRows(rows, pgx.RowTo[map[string]any])
			return err
		})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.EqualValues(t, 1, got[0]["quantity"])
	require.Equal(t, "a@example.com", got[0]["customer_email"])
}

func TestApplySchemaBreakingRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email, region) VALUES ('a@example.com', 'eu')`)
	require.NoError(t, err)

	dropRegion := func(d *schemadef.Definition) {
		d.Spec.Fields = append(d.Spec.Fields[:2:2], d.Spec.Fields[3:]...)
		d.Spec.Access.RowFilter = "" // it reads region
	}
	v2 := next(t, v1, dropRegion)
	_, ok := v2.Spec.Field("region")
	require.False(t, ok)

	_, err = e.st.ApplySchema(ctx, v2, false, "test")
	var be *store.BreakingError
	require.ErrorAs(t, err, &be)
	require.ErrorIs(t, err, store.ErrBreaking)
	require.Equal(t, []string{`field "region" is dropped with its data`}, be.Reasons)

	// Nothing changed: the column and its data are there, the version is still 1.
	require.Equal(t, "eu", scalar[string](t, e.super, `SELECT region FROM `+ordersTable))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))

	// A dry run shows the breaking change instead of refusing it, and changes nothing.
	res, err := e.st.ApplySchema(ctx, v2, true, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusDryRun, res.Status)
	require.Equal(t, be.Reasons, res.Plan.Breaking)
	require.Contains(t, res.Plan.SQL(), `DROP COLUMN "region"`)
	require.Equal(t, "eu", scalar[string](t, e.super, `SELECT region FROM `+ordersTable))

	// With the policy allowing it, the same change applies and is recorded as breaking.
	v2.Spec.Policy.BreakingChanges = schemadef.BreakingAllow
	res = e.apply(t, v2)
	require.Equal(t, store.StatusApplied, res.Status)
	require.False(t, scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'acme__shop.sales__orders'::regclass AND attname = 'region' AND NOT attisdropped)`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM `+ordersTable))
	require.Equal(t, be.Reasons, scalar[[]string](t, e.super, `SELECT breaking FROM velocity.schema_versions WHERE version = 2`))
}

func TestApplySchemaBreakingKinds(t *testing.T) {
	t.Parallel()
	// Every kind of breaking change is refused without the policy, leaving the schema as is.
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	tests := []struct {
		name   string
		change func(d *schemadef.Definition)
	}{
		{"narrow type", func(d *schemadef.Definition) { field(t, d, "total").Type = schemadef.TypeInteger }},
		{"drop enum value", func(d *schemadef.Definition) { field(t, d, "status").Values = []string{"pending", "paid"} }},
		{"shrink maxLength", func(d *schemadef.Definition) { field(t, d, "customer_email").MaxLength = ptr(10) }},
		{"make required", func(d *schemadef.Definition) { field(t, d, "region").Required = true }},
	}
	for _, tt := range tests {
		_, err := e.st.ApplySchema(ctx, next(t, v1, tt.change), false, "test")
		require.ErrorIs(t, err, store.ErrBreaking, tt.name)
	}
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))
	require.Equal(t, "numeric", scalar[string](t, e.super, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'acme__shop.sales__orders'::regclass AND attname = 'total'`))
}

func TestApplySchemaDryRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	def := orders(t)

	res, err := e.st.ApplySchema(ctx, def, true, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusDryRun, res.Status)
	require.Contains(t, res.Plan.SQL(), `CREATE TABLE "acme__shop"."sales__orders"`)

	require.False(t, scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'acme__shop')`))
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schemas`))
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))

	// The dry run's plan is exactly what the apply then runs.
	applied := e.apply(t, def)
	require.Equal(t, res.Plan, applied.Plan)
}

func TestApplySchemaFailureRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email) VALUES ('dup@example.com'), ('dup@example.com')`)
	require.NoError(t, err)

	// notes comes first, so its column is added before the unique constraint fails.
	v2 := next(t, v1, func(d *schemadef.Definition) {
		d.Spec.Fields = append([]schemadef.Field{{Name: "notes", Type: schemadef.TypeText}}, d.Spec.Fields...)
		field(t, d, "customer_email").Unique = true
	})
	_, err = e.st.ApplySchema(ctx, v2, false, "test")
	require.Error(t, err)
	require.ErrorIs(t, err, store.ErrConflict, "a unique violation while applying")
	var dbErr *store.DBError
	require.ErrorAs(t, err, &dbErr)
	require.Equal(t, "23505", dbErr.Code)

	// Everything rolled back: the view that the plan dropped first, the column it added, the
	// index it would have dropped, and the version.
	require.False(t, scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'acme__shop.sales__orders'::regclass AND attname = 'notes')`))
	require.True(t, scalar[bool](t, e.super, `SELECT to_regclass('acme__shop.sales__orders__read') IS NOT NULL`))
	require.True(t, scalar[bool](t, e.super, `SELECT to_regclass('acme__shop.sales__orders__customer_email__idx') IS NOT NULL`))
	require.False(t, scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'sales__orders__customer_email__key')`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT current_version FROM velocity.schemas`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT count(*) FROM `+ordersTable))

	// Once the data is fixed, the same version applies.
	_, err = e.super.Exec(ctx, `DELETE FROM `+ordersTable+` WHERE ctid = (SELECT min(ctid) FROM `+ordersTable+`)`)
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, e.apply(t, v2).Status)
	require.True(t, scalar[bool](t, e.super, `SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'sales__orders__customer_email__key')`))
}

func TestApplySchemaNameTaken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	e.apply(t, orders(t))

	invoices := orders(t)
	invoices.Spec.Object = "invoices" // another key, same metadata.name
	_, err := e.st.ApplySchema(ctx, invoices, false, "test")
	require.ErrorIs(t, err, store.ErrNameTaken)
	require.Contains(t, err.Error(), ordersKey)
	require.False(t, scalar[bool](t, e.super, `SELECT to_regclass('acme__shop.sales__invoices') IS NOT NULL`))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schemas`))

	// Under its own name it applies, beside the first.
	invoices.Metadata.Name = "invoices"
	require.Equal(t, store.StatusApplied, e.apply(t, invoices).Status)
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schemas`))
}

func TestApplySchemaNotifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	conn, err := pgx.Connect(ctx, e.db.DSN(store.OwnerRole))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	_, err = conn.Exec(ctx, "LISTEN velocity_schema_changed")
	require.NoError(t, err)

	wait := func(d time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return "", err
		}
		return n.Payload, nil
	}

	// A dry run tells nobody.
	_, err = e.st.ApplySchema(ctx, orders(t), true, "test")
	require.NoError(t, err)
	_, err = wait(200 * time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	e.apply(t, orders(t))
	payload, err := wait(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, ordersKey+":1", payload)

	// Nor does an apply that changed nothing.
	e.apply(t, orders(t))
	_, err = wait(200 * time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	e.apply(t, next(t, orders(t), nil))
	payload, err = wait(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, ordersKey+":2", payload)
}

func TestApplySchemaConcurrentSameKey(t *testing.T) {
	t.Parallel()
	// Applies of one schema are serialized: exactly one applies, the others see it done.
	ctx := context.Background()
	e := newEnv(t)
	const n = 4
	var wg sync.WaitGroup
	results := make([]store.ApplyResult, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = e.st.ApplySchema(ctx, orders(t), false, fmt.Sprint("applier-", i))
		})
	}
	wg.Wait()
	applied := 0
	for i := range n {
		require.NoError(t, errs[i])
		if results[i].Status == store.StatusApplied {
			applied++
		} else {
			require.Equal(t, store.StatusUnchanged, results[i].Status)
		}
	}
	require.Equal(t, 1, applied)
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schema_versions`))
}

func TestApplySchemaConcurrentNewRole(t *testing.T) {
	t.Parallel()
	// Roles are cluster-wide: two schemas that introduce the same new role, applied at once
	// (here in two databases), must both succeed.
	ctx := context.Background()
	role := "r" + strings.ReplaceAll(strings.ToLower(time.Now().Format("150405.000000")), ".", "_")
	def := orders(t)
	def.Spec.Access.Roles[role] = []string{"read"}
	require.NoError(t, def.Validate())

	envs := []*env{newEnv(t), newEnv(t)}
	var wg sync.WaitGroup
	errs := make([]error, len(envs))
	for i, e := range envs {
		wg.Go(func() { _, errs[i] = e.st.ApplySchema(ctx, def, false, "test") })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.True(t, scalar[bool](t, envs[0].super, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, schemadef.RoleName(role)))
}

func TestApplySchemaRolesChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	v1 := orders(t)
	e.apply(t, v1)
	require.True(t, scalar[bool](t, e.super, `SELECT has_table_privilege('velocity_r_viewer', 'acme__shop.sales__orders__read', 'SELECT')`))

	v2 := next(t, v1, func(d *schemadef.Definition) {
		delete(d.Spec.Access.Roles, "viewer")
		d.Spec.Access.Roles["auditor"] = []string{"read", "history"}
	})
	res := e.apply(t, v2)
	require.Empty(t, res.Plan.Breaking)
	require.False(t, scalar[bool](t, e.super, `SELECT has_table_privilege('velocity_r_viewer', 'acme__shop.sales__orders__read', 'SELECT')`))
	require.True(t, scalar[bool](t, e.super, `SELECT has_table_privilege('velocity_r_auditor', 'acme__shop.sales__orders__read', 'SELECT')`))
	qual := scalar[string](t, e.super, `SELECT qual FROM pg_policies WHERE tablename = 'sales__orders' AND policyname = 'velocity_read'`)
	require.Contains(t, qual, "auditor")
	require.NotContains(t, qual, "viewer")

	// The rebuilt policies hold: a viewer now reads nothing, an auditor reads. Both carry the
	// row's region, so the row filter lets them see it and only the role policies decide.
	_, err := e.super.Exec(ctx, `INSERT INTO `+ordersTable+` (customer_email, region) VALUES ('a@example.com', 'eu')`)
	require.NoError(t, err)
	count := func(req store.Request) int {
		var n int
		require.NoError(t, e.st.InRequest(ctx, req, []store.Statement{{SQL: `SELECT count(*) FROM acme__shop.sales__orders__read`}},
			func(_ int, rows pgx.Rows) error {
				rows.Next()
				return rows.Scan(&n)
			}))
		return n
	}
	require.Equal(t, 0, count(inRegion(actor("user:v", "viewer"), "eu")))
	require.Equal(t, 1, count(inRegion(actor("user:a", "auditor"), "eu")))
	require.Equal(t, 0, count(actor("user:a", "auditor")), "without a region the row filter shows nothing")
}

func TestSchemaVersionRecordIsOwnerOnly(t *testing.T) {
	t.Parallel()
	// The API role cannot forge a registry entry, even as an admin actor.
	ctx := context.Background()
	e := newEnv(t)
	err := e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `SELECT velocity.schema_version_record('k', 'n', 'o', 'a', 'd', 'b', 1, '{}', 'plan', '{}', 'x')`}}, drain)
	require.ErrorIs(t, err, store.ErrPermission)
	err = e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `INSERT INTO velocity.schemas (key, name, org, app, domain, object, current_version, definition) VALUES ('k', 'n', 'o', 'a', 'd', 'b', 1, '{}')`}}, drain)
	require.ErrorIs(t, err, store.ErrPermission)
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.schemas`))
}
