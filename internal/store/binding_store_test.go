package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
)

// dbLoginScope is the scope of login's binding to role, as stored.
func dbLoginScope(t *testing.T, e *env, role, login string) map[string]any {
	t.Helper()
	return scalar[map[string]any](t, e.super, `SELECT scope FROM velocity.role_bindings
		WHERE subject_kind = 'db_login' AND subject = $1 AND role = $2`, login, role)
}

// A database login's binding keeps the scope it was granted with, the login reads it as its
// actor's attributes, and granting the role again replaces it (nil: none). Each change is an
// audit entry.
func TestGrantDBLoginScope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	login := "bi_scope_" + e.db.Name[len(e.db.Name)-6:]
	pw := "s3cret-pass"

	scope := map[string]any{"region": "eu", "tenure_years": 3, "trusted": true, "regions": []any{"eu", "uk"}}
	id, err := e.st.GrantDBLogin(ctx, admin(), "viewer", login, &pw, scope)
	require.NoError(t, err)
	want := map[string]any{"region": "eu", "tenure_years": float64(3), "trusted": true, "regions": []any{"eu", "uk"}}
	require.Equal(t, want, dbLoginScope(t, e, "viewer", login))

	conn, err := pgx.Connect(ctx, e.db.LoginDSN(login, pw))
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()
	attributes := func() map[string]any {
		t.Helper()
		var attrs map[string]any
		require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.current_actor() -> 'attributes'`).Scan(&attrs))
		return attrs
	}
	require.Equal(t, want, attributes())
	var region string
	var regions []string
	require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.actor_attribute_text('region'), velocity.actor_attribute_texts('regions')`).Scan(&region, &regions))
	require.Equal(t, "eu", region)
	require.Equal(t, []string{"eu", "uk"}, regions)

	// Again, with another scope: the same binding, its scope replaced, not merged.
	again, err := e.st.GrantDBLogin(ctx, admin(), "viewer", login, nil, map[string]any{"region": "us"})
	require.NoError(t, err)
	require.Equal(t, id, again)
	require.Equal(t, map[string]any{"region": "us"}, dbLoginScope(t, e, "viewer", login))
	require.Equal(t, map[string]any{"region": "us"}, attributes())

	// Again without a scope: none is left.
	_, err = e.st.GrantDBLogin(ctx, admin(), "viewer", login, nil, nil)
	require.NoError(t, err)
	require.Equal(t, map[string]any{}, dbLoginScope(t, e, "viewer", login))
	require.Equal(t, map[string]any{}, attributes())
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*)::int FROM velocity.role_bindings WHERE subject = $1`, login))

	// The grant and both replacements are audited with the scope they left.
	scopes := scalar[[]string](t, e.super, `SELECT array_agg(action || ' ' || (detail -> 'scope')::text ORDER BY xid, id)
		FROM velocity.audit_entry WHERE action LIKE 'binding.%' AND record_id = $1`, "db_login:"+login)
	require.Equal(t, []string{
		`binding.grant {"region": "eu", "regions": ["eu", "uk"], "trusted": true, "tenure_years": 3}`,
		`binding.update {"region": "us"}`,
		`binding.update {}`,
	}, scopes)
}

// A scope that is not an object of attribute names to strings, numbers, booleans or arrays of
// strings is refused with the column named, before anything is created.
func TestGrantDBLoginRefusesBadScope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	login := "bi_badscope_" + e.db.Name[len(e.db.Name)-6:]
	for name, scope := range map[string]map[string]any{
		"key in capitals":     {"Region": "eu"},
		"key from a digit":    {"1region": "eu"},
		"null value":          {"region": nil},
		"object value":        {"region": map[string]any{"name": "eu"}},
		"array of numbers":    {"regions": []any{"eu", 1}},
		"array of arrays":     {"regions": []any{[]any{"eu"}}},
		"array with a null":   {"regions": []any{"eu", nil}},
		"one good, one wrong": {"region": "eu", "team": map[string]any{}},
	} {
		_, err := e.st.GrantDBLogin(ctx, admin(), "viewer", login, nil, scope)
		require.ErrorIs(t, err, store.ErrInvalid, name)
		var dbErr *store.DBError
		require.True(t, errors.As(err, &dbErr), name)
		require.Equal(t, "scope", dbErr.Column, name)
		require.Equal(t, "22023", dbErr.Code, name)
	}
	// From psql, a scope that is not an object at all; SQL NULL is no scope.
	for _, scope := range []string{`"eu"`, `["eu"]`, `1`, `null`} {
		_, err := e.super.Exec(ctx, `SELECT velocity.db_login_grant('viewer', $1, NULL, $2::jsonb)`, login, scope)
		var pgErr *pgconn.PgError
		require.True(t, errors.As(err, &pgErr), scope)
		require.Equal(t, "22023", pgErr.Code, scope)
		require.Equal(t, "scope", pgErr.ColumnName, scope)
	}
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*)::int FROM pg_roles WHERE rolname = $1`, login), "no login was created")
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*)::int FROM velocity.role_bindings WHERE subject = $1`, login))
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*)::int FROM velocity.db_logins WHERE login = $1`, login))

	_, err := e.super.Exec(ctx, `SELECT velocity.db_login_grant('viewer', $1, NULL, NULL)`, login)
	require.NoError(t, err)
	require.Equal(t, map[string]any{}, dbLoginScope(t, e, "viewer", login))
	_, err = e.super.Exec(ctx, `SELECT velocity.db_login_grant('viewer', $1)`, login)
	require.NoError(t, err, "the old two- and three-argument calls still resolve")
}

