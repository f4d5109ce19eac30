package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/velocitydev/velocity/internal/devserver"
)

func newDevCmd(g *globals) *cobra.Command {
	opts := devserver.Options{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run Postgres, the platform and the API in one process, for local development",
		Long: "Starts an embedded Postgres from the installed Postgres 15 binaries in --data-dir (kept between runs),\n" +
			"applies the platform migrations, and serves the API. On the first run it prints a bootstrap admin\n" +
			"API key; DIR/credentials.json and the CLI config always hold the current one.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			opts.Logger = slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			opts.Ready = func(c devserver.Credentials, newKey bool) {
				cfg := g.loadConfig()
				cfg.APIURL, cfg.APIKey, cfg.DatabaseURL = c.APIURL, c.APIKey, c.DatabaseURL
				path := configPath(g.getenv)
				if err := SaveConfig(path, cfg); err != nil {
					fmt.Fprintln(g.stderr, "warning: could not write the CLI config:", err)
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "Velocity is serving %s (OpenAPI: %s/openapi.json, docs: %s/docs)\n", c.APIURL, c.APIURL, c.APIURL)
				if newKey {
					fmt.Fprintf(out, "Bootstrap admin API key (shown once; also in %s/credentials.json):\n  %s\n", opts.DataDir, c.APIKey)
				} else {
					fmt.Fprintf(out, "Admin API key: see %s/credentials.json\n", opts.DataDir)
				}
				fmt.Fprintf(out, "CLI config written to %s. Stop with Ctrl-C.\n", path)
			}
			return devserver.Run(ctx, opts)
		},
	}
	cmd.Flags().StringVar(&opts.DataDir, "data-dir", ".velocity", "folder for Postgres data, credentials.json and secrets")
	cmd.Flags().StringVar(&opts.Listen, "listen", "127.0.0.1:8080", "API listen address")
	cmd.Flags().IntVar(&opts.PGPort, "pg-port", 54329, "Postgres TCP port on 127.0.0.1")
	return cmd
}
