package workers_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/store"
	"github.com/velocitydev/velocity/workers"
)

func riverMigrator(t *testing.T, pool *pgxpool.Pool) *rivermigrate.Migrator[pgx.Tx] {
	t.Helper()
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: store.RiverSchema, Logger: quietLogger()})
	require.NoError(t, err)
	return m
}

func riverVersion(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	versions, err := riverMigrator(t, pool).ExistingVersions(context.Background())
	require.NoError(t, err)
	if len(versions) == 0 {
		return 0
	}
	return versions[len(versions)-1].Version
}

func latestRiverVersion(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	all := riverMigrator(t, pool).AllVersions()
	return all[len(all)-1].Version
}

func migrate(t *testing.T, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.DSN(store.OwnerRole))
	require.NoError(t, err)
	defer conn.Close(ctx)
	require.NoError(t, store.Migrate(ctx, conn))
}

// River's tables are in the velocity schema, owned by the owner, at River's latest version,
// after the Migrate that made the test template.
func TestMigrateCreatesRiverTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	super := db.Super(t)
	for _, table := range []string{"river_job", "river_leader", "river_queue", "river_migration"} {
		var owner string
		require.NoError(t, super.QueryRow(ctx, `SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass($1)`, "velocity."+table).Scan(&owner), table)
		require.Equal(t, store.OwnerRole, owner, table)
		var elsewhere bool
		require.NoError(t, super.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1 AND relnamespace <> 'velocity'::regnamespace)`, table).Scan(&elsewhere))
		require.False(t, elsewhere, "%s outside the velocity schema", table)
	}
	require.Equal(t, latestRiverVersion(t, db.Pool), riverVersion(t, db.Pool))
}

// Migrate runs again without change, and brings River's tables and grants back to a database
// that has the platform's migrations but not River's (one migrated before River came).
func TestMigrateIsIdempotentAndAddsRiverLater(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	latest := latestRiverVersion(t, f.db.Pool)

	migrate(t, f.db)
	migrate(t, f.db)
	require.Equal(t, latest, riverVersion(t, f.db.Pool))

	_, err := riverMigrator(t, f.db.Pool).Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{TargetVersion: -1})
	require.NoError(t, err)
	var gone bool
	require.NoError(t, f.db.Pool.QueryRow(ctx, `SELECT to_regclass('velocity.river_job') IS NULL`).Scan(&gone))
	require.True(t, gone)

	// Without River's tables the worker refuses to start, and says what to do.
	runner, err := workers.NewRunner(f.jobs, workers.Config{Logger: quietLogger()})
	require.NoError(t, err)
	require.ErrorContains(t, runner.Start(ctx), "velocity migrate up")

	migrate(t, f.db)
	require.Equal(t, latest, riverVersion(t, f.db.Pool))
	var ok bool
	require.NoError(t, f.super.QueryRow(ctx, `SELECT has_table_privilege('velocity_worker', 'velocity.river_job', 'SELECT, INSERT, UPDATE, DELETE')`).Scan(&ok))
	require.True(t, ok)
}

// The worker may do what River does with every one of its tables; the API may insert jobs in
// its request transactions and nothing more; neither gets more of the platform than before.
func TestRiverGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	can := func(role, object, privilege string) bool {
		t.Helper()
		var ok bool
		require.NoError(t, f.super.QueryRow(ctx, `SELECT CASE WHEN $2 LIKE '%_seq' THEN has_sequence_privilege($1, $2, $3) ELSE has_table_privilege($1, $2, $3) END`, role, object, privilege).Scan(&ok))
		return ok
	}

	// Every River table in the schema, so that a River upgrade that adds one fails here until
	// Migrate grants it. river_notification is for River's SQLite driver and unused here.
	rows, err := f.super.Query(ctx, `SELECT 'velocity.' || relname FROM pg_class
		WHERE relnamespace = 'velocity'::regnamespace AND relkind IN ('r', 'p') AND relname LIKE 'river\_%' AND relname <> 'river_notification'`)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"velocity.river_job", "velocity.river_leader", "velocity.river_queue", "velocity.river_migration"}, tables)
	for _, table := range tables {
		privileges := "SELECT, INSERT, UPDATE, DELETE"
		if table == "velocity.river_migration" {
			privileges = "SELECT"
		}
		require.True(t, can(store.WorkerRole, table, privileges), table)
	}
	require.True(t, can(store.WorkerRole, "velocity.river_job_id_seq", "USAGE"))
	require.False(t, can(store.WorkerRole, "velocity.river_migration", "INSERT"))
	require.False(t, can(store.WorkerRole, "velocity.api_keys", "SELECT"))
	require.False(t, can(store.WorkerRole, "velocity.schemas", "UPDATE"))

	require.True(t, can(store.APIRole, "velocity.river_job", "INSERT, SELECT"))
	require.True(t, can(store.APIRole, "velocity.river_job_id_seq", "USAGE"))
	require.False(t, can(store.APIRole, "velocity.river_job", "DELETE"))
	require.False(t, can(store.APIRole, "velocity.river_leader", "SELECT"))

	// A job enqueued inside the API's transaction, the way request handlers will: committed
	// with it, and a unique job's second insert finds the first (ON CONFLICT DO UPDATE).
	inserter, err := river.NewClient(riverpgxv5.New(nil), &river.Config{Schema: store.RiverSchema, Logger: quietLogger()})
	require.NoError(t, err)
	for i, duplicate := range []bool{false, true} {
		tx, err := f.st.API.Begin(ctx)
		require.NoError(t, err)
		var role string
		require.NoError(t, tx.QueryRow(ctx, "SELECT current_user").Scan(&role))
		require.Equal(t, store.APIRole, role)
		res, err := inserter.InsertTx(ctx, tx, workers.HistoryPartitionsArgs{}, nil)
		require.NoError(t, err, "insert %d", i)
		require.Equal(t, duplicate, res.UniqueSkippedAsDuplicate)
		require.NoError(t, tx.Commit(ctx))
	}
	var n int
	require.NoError(t, f.super.QueryRow(ctx, `SELECT count(*) FROM velocity.river_job WHERE kind = $1`, workers.HistoryPartitionsKind).Scan(&n))
	require.Equal(t, 1, n)
}
