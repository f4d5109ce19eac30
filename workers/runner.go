package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/velocitydev/velocity/internal/store"
)

// DefaultMaxWorkers is how many jobs a Runner works at once unless told otherwise. Its pool
// needs a few connections more: River's listener and leader hold their own.
const DefaultMaxWorkers = 4

// Config configures a Runner.
type Config struct {
	Logger *slog.Logger
	// Now is the jobs' clock; nil means time.Now.
	Now func() time.Time
	// MaxWorkers bounds the jobs worked at once; 0 means DefaultMaxWorkers.
	MaxWorkers int
}

// Runner works Velocity's jobs: a River client on the worker's pool, with every worker of this
// package and the periodic jobs. Any number of Runners may share a database; River's leader
// election makes one of them insert the periodic jobs, and its SKIP LOCKED fetch spreads work.
type Runner struct {
	client *river.Client[pgx.Tx]
	jobs   *store.Jobs
	log    *slog.Logger
}

// NewRunner builds a Runner on jobs' pool. It does not touch the database until Start.
func NewRunner(jobs *store.Jobs, cfg Config) (*Runner, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = DefaultMaxWorkers
	}
	ws := river.NewWorkers()
	if err := AddWorkers(ws, Deps{Jobs: jobs, Logger: cfg.Logger, Now: cfg.Now}); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(jobs.Pool), &river.Config{
		Schema:       store.RiverSchema,
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.MaxWorkers}},
		Workers:      ws,
		PeriodicJobs: PeriodicJobs(),
		Logger:       slog.New(minLevel{Handler: cfg.Logger.Handler(), min: slog.LevelWarn}),
		// REINDEX needs the table's owner, which the worker is not (Postgres 15 has no MAINTAIN
		// privilege), so River's nightly reindex would only log errors. velocity_owner may
		// REINDEX River's indexes by hand if they bloat.
		ReindexerIndexNames: []string{},
	})
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &Runner{client: client, jobs: jobs, log: cfg.Logger}, nil
}

// Client is the River client, for inserting jobs and subscribing to their events.
func (r *Runner) Client() *river.Client[pgx.Tx] { return r.client }

// Start checks that River's migrations are applied and starts working jobs. The Runner keeps
// running after ctx ends, until Stop: ctx bounds only the start.
func (r *Runner) Start(ctx context.Context) error {
	migrator, err := rivermigrate.New(riverpgxv5.New(r.jobs.Pool), &rivermigrate.Config{
		Schema: store.RiverSchema,
		Logger: slog.New(minLevel{Handler: r.log.Handler(), min: slog.LevelWarn}),
	})
	if err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	res, err := migrator.Validate(ctx, nil)
	if err != nil {
		return fmt.Errorf("start worker: check River's migrations: %w", err)
	}
	if !res.OK {
		return fmt.Errorf("start worker: River's migrations are not applied (%s): run `velocity migrate up` as %s",
			strings.Join(res.Messages, "; "), store.OwnerRole)
	}
	if user := r.jobs.User(); user != store.WorkerRole {
		r.log.WarnContext(ctx, "worker connected as "+user+", not "+store.WorkerRole+", the least-privileged role for jobs")
	}
	// River ends its client when the context given to Start ends; Stop ends it instead, so
	// that running jobs may finish.
	if err := r.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	r.log.InfoContext(ctx, "worker started", "user", r.jobs.User(), "schema", store.RiverSchema)
	return nil
}

// Stop stops fetching jobs and waits for running ones until ctx ends, then cancels those
// still running and waits briefly for them to return. A job cut short is retried later by
// another worker: every job is idempotent.
func (r *Runner) Stop(ctx context.Context) error {
	err := r.client.Stop(ctx)
	if err == nil {
		r.log.Info("worker stopped")
		return nil
	}
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stop worker: %w", err)
	}
	r.log.Warn("worker: jobs still running at the stop deadline; cancelling them")
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.client.StopAndCancel(cctx); err != nil {
		return fmt.Errorf("stop worker: %w", err)
	}
	r.log.Info("worker stopped")
	return nil
}

// minLevel drops records below min: River's info lines (leadership, queue statistics) would
// drown the worker's own.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}
