package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/gen/dbsqlc"
)

// WorkerRole is the login of the worker process. It owns nothing: it may run River (its
// grants on River's tables are given by Migrate) and call the velocity.* functions granted
// to it, such as the history partition upkeep.
const WorkerRole = "velocity_worker"

// Jobs is the store of the worker: the platform queries River jobs run, on a pool that logs
// in as WorkerRole. River uses the same pool for its own tables.
type Jobs struct {
	Pool *pgxpool.Pool
	q    *dbsqlc.Queries
}

// OpenJobs connects the worker's pool. dsn should log in as WorkerRole; maxConns bounds the
// pool (0 = pgx's default) and must leave room for River's listener and leader besides the
// jobs that run at once.
func OpenJobs(ctx context.Context, dsn string, maxConns int32) (*Jobs, error) {
	cfg, err := poolConfig(dsn, "worker", maxConns)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open worker pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping worker pool: %w", err)
	}
	return &Jobs{Pool: pool, q: dbsqlc.New()}, nil
}

// Close closes the pool.
func (j *Jobs) Close() { j.Pool.Close() }

// User is the role the pool logs in as.
func (j *Jobs) User() string { return j.Pool.Config().ConnConfig.User }

// EnsureHistoryPartitions makes sure every applied schema's history table has its monthly
// partitions from at's month (in UTC) through monthsAhead months later, moving any rows that
// landed in a history's default partition for those months into the new partition. It
// returns how many partitions it created; running it again for the same at creates none.
func (j *Jobs) EnsureHistoryPartitions(ctx context.Context, at time.Time, monthsAhead int) (int, error) {
	if monthsAhead < 0 || monthsAhead > 36 {
		return 0, fmt.Errorf("ensure history partitions: months ahead %d is not from 0 to 36", monthsAhead)
	}
	tables, err := j.q.HistoryTables(ctx, j.Pool)
	if err != nil {
		return 0, fmt.Errorf("ensure history partitions: list histories: %w", Interpret(err))
	}
	// One transaction per history: each holds its default partition's lock only while it
	// attaches that history's partitions, and one that fails does not stop the others.
	total := 0
	var errs []error
	for _, h := range tables {
		n, err := j.q.HistoryPartitionsEnsure(ctx, j.Pool, dbsqlc.HistoryPartitionsEnsureParams{
			SchemaName: h.SchemaName, History: h.History, At: at, MonthsAhead: int32(monthsAhead)})
		if err != nil {
			errs = append(errs, fmt.Errorf("ensure history partitions of %s.%s at %s: %w", h.SchemaName, h.History, at.UTC().Format(time.RFC3339), Interpret(err)))
			continue
		}
		total += int(n)
	}
	return total, errors.Join(errs...)
}
