package planner_test

// The Postgres test needs pgtest and store, which import this package, so these tests are
// outside it and reach the unexported builder through RowFilterSteps.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

func withRowFilter(t *testing.T, d schemadef.Definition, filter string) schemadef.Definition {
	t.Helper()
	d = clone(t, d)
	d.Spec.Access.RowFilter = filter
	return d
}

func stepSQL(steps []planner.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.SQL
	}
	return out
}

func TestRowFilterSteps(t *testing.T) {
	t.Parallel()
	def := orders(t) // the SPEC example: rowFilter on region, customer_email redacted in history
	main := `(("region" = (SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) OR (SELECT 'admin' = ANY (velocity.current_actor_roles())))`
	hist := `(((image ->> 'region') = (SELECT velocity.attribute_text(a.v, 'region') FROM (SELECT velocity.current_actor_attributes() AS v OFFSET 0) a)) OR (SELECT 'admin' = ANY (velocity.current_actor_roles())))`
	create := []string{
		`CREATE POLICY velocity_row_filter ON "acme__shop"."sales__orders" AS RESTRICTIVE FOR ALL USING (` + main + `) WITH CHECK (` + main + `)`,
		`CREATE POLICY velocity_row_filter ON "acme__shop"."sales__orders__history" AS RESTRICTIVE FOR SELECT USING (` + hist + `)`,
	}
	drop := []string{
		`DROP POLICY IF EXISTS velocity_row_filter ON "acme__shop"."sales__orders"`,
		`DROP POLICY IF EXISTS velocity_row_filter ON "acme__shop"."sales__orders__history"`,
	}

	steps := planner.RowFilterSteps(nil, def.Spec)
	require.Equal(t, create, stepSQL(steps))
	require.Equal(t, "layer 4: the row filter, ANDed with every other policy", steps[0].Comment)
	require.Empty(t, planner.RowFilterSteps(nil, withRowFilter(t, def, "").Spec))

	retyped := clone(t, def)
	field(t, &retyped, "total").Type = schemadef.TypeNumber
	renamedRedact := clone(t, def)
	renamedRedact.Spec.History.Redact = nil
	otherFilter := withRowFilter(t, def, "record.status == 'paid'")

	cases := []struct {
		name      string
		old, next schemadef.Definition
		want      []string
	}{
		{name: "unchanged", old: def, next: def, want: nil},
		{name: "neither has one", old: withRowFilter(t, def, ""), next: withRowFilter(t, def, ""), want: nil},
		{name: "a redaction the filter does not read", old: def, next: renamedRedact, want: nil},
		{name: "added", old: withRowFilter(t, def, ""), next: def, want: append(append([]string{}, drop...), create...)},
		{name: "removed", old: def, next: withRowFilter(t, def, ""), want: drop},
		{name: "changed", old: def, next: otherFilter, want: append(append([]string{}, drop...),
			`CREATE POLICY velocity_row_filter ON "acme__shop"."sales__orders" AS RESTRICTIVE FOR ALL USING (("status" = 'paid')) WITH CHECK (("status" = 'paid'))`,
			`CREATE POLICY velocity_row_filter ON "acme__shop"."sales__orders__history" AS RESTRICTIVE FOR SELECT USING (((image ->> 'status') = 'paid'))`)},
		// Postgres refuses to retype a column a policy uses; the planner does not know which
		// columns the filter reads, so any retyped column rebuilds it.
		{name: "a column changes type", old: def, next: retyped, want: append(append([]string{}, drop...), create...)},
	}
	for _, c := range cases {
		got := stepSQL(planner.RowFilterSteps(&c.old.Spec, c.next.Spec))
		if len(c.want) == 0 {
			require.Empty(t, got, "RowFilterSteps(%q)", c.name)
			continue
		}
		require.Equal(t, c.want, got, "RowFilterSteps(%q)", c.name)
	}

	// Build takes valid input only: a filter that cannot become SQL is a programming error.
	bad := withRowFilter(t, def, "size(record.region) > 2")
	require.PanicsWithValue(t, `planner: the row filter of acme.shop.sales.orders is not valid (spec.access.rowFilter: "size" is not supported in row filters `+
		`(supported: comparisons, in, &&, ||, !, record fields, actor.id/kind/roles/attributes)): validate the definition with rules.Validate first`,
		func() { planner.RowFilterSteps(nil, bad.Spec) })
	redacted := withRowFilter(t, def, "record.customer_email == actor.id")
	require.Panics(t, func() { planner.RowFilterSteps(nil, redacted.Spec) })
}

