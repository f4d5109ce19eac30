package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

func openJobs(t *testing.T, e *env) *store.Jobs {
	t.Helper()
	jobs, err := store.OpenJobs(context.Background(), e.db.DSN(store.WorkerRole), 2)
	require.NoError(t, err)
	t.Cleanup(jobs.Close)
	require.Equal(t, store.WorkerRole, jobs.User())
	return jobs
}

// monthlyPartitions lists the monthly partitions of a history table (not its default one).
func monthlyPartitions(t *testing.T, e *env, n schemadef.Names) []string {
	t.Helper()
	rows, err := e.super.Query(context.Background(), `
		SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = $1::regclass AND c.relname <> $2 ORDER BY 1`,
		pgx.Identifier{n.Schema, n.History}.Sanitize(), n.HistoryDefault)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

func TestEnsureHistoryPartitionsCountsWhatItCreates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	jobs := openJobs(t, e)

	// No schema, nothing to do.
	n, err := jobs.EnsureHistoryPartitions(ctx, time.Now(), planner.HistoryMonthsAhead)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	def := orders(t)
	e.apply(t, def)
	names := schemadef.NamesOf(def.Spec)
	// The apply made this month's partition and the next three; two years on has none.
	y := time.Now().UTC().Year() + 2
	n, err = jobs.EnsureHistoryPartitions(ctx, time.Date(y, time.January, 31, 23, 59, 0, 0, time.UTC), planner.HistoryMonthsAhead)
	require.NoError(t, err)
	require.Equal(t, 4, n, "January to April")
	n, err = jobs.EnsureHistoryPartitions(ctx, time.Date(y, time.February, 1, 0, 0, 0, 0, time.UTC), planner.HistoryMonthsAhead)
	require.NoError(t, err)
	require.Equal(t, 1, n, "May")
	n, err = jobs.EnsureHistoryPartitions(ctx, time.Date(y, time.February, 1, 0, 0, 0, 0, time.UTC), planner.HistoryMonthsAhead)
	require.NoError(t, err)
	require.Equal(t, 0, n, "idempotent")
	parts := monthlyPartitions(t, e, names)
	for m := 1; m <= 5; m++ {
		require.Contains(t, parts, fmt.Sprintf("%s_%d_%02d", names.History, y, m))
	}
	require.NotContains(t, parts, fmt.Sprintf("%s_%d_06", names.History, y))

	_, err = jobs.EnsureHistoryPartitions(ctx, time.Now(), 37)
	require.Error(t, err)
}

// Only the worker (and the owner) may make partitions: the API's role may not.
func TestEnsureHistoryPartitionsIsNotTheAPIs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	err := e.st.InRequest(context.Background(), admin(), []store.Statement{{SQL: `SELECT velocity.history_partitions_ensure_all(now(), 3)`}}, drain)
	require.ErrorIs(t, err, store.ErrPermission)
}

// A write whose month has no partition lands in the default partition instead of failing,
// and the partition job moves it into its month's partition when it makes that.
func TestHistoryWriteWithoutPartitionLandsInDefault(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	jobs := openJobs(t, e)
	def := orders(t)
	e.apply(t, def)
	names := schemadef.NamesOf(def.Spec)
	hist := pgx.Identifier{names.Schema, names.History}.Sanitize()

	// Take every monthly partition away, as if the job had never run.
	for _, p := range monthlyPartitions(t, e, names) {
		part := pgx.Identifier{names.Schema, p}.Sanitize()
		_, err := e.super.Exec(ctx, "ALTER TABLE "+hist+" DETACH PARTITION "+part)
		require.NoError(t, err)
		_, err = e.super.Exec(ctx, "DROP TABLE "+part)
		require.NoError(t, err)
	}
	require.Empty(t, monthlyPartitions(t, e, names))

	err := e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ('late@example.com', 'eu')`}}, drain)
	require.NoError(t, err)
	where := func() map[string]int {
		rows, err := e.super.Query(ctx, `SELECT c.relname, count(*)::int FROM `+hist+` h JOIN pg_class c ON c.oid = h.tableoid GROUP BY 1`)
		require.NoError(t, err)
		got := map[string]int{}
		for rows.Next() {
			var name string
			var n int
			require.NoError(t, rows.Scan(&name, &n))
			got[name] = n
		}
		require.NoError(t, rows.Err())
		return got
	}
	require.Equal(t, map[string]int{names.HistoryDefault: 1}, where())

	var at time.Time
	require.NoError(t, e.super.QueryRow(ctx, `SELECT at FROM `+hist).Scan(&at))
	n, err := jobs.EnsureHistoryPartitions(ctx, at, planner.HistoryMonthsAhead)
	require.NoError(t, err)
	require.Equal(t, planner.HistoryMonthsAhead+1, n)
	require.Equal(t, map[string]int{fmt.Sprintf("%s_%s", names.History, at.UTC().Format("2006_01")): 1}, where())
}
