package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

// withoutRegionYAML is orders.yaml at version 2 without its region field: a breaking change.
func withoutRegionYAML(t *testing.T) string {
	t.Helper()
	v2 := strings.Replace(strings.Replace(readOrders(t), "    - name: region\n      type: string\n      filterable: true\n", "", 1),
		"version: 1", "version: 2", 1)
	require.NotContains(t, v2, "region")
	return v2
}

func withoutRegion(t *testing.T) []byte { return yamlJSON(t, withoutRegionYAML(t)) }

func (e *env) regionColumns() int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.super.QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.columns WHERE table_schema = 'acme__shop' AND column_name = 'region'`).Scan(&n))
	return n
}

// approvalColumn is column of the newest approval request, as text.
func (e *env) approvalColumn(column string) string {
	e.t.Helper()
	var v string
	require.NoError(e.t, e.super.QueryRow(context.Background(),
		`SELECT coalesce(`+column+`::text, '') FROM velocity.schema_approvals ORDER BY id DESC LIMIT 1`).Scan(&v))
	return v
}

// newPendingEnv is an env with orders applied, the drop of its region field waiting for
// approval (requested by e.admin), and a second platform admin's key.
func newPendingEnv(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	r := e.do("POST", "/admin/schemas/apply", e.admin, withoutRegion(t))
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	return e, e.key("platform_admin")
}

func TestSchemaApprovalFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	second := e.key("platform_admin")
	r := e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "a@example.com", "region": "eu"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)

	// The dry run shows the plan and says approval would be needed.
	r = e.do("POST", "/admin/schemas/apply?dry_run=true", e.admin, withoutRegion(t))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "dry_run", r.json(t)["status"])
	require.Equal(t, true, r.json(t)["approval_required"])

	// The apply waits for approval: 202, nothing applied.
	r = e.do("POST", "/admin/schemas/apply", e.admin, withoutRegion(t), "X-Velocity-Reason", "region moved to customers")
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	body := r.json(t)
	require.Equal(t, "pending_approval", body["status"])
	require.Equal(t, "orders", body["name"])
	require.EqualValues(t, 2, body["version"])
	require.EqualValues(t, 1, body["from_version"])
	require.Equal(t, []any{`field "region" is dropped with its data`}, body["breaking"])
	require.Contains(t, body["plan"], `DROP COLUMN "region"`)
	require.Equal(t, "velocity approve schema orders", body["approve"])
	require.Equal(t, true, body["approval_required"])
	approvalID := body["approval_id"]
	require.NotNil(t, approvalID)
	require.Equal(t, 2, e.regionColumns(), "column still in table and view")
	r = e.do("GET", ordersPath+"/"+id, e.admin, nil)
	require.Equal(t, "eu", r.json(t)["region"])

	// Sending it again is the same request.
	r = e.do("POST", "/admin/schemas/apply", second, withoutRegion(t))
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	require.Equal(t, approvalID, r.json(t)["approval_id"])

	// Listed as pending, with who asked.
	r = e.do("GET", "/admin/schemas/approvals?status=pending", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	items := r.json(t)["items"].([]any)
	require.Len(t, items, 1)
	item := items[0].(map[string]any)
	require.Equal(t, approvalID, item["id"])
	require.Equal(t, "pending", item["status"])
	requester := e.approvalColumn("requested_by")
	require.True(t, strings.HasPrefix(requester, "apikey:"), requester)
	require.Equal(t, requester, item["requested_by"])
	p := requireProblem(t, e.do("GET", "/admin/schemas/approvals?status=maybe", e.admin, nil), http.StatusBadRequest)
	require.Equal(t, []string{"query.status"}, locations(p))

	// Only platform admins may list or decide.
	editor := e.key("admin")
	p = requireProblem(t, e.do("POST", "/admin/schemas/orders/approve", editor, nil), http.StatusForbidden)
	require.EqualValues(t, 1, p["layer"])
	requireProblem(t, e.do("POST", "/admin/schemas/orders/reject", editor, nil), http.StatusForbidden)
	requireProblem(t, e.do("GET", "/admin/schemas/approvals", editor, nil), http.StatusForbidden)

	// Four eyes: the requester cannot approve.
	p = requireProblem(t, e.do("POST", "/admin/schemas/orders/approve", e.admin, map[string]any{"reason": "mine"}), http.StatusForbidden)
	require.EqualValues(t, 3, p["layer"])
	require.Contains(t, p["detail"], "four eyes: "+requester+" requested this change and cannot approve it")
	require.Equal(t, []string{"path.name"}, locations(p))
	require.Equal(t, 2, e.regionColumns())
	require.Equal(t, "pending", e.approvalColumn("status"))

	// A second admin approves: applied, the route follows at once.
	r = e.do("POST", "/admin/schemas/orders/approve", second, map[string]any{"reason": "checked with the customers team"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	body = r.json(t)
	require.Equal(t, "applied", body["status"])
	require.EqualValues(t, 2, body["to_version"])
	require.Contains(t, body["plan"], `DROP COLUMN "region"`)
	approval := body["approval"].(map[string]any)
	require.Equal(t, "approved", approval["status"])
	require.Equal(t, requester, approval["requested_by"])
	approver := approval["decided_by"].(string)
	require.True(t, strings.HasPrefix(approver, "apikey:") && approver != requester, approver)
	require.Equal(t, "checked with the customers team", approval["reason"])
	require.Equal(t, 0, e.regionColumns())
	r = e.do("GET", ordersPath+"/"+id, e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.NotContains(t, r.json(t), "region")
	require.Equal(t, "a@example.com", r.json(t)["customer_email"])
	r = e.do("GET", "/admin/schemas/orders/versions", e.admin, nil)
	latest := r.json(t)["items"].([]any)[0].(map[string]any)
	require.EqualValues(t, 2, latest["version"])
	require.Equal(t, approver, latest["applied_by"])

	// The request, the approval and the apply are audited with their actors and reasons.
	req := e.waitAudit("action=schema_approval.request", 1)[0]
	require.Equal(t, requester, req["actor"])
	require.Equal(t, "region moved to customers", req["reason"])
	appr := e.waitAudit("action=schema_approval.approve", 1)[0]
	require.Equal(t, approver, appr["actor"])
	require.Equal(t, "checked with the customers team", appr["reason"])
	require.Equal(t, "acme.shop.sales.orders", appr["schema"])
	applies := e.waitAudit("action=schema.apply", 2)
	require.Equal(t, approver, applies[0]["actor"], "newest first")
	require.Equal(t, "checked with the customers team", applies[0]["reason"])

	// Nothing waits any more; an unknown schema has nothing either.
	p = requireProblem(t, e.do("POST", "/admin/schemas/orders/approve", second, nil), http.StatusNotFound)
	require.Equal(t, []string{"path.name"}, locations(p))
	require.Contains(t, p["detail"], "no change of schema 'orders' is waiting for approval")
	p = requireProblem(t, e.do("POST", "/admin/schemas/nope/approve", second, nil), http.StatusNotFound)
	require.Equal(t, []string{"path.name"}, locations(p))
	r = e.do("GET", "/admin/schemas/approvals?status=approved", e.admin, nil)
	require.Len(t, r.json(t)["items"], 1)
}

func TestSchemaApprovalStale(t *testing.T) {
	t.Parallel()
	e, second := newPendingEnv(t)

	// Someone applies another version 2 meanwhile.
	e.applyYAML(strings.Replace(strings.Replace(readOrders(t), "version: 1", "version: 2", 1),
		"    - name: note\n      type: text\n", "    - name: note\n      type: text\n    - name: coupon\n      type: string\n", 1))

	p := requireProblem(t, e.do("POST", "/admin/schemas/orders/approve", second, nil), http.StatusConflict)
	require.Equal(t, "stale: re-apply: version 2 was applied after the request, which was planned against version 1", p["detail"])
	require.Equal(t, []string{"path.name"}, locations(p))
	require.Equal(t, "superseded", e.approvalColumn("status"))
	require.Equal(t, 2, e.regionColumns())
	requireProblem(t, e.do("POST", "/admin/schemas/orders/approve", second, nil), http.StatusNotFound)
}

func TestSchemaApprovalReject(t *testing.T) {
	t.Parallel()
	e, second := newPendingEnv(t)

	r := e.do("POST", "/admin/schemas/orders/reject", second, nil, "X-Velocity-Reason", "keep region")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "rejected", r.json(t)["status"])
	require.Equal(t, "keep region", r.json(t)["reason"])
	require.Equal(t, 2, e.regionColumns())
	rejected := e.waitAudit("action=schema_approval.reject", 1)[0]
	require.Equal(t, "keep region", rejected["reason"])
	require.Equal(t, r.json(t)["decided_by"], rejected["actor"])

	requireProblem(t, e.do("POST", "/admin/schemas/orders/approve", second, nil), http.StatusNotFound)
	requireProblem(t, e.do("POST", "/admin/schemas/orders/reject", second, nil), http.StatusNotFound)
	r = e.do("GET", "/admin/schemas/approvals?status=rejected", e.admin, nil)
	require.Len(t, r.json(t)["items"], 1)
}

func TestSchemaApprovalNotNeededWithPolicyAllow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	v2 := strings.Replace(withoutRegionYAML(t), "  access:\n", "  policy:\n    breakingChanges: allow\n  access:\n", 1)
	res := e.applyYAML(v2)
	require.Equal(t, "applied", res["status"])
	require.Equal(t, false, res["approval_required"])
	require.Equal(t, 0, e.regionColumns())
}
