package cli

import (
	"net/http"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGrantToDBLogin(t *testing.T) {
	t.Parallel()
	answer := `{"id":"b1","role":"viewer","login":"metabase"}`
	api := newFakeAPI(t, map[string]reply{"POST /admin/db-logins": {http.StatusCreated, answer}})
	password := writeFile(t, filepath.Join(t.TempDir(), "pw"), "s3cr3t pass\n")

	r := runAPI(t, api, "grant", "viewer", "--to-db-login", "metabase", "--password-file", password)
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{"ID", "ROLE", "LOGIN"}, {"b1", "viewer", "metabase"}}, tableRows(r.stdout))
	require.NotContains(t, r.stdout+r.stderr, "s3cr3t")

	r = runAPI(t, api, "-o", "json", "grant", "viewer", "--to-db-login", "metabase")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, answer, r.stdout)

	reqs := api.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "POST /admin/db-logins", reqs[0].Method+" "+reqs[0].Path)
	require.Equal(t, testKey, reqs[0].APIKey)
	require.JSONEq(t, `{"role":"viewer","login":"metabase","password":"s3cr3t pass"}`, reqs[0].Body, "the newline is trimmed")
	require.JSONEq(t, `{"role":"viewer","login":"metabase"}`, reqs[1].Body, "no password file, no password")
}

func TestGrantPasswordFileProblems(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	dir := t.TempDir()

	r := runAPI(t, api, "grant", "viewer", "--to-db-login", "bi", "--password-file", filepath.Join(dir, "absent"))
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "read password: open "+filepath.Join(dir, "absent"))

	empty := writeFile(t, filepath.Join(dir, "empty"), "\n")
	r = runAPI(t, api, "grant", "viewer", "--to-db-login", "bi", "--password-file", empty)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "password file "+empty+" is empty")

	require.Empty(t, api.requests())
}

func TestGrantRefusedByTheAPI(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/db-logins": {http.StatusForbidden,
		`{"status":403,"title":"Forbidden","detail":"only admin may grant roles","layer":1}`}})
	r := runAPI(t, api, "grant", "admin", "--to-db-login", "bi")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: grant admin to db login bi: Forbidden (403): only admin may grant roles\n", r.stderr)
}

func TestRevokeFromDBLogin(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"DELETE /admin/db-logins/metabase/roles/viewer": {http.StatusNoContent, ""}})

	r := runAPI(t, api, "revoke", "viewer", "--from-db-login", "metabase")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{"ROLE", "LOGIN", "STATUS"}, {"viewer", "metabase", "revoked"}}, tableRows(r.stdout))

	r = runAPI(t, api, "revoke", "viewer", "--from-db-login", "metabase", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, `{"role":"viewer","login":"metabase","status":"revoked"}`, r.stdout)

	r = runAPI(t, api, "revoke", "editor", "--from-db-login", "metabase")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "error: revoke editor from db login metabase: Not Found (404)")

	require.Equal(t, request{Method: "DELETE", Path: "/admin/db-logins/metabase/roles/viewer", APIKey: testKey}, api.requests()[0])
}

func TestRoleList(t *testing.T) {
	t.Parallel()
	body := `{"items":[` +
		`{"id":"r1","role":"viewer","subject_kind":"db_login","subject":"metabase","scope":{},"expires_at":null,"created_at":"2025-01-01T00:00:00Z","created_by":"admin"},` +
		`{"id":"r2","role":"editor","subject_kind":"user","subject":"ann","scope":{"region":"eu"},"expires_at":"2025-03-01T00:00:00Z","created_at":"2025-01-01T00:00:00Z","created_by":"admin"}]}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/role-bindings": {http.StatusOK, body}})

	r := runAPI(t, api, "role", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"ROLE", "KIND", "SUBJECT", "EXPIRES"},
		{"viewer", "db_login", "metabase", "never"},
		{"editor", "user", "ann", "2025-03-01T00:00:00Z"},
	}, tableRows(r.stdout))

	r = runAPI(t, api, "role", "list", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout)
	require.Equal(t, request{Method: "GET", Path: "/admin/role-bindings", APIKey: testKey}, api.requests()[0])
}
