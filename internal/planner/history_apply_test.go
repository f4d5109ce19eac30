package planner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// newHistoryFixture applies the orders example (customer_email redacted in history, an
// auditor role with read and history) to a fresh database.
func newHistoryFixture(t *testing.T) (*store.Store, *pgtest.DB, schemadef.Names) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	def := orders(t)
	def.Spec.History.Redact = []string{"customer_email"}
	def.Spec.Access.Roles["auditor"] = []string{"read", "history"}
	res, err := st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)
	require.Equal(t, store.StatusApplied, res.Status)
	return st, db, schemadef.NamesOf(def.Spec)
}

var admin = store.Request{Actor: store.Actor{ID: "user:ada", Kind: "user", Roles: []string{"admin"}}, Reason: "because", RequestID: "req-1"}

func exec(t *testing.T, st *store.Store, req store.Request, sql string, args ...any) {
	t.Helper()
	require.NoError(t, st.InRequest(context.Background(), req, []store.Statement{{SQL: sql, Args: args}}, func(int, pgx.Rows) error { return nil }))
}

type event struct {
	Op, Actor         string
	Reason, RequestID *string
	Version           int
	Image             map[string]any
	XID               string
}

func events(t *testing.T, db *pgtest.DB, n schemadef.Names, id string) []event {
	t.Helper()
	rows, err := db.Super(t).Query(context.Background(), fmt.Sprintf(
		`SELECT op, actor, reason, request_id, version, image, xid::text FROM %s WHERE record_id = $1 ORDER BY at, event_id`,
		sqlbuild.Qualified(n.Schema, n.History)), id)
	require.NoError(t, err)
	var out []event
	for rows.Next() {
		var e event
		var img []byte
		require.NoError(t, rows.Scan(&e.Op, &e.Actor, &e.Reason, &e.RequestID, &e.Version, &img, &e.XID))
		require.NoError(t, json.Unmarshal(img, &e.Image))
		out = append(out, e)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestHistoryRecordsEveryChange(t *testing.T) {
	t.Parallel()
	st, db, n := newHistoryFixture(t)
	ctx := context.Background()
	table := sqlbuild.Qualified(n.Schema, n.Table)
	id := "0193b6f0-0000-7000-8000-000000000001"

	exec(t, st, admin, `INSERT INTO `+table+` (id, customer_email, status, total) VALUES ($1, 'a@example.com', 'pending', 10)`, id)
	exec(t, st, admin, `UPDATE `+table+` SET status = 'paid' WHERE id = $1`, id)
	exec(t, st, admin, `UPDATE `+table+` SET status = 'paid' WHERE id = $1`, id) // changes nothing: no event
	exec(t, st, admin, `UPDATE `+table+` SET customer_email = 'b@example.com' WHERE id = $1`, id)
	// A psql session writes history the same way, as its own login.
	_, err := db.Super(t).Exec(ctx, `UPDATE `+table+` SET total = 11 WHERE id = $1`, id)
	require.NoError(t, err)
	exec(t, st, store.Request{Actor: admin.Actor}, `DELETE FROM `+table+` WHERE id = $1`, id)

	ev := events(t, db, n, id)
	require.Len(t, ev, 5)
	ops := []string{}
	for _, e := range ev {
		ops = append(ops, fmt.Sprintf("%s v%d", e.Op, e.Version))
	}
	require.Equal(t, []string{"INSERT v1", "UPDATE v2", "UPDATE v3", "UPDATE v4", "DELETE v4"}, ops)
	require.Equal(t, "user:ada", ev[0].Actor)
	require.Equal(t, "because", *ev[0].Reason)
	require.Equal(t, "req-1", *ev[0].RequestID)
	require.True(t, strings.HasPrefix(ev[3].Actor, "db:"), "a psql write is recorded as its login, got %q", ev[3].Actor)
	require.Nil(t, ev[4].Reason, "no reason given, none recorded")
	require.Equal(t, "paid", ev[1].Image["status"])
	require.EqualValues(t, 11, ev[4].Image["total"], "the DELETE event keeps the last image")
	require.NotEmpty(t, ev[0].XID)

	// history.redact: a keyed hash, equal while the value is, different when it changes.
	for _, e := range ev {
		require.True(t, strings.HasPrefix(e.Image["customer_email"].(string), "hmac-sha256:"), "got %v", e.Image["customer_email"])
		require.NotContains(t, e.Image["customer_email"], "example.com")
	}
	require.Equal(t, ev[0].Image["customer_email"], ev[1].Image["customer_email"])
	require.NotEqual(t, ev[1].Image["customer_email"], ev[2].Image["customer_email"])

	// Every change has its outbox row, in the same transaction.
	var outbox int
	require.NoError(t, db.Super(t).QueryRow(ctx, `SELECT count(*) FROM velocity.outbox o WHERE o.record_id = $1
		AND EXISTS (SELECT 1 FROM `+sqlbuild.Qualified(n.Schema, n.History)+` h WHERE h.record_id = o.record_id AND h.xid = o.xid AND h.version = o.version AND h.op = o.op)`, id).Scan(&outbox))
	require.Equal(t, 5, outbox)
}

func TestHistoryRolledBackWriteLeavesNothing(t *testing.T) {
	t.Parallel()
	st, db, n := newHistoryFixture(t)
	ctx := context.Background()
	table := sqlbuild.Qualified(n.Schema, n.Table)
	id := "0193b6f0-0000-7000-8000-000000000002"

	tx, err := db.Super(t).Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO `+table+` (id, customer_email) VALUES ($1, 'a@example.com')`, id)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))

	// The API's implicit transaction fails on its second statement: the first is undone too.
	err = st.InRequest(ctx, admin, []store.Statement{
		{SQL: `INSERT INTO ` + table + ` (id, customer_email) VALUES ($1, 'a@example.com')`, Args: []any{id}},
		{SQL: `SELECT 1/0`},
	}, func(int, pgx.Rows) error { return nil })
	require.Error(t, err)

	var rows, hist, outbox int
	require.NoError(t, db.Super(t).QueryRow(ctx, `SELECT (SELECT count(*) FROM `+table+`), (SELECT count(*) FROM `+
		sqlbuild.Qualified(n.Schema, n.History)+`), (SELECT count(*) FROM velocity.outbox)`).Scan(&rows, &hist, &outbox))
	require.Equal(t, [3]int{0, 0, 0}, [3]int{rows, hist, outbox})
	_ = st
}

func TestHistoryIsAppendOnly(t *testing.T) {
	t.Parallel()
	st, db, n := newHistoryFixture(t)
	ctx := context.Background()
	table := sqlbuild.Qualified(n.Schema, n.Table)
	hist := sqlbuild.Qualified(n.Schema, n.History)
	exec(t, st, admin, `INSERT INTO `+table+` (customer_email) VALUES ('a@example.com')`)

	var part string
	require.NoError(t, db.Super(t).QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE i.inhparent = $1::regclass AND EXISTS (SELECT 1 FROM `+hist+` h WHERE h.tableoid = c.oid)`, hist).Scan(&part))

	for _, role := range []string{"", "velocity_owner", "velocity_api", "velocity_worker", "velocity_r_admin"} {
		for _, target := range []string{hist, part, "velocity.outbox"} {
			for _, stmt := range []string{
				"UPDATE %s SET actor = 'forged'",
				"DELETE FROM %s",
				"TRUNCATE %s",
			} {
				t.Run(fmt.Sprintf("%s %s as %q", strings.Fields(stmt)[0], target, role), func(t *testing.T) {
					tx, err := db.Super(t).Begin(ctx)
					require.NoError(t, err)
					defer tx.Rollback(ctx)
					if role != "" {
						_, err = tx.Exec(ctx, "SET LOCAL ROLE "+role)
						require.NoError(t, err)
					}
					_, err = tx.Exec(ctx, fmt.Sprintf(stmt, target))
					require.Error(t, err, "%s succeeded as %q", fmt.Sprintf(stmt, target), role)
				})
			}
		}
	}
	var n2 int
	require.NoError(t, db.Super(t).QueryRow(ctx, `SELECT count(*) FROM `+hist+` WHERE actor <> 'forged'`).Scan(&n2))
	require.Equal(t, 1, n2)
}

