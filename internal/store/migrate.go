package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
	velocitysql "github.com/velocitydev/velocity/sql"
)

// MigrationTable is where tern records the platform's migration version.
const MigrationTable = "velocity.schema_migrations"

// RiverSchema holds River's tables (river_job, river_leader, river_queue, river_migration …)
// beside the platform's own, so one schema holds everything Velocity keeps about itself and no
// user schema (org__app) can collide with them. River clients must use the same schema.
const RiverSchema = "velocity"

// OwnerRole owns every Velocity object. It is not a superuser; it needs CREATEROLE to make
// the group roles and BI logins that definitions and grants ask for (ADR-007).
const OwnerRole = "velocity_owner"

// Bootstrap is the one step that needs a superuser: it creates the owner role and a database
// it owns. It is idempotent. password may be empty (socket-only, trust-authenticated setups).
func Bootstrap(ctx context.Context, super *pgx.Conn, database, password string) error {
	var exists bool
	if err := super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", OwnerRole).Scan(&exists); err != nil {
		return fmt.Errorf("bootstrap: look up owner role: %w", err)
	}
	if !exists {
		if _, err := super.Exec(ctx, "CREATE ROLE "+OwnerRole+" LOGIN CREATEROLE"); err != nil {
			return fmt.Errorf("bootstrap: create owner role: %w", err)
		}
	}
	if password != "" {
		// ALTER ROLE cannot take a parameter; a SCRAM verifier keeps the password itself out
		// of the statement and so out of any server log.
		verifier, err := scramVerifier(password)
		if err != nil {
			return fmt.Errorf("bootstrap: owner password: %w", err)
		}
		if _, err := super.Exec(ctx, "ALTER ROLE "+OwnerRole+" PASSWORD "+quoteLiteral(verifier)); err != nil {
			return fmt.Errorf("bootstrap: set owner password: %w", err)
		}
	}
	if err := super.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
		return fmt.Errorf("bootstrap: look up database: %w", err)
	}
	if !exists {
		if _, err := super.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize()+" OWNER "+OwnerRole); err != nil {
			return fmt.Errorf("bootstrap: create database %s: %w", database, err)
		}
	}
	return nil
}

// Migrate applies the platform migrations on conn, which must be the owner role: first tern's
// (sql/migrations), then River's, up to the latest version this binary bundles, in RiverSchema,
// then the grants River's tables need. It is idempotent.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
	if err := migrateTo(ctx, conn, -1); err != nil {
		return err
	}
	if err := refreshHistoryWriters(ctx, conn); err != nil {
		return err
	}
	return migrateRiver(ctx, conn)
}

