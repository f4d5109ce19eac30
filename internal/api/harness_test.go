package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one test's stack: its own database, a store, the API on an httptest server, and
// an admin key.
type env struct {
	t      *testing.T
	db     *pgtest.DB
	st     *store.Store
	server *api.Server
	http   *httptest.Server
	admin  string
	super  *pgxpool.Pool
}

func newEnv(t *testing.T, cfg api.Config) *env {
	t.Helper()
	return newEnvFor(t, func(*store.Store) api.Config { return cfg })
}

// newEnvFor is newEnv with a configuration that needs the store (a revocation checker).
func newEnvFor(t *testing.T, config func(st *store.Store) api.Config) *env {
	t.Helper()
	ctx := context.Background()
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 8)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	srv, err := api.New(ctx, st, config(st))
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close(context.Background()) })
	e := &env{t: t, db: db, st: st, server: srv, http: newHTTPServer(t, srv), super: db.Super(t)}
	e.admin = e.key("platform_admin", "admin")
	return e
}

// key makes an API key with roles, as the platform's bootstrap would.
func (e *env) key(roles ...string) string {
	e.t.Helper()
	boot := store.Request{Actor: store.Actor{ID: "test", Kind: "system", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}
	k, err := e.st.CreateAPIKey(context.Background(), boot, "test "+strings.Join(roles, ","), roles, 0, nil)
	require.NoError(e.t, err)
	return k.Secret
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// do sends a request; body may be nil, a string (sent as is) or a value (sent as JSON).
func (e *env) do(method, path, key string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(e.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	require.NoError(e.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.http.Client().Do(req)
	require.NoError(e.t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(e.t, err)
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// apply applies a YAML definition file through the API and fails the test unless it is
// applied.
func (e *env) apply(path string) map[string]any {
	e.t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(e.t, err)
	return e.applyYAML(string(data))
}

func (e *env) applyYAML(doc string) map[string]any {
	e.t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	require.NoError(e.t, err)
	r := e.do("POST", "/admin/schemas/apply", e.admin, js)
	require.Equal(e.t, http.StatusOK, r.status, "apply: %s", r.body)
	return r.json(e.t)
}

// requireProblem checks a problem+json response and returns it.
func requireProblem(t *testing.T, r response, status int) map[string]any {
	t.Helper()
	require.Equal(t, status, r.status, "body: %s", r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body: %s", r.body)
	p := r.json(t)
	require.EqualValues(t, status, p["status"])
	for _, leak := range []string{"SELECT", "INSERT", "UPDATE ", "SQLSTATE", "pgx", "goroutine"} {
		require.NotContains(t, string(r.body), leak, "error leaks internals")
	}
	return p
}

// locations lists the error locations of a problem.
func locations(p map[string]any) []string {
	var out []string
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		m := e.(map[string]any)
		loc, _ := m["location"].(string)
		out = append(out, loc)
	}
	return out
}

const ordersPath = "/acme/shop/sales/orders"

func toJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func newHTTPServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}
