package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

// auditItems lists entries through the API with query (url-encoded) and returns them.
func (e *env) auditItems(query string) ([]map[string]any, string) {
	e.t.Helper()
	r := e.do("GET", "/admin/audit?"+query, e.admin, nil)
	require.Equal(e.t, http.StatusOK, r.status, "%s", r.body)
	body := r.json(e.t)
	var items []map[string]any
	for _, it := range body["items"].([]any) {
		items = append(items, it.(map[string]any))
	}
	next, _ := body["next_cursor"].(string)
	return items, next
}

// waitAudit waits until the entries that query selects number at least n: decisions are
// written in batches, a few milliseconds after the response.
func (e *env) waitAudit(query string, n int) []map[string]any {
	e.t.Helper()
	var items []map[string]any
	require.Eventually(e.t, func() bool {
		items, _ = e.auditItems(query)
		return len(items) >= n
	}, 10*time.Second, 10*time.Millisecond, "audit entries for %s", query)
	return items
}

func TestAuditDecisions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	viewer := e.key("viewer")

	// A denial names its layer; its entry names the layer, actor, strategy, target, request.
	r := e.do("POST", ordersPath, viewer, map[string]any{"customer_email": "v@example.com"}, "X-Request-ID", "req-denied-1", "X-Velocity-Reason", "trying")
	requireProblem(t, r, http.StatusForbidden)
	denied := e.waitAudit("action=authz&outcome=denied", 1)[0]
	require.EqualValues(t, 1, denied["layer"])
	require.Equal(t, "api-key", denied["strategy"])
	require.Equal(t, "acme.shop.sales.orders", denied["schema"])
	require.Equal(t, "req-denied-1", denied["request_id"])
	require.Equal(t, "trying", denied["reason"])
	require.True(t, strings.HasPrefix(denied["actor"].(string), "apikey:"), denied["actor"])
	detail := denied["detail"].(map[string]any)
	require.Equal(t, "POST", detail["method"])
	require.EqualValues(t, 403, detail["status"])
	require.Contains(t, detail["denial"], "create")

	// An allowed write: a decision entry from the API and a change entry from Postgres, tied
	// by the request id.
	r = e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "a@example.com", "region": "eu"}, "X-Request-ID", "req-ok-1")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)
	actions := map[string]map[string]any{}
	for _, it := range e.waitAudit("request_id=req-ok-1", 2) {
		actions[it["action"].(string)] = it
	}
	require.Contains(t, actions, "authz")
	require.Contains(t, actions, "record.insert")
	require.Equal(t, "allowed", actions["authz"]["outcome"])
	require.Equal(t, id, actions["record.insert"]["record_id"])
	rec := actions["record.insert"]["detail"].(map[string]any)["record"].(map[string]any)
	require.Equal(t, "eu", rec["region"])

	// A failed authentication: no actor, the strategy tried.
	r = e.do("GET", ordersPath+"/"+id, "vk_not-a-real-key", nil, "X-Request-ID", "req-authn-1")
	requireProblem(t, r, http.StatusUnauthorized)
	authn := e.waitAudit("action=authn", 1)[0]
	require.Equal(t, "denied", authn["outcome"])
	require.Equal(t, "api-key", authn["strategy"])
	require.Equal(t, "", authn["actor"])
	require.Equal(t, "req-authn-1", authn["request_id"])

	// No secret reaches the log.
	all, _ := e.auditItems("limit=1000")
	raw := string(toJSON(t, all))
	for _, secret := range []string{viewer, e.admin, "vk_not-a-real-key"} {
		require.NotContains(t, raw, secret)
	}
}

func TestAuditDecisionsOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{NoDecisionAudit: true})
	e.apply("testdata/orders.yaml")
	e.createOrder("a@example.com")
	time.Sleep(100 * time.Millisecond)
	items, _ := e.auditItems("action=authz")
	require.Empty(t, items)
	items, _ = e.auditItems("action=record.insert")
	require.Len(t, items, 1, "data changes are audited by Postgres whatever the API does")
}

func TestAuditListFiltersAndPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{NoDecisionAudit: true})
	e.apply("testdata/orders.yaml")
	for i := range 5 {
		e.createOrder(fmt.Sprintf("c%d@example.com", i))
	}
	var ids []float64
	cursor := ""
	for page := 0; ; page++ {
		q := "action=record.insert&limit=2"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		items, next := e.auditItems(q)
		for _, it := range items {
			ids = append(ids, it["id"].(float64))
		}
		if next == "" {
			break
		}
		require.Less(t, page, 5)
		cursor = next
	}
	require.Len(t, ids, 5)
	for i := 1; i < len(ids); i++ {
		require.Less(t, ids[i], ids[i-1], "newest first, no repeats")
	}
	items, _ := e.auditItems("schema=acme.shop.sales.orders&outcome=allowed&since=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)))
	require.Len(t, items, 6, "five inserts and the schema apply")
	items, _ = e.auditItems("until=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)))
	require.Empty(t, items)
	items, _ = e.auditItems("action=schema.apply")
	require.Len(t, items, 1)

	for q, loc := range map[string]string{
		"since=yesterday":       "query.since",
		"cursor=12":             "query.cursor",
		"cursor=1-2-x":          "query.cursor",
		"outcome=maybe":         "query.outcome",
		"limit=0":               "query.limit",
		"actor=" + longString(): "query.actor",
	} {
		r := e.do("GET", "/admin/audit?"+q, e.admin, nil)
		require.Contains(t, []int{400, 422}, r.status, "%s: %s", q, r.body)
		p := requireProblem(t, r, r.status)
		require.Contains(t, locations(p), loc, q)
	}
}

func longString() string { return strings.Repeat("x", 400) }

func TestAuditRoutesAreForAdmins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	editor := e.key("admin", "editor")
	for _, rt := range []struct{ method, path string }{
		{"GET", "/admin/audit"}, {"GET", "/admin/audit/verify"}, {"GET", "/admin/audit/digest"}, {"POST", "/admin/audit/seal"},
	} {
		p := requireProblem(t, e.do(rt.method, rt.path, editor, nil), http.StatusForbidden)
		require.EqualValues(t, 1, p["layer"], rt.path)
		requireProblem(t, e.do(rt.method, rt.path, "", nil), http.StatusUnauthorized)
	}
}

func TestAuditSealVerifyDigestProof(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, api.Config{NoDecisionAudit: true})
	requireProblem(t, e.do("GET", "/admin/audit/digest", e.admin, nil), http.StatusNotFound)
	e.apply("testdata/orders.yaml")
	for i := range 3 {
		e.createOrder(fmt.Sprintf("c%d@example.com", i))
	}
	// Wait for the horizon to pass this database's entries (other tests run transactions).
	require.Eventually(t, func() bool {
		var ok bool
		require.NoError(t, e.super.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot()) > max(xid) FROM velocity.audit_entry`).Scan(&ok))
		return ok
	}, 30*time.Second, 10*time.Millisecond)
	r := e.do("POST", "/admin/audit/seal", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.EqualValues(t, 5, r.json(t)["entries"], "the admin key, the apply, three inserts")

	r = e.do("GET", "/admin/audit/digest", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	digest := r.json(t)
	require.EqualValues(t, 1, digest["block"])
	hash := digest["block_hash"].(string)

	items, _ := e.auditItems("action=record.insert&limit=1")
	entry := int64(items[0]["id"].(float64))
	r = e.do("GET", fmt.Sprintf("/admin/audit/verify?entry=%d&digest_block=1&digest_hash=%s", entry, hash), e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rep := r.json(t)
	require.Equal(t, true, rep["ok"], "%s", r.body)
	require.EqualValues(t, 5, rep["entries"])
	require.NotNil(t, rep["digest_checked"])
	proof := rep["proof"].(map[string]any)
	require.Equal(t, true, proof["verified"])
	require.EqualValues(t, 5, proof["tree_size"])

	// Bad input names the parameter; unknown and unsealed entries are told apart.
	p := requireProblem(t, e.do("GET", "/admin/audit/verify?digest_block=1&digest_hash=xyz", e.admin, nil), http.StatusBadRequest)
	require.Contains(t, locations(p), "query.digest_hash")
	p = requireProblem(t, e.do("GET", "/admin/audit/verify?digest_hash="+hash, e.admin, nil), http.StatusBadRequest)
	require.Contains(t, locations(p), "query.digest_block")
	requireProblem(t, e.do("GET", "/admin/audit/verify?entry=999999999", e.admin, nil), http.StatusNotFound)
	e.createOrder("late@example.com")
	items, _ = e.auditItems("action=record.insert&limit=1")
	requireProblem(t, e.do("GET", fmt.Sprintf("/admin/audit/verify?entry=%d", int64(items[0]["id"].(float64))), e.admin, nil), http.StatusConflict)

	// The metrics show what waits.
	r = e.do("GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), "velocity_audit_unsealed_entries 1\n")
	require.Contains(t, string(r.body), "velocity_audit_sealing_lag_seconds ")

	// A superuser edits a sealed entry: verify says where.
	tx, err := e.super.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "UPDATE velocity.audit_entry SET actor = 'mallory' WHERE id = $1", entry)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	r = e.do("GET", "/admin/audit/verify", e.admin, nil)
	rep = r.json(t)
	require.Equal(t, false, rep["ok"])
	problem := rep["problem"].(map[string]any)
	require.Equal(t, "entry_changed", problem["kind"])
	require.EqualValues(t, entry, problem["entry_id"])
	require.EqualValues(t, 1, problem["block"])
}

// Close writes every decision still queued, and decisions made after it are written at once.
func TestAuditDecisionsFlushOnClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	for range 20 {
		e.do("GET", ordersPath, e.admin, nil)
	}
	e.server.Close(context.Background())
	e.do("GET", ordersPath, e.admin, nil)
	var n int
	require.NoError(t, e.super.QueryRow(context.Background(), `SELECT count(*)::int FROM velocity.audit_entry WHERE action = 'authz'`).Scan(&n))
	require.Equal(t, 22, n, "20 lists, the apply, and the list after Close")
}
