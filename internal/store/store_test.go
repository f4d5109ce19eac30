package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// ordersEnv is an env with the orders schema applied (changed first by change, if given).
func ordersEnv(t *testing.T, change func(d *schemadef.Definition)) (*env, *sqlbuild.Table) {
	t.Helper()
	e := newEnv(t)
	def := orders(t)
	if change != nil {
		change(&def)
		require.NoError(t, def.Validate())
	}
	e.apply(t, def)
	return e, sqlbuild.NewTable(def.Spec)
}

// insert builds the insert of a JSON body through the record checks, as the API does.
func insert(t *testing.T, tbl *sqlbuild.Table, body string) store.Statement {
	t.Helper()
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(body), &fields))
	vals, errs := tbl.CheckRecord(fields, sqlbuild.ForCreate)
	require.Empty(t, errs)
	return stmt(tbl.Insert(uuid.NewString(), vals))
}

func TestInRequestSetsIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := newEnv(t).db
	// One connection, so the statement after the request runs where the request ran.
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 1)
	require.NoError(t, err)
	t.Cleanup(st.Close)

	req := admin()
	got := make([]string, 5)
	err = st.InRequest(ctx, req, []store.Statement{
		{SQL: `SELECT velocity.current_actor()::text`},
		{SQL: `SELECT velocity.current_actor_id()`},
		{SQL: `SELECT array_to_string(velocity.current_actor_roles(), ',')`},
		{SQL: `SELECT current_setting('velocity.reason') || '|' || current_setting('velocity.request_id')`},
		{SQL: `SELECT session_user::text || '|' || current_user::text`},
	}, func(i int, rows pgx.Rows) error {
		v, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[string])
		got[i] = v
		return err
	})
	require.NoError(t, err)

	var actor store.Actor
	require.NoError(t, json.Unmarshal([]byte(got[0]), &actor))
	require.Equal(t, req.Actor, actor)
	require.Equal(t, "user:alice", got[1])
	require.Equal(t, "platform_admin,admin", got[2])
	require.Equal(t, "testing|req-1", got[3])
	require.Equal(t, store.AuthenticatorRole+"|"+store.APIRole, got[4])

	// The settings were transaction-local: the next statement on the connection is anonymous.
	var after string
	require.NoError(t, st.API.QueryRow(ctx, `SELECT velocity.current_actor() ->> 'id'`).Scan(&after))
	require.Equal(t, "anonymous", after)
}

func TestInRequestActorCannotBeSpoofedByStatement(t *testing.T) {
	t.Parallel()
	// A statement that sets velocity.actor itself can only speak for the API, which is why the
	// settings come from verified identities only; a BI login that sets it gains nothing.
	ctx := context.Background()
	e := newEnv(t)
	login, err := pgx.Connect(ctx, e.db.DSN(store.OwnerRole))
	require.NoError(t, err)
	t.Cleanup(func() { _ = login.Close(context.Background()) })
	tx, err := login.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	_, err = tx.Exec(ctx, `SELECT set_config('velocity.actor', '{"id":"mallory","roles":["admin"]}', true)`)
	require.NoError(t, err)
	var id string
	require.NoError(t, tx.QueryRow(ctx, `SELECT velocity.current_actor() ->> 'id'`).Scan(&id))
	require.Equal(t, "db:"+store.OwnerRole, id)
}

func TestInRequestIsOneTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, tbl := ordersEnv(t, nil)
	count := func() int { return scalar[int](t, e.super, `SELECT count(*) FROM `+ordersTable) }

	// A later statement fails at run time: the insert before it is gone.
	err := e.st.InRequest(ctx, admin(), []store.Statement{
		insert(t, tbl, `{"customer_email": "a@example.com"}`),
		{SQL: `SELECT 1 / (random() * 0)::int`},
	}, drain)
	require.Error(t, err)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "22012", pgErr.Code)
	require.Equal(t, 0, count())

	// The same with a constraint that fails in the second of two inserts.
	err = e.st.InRequest(ctx, admin(), []store.Statement{
		insert(t, tbl, `{"customer_email": "a@example.com"}`),
		stmt(tbl.Insert(uuid.NewString(), sqlbuild.Values{"customer_email": ptr("b@example.com"), "status": ptr("lost")})),
	}, drain)
	require.ErrorIs(t, err, store.ErrInvalid)
	require.Equal(t, 0, count())

	// A request that succeeds commits everything, with Postgres's system fields.
	var rec map[string]any
	id := uuid.NewString()
	vals, errs := tbl.CheckRecord(map[string]json.RawMessage{"customer_email": json.RawMessage(`"d@example.com"`), "total": json.RawMessage(`12.5`)}, sqlbuild.ForCreate)
	require.Empty(t, errs)
	err = e.st.InRequest(ctx, admin(), []store.Statement{stmt(tbl.Insert(id, vals)), stmt(tbl.Get(id))},
		func(i int, rows pgx.Rows) error {
			if i == 0 {
				return nil
			}
			var raw []byte
			var version int64
			if _, err := pgx.ForEachRow(rows, []any{&raw, &version}, func() error { return nil }); err != nil {
				return err
			}
			return json.Unmarshal(raw, &rec)
		})
	require.NoError(t, err)
	require.Equal(t, id, rec["id"])
	require.Equal(t, "user:alice", rec["created_by"])
	require.EqualValues(t, 1, rec["version"])
	require.Equal(t, "pending", rec["status"], "the default")
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM `+ordersTable+` WHERE customer_email = 'd@example.com'`))
}

func TestInterpretPostgresErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, tbl := ordersEnv(t, func(d *schemadef.Definition) {
		field(t, d, "customer_email").Unique = true
	})
	require.NoError(t, e.st.InRequest(ctx, admin(), []store.Statement{insert(t, tbl, `{"customer_email": "a@example.com"}`)}, drain))

	tests := []struct {
		name       string
		req        store.Request
		stmt       store.Statement
		kind       error
		code       string
		constraint string
		column     string
	}{
		{
			name: "unique violation", req: admin(),
			stmt: insert(t, tbl, `{"customer_email": "a@example.com"}`),
			kind: store.ErrConflict, code: "23505", constraint: "sales__orders__customer_email__key",
		},
		{
			// A viewer may not create. The insert leaves customer_email out, so the field-write
			// trigger ("field write rule" below) lets it by and the policies' WITH CHECK refuses it: Postgres
			// checks them before NOT NULL.
			name: "row-level security", req: inRegion(actor("user:v", "viewer"), "eu"),
			stmt: stmt(tbl.Insert(uuid.NewString(), sqlbuild.Values{"region": ptr("eu")})),
			kind: store.ErrPermission, code: "42501",
		},
		{
			// An editor may create, but only rows of their own region (the restrictive row filter).
			name: "row filter", req: inRegion(actor("user:e", "editor"), "us"),
			stmt: stmt(tbl.Insert(uuid.NewString(), sqlbuild.Values{"region": ptr("eu")})),
			kind: store.ErrPermission, code: "42501",
		},
		{
			// The field-write trigger runs before the policies and names the field.
			name: "field write rule", req: actor("user:v", "viewer"),
			stmt: insert(t, tbl, `{"customer_email": "v@example.com"}`),
			kind: store.ErrPermission, code: "42501", column: "customer_email",
		},
		{
			name: "no privilege", req: admin(),
			stmt: store.Statement{SQL: `SELECT count(*) FROM velocity.api_keys`},
			kind: store.ErrPermission, code: "42501",
		},
		{
			name: "check violation", req: admin(),
			stmt: stmt(tbl.Insert(uuid.NewString(), sqlbuild.Values{"customer_email": ptr("c@example.com"), "status": ptr("lost")})),
			kind: store.ErrInvalid, code: "23514", constraint: "sales__orders__status__check",
		},
		{
			name: "max length", req: admin(),
			stmt: stmt(tbl.Insert(uuid.NewString(), sqlbuild.Values{"customer_email": ptr(strings.Repeat("x", 321))})),
			kind: store.ErrInvalid, code: "23514", constraint: "sales__orders__customer_email__check",
		},
		{
			name: "not null", req: admin(),
			stmt: stmt(tbl.Insert(uuid.NewString(), sqlbuild.Values{"region": ptr("eu")})),
			kind: store.ErrInvalid, code: "23502", column: "customer_email",
		},
		{
			name: "invalid text", req: admin(),
			stmt: store.Statement{SQL: `SELECT $1::text::uuid`, Args: []any{"nope"}},
			kind: store.ErrInvalid, code: "22P02",
		},
		{
			name: "out of range", req: admin(),
			stmt: store.Statement{SQL: `SELECT $1::text::integer`, Args: []any{"99999999999"}},
			kind: store.ErrInvalid, code: "22003",
		},
	}
	for _, tt := range tests {
		err := e.st.InRequest(ctx, tt.req, []store.Statement{tt.stmt}, drain)
		require.ErrorIs(t, err, tt.kind, "Interpret(%s) got %v, want %v", tt.name, err, tt.kind)
		var dbErr *store.DBError
		require.ErrorAs(t, err, &dbErr, tt.name)
		require.Equal(t, tt.code, dbErr.Code, tt.name)
		require.Equal(t, tt.constraint, dbErr.Constraint, tt.name)
		require.Equal(t, tt.column, dbErr.Column, tt.name)
		// The original stays reachable for callers that need the details.
		var pgErr *pgconn.PgError
		require.ErrorAs(t, err, &pgErr, tt.name)
		for _, other := range []error{store.ErrConflict, store.ErrPermission, store.ErrInvalid, store.ErrNotFound} {
			if other != tt.kind {
				require.NotErrorIs(t, err, other, tt.name)
			}
		}
	}
	// Only the first row is there.
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM `+ordersTable))
}

