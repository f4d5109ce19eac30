// Package pgtest gives tests a real Postgres: one throwaway cluster per test binary (or the
// server named by VELOCITY_TEST_DATABASE_URL), a template database migrated once, and a fresh
// clone per test (TestDB) or a rolled-back transaction (TestTx).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgcluster"
	"github.com/velocitydev/velocity/internal/store"
)

// EnvDatabaseURL names an existing server to test against instead of a throwaway cluster.
// It must be a superuser URL; the owner and authenticator roles are reached with the same
// host, port and password.
const EnvDatabaseURL = "VELOCITY_TEST_DATABASE_URL"

type server struct {
	cluster  *pgcluster.Cluster
	superDSN func(db string) string
	userDSN  func(user, db string) string
	loginDSN func(user, password, db string) string
	password string // the external server's password, given to the platform roles too
	template string
	shared   string // the database TestTx runs in
	err      error
}

var (
	once sync.Once
	srv  server
)

// Main runs the tests of a package and then stops the cluster they shared. Call it from
// TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if sharedPool != nil {
		sharedPool.Close()
	}
	if srv.cluster != nil {
		_ = srv.cluster.Stop()
		_ = os.RemoveAll(filepath.Dir(srv.cluster.SocketDir()))
	} else if srv.template != "" {
		dropDatabases()
	}
	os.Exit(code)
}

// dropDatabases removes the template and shared database from a server the tests did not
// start themselves (VELOCITY_TEST_DATABASE_URL).
func dropDatabases() {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, srv.superDSN("postgres"))
	if err != nil {
		return
	}
	defer c.Close(ctx)
	_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+srv.shared+" WITH (FORCE)")
	_, _ = c.Exec(ctx, "ALTER DATABASE "+srv.template+" IS_TEMPLATE false")
	_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+srv.template+" WITH (FORCE)")
}

// ownerFile holds the pid of the test process that started a cluster.
const ownerFile = "owner.pid"

// sweepOrphans stops and removes the clusters of test processes that died without stopping
// them (a panic skips Main's cleanup), so they do not pile up on a developer's machine.
func sweepOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "vpg*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still starting
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || owner <= 0 || syscall.Kill(owner, 0) != syscall.ESRCH {
			continue // its test process still runs
		}
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			line, _, _ := strings.Cut(string(pm), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown: the data is thrown away
			}
		}
		_ = os.RemoveAll(dir)
	}
}

func setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			srv.err = fmt.Errorf("%s: %w", EnvDatabaseURL, err)
			return
		}
		srv.superDSN = func(db string) string { c := *u; c.Path = "/" + db; return c.String() }
		srv.password, _ = u.User.Password()
		srv.loginDSN = func(user, password, db string) string {
			c := *u
			c.Path = "/" + db
			c.User = url.UserPassword(user, password)
			if password == "" {
				c.User = url.User(user)
			}
			return c.String()
		}
		srv.userDSN = func(user, db string) string { return srv.loginDSN(user, srv.password, db) }
	} else {
		sweepOrphans()
		dir, err := os.MkdirTemp("", "vpg")
		if err != nil {
			srv.err = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			srv.err = err
			return
		}
		c, err := pgcluster.Start(ctx, pgcluster.Options{
			DataDir:   filepath.Join(dir, "data"),
			SocketDir: filepath.Join(dir, "s"),
			Fsync:     false,
			ExtraConf: map[string]string{"max_connections": "300"},
		})
		if err != nil {
			srv.err = err
			return
		}
		srv.cluster = c
		srv.superDSN = func(db string) string { return c.SuperuserDSN(db) }
		srv.userDSN = c.DSN
		// The throwaway cluster trusts its unix socket; passwords are not checked.
		srv.loginDSN = func(user, _, db string) string { return c.DSN(user, db) }
	}

	suffix := randomSuffix()
	srv.template = "velocity_tmpl_" + suffix
	super, err := pgx.Connect(ctx, srv.superDSN("postgres"))
	if err != nil {
		srv.err = fmt.Errorf("pgtest: connect as superuser: %w", err)
		return
	}
	defer super.Close(ctx)
	if err := store.Bootstrap(ctx, super, srv.template, srv.password); err != nil {
		srv.err = err
		return
	}
	owner, err := pgx.Connect(ctx, srv.userDSN(store.OwnerRole, srv.template))
	if err != nil {
		srv.err = fmt.Errorf("pgtest: connect as owner: %w", err)
		return
	}
	err = store.Migrate(ctx, owner)
	owner.Close(ctx)
	if err != nil {
		srv.err = err
		return
	}
	if srv.password != "" {
		// On a server that checks passwords, the platform roles log in with the superuser's.
		for _, role := range []string{store.AuthenticatorRole, "velocity_worker"} {
			if err := store.SetLoginPassword(ctx, super, role, srv.password); err != nil {
				srv.err = err
				return
			}
		}
	}
	if _, err := super.Exec(ctx, "ALTER DATABASE "+srv.template+" IS_TEMPLATE true"); err != nil {
		srv.err = err
		return
	}
	srv.shared = "velocity_shared_" + suffix
	srv.err = createClone(ctx, super, srv.shared)
}

