package workers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/velocitydev/velocity/internal/store"
)

// AuditSealKind is the kind of AuditSealArgs.
const AuditSealKind = "audit_seal"

// AuditSealInterval is how often the River leader asks for a sealing run. Sealing lag under
// load is about this plus the longest transaction running at the time.
const AuditSealInterval = time.Second

// AuditSealArgs asks for every entry that is safe to seal to be sealed into blocks.
type AuditSealArgs struct{}

// Kind implements river.JobArgs.
func (AuditSealArgs) Kind() string { return AuditSealKind }

// InsertOpts keeps at most one run waiting or running: a run seals everything sealable, so a
// second one queued behind it would find nothing.
func (AuditSealArgs) InsertOpts() river.InsertOpts {
	return oneAtATime(3)
}

// AuditSealWorker seals the audit log (store.SealAudit).
type AuditSealWorker struct {
	river.WorkerDefaults[AuditSealArgs]
	Deps
}

// Timeout allows a long backlog to be sealed in one run (one transaction per batch).
func (w *AuditSealWorker) Timeout(*river.Job[AuditSealArgs]) time.Duration { return 10 * time.Minute }

// Work implements river.Worker.
func (w *AuditSealWorker) Work(ctx context.Context, _ *river.Job[AuditSealArgs]) error {
	res, err := store.SealAudit(ctx, w.Jobs.Pool, store.SealOptions{Now: w.Now})
	if errors.Is(err, store.ErrSealBusy) {
		// A sealer run on demand (velocity audit seal) holds the lock and seals the same entries.
		return nil
	}
	if err != nil {
		return err
	}
	level := slog.LevelDebug
	if res.Entries > 0 {
		level = slog.LevelInfo
	}
	w.logger().Log(ctx, level, "audit sealed", "entries", res.Entries, "blocks", res.Blocks)
	return nil
}

func auditSealPeriodic() *river.PeriodicJob {
	return river.NewPeriodicJob(river.PeriodicInterval(AuditSealInterval),
		func() (river.JobArgs, *river.InsertOpts) { return AuditSealArgs{}, nil },
		&river.PeriodicJobOpts{ID: AuditSealKind, RunOnStart: true})
}
