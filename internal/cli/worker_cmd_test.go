package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/store"
)

func TestWorkerNeedsADatabaseURL(t *testing.T) {
	t.Parallel()
	res := runEnv(t, nil, "worker")
	require.Equal(t, ExitUsage, res.code)
	require.Contains(t, res.stderr, "no database URL")

	res = runEnv(t, nil, "worker", "--database-url", "postgres://x@127.0.0.1:1/x", "--max-workers", "0")
	require.Equal(t, ExitUsage, res.code)
	require.Contains(t, res.stderr, "--max-workers")
}

// `velocity worker` works jobs as velocity_worker (from VELOCITY_DATABASE_URL) until its
// context ends, then stops cleanly.
func TestWorkerRunsUntilStopped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	env := map[string]string{EnvDatabaseURL: db.DSN(store.WorkerRole), EnvConfig: filepath.Join(t.TempDir(), "absent.yaml")}
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb, func(k string) string { return env[k] })
	root.SetArgs([]string{"worker", "--stop-timeout", "5s"})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(wctx) }()

	// The periodic partition job runs when the worker becomes River's leader.
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM velocity.river_job WHERE kind = 'history_partitions' AND state = 'completed'`).Scan(&n)
		return err == nil && n > 0
	}, 30*time.Second, 50*time.Millisecond)
	var user string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT usename FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'velocity-worker' LIMIT 1`).Scan(&user))
	require.Equal(t, store.WorkerRole, user)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop")
	}
	require.Contains(t, errb.String(), `"msg":"worker started"`)
	require.Contains(t, errb.String(), `"msg":"worker stopped"`)
}