func createClone(ctx context.Context, super *pgx.Conn, name string) error {
	// FILE_COPY copies the small template's files instead of logging every block through WAL
	// (PG15's default), which makes a clone several times faster with fsync off.
	// CREATE DATABASE ... TEMPLATE fails if another clone is being made from the same
	// template at that moment; retry briefly.
	var err error
	for i := 0; i < 50; i++ {
		_, err = super.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+srv.template+" OWNER "+store.OwnerRole+" STRATEGY FILE_COPY")
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pgtest: clone template: %w", err)
}

func ready(t testing.TB) {
	t.Helper()
	once.Do(setup)
	require.NoError(t, srv.err, "pgtest setup")
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DB is one test's own database, cloned from the migrated template and dropped at cleanup.
type DB struct {
	Name string
	// Pool is connected as the owner role, which owns every object but is not a superuser.
	Pool *pgxpool.Pool
}

// DSN returns a connection string for user to this database.
func (d *DB) DSN(user string) string { return srv.userDSN(user, d.Name) }

// LoginDSN returns a connection string for a login the test made with password (on the
// throwaway cluster, which trusts its socket, the password is not checked).
func (d *DB) LoginDSN(user, password string) string { return srv.loginDSN(user, password, d.Name) }

// SuperuserDSN returns a superuser connection string to this database, for tests that look
// at state below row-level security.
func (d *DB) SuperuserDSN() string { return srv.superDSN(d.Name) }

// Super opens a superuser pool closed at cleanup.
func (d *DB) Super(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return openPool(t, d.SuperuserDSN())
}

// TestDB returns a fresh database for tests that commit, LISTEN or run jobs.
func TestDB(t testing.TB) *DB {
	t.Helper()
	ready(t)
	ctx := context.Background()
	super, err := pgx.Connect(ctx, srv.superDSN("postgres"))
	require.NoError(t, err)
	defer super.Close(ctx)
	name := "velocity_test_" + randomSuffix()
	require.NoError(t, createClone(ctx, super, name))
	db := &DB{Name: name}
	t.Cleanup(func() {
		if db.Pool != nil {
			db.Pool.Close()
		}
		c, err := pgx.Connect(context.Background(), srv.superDSN("postgres"))
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	db.Pool = openPool(t, db.DSN(store.OwnerRole))
	return db
}

func openPool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	require.NoError(t, err)
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

var (
	sharedOnce sync.Once
	sharedPool *pgxpool.Pool
	sharedErr  error
)

// TestTx returns a transaction, as a superuser, in a database shared by the package's tests;
// it is rolled back at cleanup so tests never see each other's writes. Use SET LOCAL ROLE or
// SET SESSION AUTHORIZATION inside it to act as another role.
func TestTx(t testing.TB) pgx.Tx {
	t.Helper()
	ready(t)
	sharedOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(srv.superDSN(srv.shared))
		if err != nil {
			sharedErr = err
			return
		}
		cfg.MaxConns = 16
		sharedPool, sharedErr = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	require.NoError(t, sharedErr)
	tx, err := sharedPool.Begin(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}
