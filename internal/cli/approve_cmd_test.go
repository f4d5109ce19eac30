package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// pendingReply is the API's 202 for a breaking apply that waits for approval.
const pendingReply = `{"key":"acme.shop.sales.orders","name":"orders","from_version":1,"to_version":2,"status":"pending_approval",` +
	`"plan":"ALTER TABLE t DROP COLUMN region;\n","steps":[],"breaking":["field \"region\" is dropped with its data"],` +
	`"approval_required":true,"warnings":[],"version":2,"approval_id":7,"approve":"velocity approve schema orders"}`

func TestSchemaApplyPendingApprovalPrintsTheApproveCommand(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/apply": {http.StatusAccepted, pendingReply}})
	file := writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), ordersYAML)

	r := runAPI(t, api, "schema", "apply", "-f", file)
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "# orders (acme.shop.sales.orders): 1 -> 2 pending_approval\n"+
		"# breaking: field \"region\" is dropped with its data\n"+
		"# nothing applied: request 7 waits for another platform admin to approve it with:\n"+
		"#   velocity approve schema orders\n"+
		"ALTER TABLE t DROP COLUMN region;\n", r.stdout)

	r = runAPI(t, api, "-o", "json", "schema", "apply", "-f", file)
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, "["+pendingReply+"]", r.stdout)
}

func TestSchemaApplyDryRunSaysApprovalIsRequired(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/apply?dry_run=true": {http.StatusOK,
		`{"key":"acme.shop.sales.orders","name":"orders","from_version":1,"to_version":2,"status":"dry_run","plan":"ALTER TABLE t DROP COLUMN region;",` +
			`"steps":[],"breaking":["drop field region"],"approval_required":true}`}})
	file := writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), ordersYAML)

	r := runAPI(t, api, "schema", "apply", "-f", file, "--dry-run")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "# orders (acme.shop.sales.orders): 1 -> 2 dry_run\n# breaking: drop field region\n"+
		"# approval required: applying waits for another platform admin to run `velocity approve schema orders`\n"+
		"ALTER TABLE t DROP COLUMN region;\n", r.stdout)
}

func TestApproveSchema(t *testing.T) {
	t.Parallel()
	applied := `{"key":"acme.shop.sales.orders","name":"orders","from_version":1,"to_version":2,"status":"applied",` +
		`"plan":"ALTER TABLE t DROP COLUMN region;\n","steps":[],"breaking":["field \"region\" is dropped with its data"],"approval_required":false,"warnings":[],` +
		`"approval":{"id":7,"name":"orders","key":"acme.shop.sales.orders","from_version":1,"to_version":2,"status":"approved",` +
		`"requested_by":"apikey:a","decided_by":"apikey:b","reason":"checked"}}`
	rejected := `{"id":7,"name":"orders","key":"acme.shop.sales.orders","from_version":1,"to_version":2,"status":"rejected",` +
		`"requested_by":"apikey:a","decided_by":"apikey:b","reason":"keep region"}`
	api := newFakeAPI(t, map[string]reply{
		"POST /admin/schemas/orders/approve": {http.StatusOK, applied},
		"POST /admin/schemas/orders/reject":  {http.StatusOK, rejected},
		"POST /admin/schemas/mine/approve": {http.StatusForbidden, `{"status":403,"title":"Forbidden","layer":3,` +
			`"detail":"four eyes: apikey:a requested this change and cannot approve it; another platform admin must",` +
			`"errors":[{"location":"path.name","message":"policy.breakingChanges: requireApproval needs a second platform admin"}]}`},
	})

	r := runAPI(t, api, "approve", "schema", "orders", "--reason", "checked")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "# orders (acme.shop.sales.orders): 1 -> 2 applied\n# breaking: field \"region\" is dropped with its data\n"+
		"# approved: request 7 of apikey:a, by apikey:b: checked\nALTER TABLE t DROP COLUMN region;\n", r.stdout)
	require.JSONEq(t, `{"reason":"checked"}`, api.requests()[0].Body)

	r = runAPI(t, api, "-o", "json", "approve", "schema", "orders")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, applied, r.stdout)
	require.Equal(t, "", api.requests()[1].Body, "no reason, no body")

	r = runAPI(t, api, "approve", "schema", "orders", "--reject", "--reason", "keep region")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "# orders (acme.shop.sales.orders): 1 -> 2 rejected: request 7 of apikey:a, by apikey:b: keep region\n", r.stdout)
	require.Equal(t, "POST /admin/schemas/orders/reject", seenPaths(api)[2])

	r = runAPI(t, api, "approve", "schema", "mine")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: approve schema mine: Forbidden (403): four eyes: apikey:a requested this change and cannot approve it; another platform admin must\n"+
		"  path.name: policy.breakingChanges: requireApproval needs a second platform admin\n", r.stderr)

	for _, args := range [][]string{{"approve", "schema"}, {"approve", "schema", "a", "b"}, {"approve", "purges"}} {
		r = runAPI(t, api, args...)
		require.Equal(t, ExitUsage, r.code, "%v: %s", args, r.stderr)
	}
	require.Len(t, api.requests(), 4)
}

