package pgtest_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestTestDBIsMigratedAndIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := pgtest.TestDB(t), pgtest.TestDB(t)
	require.NotEqual(t, a.Name, b.Name)
	var user string
	var fsync string
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT current_user, current_setting('fsync')`).Scan(&user, &fsync))
	require.Equal(t, "velocity_owner", user)
	require.Equal(t, "off", fsync)
	_, err := a.Pool.Exec(ctx, `CREATE TABLE velocity.scratch (x int)`)
	require.NoError(t, err)
	var n int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'velocity' AND tablename = 'scratch'`).Scan(&n))
	require.Equal(t, 0, n, "clones do not share tables")
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM velocity.schema_migrations`).Scan(&n))
	require.Equal(t, 1, n, "the template was migrated")
}

func TestTestTxRollsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		t.Run("tx", func(t *testing.T) {
			tx := pgtest.TestTx(t)
			var n int
			require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM velocity.role_bindings WHERE subject = 'pgtest'`).Scan(&n))
			require.Equal(t, 0, n, "the previous transaction was rolled back")
			_, err := tx.Exec(ctx, `INSERT INTO velocity.role_bindings (role, subject_kind, subject, created_by) VALUES ('viewer', 'db_login', 'pgtest', 'test')`)
			require.NoError(t, err)
		})
	}
}

// A cluster left by a test process that died is stopped and removed by the next one.
func TestSweepOrphans(t *testing.T) {
	dir, err := os.MkdirTemp("", "vpg")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	// A pid that cannot be running: beyond the kernel's pid_max.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "owner.pid"), []byte("99999999"), 0o644))
	live, err := os.MkdirTemp("", "vpg")
	require.NoError(t, err)
	defer os.RemoveAll(live)
	require.NoError(t, os.WriteFile(filepath.Join(live, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644))

	pgtest.SweepOrphans()
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "the orphan is removed")
	_, err = os.Stat(live)
	require.NoError(t, err, "a live test's cluster stays")
}
