package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/velocitydev/velocity/internal/store"
	"github.com/velocitydev/velocity/workers"
)

func newWorkerCmd(g *globals) *cobra.Command {
	var maxWorkers int
	var stopTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run the background jobs against an existing Postgres (production)",
		Long: "Works Velocity's River jobs (such as keeping history partitions ahead) until SIGINT or SIGTERM.\n" +
			"Connect it as velocity_worker with --database-url (env " + EnvDatabaseURL + ", else the CLI config);\n" +
			"the database must be migrated (`velocity migrate up`). Any number of workers may share a database.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := g.databaseURL()
			if err != nil {
				return err
			}
			if maxWorkers < 1 {
				return usageError{fmt.Errorf("--max-workers must be at least 1, not %d", maxWorkers)}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewJSONHandler(g.stderr, nil))
			// River's listener and leader each hold a connection besides the running jobs.
			jobs, err := store.OpenJobs(ctx, url, int32(maxWorkers+4))
			if err != nil {
				return err
			}
			defer jobs.Close()
			runner, err := workers.NewRunner(jobs, workers.Config{Logger: log, MaxWorkers: maxWorkers})
			if err != nil {
				return err
			}
			if err := runner.Start(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			return runner.Stop(sctx)
		},
	}
	cmd.Flags().IntVar(&maxWorkers, "max-workers", workers.DefaultMaxWorkers, "jobs worked at once")
	cmd.Flags().DurationVar(&stopTimeout, "stop-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long running jobs may finish before they are cancelled")
	return cmd
}