// migrateTo applies tern's migrations up to version (all of them when version < 0).
func migrateTo(ctx context.Context, conn *pgx.Conn, version int32) error {
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS velocity"); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	m, err := migrate.NewMigrator(ctx, conn, MigrationTable)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(velocitysql.FS); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	if version < 0 {
		err = m.Migrate(ctx)
	} else {
		err = m.MigrateTo(ctx, version)
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// refreshHistoryWriters regenerates the history writer of every applied schema whose stored
// body differs from what this binary's planner generates, so a new version of the writer
// (such as the one that added audit entries) reaches tables applied before it. A table applied
// before the field rules (migration 011) has no history view: it gets planner.Refresh, which
// brings its views, field-write trigger, history RLS and grants up to date. It runs under an
// advisory lock, as replicas may start together, and replaces nothing when all are current.
func refreshHistoryWriters(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: refresh history writers: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('velocity.refresh_writers', 0))"); err != nil {
		return fmt.Errorf("migrate: refresh history writers: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT s.definition, p.prosrc,
		  pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.org || '__' || s.app, s.domain || '__' || s.object || '__history_read')) IS NULL
		FROM velocity.schemas s
		JOIN pg_catalog.pg_proc p ON p.oid = pg_catalog.to_regprocedure(
		  pg_catalog.format('%I.%I()', s.org || '__' || s.app, s.domain || '__' || s.object || '__history_write'))
		ORDER BY s.key`)
	if err != nil {
		return fmt.Errorf("migrate: refresh history writers: %w", err)
	}
	type current struct {
		def    schemadef.Definition
		src    string
		noView bool
	}
	writers, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (current, error) {
		var c current
		var raw []byte
		if err := row.Scan(&raw, &c.src, &c.noView); err != nil {
			return c, err
		}
		return c, json.Unmarshal(raw, &c.def)
	})
	if err != nil {
		return fmt.Errorf("migrate: refresh history writers: %w", err)
	}
	for _, w := range writers {
		if w.noView {
			for _, step := range planner.Refresh(w.def).Steps {
				if _, err := tx.Exec(ctx, step.SQL); err != nil {
					return fmt.Errorf("migrate: bring %s up to the field rules: %w", w.def.Spec.Key(), err)
				}
			}
			continue
		}
		sql := planner.HistoryWriter(w.def.Spec, planner.WriterOptions{})
		if strings.Contains(sql, "AS $velocity$"+w.src+"$velocity$") {
			continue
		}
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("migrate: refresh the history writer of %s: %w", w.def.Spec.Key(), err)
		}
	}
	return tx.Commit(ctx)
}

// riverGrants gives the worker what River's client does with its tables (fetch, complete and
// clean jobs, elect a leader, record queues, check the migration version), and the API what
// inserting a job inside a request transaction needs: INSERT, SELECT for its RETURNING, and
// UPDATE of kind for the ON CONFLICT DO UPDATE of unique jobs. The enum type and the
// river_job_state_in_bitmask function keep Postgres's default PUBLIC usage.
//
// These run here, after River's migrations, and not in a tern migration: tern runs first, when
// on a new database River's tables do not exist yet, and GRANT is idempotent, so repeating it
// on every Migrate also covers tables a later River version recreates.
const riverGrants = `
GRANT SELECT, INSERT, UPDATE, DELETE ON velocity.river_job, velocity.river_leader, velocity.river_queue TO velocity_worker;
GRANT SELECT ON velocity.river_migration TO velocity_worker;
GRANT USAGE ON SEQUENCE velocity.river_job_id_seq TO velocity_worker;
GRANT SELECT, INSERT, UPDATE (kind) ON velocity.river_job TO velocity_api;
GRANT USAGE ON SEQUENCE velocity.river_job_id_seq TO velocity_api;`

// migrateRiver runs River's migrations and grants. rivermigrate needs a driver on a pool, so
// it gets a one-connection pool logged in the way conn is (as the owner). An advisory lock on
// conn makes concurrent Migrate calls (replicas starting together) take turns, as tern's own
// lock does for its part.
func migrateRiver(ctx context.Context, conn *pgx.Conn) error {
	const lock = "SELECT pg_advisory_lock(hashtextextended('velocity.river_migrate', 0))"
	if _, err := conn.Exec(ctx, lock); err != nil {
		return fmt.Errorf("migrate river: lock: %w", err)
	}
	defer func() {
		// A failed unlock leaves the lock to end with the session, which the caller closes.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtextextended('velocity.river_migrate', 0))")
	}()

	cfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	cfg.ConnConfig = conn.Config()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("migrate river: connect: %w", err)
	}
	// Closed before returning: a template database (pgtest) must have no sessions left.
	defer pool.Close()

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{
		Schema: RiverSchema,
		// River logs each applied version at info; only its warnings matter here.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate river: %w", err)
	}
	if _, err := conn.Exec(ctx, riverGrants); err != nil {
		return fmt.Errorf("migrate river: grants: %w", err)
	}
	return nil
}

// RenderMigrations returns the up SQL of every migration with its templates expanded.
func RenderMigrations() (string, error) { return velocitysql.Render() }

// SetLoginPassword sets the password of a platform login (the authenticator, the worker) as
// a SCRAM verifier, so the password itself never reaches the server. conn must be the owner,
// which created those roles.
func SetLoginPassword(ctx context.Context, conn *pgx.Conn, role, password string) error {
	if role != AuthenticatorRole && role != WorkerRole {
		return fmt.Errorf("set password: %s is not a platform login", role)
	}
	verifier, err := scramVerifier(password)
	if err != nil {
		return fmt.Errorf("set password of %s: %w", role, err)
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE "+role+" PASSWORD "+quoteLiteral(verifier)); err != nil {
		return fmt.Errorf("set password of %s: %w", role, err)
	}
	return nil
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