// dbLoginGrantACL is who may execute velocity.db_login_grant, besides its owner.
const dbLoginGrantACL = `SELECT p.oid::regprocedure::text,
	       array(SELECT coalesce(r.rolname, 'PUBLIC') FROM aclexplode(p.proacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
	              WHERE a.privilege_type = 'EXECUTE' ORDER BY 1)
	  FROM pg_proc p WHERE p.proname = 'db_login_grant' AND p.pronamespace = 'velocity'::regnamespace`

// A database migrated to 012 has db_login_grant(text, text, text); 013 replaces it with the
// signature that takes a scope and keeps who may execute it: velocity_api, not PUBLIC.
func TestDBLoginGrantMigrationFromOldSignature(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	var sig string
	var acl []string
	require.NoError(t, e.super.QueryRow(ctx, dbLoginGrantACL).Scan(&sig, &acl))
	require.Equal(t, "velocity.db_login_grant(text,text,text,jsonb)", sig)
	require.Equal(t, []string{"velocity_api", "velocity_owner"}, acl)

	// Put back the function as 012 left it (its body does not matter here), as the owner.
	owner, err := pgx.Connect(ctx, e.db.DSN(store.OwnerRole))
	require.NoError(t, err)
	defer func() { _ = owner.Close(ctx) }()
	for _, sql := range []string{
		`DROP FUNCTION velocity.db_login_grant(text, text, text, jsonb)`,
		`CREATE FUNCTION velocity.db_login_grant(p_role text, p_login text, p_password text DEFAULT NULL) RETURNS uuid
		   LANGUAGE sql SECURITY DEFINER AS 'SELECT NULL::uuid'`,
		`REVOKE EXECUTE ON FUNCTION velocity.db_login_grant(text, text, text) FROM PUBLIC`,
		`GRANT EXECUTE ON FUNCTION velocity.db_login_grant(text, text, text) TO velocity_api`,
	} {
		_, err := owner.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	_, err = e.super.Exec(ctx, "UPDATE "+store.MigrationTable+" SET version = 12")
	require.NoError(t, err)

	require.NoError(t, store.MigrateTo(ctx, owner, 13))
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*)::int FROM pg_proc WHERE proname = 'db_login_grant'`), "the old signature is gone")
	require.NoError(t, e.super.QueryRow(ctx, dbLoginGrantACL).Scan(&sig, &acl))
	require.Equal(t, "velocity.db_login_grant(text,text,text,jsonb)", sig)
	require.Equal(t, []string{"velocity_api", "velocity_owner"}, acl)
	for role, may := range map[string]bool{"velocity_api": true, store.WorkerRole: false, "public": false} {
		require.Equal(t, may, scalar[bool](t, e.super, `SELECT has_function_privilege($1, 'velocity.db_login_grant(text,text,text,jsonb)', 'EXECUTE')`, role), role)
	}

	// The API's path works on the upgraded database, with a scope and without.
	login := "bi_upgraded_" + e.db.Name[len(e.db.Name)-6:]
	_, err = e.st.GrantDBLogin(ctx, admin(), "viewer", login, nil, map[string]any{"region": "eu"})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"region": "eu"}, dbLoginScope(t, e, "viewer", login))
	_, err = e.st.GrantDBLogin(ctx, admin(), "editor", login, nil, nil)
	require.NoError(t, err)
	require.Equal(t, map[string]any{}, dbLoginScope(t, e, "editor", login))
}
