package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/audit"
)

func TestAuditCommandsUsage(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	for _, args := range [][]string{
		{"audit", "list", "--outcome", "refused"},              // not an outcome
		{"audit", "list", "--since", "yesterday"},              // bad time
		{"audit", "list", "--until", "2026-11-28"},             // a date is not a time
		{"audit", "list", "--limit", "0"},                      // bad limit
		{"audit", "list", "--limit", "1001"},                   // bad limit
		{"audit", "list", "--schema", "acme.shop.orders"},      // not a schema key
		{"audit", "list", "extra"},                             // no arguments
		{"audit", "verify", "--entry", "0"},                    // not an entry id
		{"audit", "verify", "--entry", "seven"},                // not a number
		{"audit", "digest", "extra"},                           // no arguments
		{"audit", "seal", "extra"},                             // no arguments
		{"audit", "lst"},                                       // unknown subcommand
		{"audit", "list", "--outcome", "denied", "-o", "yaml"}, // bad -o
	} {
		r := runAPI(t, api, args...)
		require.Equal(t, ExitUsage, r.code, "%v: %s", args, r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, "error: "), r.stderr)
	}
	require.Empty(t, api.requests(), "no request is sent for a usage error")
}

func TestAuditListTable(t *testing.T) {
	t.Parallel()
	body := `{"items":[` +
		`{"id":12,"xid":"745","at":"2026-11-29T02:00:00.123456Z","action":"authz.deny","outcome":"denied","actor":"apikey:1","strategy":"api-key","layer":1,"schema":"acme.shop.sales.orders","request_id":"r1","detail":{}},` +
		`{"id":9,"xid":"700","at":"2026-11-29T01:00:00Z","action":"record.insert","outcome":"allowed","actor":"apikey:1","schema":"acme.shop.sales.orders","record_id":"0193","detail":{"record":{}}}],` +
		`"next_cursor":"c2"}`
	api := newFakeAPIFunc(t, func(*http.Request, int) reply { return reply{http.StatusOK, body} })
	r := runAPI(t, api, "audit", "list", "--since", "2026-11-01T00:00:00Z", "--outcome", "denied", "--schema", "/acme/shop/sales/orders",
		"--actor", "apikey:1", "--action", "authz.deny", "--record", "0193", "--limit", "2", "--cursor", "c1")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"ID", "AT", "ACTION", "OUTCOME", "ACTOR", "LAYER", "SCHEMA", "RECORD", "REQUEST"},
		{"12", "2026-11-29T02:00:00.123456Z", "authz.deny", "denied", "apikey:1", "1", "acme.shop.sales.orders", "-", "r1"},
		{"9", "2026-11-29T01:00:00Z", "record.insert", "allowed", "apikey:1", "-", "acme.shop.sales.orders", "0193", "-"},
	}, tableRows(strings.Split(r.stdout, "\n\n")[0]))
	require.Contains(t, r.stdout, "more: --cursor c2")
	require.Equal(t, "/admin/audit?action=authz.deny&actor=apikey%3A1&cursor=c1&limit=2&outcome=denied&record=0193&schema=acme.shop.sales.orders&since=2026-11-01T00%3A00%3A00Z",
		api.requests()[0].Path)

	r = runAPI(t, api, "audit", "list", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout, "-o json is the answer as sent, without the cursor hint")
	require.Equal(t, "/admin/audit?limit=100", api.requests()[1].Path)
}