// History is readable only by roles that may read records and their history.
func TestHistoryReadRules(t *testing.T) {
	t.Parallel()
	st, _, n := newHistoryFixture(t)
	ctx := context.Background()
	table := sqlbuild.Qualified(n.Schema, n.Table)
	exec(t, st, admin, `INSERT INTO `+table+` (customer_email, region) VALUES ('a@example.com', 'eu')`)

	count := func(roles ...string) int {
		var c int
		// In the row filter's region, so the roles alone decide.
		req := store.Request{Actor: store.Actor{ID: "user:x", Kind: "user", Roles: roles, Attributes: map[string]any{"region": "eu"}}}
		require.NoError(t, st.InRequest(ctx, req, []store.Statement{{SQL: `SELECT count(*) FROM ` + sqlbuild.Qualified(n.Schema, n.History)}},
			func(_ int, rows pgx.Rows) error {
				for rows.Next() {
					if err := rows.Scan(&c); err != nil {
						return err
					}
				}
				return rows.Err()
			}))
		return c
	}
	require.Equal(t, 1, count("admin"))
	require.Equal(t, 1, count("auditor"))
	require.Equal(t, 0, count("viewer"), "read without history")
	require.Equal(t, 0, count())
}

// velocity.write_op labels a write as a restore only from the API's authenticator.
func TestHistoryRestoreLabelIsTrustedOnlyFromTheAPI(t *testing.T) {
	t.Parallel()
	st, db, n := newHistoryFixture(t)
	ctx := context.Background()
	table := sqlbuild.Qualified(n.Schema, n.Table)
	id := "0193b6f0-0000-7000-8000-000000000003"
	exec(t, st, admin, `INSERT INTO `+table+` (id, customer_email) VALUES ($1, 'a@example.com')`, id)

	tx, err := db.Super(t).Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT set_config('velocity.write_op', 'RESTORE', true)`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE `+table+` SET status = 'paid' WHERE id = $1`, id)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	err = st.InRequest(ctx, admin, []store.Statement{
		{SQL: `SELECT set_config('velocity.write_op', 'RESTORE', true)`},
		{SQL: `UPDATE ` + table + ` SET status = 'pending' WHERE id = $1`, Args: []any{id}},
	}, func(int, pgx.Rows) error { return nil })
	require.NoError(t, err)

	ev := events(t, db, n, id)
	require.Equal(t, []string{"INSERT", "UPDATE", "RESTORE"}, []string{ev[0].Op, ev[1].Op, ev[2].Op})
}

