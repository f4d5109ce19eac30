// Package devserver is `velocity dev`: an embedded Postgres started from the machine's
// installed binaries in a data folder kept between runs, the platform migrations, a
// bootstrap admin key, the API and the job worker, all in one process.
package devserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/pgcluster"
	"github.com/velocitydev/velocity/internal/store"
	"github.com/velocitydev/velocity/workers"
)

// Options configure the dev server.
type Options struct {
	DataDir string
	Listen  string // API address, default 127.0.0.1:8080
	PGPort  int    // Postgres TCP port on 127.0.0.1, default 54329
	Logger  *slog.Logger
	// Ready is called once the API is serving, with the credentials and whether the admin
	// key was made in this run (and so is shown for the first and only time).
	Ready func(c Credentials, newKey bool)
}

// Credentials is DIR/credentials.json.
type Credentials struct {
	APIURL      string `json:"api_url"`
	APIKey      string `json:"api_key"`
	DatabaseURL string `json:"database_url"`
}

type secrets struct {
	OwnerPassword         string `json:"owner_password"`
	AuthenticatorPassword string `json:"authenticator_password"`
	// WorkerPassword lets `velocity worker` run beside a dev server over TCP; the in-process
	// worker uses the trusted socket. Data folders made before it existed get one on start.
	WorkerPassword string `json:"worker_password"`
}

const database = "velocity"

// Run serves until ctx ends, then stops the API, the worker and Postgres.
func Run(ctx context.Context, opts Options) error {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:8080"
	}
	if opts.PGPort == 0 {
		opts.PGPort = 54329
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	sec, err := loadSecrets(filepath.Join(dir, "secrets.json"))
	if err != nil {
		return err
	}

	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		DataDir:   filepath.Join(dir, "pg"),
		SocketDir: socketDir(dir),
		Port:      opts.PGPort,
		Fsync:     true,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			opts.Logger.Warn("stop postgres", "err", err)
		}
	}()
	if err := prepare(ctx, cluster, sec); err != nil {
		return err
	}

	st, err := store.Open(ctx, cluster.DSN(store.AuthenticatorRole, database), cluster.DSN(store.OwnerRole, database), 32)
	if err != nil {
		return err
	}
	defer st.Close()

	creds := Credentials{
		APIURL:      "http://" + opts.Listen,
		DatabaseURL: (&url.URL{Scheme: "postgres", User: url.UserPassword(store.OwnerRole, sec.OwnerPassword), Host: "127.0.0.1:" + strconv.Itoa(opts.PGPort), Path: "/" + database, RawQuery: "sslmode=disable"}).String(),
	}
	credPath := filepath.Join(dir, "credentials.json")
	newKey := false
	if old, err := loadCredentials(credPath); err == nil && old.APIKey != "" {
		if _, err := st.VerifyAPIKey(ctx, old.APIKey); err == nil {
			creds.APIKey = old.APIKey
		}
	}
	if creds.APIKey == "" {
		bootstrap := store.Request{Actor: store.Actor{ID: "velocity-dev", Kind: "system", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}
		key, err := st.CreateAPIKey(ctx, bootstrap, "dev bootstrap admin", []string{"platform_admin", "admin"}, 0, nil)
		if err != nil {
			return err
		}
		creds.APIKey, newKey = key.Secret, true
	}
	if err := writeJSON(credPath, creds); err != nil {
		return err
	}

	// The worker logs in as velocity_worker, as it does in a deployment, so jobs that work
	// here have the rights they will have there.
	jobs, err := store.OpenJobs(ctx, cluster.DSN(store.WorkerRole, database), workers.DefaultMaxWorkers+4)
	if err != nil {
		return err
	}
	defer jobs.Close()
	runner, err := workers.NewRunner(jobs, workers.Config{Logger: opts.Logger})
	if err != nil {
		return err
	}
	if err := runner.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := runner.Stop(sctx); err != nil {
			opts.Logger.Warn("stop worker", "err", err)
		}
	}()

	// Locally, the docs page shows every object; a deployment shows each caller its own.
	server, err := api.New(ctx, st, api.Config{Logger: opts.Logger, PublicOpenAPI: true})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpServer := api.NewHTTPServer(opts.Listen, server)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go server.Listen(lctx)
	errc := make(chan error, 1)
	go func() { errc <- httpServer.Serve(ln) }()
	if opts.Ready != nil {
		opts.Ready(creds, newKey)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	err = httpServer.Shutdown(sctx)
	server.Close(sctx)
	return err
}

// prepare bootstraps the owner role and database, migrates, and sets the passwords of the
// authenticator and the worker. It is idempotent, so every start runs it.
func prepare(ctx context.Context, c *pgcluster.Cluster, sec secrets) error {
	super, err := pgx.Connect(ctx, c.SuperuserDSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect as superuser: %w", err)
	}
	defer super.Close(ctx)
	if err := store.Bootstrap(ctx, super, database, sec.OwnerPassword); err != nil {
		return err
	}
	owner, err := pgx.Connect(ctx, c.DSN(store.OwnerRole, database))
	if err != nil {
		return fmt.Errorf("connect as owner: %w", err)
	}
	defer owner.Close(ctx)
	if err := store.Migrate(ctx, owner); err != nil {
		return err
	}
	if err := store.SetLoginPassword(ctx, owner, store.AuthenticatorRole, sec.AuthenticatorPassword); err != nil {
		return err
	}
	return store.SetLoginPassword(ctx, owner, store.WorkerRole, sec.WorkerPassword)
}

// socketDir keeps the unix socket path under the kernel's ~107-byte limit.
func socketDir(dataDir string) string {
	d := filepath.Join(dataDir, "run")
	if len(d) < 80 {
		return d
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join(os.TempDir(), "velocity-"+hex.EncodeToString(sum[:6]))
}

func loadSecrets(path string) (secrets, error) {
	var s secrets
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &s); err != nil {
			return s, fmt.Errorf("%s: %w", path, err)
		}
		if s.WorkerPassword == "" {
			s.WorkerPassword = randomHex(24)
			return s, writeJSON(path, s)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	// Hex passwords need no quoting anywhere they are used.
	s = secrets{OwnerPassword: randomHex(24), AuthenticatorPassword: randomHex(24), WorkerPassword: randomHex(24)}
	return s, writeJSON(path, s)
}

func loadCredentials(path string) (Credentials, error) {
	var c Credentials
	data, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(data, &c)
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