func TestAuditVerifyReportsTampering(t *testing.T) {
	t.Parallel()
	body := `{"ok":false,"problem":{"kind":"entry_changed","block":2,"entry_id":7,"position":1,"detail":"entry 7 (block 2, position 1) was changed after it was sealed"},` +
		`"blocks":1,"entries":4,"unsealed":0,"sealing_lag_seconds":0}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/audit/verify": {http.StatusOK, body}})
	r := runAPI(t, api, "audit", "verify")
	require.Equal(t, ExitError, r.code)
	lines := strings.Split(r.stdout, "\n")
	require.Equal(t, "TAMPERED: entry 7 (block 2, position 1) was changed after it was sealed", strings.TrimSpace(lines[0]))
	require.Equal(t, "kind entry_changed, block 2, entry 7, position 1", strings.TrimSpace(lines[1]))
	require.Equal(t, "error: audit verify: the audit log failed verification (entry_changed)\n", r.stderr)

	r = runAPI(t, api, "audit", "verify", "-o", "json")
	require.Equal(t, ExitError, r.code, "JSON output fails the same way")
	require.JSONEq(t, body, r.stdout)
}

func TestAuditVerifyUnprovenEntryFails(t *testing.T) {
	t.Parallel()
	body := `{"ok":true,"blocks":2,"entries":8,"unsealed":1,"sealing_lag_seconds":2.26,"proof":{"entry":{"id":7,"xid":"745","at":"2026-11-29T02:00:00Z",` +
		`"action":"record.insert","outcome":"allowed","actor":"apikey:1"},"block":2,"index":1,"tree_size":4,"leaf_hash":"aa","path":["bb","cc"],` +
		`"merkle_root":"dd","block_hash":"ee","verified":false,"problem":"the entry does not hash to its sealed leaf"}}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/audit/verify?entry=7": {http.StatusOK, body}})
	r := runAPI(t, api, "audit", "verify", "--entry", "7")
	require.Equal(t, ExitError, r.code)
	require.True(t, strings.HasPrefix(r.stdout, "OK: 2 blocks, 8 entries sealed, 1 unsealed, sealing lag 2.3s\n"), r.stdout)
	require.Contains(t, r.stdout, "proof: entry 7 (record.insert at 2026-11-29T02:00:00Z): block 2, index 1 of 4 leaves: NOT verified: the entry does not hash to its sealed leaf")
	require.Contains(t, r.stdout, "path:        bb cc")
	require.Equal(t, "error: audit verify: entry 7 is not proven: the entry does not hash to its sealed leaf\n", r.stderr)
}

func TestAuditVerifyBadDigestFile(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"notjson.json": "BLOCK BLOCK_HASH\n3 abc\n",
		"noblock.json": `{"version":1,"block_hash":"` + strings.Repeat("a", 64) + `"}`,
		"badhash.json": `{"version":1,"block":3,"block_hash":"xyz"}`,
	} {
		r := runAPI(t, api, "audit", "verify", "--digest", writeFile(t, filepath.Join(dir, name), content))
		require.Equal(t, ExitError, r.code, "%s: %s", name, r.stderr)
		require.Contains(t, r.stderr, "error: audit verify: digest ", name)
	}
	r := runAPI(t, api, "audit", "verify", "--digest", filepath.Join(dir, "absent.json"))
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "error: audit verify: read digest: ")
	require.Empty(t, api.requests(), "nothing is sent for a digest that cannot be read")
}

