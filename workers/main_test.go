package workers_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is one test's database with the orders schema applied, the worker's store on it,
// and a superuser pool for looking at partitions.
type fixture struct {
	db    *pgtest.DB
	st    *store.Store
	jobs  *store.Jobs
	super *pgxpool.Pool
	names schemadef.Names
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	jobs, err := store.OpenJobs(ctx, db.DSN(store.WorkerRole), 8)
	require.NoError(t, err)
	t.Cleanup(jobs.Close)

	data, err := os.ReadFile(filepath.Join("..", "internal", "schemadef", "testdata", "orders.yaml"))
	require.NoError(t, err)
	def, err := schemadef.Parse(data)
	require.NoError(t, err)
	def.Normalize()
	require.NoError(t, def.Validate())
	res, err := st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	return &fixture{db: db, st: st, jobs: jobs, super: db.Super(t), names: schemadef.NamesOf(def.Spec)}
}

func (f *fixture) history() string {
	return pgx.Identifier{f.names.Schema, f.names.History}.Sanitize()
}

// partitionRows maps each partition of the history table that holds rows to their event ids.
func (f *fixture) partitionRows(t *testing.T) map[string][]int64 {
	t.Helper()
	rows, err := f.super.Query(context.Background(), `SELECT c.relname, h.event_id FROM `+f.history()+` h
		JOIN pg_class c ON c.oid = h.tableoid ORDER BY h.event_id`)
	require.NoError(t, err)
	got := map[string][]int64{}
	for rows.Next() {
		var name string
		var id int64
		require.NoError(t, rows.Scan(&name, &id))
		got[name] = append(got[name], id)
	}
	require.NoError(t, rows.Err())
	return got
}

// partitions lists every partition of the history table, the default one included.
func (f *fixture) partitions(t *testing.T) []string {
	t.Helper()
	rows, err := f.super.Query(context.Background(), `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass ORDER BY 1`, f.history())
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// quietLogger shows warnings and errors only.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
