package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistoryCommandsUsage(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	for _, args := range [][]string{
		{"history", "list", "acme/shop/sales"},                                              // PATH too short
		{"history", "list", "/acme/shop/sales/orders"},                                      // no ID
		{"history", "list", "acme/Shop/sales/orders", "id"},                                 // bad name
		{"history", "list", "acme/shop/sales/orders", "id", "--since", "yesterday"},         // bad time
		{"history", "list", "acme/shop/sales/orders", "id", "--limit", "0"},                 // bad limit
		{"history", "at", "acme/shop/sales/orders", "id"},                                   // --at missing
		{"history", "diff", "acme.shop.sales.orders", "id", "--to", "2026-01-01T00:00:00Z"}, // --from missing
		{"restore", "acme/shop/sales/orders", "id", "--at", "noon"},
	} {
		r := runAPI(t, api, args...)
		require.Equal(t, ExitUsage, r.code, "%v: %s", args, r.stderr)
	}
	require.Empty(t, api.requests(), "no request is sent for a usage error")
}

func TestHistoryListTable(t *testing.T) {
	t.Parallel()
	body := `{"items":[{"event_id":7,"at":"2026-11-28T10:00:01Z","op":"UPDATE","version":2,"actor":"apikey:1","reason":"fix","request_id":"r","record":{}},` +
		`{"event_id":5,"at":"2026-11-28T10:00:00Z","op":"INSERT","version":1,"actor":"apikey:1","reason":null,"request_id":null,"record":{}}],"next_cursor":"abc"}`
	api := newFakeAPIFunc(t, func(r *http.Request, _ int) reply { return reply{http.StatusOK, body} })
	r := runAPI(t, api, "history", "list", "acme.shop.sales.orders", "0193", "--since", "2026-11-01T00:00:00Z", "--limit", "2")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"EVENT", "AT", "OP", "VERSION", "ACTOR", "REASON"},
		{"7", "2026-11-28T10:00:01Z", "UPDATE", "2", "apikey:1", "fix"},
		{"5", "2026-11-28T10:00:00Z", "INSERT", "1", "apikey:1", "-"},
	}, tableRows(strings.Split(r.stdout, "\n\n")[0]))
	require.Contains(t, r.stdout, "more: --cursor abc")
	req := api.requests()[0]
	require.Equal(t, "/acme/shop/sales/orders/0193/history?limit=2&since=2026-11-01T00%3A00%3A00Z", req.Path)
}

// TestHistoryCommandsAgainstRealAPI runs history list/at/diff and restore on a real API.
func TestHistoryCommandsAgainstRealAPI(t *testing.T) {
	t.Parallel()
	r := newRealAPI(t)
	hs, env := r.hs, r.env
	admin := r.admin
	orders, err := os.ReadFile("../../examples/orders.yaml")
	require.NoError(t, err)
	res := runEnv(t, env, "schema", "apply", "-f", writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), string(orders)))
	require.Equal(t, 0, res.code, res.stderr)

	send := func(method, path string, body any) map[string]any {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, hs.URL+path, bytes.NewReader(raw))
		req.Header.Set("X-API-Key", admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hs.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Less(t, resp.StatusCode, 300, "%v", out)
		return out
	}
	rec := send("POST", "/acme/shop/sales/orders", map[string]any{"customer_email": "a@example.com", "total": "5"})
	id := rec["id"].(string)
	time.Sleep(5 * time.Millisecond)
	t1 := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(5 * time.Millisecond)
	send("PATCH", "/acme/shop/sales/orders/"+id, map[string]any{"status": "paid"})

	res = runEnv(t, env, "history", "list", "/acme/shop/sales/orders", id)
	require.Equal(t, 0, res.code, res.stderr)
	rows := tableRows(res.stdout)
	require.Len(t, rows, 3)
	require.Equal(t, []string{"UPDATE", "INSERT"}, []string{rows[1][2], rows[2][2]})

	res = runEnv(t, env, "history", "at", "acme.shop.sales.orders", id, "--at", t1)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, tableRows(res.stdout), []string{"status", "pending"})

	res = runEnv(t, env, "history", "diff", "acme/shop/sales/orders", id, "--from", t1, "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, res.stdout, `"field": "status"`)
	res = runEnv(t, env, "history", "diff", "acme/shop/sales/orders", id, "--from", t1)
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, tableRows(res.stdout), []string{"status", "pending", "paid"})

	res = runEnv(t, env, "restore", "acme/shop/sales/orders", id, "--at", t1, "--reason", "undo")
	require.Equal(t, 0, res.code, res.stderr)
	require.Contains(t, tableRows(res.stdout), []string{"status", "pending"})
	require.Contains(t, tableRows(res.stdout), []string{"version", "3"})

	// A record that never existed: exit 1 with the API's 404.
	res = runEnv(t, env, "history", "at", "acme/shop/sales/orders", "0193b6f0-0000-7000-8000-0000000000ff", "--at", t1)
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "404")
}
