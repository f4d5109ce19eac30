package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/store"
)

// Environment variables of `velocity serve`.
const (
	EnvAPIDatabaseURL   = "VELOCITY_API_DATABASE_URL"
	EnvOwnerDatabaseURL = "VELOCITY_OWNER_DATABASE_URL"
	// EnvSessionKey signs the session cookies of the browser login (hex, at least 32 bytes).
	EnvSessionKey = "VELOCITY_SESSION_KEY"
)

func newServeCmd(g *globals) *cobra.Command {
	var listen, apiURL, ownerURL, authFile, redisURL string
	var failOpen bool
	var maxBody int64
	var publicOpenAPI bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the API against an existing Postgres (production)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			apiURL = g.setting(apiURL, EnvAPIDatabaseURL, func(Config) string { return "" })
			ownerURL = g.setting(ownerURL, EnvOwnerDatabaseURL, func(Config) string { return "" })
			if apiURL == "" || ownerURL == "" {
				return usageError{fmt.Errorf("serve needs --api-database-url (%s, the velocity_authenticator login) and --owner-database-url (%s)", EnvAPIDatabaseURL, EnvOwnerDatabaseURL)}
			}
			var authCfg *auth.Config
			if authFile != "" {
				raw, err := os.ReadFile(authFile)
				if err != nil {
					return usageError{fmt.Errorf("--auth-config: %w", err)}
				}
				cfg, err := auth.LoadConfig(raw)
				if err != nil {
					return usageError{fmt.Errorf("--auth-config %s: %w", authFile, err)}
				}
				authCfg = &cfg
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewJSONHandler(g.stderr, nil))
			st, err := store.Open(ctx, apiURL, ownerURL, 0)
			if err != nil {
				return err
			}
			defer st.Close()
			var revocations *auth.Revocations
			if redisURL == "" && authCfg != nil && (slices.Contains(authCfg.Strategies, auth.StrategyJWT) || slices.Contains(authCfg.Strategies, auth.StrategySession)) {
				log.Warn("no --redis-url: revocations of tokens and subjects are stored but not enforced; only API keys revoked in Postgres are refused")
			}
			if redisURL != "" {
				opts, err := redis.ParseURL(redisURL)
				if err != nil {
					return usageError{fmt.Errorf("--redis-url: %w", err)}
				}
				// A hung Redis must cost a request the check's 200 ms, not the client's timeouts.
				opts.ContextTimeoutEnabled = true
				opts.MaxRetries, opts.DialerRetries = 1, 1
				if opts.DialTimeout == 0 || opts.DialTimeout > time.Second {
					opts.DialTimeout = time.Second
				}
				rdb := redis.NewClient(opts)
				defer rdb.Close()
				revocations = auth.NewRevocations(rdb, api.NewDurableRevocations(st), auth.RevocationOptions{FailOpen: failOpen, Logger: log})
				go revocations.Start(ctx)
			}
			var sessionKey []byte
			if raw := os.Getenv(EnvSessionKey); raw != "" {
				if sessionKey, err = hex.DecodeString(raw); err != nil || len(sessionKey) < 32 {
					return usageError{fmt.Errorf("%s: want at least 32 bytes as hex (openssl rand -hex 32)", EnvSessionKey)}
				}
			}
			server, err := api.New(ctx, st, api.Config{Logger: log, MaxBodyBytes: maxBody, PublicOpenAPI: publicOpenAPI, Auth: authCfg,
				Revocations: revocations, SessionKey: sessionKey})
			if err != nil {
				return err
			}
			go server.Listen(ctx)
			hs := api.NewHTTPServer(listen, server)
			errc := make(chan error, 1)
			go func() { errc <- hs.ListenAndServe() }()
			log.Info("serving", "addr", listen)
			select {
			case err := <-errc:
				if !errors.Is(err, http.ErrServerClosed) {
					return err
				}
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = hs.Shutdown(sctx)
			server.Close(sctx) // the audit entries of the last decisions
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "listen address")
	cmd.Flags().StringVar(&apiURL, "api-database-url", "", "Postgres URL of the velocity_authenticator login (env "+EnvAPIDatabaseURL+")")
	cmd.Flags().StringVar(&ownerURL, "owner-database-url", "", "Postgres URL of velocity_owner, for schema applies (env "+EnvOwnerDatabaseURL+")")
	cmd.Flags().Int64Var(&maxBody, "max-body-bytes", 1<<20, "largest request body; larger ones get 413")
	cmd.Flags().StringVar(&authFile, "auth-config", "", "YAML file listing the authentication strategies in order and the JWT issuers (docs/access-control.md); default: API keys only")
	cmd.Flags().StringVar(&redisURL, "redis-url", "", "Redis that carries revocations of tokens, subjects and API keys to every replica (redis://host:6379/0); none: only API keys revoked in Postgres are refused")
	cmd.Flags().BoolVar(&failOpen, "revocation-fail-open", false, "let requests through, audited, when Redis cannot be asked (default: fail closed with 503)")
	cmd.Flags().BoolVar(&publicOpenAPI, "public-openapi", false, "show every object in /openapi.json and /docs to callers without a key")
	return cmd
}
