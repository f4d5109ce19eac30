package planner_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestPlansApply runs every golden plan on a real Postgres, from the old definition with rows
// in the table to the new one: a plan that reads well but fails in Postgres is a defect.
// Each case has its own org, so its own Postgres schema, in one shared database.
func TestPlansApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 2)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	super := db.Super(t)

	for i, c := range alterCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			old, next := c.defs(t)
			for _, d := range []*schemadef.Definition{&old, &next} {
				d.Metadata.Name = fmt.Sprintf("orders-%d", i)
				d.Spec.Org = fmt.Sprintf("case%d", i)
			}
			names := schemadef.NamesOf(old.Spec)
			table := sqlbuild.Qualified(names.Schema, names.Table)

			res, err := st.ApplySchema(ctx, old, false, "test")
			require.NoError(t, err)
			require.Equal(t, store.StatusApplied, res.Status)

			// Rows every change accepts: short distinct emails, no "shipped", a region, whole
			// totals. A required field without a default cannot be added to a table with
			// rows, which is why that change is breaking; it runs on an empty table.
			rows := c.name != "add_required_field_without_default"
			if rows {
				_, err = super.Exec(ctx, `INSERT INTO `+table+` (customer_email, status, region, total)
					VALUES ('a@example.com', 'paid', 'eu', 10), ('b@example.com', 'pending', 'us', 20)`)
				require.NoError(t, err)
				if _, ok := old.Spec.Field("code"); ok {
					_, err = super.Exec(ctx, `UPDATE `+table+` SET code = '42'`)
					require.NoError(t, err)
				}
			}

			if c.breaking {
				next.Spec.Policy.BreakingChanges = schemadef.BreakingAllow
			}
			res, err = st.ApplySchema(ctx, next, false, "test")
			require.NoError(t, err, "Plan(%q) fails on Postgres:\n%s", c.name, res.Plan.SQL())
			require.Equal(t, store.StatusApplied, res.Status)

			// The data survived (read as the superuser, below RLS).
			var n int
			require.NoError(t, super.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n))
			if rows {
				require.Equal(t, 2, n, "Plan(%q) lost rows", c.name)
			}

			// The applied state is the new definition: applying it again plans nothing.
			res, err = st.ApplySchema(ctx, next, false, "test")
			require.NoError(t, err)
			require.Equal(t, store.StatusUnchanged, res.Status)
		})
	}
}
