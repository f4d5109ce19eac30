package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

// A database migrated before 005 (op as text with a CHECK, writers passing text) upgrades in
// place: its history keeps every event, op becomes the enum everywhere, the CHECKs go, and the
// old writers go on recording changes.
func TestMigrateEventOpUpgradesExistingHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	def := orders(t)
	e.apply(t, def)
	names := schemadef.NamesOf(def.Spec)
	hist := pgx.Identifier{names.Schema, names.History}.Sanitize()
	histView := pgx.Identifier{names.Schema, names.HistoryView}.Sanitize()
	writer := pgx.Identifier{names.Schema, names.HistoryWriter}.Sanitize()
	insert := func(email string) {
		t.Helper()
		err := e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ($1, 'eu')`, Args: []any{email}}}, drain)
		require.NoError(t, err)
	}

	// Put the database back the way 004 left it.
	const ops = "('INSERT', 'UPDATE', 'DELETE', 'RESTORE', 'PURGE')"
	src := scalar[string](t, e.super, "SELECT pg_get_functiondef($1::regproc)", writer)
	// The writer of 004 passed op as text.
	textOps := strings.NewReplacer("'DELETE'::velocity.event_op", "'DELETE'::text", "'RESTORE'::velocity.event_op", "'RESTORE'::text",
		"TG_OP::velocity.event_op", "TG_OP::text")
	require.Contains(t, src, "TG_OP::velocity.event_op")
	for _, sql := range []string{
		// 004 had no history view (it came with 011), and the view's op would stop the ALTERs.
		"DROP VIEW " + histView,
		"ALTER TABLE velocity.outbox ALTER COLUMN op TYPE text, ADD CONSTRAINT outbox_op_check CHECK (op IN " + ops + ")",
		"ALTER TABLE " + hist + " ALTER COLUMN op TYPE text, ADD CHECK (op IN " + ops + ")",
		textOps.Replace(src),
		"DROP CAST (text AS velocity.event_op)",
		"DROP TYPE velocity.event_op",
		"UPDATE " + store.MigrationTable + " SET version = 4",
	} {
		_, err := e.super.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	insert("before@example.com")
	checks := `SELECT count(*)::int FROM pg_constraint WHERE contype = 'c' AND conrelid IN ('velocity.outbox'::regclass, $1::regclass)`
	require.Equal(t, 2, scalar[int](t, e.super, checks, hist))

	owner, err := pgx.Connect(ctx, e.db.DSN(store.OwnerRole))
	require.NoError(t, err)
	defer owner.Close(ctx)
	// Only 005: the writer stays as 004 generated it (Migrate would refresh it).
	require.NoError(t, store.MigrateTo(ctx, owner, 5))

	// Every op column, the partitions' included, is the enum now, and no CHECK is left.
	types := scalar[[]string](t, e.super, `
		SELECT array_agg(DISTINCT format_type(a.atttypid, a.atttypmod)) FROM pg_attribute a
		 WHERE a.attname = 'op' AND (a.attrelid = 'velocity.outbox'::regclass OR a.attrelid = $1::regclass
		    OR a.attrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = $1::regclass))`, hist)
	require.Equal(t, []string{"velocity.event_op"}, types)
	require.Equal(t, 0, scalar[int](t, e.super, checks, hist))

	// The writer generated before the migration still records changes, through the cast.
	insert("after@example.com")
	require.Equal(t, []string{"INSERT", "INSERT"}, scalar[[]string](t, e.super, "SELECT array_agg(op::text ORDER BY event_id) FROM "+hist))
	require.Equal(t, 2, scalar[int](t, e.super, "SELECT count(*)::int FROM velocity.outbox WHERE op = 'INSERT'"))

	// The enum still admits only the five ops.
	_, err = e.super.Exec(ctx, `INSERT INTO velocity.outbox (id, xid, at, schema_key, record_id, op, version)
		VALUES (0, pg_current_xact_id(), now(), 'x', gen_random_uuid(), 'BOGUS', 1)`)
	require.ErrorContains(t, err, "invalid input value for enum velocity.event_op")
}

// Migrate brings the history writer of every applied schema up to the planner's current
// one (here: a writer from before audit entries), and leaves writers alone that are current.
func TestMigrateRefreshesHistoryWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	def := orders(t)
	e.apply(t, def)
	names := schemadef.NamesOf(def.Spec)
	writer := pgx.Identifier{names.Schema, names.HistoryWriter}.Sanitize()
	_, err := e.super.Exec(ctx, planner.HistoryWriter(def.Spec, planner.WriterOptions{NoAudit: true}))
	require.NoError(t, err)
	src := func() string {
		return scalar[string](t, e.super, "SELECT prosrc FROM pg_proc WHERE oid = $1::regproc", writer)
	}
	require.NotContains(t, src(), "audit_entry")

	owner, err := pgx.Connect(ctx, e.db.DSN(store.OwnerRole))
	require.NoError(t, err)
	defer owner.Close(ctx)
	require.NoError(t, store.Migrate(ctx, owner))
	require.Contains(t, src(), "audit_entry")
	version := func() string {
		return scalar[string](t, e.super, "SELECT xmin::text FROM pg_proc WHERE oid = $1::regproc", writer)
	}
	before := version()
	require.NoError(t, store.Migrate(ctx, owner))
	require.Equal(t, before, version(), "a current writer is not replaced")

	err = e.st.InRequest(ctx, admin(), []store.Statement{{SQL: `INSERT INTO acme__shop.sales__orders (customer_email, region) VALUES ('a@example.com', 'eu')`}}, drain)
	require.NoError(t, err)
	require.Equal(t, 1, scalar[int](t, e.super, "SELECT count(*)::int FROM velocity.audit_entry WHERE action = 'record.insert'"))
}
