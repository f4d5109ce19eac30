package workers_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
	"github.com/velocitydev/velocity/workers"
)

// The River leader seals the audit log every second: entries written while the worker runs
// end up in blocks that verify, without anyone asking.
func TestRunnerSealsAudit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	runner, err := workers.NewRunner(f.jobs, workers.Config{Logger: quietLogger()})
	require.NoError(t, err)
	require.NoError(t, runner.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = runner.Stop(sctx)
	})

	req := store.Request{Actor: store.Actor{ID: "user:alice", Kind: "subject", Roles: []string{"admin"}, Attributes: map[string]any{}}}
	for range 3 {
		require.NoError(t, f.st.InRequest(ctx, req, []store.Statement{{SQL: `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ('a@example.com', 'eu')`}},
			func(int, pgx.Rows) error { return nil }))
	}
	require.Eventually(t, func() bool {
		rep, err := store.VerifyAudit(ctx, f.st.Owner, nil)
		require.NoError(t, err)
		require.True(t, rep.OK, "%+v", rep.Problem)
		return rep.Unsealed == 0 && rep.Entries == 4 // the schema apply and three inserts
	}, 20*time.Second, 100*time.Millisecond)
}