// The history writer runs as the owner, so no one may attach it to a table of their own to
// forge events; and attached elsewhere by a superuser, it refuses to write.
func TestHistoryWriterCannotBeBorrowed(t *testing.T) {
	t.Parallel()
	_, db, n := newHistoryFixture(t)
	ctx := context.Background()
	writer := sqlbuild.Qualified(n.Schema, n.HistoryWriter)
	forge := func(role string) error {
		tx, err := db.Super(t).Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		if role != "" {
			_, err = tx.Exec(ctx, "SET LOCAL ROLE "+role)
			require.NoError(t, err)
		}
		_, err = tx.Exec(ctx, `CREATE TEMP TABLE forged (id uuid, version int, created_at timestamptz, updated_at timestamptz,
			created_by text, updated_by text, customer_email text, status text, region text, total numeric) ON COMMIT DROP`)
		require.NoError(t, err)
		if _, err = tx.Exec(ctx, `CREATE TRIGGER x AFTER INSERT ON forged FOR EACH ROW EXECUTE FUNCTION `+writer+`()`); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO forged VALUES (gen_random_uuid(), 99, now(), now(), 'forged', 'forged', 'x', 'paid', 'eu', 1)`)
		return err
	}
	for _, role := range []string{"velocity_r_viewer", "velocity_api", "velocity_worker"} {
		err := forge(role)
		require.ErrorContains(t, err, "permission denied for", role)
	}
	require.ErrorContains(t, forge(""), "serves", "a superuser may attach it, but it does not write")

	var events int
	require.NoError(t, db.Super(t).QueryRow(ctx, `SELECT count(*) FROM `+sqlbuild.Qualified(n.Schema, n.History)).Scan(&events))
	require.Zero(t, events)
}

// The writer runs as the owner without a SET search_path, so a session must not be able to
// make it call objects of its own: shadowing functions and operators earlier on the
// search_path, and types in pg_temp (searched first for types), are all ignored.
func TestHistoryWriterIgnoresTheCallersSearchPath(t *testing.T) {
	t.Parallel()
	_, db, n := newHistoryFixture(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.SuperuserDSN())
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, sql := range []string{
		`CREATE SCHEMA evil`,
		`CREATE TABLE evil.calls (fn text, by_user text)`,
		`GRANT USAGE ON SCHEMA evil TO PUBLIC`,
		`GRANT INSERT ON evil.calls TO PUBLIC`,
		`CREATE FUNCTION evil.spy(fn text) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO evil.calls VALUES (fn, current_user) RETURNING true $$`,
		`CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('to_jsonb') THEN '{}'::jsonb END $$`,
		`CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('clock_timestamp') THEN now() END $$`,
		`CREATE FUNCTION evil.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('lower') THEN $1 END $$`,
		`CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('nextval') THEN 1 END $$`,
		`CREATE FUNCTION evil.pg_current_xact_id() RETURNS xid8 LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('xact') THEN '1'::xid8 END $$`,
		`CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('current_setting') THEN 'x' END $$`,
		`CREATE FUNCTION evil.jsonb_build_object(text, integer, text, jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('jsonb_build_object') THEN '{}'::jsonb END $$`,
		`CREATE FUNCTION evil.teq(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.spy('=') AND $1 OPERATOR(pg_catalog.=) $2 $$`,
		`CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.teq)`,
		`CREATE FUNCTION evil.one(oid, oid) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.spy('<>') AND $1 OPERATOR(pg_catalog.<>) $2 $$`,
		`CREATE OPERATOR evil.<> (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.one)`,
		`CREATE FUNCTION evil.cat(text, text) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN evil.spy('||') THEN $1 OPERATOR(pg_catalog.||) $2 END $$`,
		`CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.cat)`,
		`CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (evil.spy('pg_temp.jsonb'))`,
		`CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (evil.spy('pg_temp.text'))`,
		`CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (evil.spy('pg_temp.uuid'))`,
		`SET search_path = evil, pg_catalog`,
		`SET velocity.reason = 'hijack?'`,
	} {
		_, err := conn.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	// The shadows work for an ordinary query in this session...
	var lowered string
	require.NoError(t, conn.QueryRow(ctx, `SELECT lower('X')`).Scan(&lowered))
	var calls int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM evil.calls`).Scan(&calls))
	require.Equal(t, 1, calls, "the session's own query does call the shadow")
	_, err = conn.Exec(ctx, `TRUNCATE evil.calls`)
	require.NoError(t, err)

	// ...but not inside the writer.
	table := sqlbuild.Qualified(n.Schema, n.Table)
	var id string
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO `+table+` (customer_email, region) VALUES ('a@example.com', 'eu') RETURNING id::pg_catalog.text`).Scan(&id))
	_, err = conn.Exec(ctx, `UPDATE `+table+` SET region = 'us' WHERE id = $1`, id)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id)
	require.NoError(t, err)
	var spied []string
	require.NoError(t, conn.QueryRow(ctx, `SELECT coalesce(array_agg(fn || ' as ' || by_user), '{}') FROM evil.calls`).Scan(&spied))
	require.Empty(t, spied, "the writer called a shadow")

	evs := events(t, db, n, id)
	require.Len(t, evs, 3)
	require.Equal(t, []string{"INSERT", "UPDATE", "DELETE"}, []string{evs[0].Op, evs[1].Op, evs[2].Op})
	require.Equal(t, "hijack?", *evs[0].Reason)
	require.Equal(t, "us", evs[1].Image["region"])
}