func TestSchemaApprovalsList(t *testing.T) {
	t.Parallel()
	body := `{"items":[{"id":7,"name":"orders","key":"acme.shop.sales.orders","from_version":1,"to_version":2,"status":"pending",` +
		`"breaking":["a","b"],"requested_by":"apikey:a","requested_at":"2026-11-28T10:00:00Z","plan":"...","definition":{}}]}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/schemas/approvals?status=pending": {http.StatusOK, body}})

	r := runAPI(t, api, "schema", "approvals", "--status", "pending")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"ID", "NAME", "VERSIONS", "STATUS", "REQUESTED_BY", "REQUESTED_AT", "DECIDED_BY", "BREAKING"},
		{"7", "orders", "1->2", "pending", "apikey:a", "2026-11-28T10:00:00Z", "-", "2"},
	}, tableRows(r.stdout))

	r = runAPI(t, api, "-o", "json", "schema", "approvals", "--status", "pending")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout)

	r = runAPI(t, api, "schema", "approvals", "--status", "maybe")
	require.Equal(t, ExitUsage, r.code)
	require.Len(t, api.requests(), 2)
}

// TestApproveSchemaAgainstRealAPI: a breaking apply waits, the requester cannot approve it,
// a second admin does and the change is applied.
func TestApproveSchemaAgainstRealAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRealAPI(t)
	v1 := "apiVersion: velocity.dev/v1alpha1\nkind: SchemaDefinition\nmetadata:\n  name: orders\n" +
		"spec:\n  org: acme\n  app: shop\n  domain: sales\n  object: orders\n  version: 1\n  fields:\n" +
		"    - name: total\n      type: decimal\n    - name: region\n      type: string\n"
	v2 := strings.Replace(strings.Replace(v1, "    - name: region\n      type: string\n", "", 1), "version: 1", "version: 2", 1)
	dir := t.TempDir()
	res := runEnv(t, r.env, "schema", "apply", "-f", writeFile(t, filepath.Join(dir, "v1.yaml"), v1))
	require.Equal(t, ExitOK, res.code, res.stderr)
	second, err := r.st.CreateAPIKey(ctx, r.boot, "second admin", []string{"platform_admin"}, 0, nil)
	require.NoError(t, err)
	asSecond := copyEnv(r.env)
	asSecond[EnvAPIKey] = second.Secret

	hasRegion := func() bool {
		var ok bool
		require.NoError(t, r.db.Super(t).QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_schema = 'acme__shop' AND table_name = 'sales__orders' AND column_name = 'region')`).Scan(&ok))
		return ok
	}

	// The breaking apply exits 0 and says how to approve; nothing is applied.
	file := writeFile(t, filepath.Join(dir, "v2.yaml"), v2)
	res = runEnv(t, r.env, "schema", "apply", "-f", file)
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "# orders (acme.shop.sales.orders): 1 -> 2 pending_approval\n# breaking: field \"region\" is dropped with its data\n")
	require.Contains(t, res.stdout, "#   velocity approve schema orders\n")
	require.True(t, hasRegion())

	res = runEnv(t, r.env, "schema", "approvals", "--status", "pending", "-o", "json")
	require.Equal(t, ExitOK, res.code, res.stderr)
	var list struct{ Items []map[string]any }
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &list))
	require.Len(t, list.Items, 1)

	// Four eyes.
	res = runEnv(t, r.env, "approve", "schema", "orders")
	require.Equal(t, ExitError, res.code)
	require.Contains(t, res.stderr, "Forbidden (403): four eyes")
	require.True(t, hasRegion())

	res = runEnv(t, asSecond, "approve", "schema", "orders", "--reason", "region moved to customers")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Contains(t, res.stdout, "# orders (acme.shop.sales.orders): 1 -> 2 applied\n")
	require.Contains(t, res.stdout, ": region moved to customers\n")
	require.Contains(t, res.stdout, `DROP COLUMN "region"`)
	require.False(t, hasRegion())

	res = runEnv(t, asSecond, "approve", "schema", "orders")
	require.Equal(t, ExitError, res.code)
	require.Contains(t, res.stderr, "Not Found (404): no change of schema 'orders' is waiting for approval")
}
