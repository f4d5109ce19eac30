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

// A writer still adding to the default partition for a month while that month's partition is
// made: the upkeep waits for it, then moves its row; ATTACH never fails for a late row.
func TestEnsureHistoryPartitionsWaitsForALateWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	jobs := openJobs(t, e)
	def := orders(t)
	e.apply(t, def)
	n := schemadef.NamesOf(def.Spec)
	hist := pgx.Identifier{n.Schema, n.History}.Sanitize()
	at := time.Date(time.Now().UTC().Year()+3, time.March, 10, 12, 0, 0, 0, time.UTC)

	tx, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `INSERT INTO `+hist+` (event_id, xid, at, record_id, op, version, actor, image)
		VALUES (nextval('velocity.event_seq'), pg_current_xact_id(), $1, gen_random_uuid(), 'INSERT', 1, 'test', '{}')`, at)
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := jobs.EnsureHistoryPartitions(ctx, at, 0)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the upkeep is now waiting for the writer's lock
	require.NoError(t, tx.Commit(ctx))
	require.NoError(t, <-done)

	var where string
	require.NoError(t, e.super.QueryRow(ctx, `SELECT tableoid::regclass::text FROM `+hist+` WHERE at = $1`, at).Scan(&where))
	require.Equal(t, fmt.Sprintf("%s.%s_%d_03", n.Schema, n.History, at.Year()), where)
}

// One history that cannot be kept (its table is gone) does not stop the others.
func TestEnsureHistoryPartitionsGoesOnPastABrokenHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	jobs := openJobs(t, e)
	broken, ok := orders(t), orders(t)
	broken.Metadata.Name, broken.Spec.Org = "broken", "broken"
	e.apply(t, broken)
	e.apply(t, ok)
	bn := schemadef.NamesOf(broken.Spec)
	// CASCADE: the history read view depends on the table.
	_, err := e.super.Exec(ctx, `DROP TABLE `+pgx.Identifier{bn.Schema, bn.History}.Sanitize()+` CASCADE`)
	require.NoError(t, err)

	y := time.Now().UTC().Year() + 4
	created, err := jobs.EnsureHistoryPartitions(ctx, time.Date(y, time.June, 1, 0, 0, 0, 0, time.UTC), 0)
	require.Error(t, err)
	require.Contains(t, err.Error(), bn.History)
	require.Equal(t, 1, created, "the healthy history got its partition")
}
