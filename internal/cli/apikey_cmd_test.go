package cli

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const createdKeyReply = `{"id":"0b6c","key":"vk_secret_abcd","name":"ci","roles":["editor","viewer"],"expires_at":"2025-02-01T00:00:00Z"}`

func TestAPIKeyCreate(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/api-keys": {http.StatusCreated, createdKeyReply}})

	r := runAPI(t, api, "api-key", "create", "--name", "ci", "--role", "editor", "--role", "viewer", "--ttl", "720h",
		"--allow-ip", "10.0.0.0/8", "--allow-ip", "192.168.1.7")
	require.Equal(t, ExitOK, r.code, r.stderr)
	lines := strings.Split(r.stdout, "\n")
	require.Equal(t, [][]string{{"ID", "NAME", "ROLES", "EXPIRES"}, {"0b6c", "ci", "editor,viewer", "2025-02-01T00:00:00Z"}}, tableRows(strings.Join(lines[:2], "\n")))
	require.Equal(t, []string{"", "Key (shown only once; store it now):", "vk_secret_abcd", ""}, lines[2:])

	r = runAPI(t, api, "-o", "json", "api-key", "create", "--name", "ci", "--role", "editor,viewer")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, createdKeyReply, r.stdout)

	reqs := api.requests()
	require.Len(t, reqs, 2)
	for _, req := range reqs {
		require.Equal(t, "POST /admin/api-keys", req.Method+" "+req.Path)
		require.Equal(t, testKey, req.APIKey)
		require.Equal(t, "application/json", req.ContentType)
	}
	require.JSONEq(t, `{"name":"ci","roles":["editor","viewer"],"ttl":"720h","allow_ips":["10.0.0.0/8","192.168.1.7"]}`, reqs[0].Body)
	require.JSONEq(t, `{"name":"ci","roles":["editor","viewer"],"allow_ips":[]}`, reqs[1].Body, "no ttl")
}

func TestAPIKeyCreateWithoutExpiry(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/api-keys": {http.StatusCreated, `{"id":"1","key":"vk_x","name":"ci","roles":["admin"],"expires_at":null}`}})
	r := runAPI(t, api, "api-key", "create", "--name", "ci", "--role", "admin")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, []string{"1", "ci", "admin", "never"}, tableRows(r.stdout)[1])
}

func TestAPIKeyCreateRefusedByTheAPI(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/api-keys": {http.StatusBadRequest,
		`{"status":400,"title":"Bad Request","detail":"validation failed","errors":[{"location":"body.roles[0]","message":"unknown role ghost"}]}`}})
	r := runAPI(t, api, "api-key", "create", "--name", "ci", "--role", "ghost")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: create api key ci: Bad Request (400): validation failed\n  body.roles[0]: unknown role ghost\n", r.stderr)
	require.Empty(t, r.stdout)
}

func TestAPIKeyList(t *testing.T) {
	t.Parallel()
	body := `{"items":[` +
		`{"id":"k1","name":"ci","hint":"abcd","roles":["editor","viewer"],"allow_ips":[],"expires_at":"2025-02-01T00:00:00Z","created_at":"2025-01-01T00:00:00Z","created_by":"admin","revoked_at":null},` +
		`{"id":"k2","name":"old","hint":"wxyz","roles":["admin"],"allow_ips":["10.0.0.0/8"],"expires_at":null,"created_at":"2024-01-01T00:00:00Z","created_by":"admin","revoked_at":"2024-06-01T00:00:00Z"}]}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/api-keys": {http.StatusOK, body}})

	r := runAPI(t, api, "api-key", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"ID", "NAME", "ROLES", "HINT", "EXPIRES", "REVOKED"},
		{"k1", "ci", "editor,viewer", "…abcd", "2025-02-01T00:00:00Z", "-"},
		{"k2", "old", "admin", "…wxyz", "never", "2024-06-01T00:00:00Z"},
	}, tableRows(r.stdout))

	r = runAPI(t, api, "api-key", "list", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout)
	require.Equal(t, request{Method: "GET", Path: "/admin/api-keys", APIKey: testKey}, api.requests()[0])
}

func TestAPIKeyRevoke(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"DELETE /admin/api-keys/k1": {http.StatusNoContent, ""}})

	r := runAPI(t, api, "api-key", "revoke", "k1")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{"ID", "STATUS"}, {"k1", "revoked"}}, tableRows(r.stdout))

	r = runAPI(t, api, "-o", "json", "api-key", "revoke", "k1")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, `{"id":"k1","status":"revoked"}`, r.stdout)

	r = runAPI(t, api, "api-key", "revoke", "k9")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: revoke api key k9: Not Found (404): no route DELETE /admin/api-keys/k9\n", r.stderr)

	require.Equal(t, request{Method: "DELETE", Path: "/admin/api-keys/k1", APIKey: testKey}, api.requests()[0])
}
