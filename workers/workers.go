// Package workers holds Velocity's background jobs, one River JobArgs and Worker pair per file,
// and the Runner that works them on a River client as the velocity_worker login.
package workers

import (
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/velocitydev/velocity/internal/store"
)

// Deps are what the workers need.
type Deps struct {
	Jobs   *store.Jobs
	Logger *slog.Logger
	// Now is the clock of jobs that act on the current time; nil means time.Now. Tests set it
	// to cross month boundaries.
	Now func() time.Time
}

func (d Deps) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

func (d Deps) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.Default()
	}
	return d.Logger
}

// oneAtATime are the insert options of a job of which at most one may wait or run at a time:
// an insert while one is pending, scheduled, retrying or running is skipped as a duplicate.
func oneAtATime(maxAttempts int) river.InsertOpts {
	return river.InsertOpts{
		MaxAttempts: maxAttempts,
		UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
			rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled,
		}},
	}
}

// AddWorkers registers every job kind's worker on w.
func AddWorkers(w *river.Workers, deps Deps) error {
	if err := river.AddWorkerSafely(w, &HistoryPartitionsWorker{Deps: deps}); err != nil {
		return err
	}
	return river.AddWorkerSafely(w, &AuditSealWorker{Deps: deps})
}

// PeriodicJobs are the jobs the River leader inserts on a schedule.
func PeriodicJobs() []*river.PeriodicJob {
	return []*river.PeriodicJob{historyPartitionsPeriodic(), auditSealPeriodic()}
}
