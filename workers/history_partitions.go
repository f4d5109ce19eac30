package workers

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/velocitydev/velocity/internal/planner"
)

// HistoryPartitionsKind is the kind of HistoryPartitionsArgs.
const HistoryPartitionsKind = "history_partitions"

// HistoryPartitionsArgs asks for the monthly partitions of every history table to be made
// from the current month through planner.HistoryMonthsAhead months later. It has no
// arguments: each run covers every applied schema, from the worker's clock.
type HistoryPartitionsArgs struct{}

// Kind implements river.JobArgs.
func (HistoryPartitionsArgs) Kind() string { return HistoryPartitionsKind }

// InsertOpts keeps at most one run waiting or running, so periodic inserts never pile up
// behind a slow or failing run. A run is idempotent, so retries are safe; they are few and
// quick (River's backoff is attempt^4 seconds), because a failing run is better retried by
// the next hourly insert than by a backoff that grows to days.
func (HistoryPartitionsArgs) InsertOpts() river.InsertOpts {
	return oneAtATime(5)
}

// HistoryPartitionsWorker keeps history partitions ahead of time, so history rows land in
// their month's partition and not in the default one. A row that did land in the default
// partition (the job had not run in time) is moved into its month's partition when that is
// made; a write never fails for want of a partition.
type HistoryPartitionsWorker struct {
	river.WorkerDefaults[HistoryPartitionsArgs]
	Deps
}

// Timeout allows for many schemas: each partition made waits up to 5 s for its lock.
func (w *HistoryPartitionsWorker) Timeout(*river.Job[HistoryPartitionsArgs]) time.Duration {
	return 10 * time.Minute
}

// Work implements river.Worker.
func (w *HistoryPartitionsWorker) Work(ctx context.Context, _ *river.Job[HistoryPartitionsArgs]) error {
	at := w.now().UTC()
	created, err := w.Jobs.EnsureHistoryPartitions(ctx, at, planner.HistoryMonthsAhead)
	if err != nil {
		return err
	}
	level := slog.LevelDebug
	if created > 0 {
		level = slog.LevelInfo
	}
	w.logger().Log(ctx, level, "history partitions ensured", "at", at, "months_ahead", planner.HistoryMonthsAhead, "created", created)
	return nil
}

// historyPartitionsPeriodic runs the job every hour and when a worker becomes River's leader,
// so a worker that was down for a while catches up at once.
func historyPartitionsPeriodic() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(time.Hour),
		func() (river.JobArgs, *river.InsertOpts) { return HistoryPartitionsArgs{}, nil },
		&river.PeriodicJobOpts{ID: HistoryPartitionsKind, RunOnStart: true})
}
