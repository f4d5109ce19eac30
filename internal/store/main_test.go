package store_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// env is one test's own database, a Store on it, and a superuser pool for looking below RLS.
type env struct {
	db    *pgtest.DB
	st    *store.Store
	super *pgxpool.Pool
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := pgtest.TestDB(t)
	st, err := store.Open(context.Background(), db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return &env{db: db, st: st, super: db.Super(t)}
}

// orders is the example of SPEC.md, parsed, normalized and validated; each call returns a
// fresh copy.
func orders(t *testing.T) schemadef.Definition {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "schemadef", "testdata", "orders.yaml"))
	require.NoError(t, err)
	def, err := schemadef.Parse(data)
	require.NoError(t, err)
	def.Normalize()
	require.NoError(t, def.Validate())
	return def
}

// next returns a deep copy of d at the next version, changed by change.
func next(t *testing.T, d schemadef.Definition, change func(d *schemadef.Definition)) schemadef.Definition {
	t.Helper()
	raw, err := json.Marshal(d)
	require.NoError(t, err)
	var out schemadef.Definition
	require.NoError(t, json.Unmarshal(raw, &out))
	out.Spec.Version++
	if change != nil {
		change(&out)
	}
	require.NoError(t, out.Validate())
	return out
}

func field(t *testing.T, d *schemadef.Definition, name string) *schemadef.Field {
	t.Helper()
	i := slices.IndexFunc(d.Spec.Fields, func(f schemadef.Field) bool { return f.Name == name })
	require.GreaterOrEqual(t, i, 0, "field %q", name)
	return &d.Spec.Fields[i]
}

func (e *env) apply(t *testing.T, d schemadef.Definition) store.ApplyResult {
	t.Helper()
	res, err := e.st.ApplySchema(context.Background(), d, false, "test")
	require.NoError(t, err)
	return res
}

// scalar runs a query as the superuser and scans its one value.
func scalar[T any](t *testing.T, pool *pgxpool.Pool, sql string, args ...any) T {
	t.Helper()
	var v T
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&v), sql)
	return v
}

func ptr[T any](v T) *T { return &v }

func admin() store.Request {
	return store.Request{
		Actor:     store.Actor{ID: "user:alice", Kind: "subject", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{"region": "eu"}},
		Reason:    "testing",
		RequestID: "req-1",
	}
}

func actor(id string, roles ...string) store.Request {
	return store.Request{Actor: store.Actor{ID: id, Kind: "subject", Roles: roles, Attributes: map[string]any{}}}
}

// inRegion is req with the actor's region attribute, which the orders row filter reads.
func inRegion(req store.Request, region string) store.Request {
	req.Actor.Attributes = maps.Clone(req.Actor.Attributes)
	if req.Actor.Attributes == nil {
		req.Actor.Attributes = map[string]any{}
	}
	req.Actor.Attributes["region"] = region
	return req
}

func stmt(s sqlbuild.Statement) store.Statement { return store.Statement{SQL: s.SQL, Args: s.Args} }

// drain reads and discards every row of every statement.
func drain(int, pgx.Rows) error { return nil }
