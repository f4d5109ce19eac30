package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	velocitysql "github.com/velocitydev/velocity/sql"
)

// MigrationTable is where tern records the platform's migration version.
const MigrationTable = "velocity.schema_migrations"

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

// Migrate applies the platform migrations on conn, which must be the owner role.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
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
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// RenderMigrations returns the up SQL of every migration with its templates expanded.
func RenderMigrations() (string, error) { return velocitysql.Render() }

// SetLoginPassword sets the password of a platform login (the authenticator, the worker) as
// a SCRAM verifier, so the password itself never reaches the server. conn must be the owner,
// which created those roles.
func SetLoginPassword(ctx context.Context, conn *pgx.Conn, role, password string) error {
	if role != AuthenticatorRole && role != "velocity_worker" {
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