func TestInterpret(t *testing.T) {
	t.Parallel()
	require.NoError(t, store.Interpret(nil))

	err := store.Interpret(fmt.Errorf("read: %w", pgx.ErrNoRows))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, err, pgx.ErrNoRows)

	plain := errors.New("plain")
	require.Same(t, plain, store.Interpret(plain))

	// A Postgres error with no sentinel passes through unchanged.
	other := &pgconn.PgError{Code: "42P01", Message: "relation does not exist"}
	require.Same(t, error(other), store.Interpret(other))

	tests := []struct {
		code string
		want error
	}{
		{"23505", store.ErrConflict},
		{"40001", store.ErrConflict},
		{"40P01", store.ErrConflict},
		{"22009", store.ErrInvalid},
		{"55P03", store.ErrUnavailable},
		{"57014", store.ErrUnavailable},
		{"42501", store.ErrPermission},
		{"23514", store.ErrInvalid},
		{"23502", store.ErrInvalid},
		{"22P02", store.ErrInvalid},
		{"22001", store.ErrInvalid},
		{"23503", store.ErrInvalid},
	}
	for _, tt := range tests {
		pgErr := &pgconn.PgError{Code: tt.code, Message: "m", ColumnName: "c", ConstraintName: "k"}
		got := store.Interpret(fmt.Errorf("wrapped: %w", pgErr))
		require.ErrorIs(t, got, tt.want, "Interpret(%q) got %v, want %v", tt.code, got, tt.want)
		var dbErr *store.DBError
		require.ErrorAs(t, got, &dbErr)
		require.Equal(t, "c", dbErr.Column)
		require.Equal(t, "k", dbErr.Constraint)
		require.Equal(t, tt.want.Error()+": m", dbErr.Error())
	}
}
