package cli

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// realAPI is a real API on a real Postgres, and the CLI settings that reach it as an admin.
type realAPI struct {
	db    *pgtest.DB
	st    *store.Store
	hs    *httptest.Server
	boot  store.Request
	admin string
	env   map[string]string
}

func newRealAPI(t *testing.T) *realAPI {
	t.Helper()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	srv, err := api.New(ctx, st, api.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close(context.Background()) }) // before the store closes
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	boot := store.Request{Actor: store.Actor{ID: "test", Kind: "system", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}
	admin, err := st.CreateAPIKey(ctx, boot, "cli admin", []string{"platform_admin", "admin"}, 0, nil)
	require.NoError(t, err)
	return &realAPI{db: db, st: st, hs: hs, boot: boot, admin: admin.Secret,
		env: map[string]string{EnvAPIURL: hs.URL, EnvAPIKey: admin.Secret}}
}

// TestCLIAgainstRealAPI drives the CLI end to end: a real API on a real Postgres.
func TestCLIAgainstRealAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRealAPI(t)
	db, st, hs, boot, env := r.db, r.st, r.hs, r.boot, r.env

	dir := t.TempDir()
	orders, err := os.ReadFile("../../examples/orders.yaml")
	require.NoError(t, err)
	file := writeFile(t, filepath.Join(dir, "orders.yaml"), string(orders))

	res := runEnv(t, env, "schema", "apply", "-f", file, "--dry-run")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "dry_run")
	require.Contains(t, res.stdout, `CREATE TABLE "acme__shop"."sales__orders"`)

	res = runEnv(t, env, "schema", "apply", "-f", dir, "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var applied []map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &applied))
	require.Equal(t, "applied", applied[0]["status"])

	res = runEnv(t, env, "schema", "list")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "acme.shop.sales.orders")
	res = runEnv(t, env, "schema", "get", "orders")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "customer_email")
	res = runEnv(t, env, "schema", "diff", "-f", file)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "unchanged")

	// A bad document fails with exit 1 and the field path.
	bad := writeFile(t, filepath.Join(t.TempDir(), "bad.yaml"), strings.Replace(string(orders), "type: decimal", "type: strng", 1))
	res = runEnv(t, env, "schema", "apply", "-f", bad)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, `unknown type "strng"`)

	// api-key create / list / revoke.
	res = runEnv(t, env, "api-key", "create", "--name", "reporting", "--role", "viewer", "--ttl", "24h", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var key map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &key))
	require.True(t, strings.HasPrefix(key["key"].(string), "vk_"))
	res = runEnv(t, env, "api-key", "list")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, "reporting")
	require.NotContains(t, res.stdout, key["key"].(string))
	res = runEnv(t, env, "api-key", "revoke", key["id"].(string))
	require.Equal(t, 0, res.code, res.stderr)

	// grant --to-db-login: the login reads the schema's view under its binding.
	login := "cli_bi_" + db.Name[len(db.Name)-6:]
	pw := writeFile(t, filepath.Join(t.TempDir(), "pw"), "correct-horse-battery\n")
	res = runEnv(t, env, "grant", "viewer", "--to-db-login", login, "--password-file", pw)
	require.Equal(t, 0, res.code, res.stderr)
	require.NotContains(t, res.stdout+res.stderr, "correct-horse")
	conn, err := pgx.Connect(ctx, db.LoginDSN(login, "correct-horse-battery"))
	require.NoError(t, err)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM acme__shop.sales__orders__read`).Scan(&n))
	require.NoError(t, conn.Close(ctx))
	res = runEnv(t, env, "role", "list", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, login)
	res = runEnv(t, env, "revoke", "viewer", "--from-db-login", login)
	require.Equal(t, 0, res.code, res.stderr)

	// A non-admin key is denied with exit 1.
	viewer, err := st.CreateAPIKey(ctx, boot, "v", []string{"viewer"}, 0, nil)
	require.NoError(t, err)
	res = runEnv(t, map[string]string{EnvAPIURL: hs.URL, EnvAPIKey: viewer.Secret}, "schema", "list")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "403")
}
