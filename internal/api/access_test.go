package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

func TestAuthenticationAndLayer1(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{KeyCacheTTL: time.Millisecond})
	e.apply("testdata/orders.yaml")
	viewer, editor, stranger := e.key("viewer"), e.key("editor"), e.key("auditor")

	r := e.do("POST", ordersPath, editor, map[string]any{"customer_email": "e@example.com"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)

	// No credential, a malformed one, an unknown one: 401, never anonymous access.
	requireProblem(t, e.do("GET", ordersPath, "", nil), http.StatusUnauthorized)
	requireProblem(t, e.do("GET", ordersPath, "not-a-key", nil), http.StatusUnauthorized)
	requireProblem(t, e.do("GET", ordersPath, "vk_"+strings.Repeat("A", 43), nil), http.StatusUnauthorized)

	// Layer 1: verbs per role, a fast 403 naming the layer.
	for _, c := range []struct {
		key, method, path string
		body              any
	}{
		{viewer, "POST", ordersPath, map[string]any{"customer_email": "v@example.com"}},
		{viewer, "PATCH", ordersPath + "/" + id, map[string]any{"status": "paid"}},
		{editor, "DELETE", ordersPath + "/" + id, nil},
		{stranger, "GET", ordersPath, nil},
		{stranger, "GET", ordersPath + "/" + id, nil},
		{stranger, "POST", ordersPath + "/query", map[string]any{}},
		{viewer, "GET", "/admin/schemas", nil},
		{editor, "POST", "/admin/api-keys", map[string]any{"name": "x", "roles": []string{"admin"}}},
	} {
		p := requireProblem(t, e.do(c.method, c.path, c.key, c.body), http.StatusForbidden)
		require.EqualValues(t, 1, p["layer"], "%s %s", c.method, c.path)
	}
	// Holding the schema role "admin" gives every verb on the object and nothing on the
	// platform: platform_admin is a separate role no schema may define (ADR-008).
	schemaAdmin := e.key("admin")
	require.Equal(t, http.StatusOK, e.do("GET", ordersPath+"/"+id, schemaAdmin, nil).status)
	for _, path := range []string{"/admin/schemas", "/admin/api-keys", "/admin/role-bindings"} {
		p := requireProblem(t, e.do("GET", path, schemaAdmin, nil), http.StatusForbidden)
		require.EqualValues(t, 1, p["layer"])
	}
	require.Equal(t, http.StatusOK, e.do("GET", ordersPath+"/"+id, viewer, nil).status)
	require.Equal(t, http.StatusOK, e.do("PATCH", ordersPath+"/"+id, editor, map[string]any{"status": "paid"}).status)

	// Revocation: the key stops working (the cache here is 1ms).
	r = e.do("GET", "/admin/api-keys", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.NotContains(t, string(r.body), viewer, "a listing never shows a secret")
	var viewerID string
	for _, it := range r.json(t)["items"].([]any) {
		k := it.(map[string]any)
		require.NotContains(t, k, "key")
		require.NotContains(t, k, "key_hash")
		if k["name"] == "test viewer" {
			viewerID = k["id"].(string)
		}
	}
	require.NotEmpty(t, viewerID)
	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/admin/api-keys/"+viewerID, e.admin, nil).status)
	requireProblem(t, e.do("DELETE", "/admin/api-keys/"+viewerID, e.admin, nil), http.StatusNotFound)
	time.Sleep(5 * time.Millisecond)
	requireProblem(t, e.do("GET", ordersPath+"/"+id, viewer, nil), http.StatusUnauthorized)
}

func TestAPIKeyAdmin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})

	r := e.do("POST", "/admin/api-keys", e.admin, map[string]any{"name": "ci", "roles": []string{"viewer"}, "ttl": "720h", "allow_ips": []string{"127.0.0.1/32", "::1"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	k := r.json(t)
	secret := k["key"].(string)
	require.True(t, strings.HasPrefix(secret, "vk_"))
	require.NotNil(t, k["expires_at"])
	require.Equal(t, http.StatusForbidden, e.do("GET", "/admin/schemas", secret, nil).status, "authenticated from 127.0.0.1, denied by role")

	// Only the SHA-256 of the secret is stored.
	var stored int
	require.NoError(t, e.super.QueryRow(context.Background(),
		`SELECT count(*) FROM velocity.api_keys WHERE key_hash = sha256(convert_to($1, 'UTF8')) AND hint = right($1, 4)`, secret).Scan(&stored))
	require.Equal(t, 1, stored)
	var leaked int
	require.NoError(t, e.super.QueryRow(context.Background(),
		`SELECT count(*) FROM velocity.api_keys k WHERE row_to_json(k)::text LIKE '%' || $1 || '%'`, secret[3:20]).Scan(&leaked))
	require.Equal(t, 0, leaked)

	// A key that may only be used from elsewhere, and an expired key.
	r = e.do("POST", "/admin/api-keys", e.admin, map[string]any{"name": "far", "roles": []string{"admin"}, "allow_ips": []string{"10.0.0.0/8"}})
	require.Equal(t, http.StatusCreated, r.status)
	requireProblem(t, e.do("GET", "/admin/schemas", r.json(t)["key"].(string), nil), http.StatusUnauthorized)
	r = e.do("POST", "/admin/api-keys", e.admin, map[string]any{"name": "brief", "roles": []string{"admin"}, "ttl": "1ms"})
	require.Equal(t, http.StatusCreated, r.status)
	time.Sleep(10 * time.Millisecond)
	p := requireProblem(t, e.do("GET", "/admin/schemas", r.json(t)["key"].(string), nil), http.StatusUnauthorized)
	require.Contains(t, p["detail"], "expired")

	// Bad input names the field.
	for _, c := range []struct {
		body any
		loc  string
	}{
		{map[string]any{"name": "x", "roles": []string{"viewer"}, "ttl": "forever"}, "body.ttl"},
		{map[string]any{"name": "x", "roles": []string{"viewer"}, "allow_ips": []string{"not-an-ip"}}, "body.allow_ips[0]"},
		{map[string]any{"name": "x", "roles": []string{"Bad Role"}}, "body.roles"},
		{map[string]any{"name": "x", "roles": []string{}}, "body.roles"},
		{map[string]any{"name": "x", "roles": []string{"viewer"}, "extra": 1}, "body.extra"},
	} {
		p := requireProblem(t, e.do("POST", "/admin/api-keys", e.admin, c.body), http.StatusUnprocessableEntity)
		require.Contains(t, locations(p), c.loc)
	}
	requireProblem(t, e.do("DELETE", "/admin/api-keys/nope", e.admin, nil), http.StatusBadRequest)
}

// TestActorCannotBeSpoofed checks principle 4: velocity.actor is trusted only from the
// authenticator's sessions; any other login that sets it gains nothing.
func TestActorCannotBeSpoofed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	require.Equal(t, http.StatusCreated, e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "s@example.com"}).status)
	ctx := context.Background()

	// A BI login bound to no role.
	r := e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": "spoof_" + e.db.Name[len(e.db.Name)-6:], "password": "spoof-pass"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	login := r.json(t)["login"].(string)
	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/admin/db-logins/"+login+"/roles/viewer", e.admin, nil).status)

	conn, err := pgx.Connect(ctx, e.db.LoginDSN(login, "spoof-pass"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `SELECT set_config('velocity.actor', '{"id":"root","roles":["admin"],"attributes":{}}', false)`)
	require.NoError(t, err)
	var actor string
	require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.current_actor()::text`).Scan(&actor))
	require.Contains(t, actor, `"roles": []`)
	require.Contains(t, actor, `"db:`+login)
	// Nor do the fast-path settings, nor an operator of its own, in a scratch schema an
	// analyst may well have, that would make the session_user test true: the actor functions
	// are inlined with schema-qualified operators.
	_, err = e.super.Exec(ctx, `CREATE SCHEMA scratch AUTHORIZATION `+login)
	require.NoError(t, err)
	for _, stmt := range []string{
		`SELECT set_config('velocity.actor_roles', '{admin}', false), set_config('velocity.actor_id', 'root', false)`,
		`CREATE FUNCTION scratch.always(name, name) RETURNS boolean LANGUAGE sql AS 'SELECT true'`,
		`CREATE OPERATOR scratch.= (LEFTARG = name, RIGHTARG = name, FUNCTION = scratch.always)`,
		`SET search_path = scratch, pg_catalog`,
	} {
		_, err = conn.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	var roles []string
	var id string
	require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.current_actor_roles(), velocity.current_actor_id()`).Scan(&roles, &id))
	require.Empty(t, roles)
	require.Equal(t, "db:"+login, id)
	_, err = conn.Exec(ctx, `SELECT * FROM acme__shop.sales__orders__read`)
	require.ErrorContains(t, err, "permission denied", "unbound login has no grants")
	_, err = conn.Exec(ctx, `SELECT velocity.api_key_list()`)
	require.ErrorContains(t, err, "permission denied")
	// A temporary view shadowing pg_roles does not make it a superuser to is_admin().
	for _, stmt := range []string{
		`SET search_path = pg_catalog`,
		`CREATE TEMP VIEW pg_roles AS SELECT session_user::name AS rolname, true AS rolsuper`,
		`GRANT SELECT ON pg_temp.pg_roles TO PUBLIC`,
	} {
		_, err = conn.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	var isAdmin bool
	require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.is_admin()`).Scan(&isAdmin))
	require.False(t, isAdmin)

	// The authenticator itself has no rights until it switches to velocity_api...
	auth, err := pgx.Connect(ctx, e.db.DSN("velocity_authenticator"))
	require.NoError(t, err)
	defer auth.Close(ctx)
	_, err = auth.Exec(ctx, `SELECT * FROM acme__shop.sales__orders`)
	require.ErrorContains(t, err, "permission denied")
	// ...and as velocity_api without an actor it sees no rows (RLS, layer 7).
	_, err = auth.Exec(ctx, `SET ROLE velocity_api`)
	require.NoError(t, err)
	var n int
	require.NoError(t, auth.QueryRow(ctx, `SELECT count(*) FROM acme__shop.sales__orders__read`).Scan(&n))
	require.Equal(t, 0, n)
	// The owner is subject to RLS as well (FORCE ROW LEVEL SECURITY).
	require.NoError(t, e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM acme__shop.sales__orders`).Scan(&n))
	require.Equal(t, 0, n)
}

// TestDBLoginScopeThroughTheAPI: POST /admin/db-logins gives a login scope attributes, which
// the login reads as its actor's attributes (what row filters read); granting again replaces
// them, and a bad scope is a 422 at body.scope.
func TestDBLoginScopeThroughTheAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	ctx := context.Background()
	login := "bi_scope_" + e.db.Name[len(e.db.Name)-6:]

	r := e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": login, "password": "s3cret-pass",
		"scope": map[string]any{"region": "eu", "tenure_years": 3, "regions": []string{"eu", "uk"}}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	got := r.json(t)
	require.Equal(t, login, got["login"])
	require.Equal(t, map[string]any{"region": "eu", "tenure_years": float64(3), "regions": []any{"eu", "uk"}}, got["scope"])

	attributes := func() map[string]any {
		t.Helper()
		conn, err := pgx.Connect(ctx, e.db.LoginDSN(login, "s3cret-pass"))
		require.NoError(t, err)
		defer func() { _ = conn.Close(ctx) }()
		var actor struct {
			ID         string         `json:"id"`
			Kind       string         `json:"kind"`
			Roles      []string       `json:"roles"`
			Attributes map[string]any `json:"attributes"`
		}
		require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.current_actor()`).Scan(&actor))
		require.Equal(t, "db:"+login, actor.ID)
		require.Equal(t, "db_login", actor.Kind)
		require.Equal(t, []string{"viewer"}, actor.Roles)
		var viaPath map[string]any
		require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.current_actor() -> 'attributes'`).Scan(&viaPath))
		require.Equal(t, actor.Attributes, viaPath)
		return viaPath
	}
	require.Equal(t, map[string]any{"region": "eu", "tenure_years": float64(3), "regions": []any{"eu", "uk"}}, attributes())

	// The binding lists with its scope.
	r = e.do("GET", "/admin/role-bindings", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	var list struct {
		Items []struct {
			SubjectKind string         `json:"subject_kind"`
			Subject     string         `json:"subject"`
			Scope       map[string]any `json:"scope"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal(r.body, &list))
	var listed []map[string]any
	for _, b := range list.Items {
		if b.SubjectKind == "db_login" && b.Subject == login {
			listed = append(listed, b.Scope)
		}
	}
	require.Equal(t, []map[string]any{{"region": "eu", "tenure_years": float64(3), "regions": []any{"eu", "uk"}}}, listed)

	// Granting again replaces the scope; without one, none is left. The password stays.
	r = e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": login, "scope": map[string]any{"region": "us"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, map[string]any{"region": "us"}, r.json(t)["scope"])
	require.Equal(t, map[string]any{"region": "us"}, attributes())
	r = e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": login})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, map[string]any{}, r.json(t)["scope"])
	require.Equal(t, map[string]any{}, attributes())

	// A bad scope is refused with its place named, and changes nothing.
	for _, scope := range []any{
		map[string]any{"Region": "eu"},
		map[string]any{"region": nil},
		map[string]any{"region": map[string]any{"name": "eu"}},
		map[string]any{"regions": []any{"eu", 7}},
	} {
		p := requireProblem(t, e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": login, "scope": scope}), http.StatusUnprocessableEntity)
		require.Equal(t, []string{"body.scope"}, locations(p), "%v", scope)
		require.Contains(t, p["detail"], "scope must be an object", "%v", scope)
	}
	p := requireProblem(t, e.do("POST", "/admin/db-logins", e.admin, `{"role": "viewer", "login": "`+login+`", "scope": ["region=eu"]}`), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.scope"}, locations(p), "not an object")
	require.Equal(t, map[string]any{}, attributes())
}

// TestDBLoginSeesWhatItsBindingAllows: a BI login reads and writes under the same rules as
// the API.
func TestDBLoginSeesWhatItsBindingAllows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	for _, email := range []string{"a@example.com", "b@example.com"} {
		require.Equal(t, http.StatusCreated, e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": email}).status)
	}
	ctx := context.Background()
	suffix := e.db.Name[len(e.db.Name)-6:]
	viewer, editor := "bi_view_"+suffix, "bi_edit_"+suffix

	for login, role := range map[string]string{viewer: "viewer", editor: "editor"} {
		r := e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": role, "login": login, "password": "s3cret-pass"})
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	}
	r := e.do("GET", "/admin/role-bindings", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), viewer)

	v, err := pgx.Connect(ctx, e.db.LoginDSN(viewer, "s3cret-pass"))
	require.NoError(t, err)
	defer v.Close(ctx)
	var n int
	require.NoError(t, v.QueryRow(ctx, `SELECT count(*) FROM acme__shop.sales__orders__read`).Scan(&n))
	require.Equal(t, 2, n)
	_, err = v.Exec(ctx, `INSERT INTO acme__shop.sales__orders (customer_email) VALUES ('v@example.com')`)
	require.ErrorContains(t, err, "permission denied")
	_, err = v.Exec(ctx, `SELECT customer_email FROM acme__shop.sales__orders`)
	require.ErrorContains(t, err, "permission denied", "BI logins read through the view, not the table")

	ed, err := pgx.Connect(ctx, e.db.LoginDSN(editor, "s3cret-pass"))
	require.NoError(t, err)
	defer ed.Close(ctx)
	_, err = ed.Exec(ctx, `INSERT INTO acme__shop.sales__orders (customer_email) VALUES ('ed@example.com')`)
	require.NoError(t, err)
	var createdBy string
	var version int
	require.NoError(t, ed.QueryRow(ctx, `SELECT created_by, version FROM acme__shop.sales__orders__read WHERE customer_email = 'ed@example.com'`).Scan(&createdBy, &version))
	require.Equal(t, "db:"+editor, createdBy, "system fields are kept by Postgres for direct SQL too")
	tag, err := ed.Exec(ctx, `UPDATE acme__shop.sales__orders SET status = 'paid' WHERE customer_email = 'ed@example.com'`)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
	require.NoError(t, ed.QueryRow(ctx, `SELECT version FROM acme__shop.sales__orders__read WHERE customer_email = 'ed@example.com'`).Scan(&version))
	require.Equal(t, 2, version)
	_, err = ed.Exec(ctx, `DELETE FROM acme__shop.sales__orders`)
	require.ErrorContains(t, err, "permission denied", "editor has no delete verb")
	// Setting velocity.actor gains the editor nothing.
	_, err = ed.Exec(ctx, `SELECT set_config('velocity.actor', '{"id":"x","roles":["admin"],"attributes":{}}', false)`)
	require.NoError(t, err)
	_, err = ed.Exec(ctx, `DELETE FROM acme__shop.sales__orders`)
	require.ErrorContains(t, err, "permission denied")

	// Revoking the binding removes access.
	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/admin/db-logins/"+viewer+"/roles/viewer", e.admin, nil).status)
	v2, err := pgx.Connect(ctx, e.db.LoginDSN(viewer, "s3cret-pass"))
	require.NoError(t, err)
	defer v2.Close(ctx)
	_, err = v2.Exec(ctx, `SELECT count(*) FROM acme__shop.sales__orders__read`)
	require.ErrorContains(t, err, "permission denied")

	// Roles Velocity did not create are never bound or given a password: an admin could
	// otherwise take over a login that holds other rights.
	_, err = e.super.Exec(ctx, `CREATE ROLE carol_`+suffix+` LOGIN; GRANT pg_read_server_files TO carol_`+suffix)
	require.NoError(t, err)
	p := requireProblem(t, e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": "carol_" + suffix, "password": "takeover123"}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.login"}, locations(p))
	require.Contains(t, p["detail"], "not created by Velocity")
	// Nor one Velocity created that has since been given other rights.
	_, err = e.super.Exec(ctx, `GRANT pg_read_server_files TO `+editor)
	require.NoError(t, err)
	p = requireProblem(t, e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": editor}), http.StatusUnprocessableEntity)
	require.Contains(t, p["detail"], "rights beyond Velocity roles")

	p = requireProblem(t, e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "platform_admin", "login": "root_" + suffix}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.role"}, locations(p))

	// Bad logins are refused with the field named.
	for _, login := range []string{"postgres", "velocity_owner", "Robert'); DROP ROLE x; --", "pg_read_all_data"} {
		p := requireProblem(t, e.do("POST", "/admin/db-logins", e.admin, map[string]any{"role": "viewer", "login": login}), http.StatusUnprocessableEntity)
		require.Equal(t, []string{"body.login"}, locations(p), login)
	}
}