// rowFilterDef is a table with one field of each kind a filter compares, and roles for
// reading records and history.
func rowFilterDef(t *testing.T) schemadef.Definition {
	t.Helper()
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "rowfilter-orders"},
		Spec: schemadef.Spec{
			Org: "rowfilter", App: "shop", Domain: "sales", Object: "orders", Version: 1,
			Fields: []schemadef.Field{
				{Name: "code", Type: schemadef.TypeString, Required: true},
				{Name: "region", Type: schemadef.TypeString, Filterable: true},
				{Name: "total", Type: schemadef.TypeDecimal},
				{Name: "status", Type: schemadef.TypeEnum, Values: []string{"pending", "paid", "shipped"}},
			},
			Access: schemadef.Access{Roles: map[string][]string{
				"viewer": {"read", "history"},
				"editor": {"read", "history", "create", "update"},
				"admin":  {"read", "history", "create", "update", "delete"},
			}},
		},
	}
	def.Normalize()
	require.NoError(t, def.Validate())
	return def
}

// TestRowFilterOnPostgres installs row filters on a real table and reads it, and its history,
// as different actors. The table is applied without a filter and the filter's policies are
// added by hand, the way a plan with a filter will add them.
func TestRowFilterOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 2)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	super := db.Super(t)

	def := rowFilterDef(t)
	res, err := st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	names := schemadef.NamesOf(def.Spec)
	table := sqlbuild.Qualified(names.Schema, names.Table)
	view := sqlbuild.Qualified(names.Schema, names.View)
	history := sqlbuild.Qualified(names.Schema, names.History)

	// As the superuser, below RLS; the history trigger writes one INSERT event per row.
	_, err = super.Exec(ctx, `INSERT INTO `+table+` (code, region, total, status) VALUES
		('a', 'eu', 10, 'paid'), ('b', 'eu', 150, 'pending'), ('c', 'us', 500, 'shipped'), ('d', NULL, 100, 'paid')`)
	require.NoError(t, err)

	install := func(t *testing.T, filter string) {
		t.Helper()
		next := withRowFilter(t, def, filter)
		old := def.Spec
		for _, s := range planner.RowFilterSteps(&old, next.Spec) {
			_, err := super.Exec(ctx, s.SQL)
			require.NoError(t, err, "%s", s.SQL)
		}
	}
	query := func(t *testing.T, a store.Actor, sql string) ([]string, error) {
		t.Helper()
		var got []string
		err := st.InRequest(ctx, store.Request{Actor: a, RequestID: "rowfilter-test"}, []store.Statement{{SQL: sql}}, func(_ int, rows pgx.Rows) error {
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				got = append(got, s)
			}
			return rows.Err()
		})
		return got, err
	}
	sees := func(t *testing.T, a store.Actor) []string {
		t.Helper()
		got, err := query(t, a, `SELECT code FROM `+view+` ORDER BY code`)
		require.NoError(t, err)
		// History obeys the same filter, read from each event's image.
		events, err := query(t, a, `SELECT image ->> 'code' FROM `+history+` ORDER BY 1`)
		require.NoError(t, err)
		require.Equal(t, got, events, "history of %v", a)
		return got
	}
	viewer := func(attrs map[string]any) store.Actor {
		return store.Actor{ID: "u1", Kind: "api_key", Roles: []string{"viewer"}, Attributes: attrs}
	}

	cases := []struct {
		filter string
		actors []store.Actor
		want   [][]string
	}{
		{filter: "record.region == actor.attributes.region", // equality on a string attribute
			actors: []store.Actor{
				viewer(map[string]any{"region": "eu"}),
				viewer(map[string]any{"region": "us"}),
				viewer(nil),                           // missing: sees nothing, no error
				viewer(map[string]any{"region": 5.0}), // a number is not a string
				viewer(map[string]any{"region": nil}),
			},
			want: [][]string{{"a", "b"}, {"c"}, nil, nil, nil}},
		{filter: "record.total >= actor.attributes.min_total", // numeric comparison
			actors: []store.Actor{
				viewer(map[string]any{"min_total": 100.0}),
				viewer(map[string]any{"min_total": 150.5}),
				viewer(map[string]any{"min_total": "100"}), // a string is not a number
				viewer(nil),
			},
			want: [][]string{{"b", "c", "d"}, {"c"}, nil, nil}},
		{filter: "record.status in ['paid', 'shipped']",
			actors: []store.Actor{viewer(nil)},
			want:   [][]string{{"a", "c", "d"}}},
		{filter: "record.region in actor.attributes.regions",
			actors: []store.Actor{
				viewer(map[string]any{"regions": []any{"eu", "us"}}),
				viewer(map[string]any{"regions": "us"}), // a scalar is a list of one
				viewer(map[string]any{"regions": map[string]any{"eu": true}}),
				viewer(nil),
			},
			want: [][]string{{"a", "b", "c"}, {"c"}, nil, nil}},
		{filter: "record.region == 'eu' || 'admin' in actor.roles", // roles membership
			actors: []store.Actor{
				viewer(nil),
				{ID: "u2", Kind: "user", Roles: []string{"admin"}},
			},
			want: [][]string{{"a", "b"}, {"a", "b", "c", "d"}}},
		// A comparison with null is false; ! turns false into true, != does not.
		{filter: "!(record.region == 'eu')",
			actors: []store.Actor{viewer(nil)},
			want:   [][]string{{"c", "d"}}},
		{filter: "record.region != 'eu'",
			actors: []store.Actor{viewer(nil)},
			want:   [][]string{{"c"}}},
		{filter: "record.region == null || !(record.region in actor.attributes.hidden)",
			actors: []store.Actor{viewer(map[string]any{"hidden": []any{"eu"}}), viewer(nil)},
			want:   [][]string{{"c", "d"}, {"a", "b", "c", "d"}}},
		{filter: "!(record.region == actor.attributes.region)", // a missing attribute hides nothing here
			actors: []store.Actor{viewer(map[string]any{"region": "eu"}), viewer(nil)},
			want:   [][]string{{"c", "d"}, {"a", "b", "c", "d"}}},
		{filter: "actor.kind == 'api_key' && (actor.attributes.all_regions == true || record.region == 'us')",
			actors: []store.Actor{
				viewer(map[string]any{"all_regions": true}),
				viewer(map[string]any{"all_regions": "yes"}),
				{ID: "u3", Kind: "user", Roles: []string{"viewer"}, Attributes: map[string]any{"all_regions": true}},
			},
			want: [][]string{{"a", "b", "c", "d"}, {"c"}, nil}},
		// A string that tries to end the literal stays a literal.
		{filter: `record.region == "eu'; DROP TABLE rowfilter__shop.sales__orders; --" || record.code == 'a'`,
			actors: []store.Actor{viewer(nil)},
			want:   [][]string{{"a"}}},
	}
	for _, c := range cases {
		t.Run(c.filter, func(t *testing.T) {
			install(t, c.filter)
			for i, a := range c.actors {
				require.Equal(t, c.want[i], sees(t, a), "filter %q, actor %v", c.filter, a)
			}
		})
	}

	t.Run("actor values are evaluated once per statement", func(t *testing.T) {
		install(t, "record.region == actor.attributes.region")
		plan, err := query(t, viewer(map[string]any{"region": "eu"}), `EXPLAIN SELECT code FROM `+view)
		require.NoError(t, err)
		require.Contains(t, strings.Join(plan, "\n"), "InitPlan")
	})

	t.Run("writes must stay inside the filter", func(t *testing.T) {
		install(t, "record.region == actor.attributes.region")
		editor := store.Actor{ID: "u4", Kind: "api_key", Roles: []string{"editor"}, Attributes: map[string]any{"region": "eu"}}
		_, err := query(t, editor, `INSERT INTO `+table+` (code, region) VALUES ('e', 'us') RETURNING code`)
		require.Error(t, err, "an insert outside the filter")
		_, err = query(t, editor, `UPDATE `+table+` SET region = 'us' WHERE code = 'a' RETURNING code`)
		require.Error(t, err, "an update that moves a row out of the filter")
		got, err := query(t, editor, `UPDATE `+table+` SET region = 'eu' WHERE code = 'c' RETURNING code`)
		require.NoError(t, err)
		require.Empty(t, got, "an update of a row outside the filter finds nothing")
		got, err = query(t, editor, `INSERT INTO `+table+` (code, region) VALUES ('e', 'eu') RETURNING code`)
		require.NoError(t, err)
		require.Equal(t, []string{"e"}, got)
	})

	// A BI login reads under the same filter, with the scope of its binding as attributes: the
	// policy calls the helpers as that login, not as the API.
	t.Run("BI logins", func(t *testing.T) {
		install(t, "record.region == actor.attributes.region")
		login := "bi_rowfilter_" + db.Name[len(db.Name)-6:]
		password := "s3cret-pass"
		platform := store.Request{Actor: store.Actor{ID: "user:root", Kind: "subject", Roles: []string{schemadef.PlatformAdminRole}}}
		_, err := st.GrantDBLogin(ctx, platform, "viewer", login, &password, nil)
		require.NoError(t, err)
		conn, err := pgx.Connect(ctx, db.LoginDSN(login, password))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		codes := func(sql string) []string {
			rows, err := conn.Query(ctx, sql)
			require.NoError(t, err)
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			return got
		}

		require.Empty(t, codes(`SELECT code FROM `+view+` ORDER BY code`), "no scope: no region attribute")
		// Granting the role again, with a scope, replaces the binding's (empty) scope.
		_, err = st.GrantDBLogin(ctx, platform, "viewer", login, nil, map[string]any{"region": "us"})
		require.NoError(t, err)
		require.Equal(t, []string{"c"}, codes(`SELECT code FROM `+view+` ORDER BY code`))
		// Setting the API's actor does not widen it: the login's own binding decides.
		_, err = conn.Exec(ctx, `SELECT set_config('velocity.actor', '{"id":"x","roles":["admin"],"attributes":{"region":"eu"}}', false)`)
		require.NoError(t, err)
		require.Equal(t, []string{"c"}, codes(`SELECT code FROM `+view+` ORDER BY code`))
	})

	var n int
	require.NoError(t, super.QueryRow(ctx, fmt.Sprintf(`SELECT count(*) FROM %s`, table)).Scan(&n))
	require.Equal(t, 5, n)
}