// send makes one request to the API as the admin and returns its JSON answer, failing the
// test unless it succeeds.
func (r *realAPI) send(t *testing.T, method, path string, body any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(method, r.hs.URL+path, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("X-API-Key", r.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hs.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Less(t, resp.StatusCode, 300, "%s %s: %v", method, path, out)
	return out
}

// TestAuditCommandsAgainstRealAPI lists, seals, exports a digest and verifies the log (with
// the digest and an inclusion proof) on a real API, then tampers with an entry as a
// superuser would and sees verify catch it.
func TestAuditCommandsAgainstRealAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRealAPI(t)
	hs, env := r.hs, r.env
	orders, err := os.ReadFile("../../examples/orders.yaml")
	require.NoError(t, err)
	res := runEnv(t, env, "schema", "apply", "-f", writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), string(orders)))
	require.Equal(t, 0, res.code, res.stderr)

	id := r.send(t, "POST", "/acme/shop/sales/orders", map[string]any{"customer_email": "a@example.com", "total": "5"})["id"].(string)
	r.send(t, "PATCH", "/acme/shop/sales/orders/"+id, map[string]any{"status": "paid"})
	r.send(t, "POST", "/acme/shop/sales/orders", map[string]any{"customer_email": "b@example.com", "total": "7"})

	// list, filtered, as JSON: the two inserts, newest first.
	res = runEnv(t, env, "audit", "list", "--action", "record.insert", "--schema", "acme.shop.sales.orders", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var page struct {
		Items []struct {
			ID       int64  `json:"id"`
			Action   string `json:"action"`
			Outcome  string `json:"outcome"`
			Schema   string `json:"schema"`
			RecordID string `json:"record_id"`
		} `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &page))
	require.Len(t, page.Items, 2)
	for _, e := range page.Items {
		require.Equal(t, "record.insert", e.Action)
		require.Equal(t, "allowed", e.Outcome)
		require.Equal(t, "acme.shop.sales.orders", e.Schema)
	}
	require.Greater(t, page.Items[0].ID, page.Items[1].ID, "newest first")
	require.Equal(t, id, page.Items[1].RecordID)
	entry := page.Items[1].ID

	// list as a table, by record: its update and its insert (and, as they come in, the API's
	// batched authorization decisions about it).
	res = runEnv(t, env, "audit", "list", "--record", id, "--outcome", "allowed")
	require.Equal(t, 0, res.code, res.stderr)
	rows := tableRows(res.stdout)
	require.Equal(t, []string{"ID", "AT", "ACTION", "OUTCOME", "ACTOR", "LAYER", "SCHEMA", "RECORD", "REQUEST"}, rows[0])
	var changes [][]string
	for _, row := range rows[1:] {
		require.Len(t, row, 9, res.stdout)
		require.Equal(t, []string{"allowed", "acme.shop.sales.orders", id}, []string{row[3], row[6], row[7]}, res.stdout)
		if strings.HasPrefix(row[2], "record.") {
			changes = append(changes, row)
		}
	}
	require.Len(t, changes, 2, res.stdout)
	require.Equal(t, []string{"record.update", "record.insert"}, []string{changes[0][2], changes[1][2]})
	require.Equal(t, strconv.FormatInt(entry, 10), changes[1][0])

	// A page of one prints the cursor of the next.
	res = runEnv(t, env, "audit", "list", "--action", "record.insert", "--limit", "1")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, strconv.FormatInt(page.Items[0].ID, 10), tableRows(res.stdout)[1][0], res.stdout)
	require.Contains(t, res.stdout, "\nmore: --cursor ")
	cursor := strings.TrimSpace(res.stdout[strings.LastIndex(res.stdout, "--cursor ")+len("--cursor "):])
	res = runEnv(t, env, "audit", "list", "--action", "record.insert", "--limit", "1", "--cursor", cursor)
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, strconv.FormatInt(entry, 10), tableRows(res.stdout)[1][0], res.stdout)

	// Seal once the cluster-wide snapshot horizon has passed this database's entries (other
	// tests run transactions in parallel, and only entries below it are sealed).
	super := r.db.Super(t)
	require.Eventually(t, func() bool {
		var past bool
		require.NoError(t, super.QueryRow(ctx, `SELECT coalesce(pg_snapshot_xmin(pg_current_snapshot()) > max(xid), true) FROM velocity.audit_entry`).Scan(&past))
		return past
	}, 30*time.Second, 10*time.Millisecond)
	res = runEnv(t, env, "audit", "seal")
	require.Equal(t, 0, res.code, res.stderr)
	rows = tableRows(res.stdout)
	require.Equal(t, []string{"SEALED_BLOCKS", "SEALED_ENTRIES", "HEAD_BLOCK", "HEAD_SEALED_AT"}, rows[0])
	sealed, err := strconv.Atoi(rows[1][1])
	require.NoError(t, err)
	require.GreaterOrEqual(t, sealed, 4, "the schema apply, two inserts and an update at least")

	// digest -o json, saved to a file, as an operator would keep it.
	res = runEnv(t, env, "audit", "digest", "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var digest auditDigest
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &digest))
	require.Equal(t, 1, digest.Version)
	require.GreaterOrEqual(t, digest.Block, int64(1))
	require.Regexp(t, `^[0-9a-f]{64}$`, digest.BlockHash)
	digestFile := writeFile(t, filepath.Join(t.TempDir(), "digest.json"), res.stdout)
	res = runEnv(t, env, "audit", "digest")
	require.Equal(t, 0, res.code, res.stderr)
	require.Equal(t, [][]string{{"BLOCK", "BLOCK_HASH", "ENTRIES", "SEALED_AT"},
		{strconv.FormatInt(digest.Block, 10), digest.BlockHash, strconv.FormatInt(digest.Entries, 10), digest.SealedAt}}, tableRows(res.stdout))

	// More writes after the digest: the log still extends it.
	r.send(t, "PATCH", "/acme/shop/sales/orders/"+id, map[string]any{"status": "shipped"})

	res = runEnv(t, env, "audit", "verify", "--digest", digestFile, "--entry", strconv.FormatInt(entry, 10))
	require.Equal(t, 0, res.code, "%s%s", res.stdout, res.stderr)
	lines := strings.Split(res.stdout, "\n")
	require.Regexp(t, `^OK: \d+ blocks, \d+ entries sealed, \d+ unsealed, sealing lag \d+\.\ds\s*$`, lines[0])
	require.Contains(t, res.stdout, "log extends digest of block "+strconv.FormatInt(digest.Block, 10)+" (hash "+digest.BlockHash+")")
	require.Contains(t, res.stdout, "proof: entry "+strconv.FormatInt(entry, 10)+" (record.insert at ")
	require.Contains(t, res.stdout, "leaves: verified")

	res = runEnv(t, env, "audit", "verify", "--entry", strconv.FormatInt(entry, 10), "-o", "json")
	require.Equal(t, 0, res.code, res.stderr)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &rep))
	require.Equal(t, true, rep["ok"])
	require.Equal(t, true, rep["proof"].(map[string]any)["verified"])

	// A superuser rewrites a sealed entry with the append-only triggers off: verify says so.
	tx, err := super.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SET LOCAL session_replication_role = replica")
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "UPDATE velocity.audit_entry SET actor = 'mallory' WHERE id = $1", entry)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	res = runEnv(t, env, "audit", "verify", "--digest", digestFile)
	require.Equal(t, 1, res.code, res.stdout)
	require.True(t, strings.HasPrefix(res.stdout, "TAMPERED: entry "+strconv.FormatInt(entry, 10)+" "), res.stdout)
	require.Contains(t, res.stdout, "kind entry_changed, block ")
	require.Contains(t, res.stderr, "failed verification (entry_changed)")
	res = runEnv(t, env, "audit", "verify", "--entry", strconv.FormatInt(entry, 10), "-o", "json")
	require.Equal(t, 1, res.code, res.stdout)
	require.Contains(t, res.stdout, `"kind": "entry_changed"`)

	// Usage errors send nothing and exit 2.
	res = runEnv(t, env, "audit", "list", "--outcome", "refused")
	require.Equal(t, 2, res.code, res.stderr)
	require.Contains(t, res.stderr, "--outcome")
	res = runEnv(t, env, "audit", "list", "--since", "last tuesday")
	require.Equal(t, 2, res.code, res.stderr)
	require.Contains(t, res.stderr, "--since")

	// A key without platform_admin is denied at layer 1, exit 1.
	viewer, err := r.st.CreateAPIKey(ctx, r.boot, "v", []string{"admin"}, 0, nil)
	require.NoError(t, err)
	viewerEnv := map[string]string{EnvAPIURL: hs.URL, EnvAPIKey: viewer.Secret}
	for _, args := range [][]string{{"audit", "list"}, {"audit", "verify"}, {"audit", "digest"}, {"audit", "seal"}} {
		res = runEnv(t, viewerEnv, args...)
		require.Equal(t, 1, res.code, "%v: %s", args, res.stderr)
		require.Contains(t, res.stderr, "Forbidden (403): the platform_admin role is required", args)
		require.Empty(t, res.stdout)
	}
}

// A server that says "verified" for a path that does not lead to the root is not believed.
func TestAuditVerifyChecksTheProofItself(t *testing.T) {
	t.Parallel()
	leaf, sibling := audit.LeafHash([]byte("a")), audit.LeafHash([]byte("b"))
	root := audit.NodeHash(leaf, sibling)
	h := func(x audit.Hash) string { return hex.EncodeToString(x[:]) }
	reply1 := func(path, rootHex string) string {
		return `{"ok":true,"blocks":1,"entries":2,"unsealed":0,"sealing_lag_seconds":0,"proof":{"entry":{"id":7,"xid":"745","at":"2026-11-29T02:00:00Z",` +
			`"action":"record.insert","outcome":"allowed","actor":"apikey:1"},"block":1,"index":0,"tree_size":2,"leaf_hash":"` + h(leaf) +
			`","path":["` + path + `"],"merkle_root":"` + rootHex + `","block_hash":"ee","verified":true}}`
	}
	good := newFakeAPI(t, map[string]reply{"GET /admin/audit/verify?entry=7": {http.StatusOK, reply1(h(sibling), h(root))}})
	require.Equal(t, ExitOK, runAPI(t, good, "audit", "verify", "--entry", "7").code)

	lying := newFakeAPI(t, map[string]reply{"GET /admin/audit/verify?entry=7": {http.StatusOK, reply1(h(leaf), h(root))}})
	r := runAPI(t, lying, "audit", "verify", "--entry", "7")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "does not hold when checked here")
}
