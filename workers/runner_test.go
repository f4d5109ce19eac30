package workers_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/workers"
)

// waitForJob returns the first completed or failed event of a job that match accepts.
func waitForJob(t *testing.T, events <-chan *river.Event, match func(*river.Event) bool) *river.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no job event within 30s")
		}
	}
}

// TestRunnerWorksHistoryPartitions runs the partition job through a started River client,
// logged in as velocity_worker: first as the periodic job inserted when the runner becomes
// leader, then as a job inserted by hand.
func TestRunnerWorksHistoryPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	y := time.Now().UTC().Year() + 2
	var now atomic.Pointer[time.Time]
	setNow := func(at time.Time) { now.Store(&at) }
	setNow(time.Date(y, time.January, 31, 23, 59, 0, 0, time.UTC))

	runner, err := workers.NewRunner(f.jobs, workers.Config{Logger: quietLogger(), Now: func() time.Time { return *now.Load() }})
	require.NoError(t, err)
	events, unsubscribe := runner.Client().Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer unsubscribe()
	require.NoError(t, runner.Start(ctx))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = runner.Stop(sctx)
		}
	})
	isPartitions := func(ev *river.Event) bool { return ev.Job.Kind == workers.HistoryPartitionsKind }

	// The periodic job is registered and runs on start.
	ev := waitForJob(t, events, isPartitions)
	require.Equal(t, river.EventKindJobCompleted, ev.Kind, "job errors: %v", ev.Job.Errors)
	require.Contains(t, f.partitions(t), fmt.Sprintf("%s_%d_04", f.names.History, y))
	require.NotContains(t, f.partitions(t), fmt.Sprintf("%s_%d_05", f.names.History, y))

	// An inserted job runs too, with the clock as it is then.
	setNow(time.Date(y, time.February, 1, 0, 0, 0, 0, time.UTC))
	res, err := runner.Client().Insert(ctx, workers.HistoryPartitionsArgs{}, nil)
	require.NoError(t, err)
	require.False(t, res.UniqueSkippedAsDuplicate, "the first run has completed")
	ev = waitForJob(t, events, func(ev *river.Event) bool { return ev.Job.ID == res.Job.ID })
	require.Equal(t, river.EventKindJobCompleted, ev.Kind, "job errors: %v", ev.Job.Errors)
	require.Contains(t, f.partitions(t), fmt.Sprintf("%s_%d_05", f.names.History, y))

	var attemptedBy []string
	require.NoError(t, f.super.QueryRow(ctx, `SELECT attempted_by FROM velocity.river_job WHERE id = $1`, res.Job.ID).Scan(&attemptedBy))
	require.Len(t, attemptedBy, 1)

	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, runner.Stop(sctx))
	stopped = true
}
