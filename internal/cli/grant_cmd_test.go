package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestGrantToDBLogin(t *testing.T) {
	t.Parallel()
	answer := `{"id":"b1","role":"viewer","login":"metabase"}`
	api := newFakeAPI(t, map[string]reply{"POST /admin/db-logins": {http.StatusCreated, answer}})
	password := writeFile(t, filepath.Join(t.TempDir(), "pw"), "s3cr3t pass\n")

	r := runAPI(t, api, "grant", "viewer", "--to-db-login", "metabase", "--password-file", password)
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{"ID", "ROLE", "LOGIN", "SCOPE"}, {"b1", "viewer", "metabase", "-"}}, tableRows(r.stdout))
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

// TestGrantToDBLoginWithScope: --scope goes with --to-db-login too, into the body's scope.
func TestGrantToDBLoginWithScope(t *testing.T) {
	t.Parallel()
	answer := `{"id":"b2","role":"viewer","login":"metabase","scope":{"region":"eu","team":"a=b,c"}}`
	api := newFakeAPI(t, map[string]reply{"POST /admin/db-logins": {http.StatusCreated, answer}})
	password := writeFile(t, filepath.Join(t.TempDir(), "pw"), "s3cr3t pass\n")

	r := runAPI(t, api, "grant", "viewer", "--to-db-login", "metabase", "--password-file", password,
		"--scope", "region=eu", "--scope", "team=a=b,c")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{"ID", "ROLE", "LOGIN", "SCOPE"}, {"b2", "viewer", "metabase", "region=eu,team=a=b,c"}}, tableRows(r.stdout))

	r = runAPI(t, api, "-o", "json", "grant", "viewer", "--scope", "region=eu", "--to-db-login", "metabase")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, answer, r.stdout)

	reqs := api.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "POST /admin/db-logins", reqs[0].Method+" "+reqs[0].Path)
	require.JSONEq(t, `{"role":"viewer","login":"metabase","password":"s3cr3t pass","scope":{"region":"eu","team":"a=b,c"}}`, reqs[0].Body)
	require.JSONEq(t, `{"role":"viewer","login":"metabase","scope":{"region":"eu"}}`, reqs[1].Body, "the flags' order does not matter")
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
		`{"id":"r2","role":"editor","subject_kind":"subject","subject":"ann","scope":{"team":"b","region":"eu"},"expires_at":"2025-03-01T00:00:00Z","created_at":"2025-01-01T00:00:00Z","created_by":"admin"}]}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/role-bindings": {http.StatusOK, body}})

	r := runAPI(t, api, "role", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"ROLE", "KIND", "SUBJECT", "EXPIRES", "SCOPE"},
		{"viewer", "db_login", "metabase", "never", "-"},
		{"editor", "subject", "ann", "2025-03-01T00:00:00Z", "region=eu,team=b"},
	}, tableRows(r.stdout))

	r = runAPI(t, api, "role", "list", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout)
	require.Equal(t, request{Method: "GET", Path: "/admin/role-bindings", APIKey: testKey}, api.requests()[0])
}

func TestGrantAndRevokeUsageErrorsSendNothing(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	long := strings.Repeat("k", 64)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown actor kind", []string{"grant", "editor", "--to", "user:ann"}, `"user:ann": ACTOR must be subject:NAME (a JWT subject), group:NAME (a token group) or api-key:UUID`},
		{"actor without a kind", []string{"grant", "editor", "--to", "ann"}, `"ann": ACTOR must be`},
		{"actor id instead of subject", []string{"grant", "editor", "--to", "jwt:ann"}, `"jwt:ann": ACTOR must be`},
		{"kind in capitals", []string{"grant", "editor", "--to", "Subject:ann"}, `"Subject:ann": ACTOR must be`},
		{"empty subject", []string{"grant", "editor", "--to", "subject:"}, `"subject:" names no one`},
		{"empty group", []string{"grant", "editor", "--to", "group:"}, `"group:" names no one`},
		{"api key not a uuid", []string{"grant", "editor", "--to", "api-key:vk_abc"}, `"vk_abc" is not a UUID`},
		{"api key uuid in braces", []string{"grant", "editor", "--to", "api-key:{0193b6f0-8c2e-7d4a-9b1f-2a3c4d5e6f70}"}, "is not a UUID"},
		{"api key with underscore", []string{"grant", "editor", "--to", "api_key:0193b6f0-8c2e-7d4a-9b1f-2a3c4d5e6f70"}, "ACTOR must be"},
		{"expires not a time", []string{"grant", "editor", "--to", "subject:ada", "--expires", "tomorrow"}, `--expires "tomorrow" is not an RFC 3339 time`},
		{"expires a date only", []string{"grant", "editor", "--to", "subject:ada", "--expires", "2099-01-02"}, "is not an RFC 3339 time"},
		{"expires without a zone", []string{"grant", "editor", "--to", "subject:ada", "--expires", "2099-01-02T03:04:05"}, "is not an RFC 3339 time"},
		{"expires in the past", []string{"grant", "editor", "--to", "subject:ada", "--expires", "2001-01-01T00:00:00Z"}, "--expires 2001-01-01T00:00:00Z is not in the future"},
		{"scope without =", []string{"grant", "editor", "--to", "subject:ada", "--scope", "region"}, `--scope "region" must be k=v with a value`},
		{"scope without a value", []string{"grant", "editor", "--to", "subject:ada", "--scope", "region="}, `--scope "region=" must be k=v with a value`},
		{"scope without a key", []string{"grant", "editor", "--to", "subject:ada", "--scope", "=eu"}, `key "" must match ^[a-z][a-z0-9_]{0,62}$`},
		{"scope key in capitals", []string{"grant", "editor", "--to", "subject:ada", "--scope", "Region=eu"}, `key "Region" must match`},
		{"scope key from a digit", []string{"grant", "editor", "--to", "subject:ada", "--scope", "1region=eu"}, `key "1region" must match`},
		{"scope key with a dash", []string{"grant", "editor", "--to", "subject:ada", "--scope", "cost-center=7"}, `key "cost-center" must match`},
		{"scope key of 64 characters", []string{"grant", "editor", "--to", "subject:ada", "--scope", long + "=x"}, `key "` + long + `" must match`},
		{"scope key twice", []string{"grant", "editor", "--to", "subject:ada", "--scope", "region=eu", "--scope", "region=us"}, `--scope key "region" is given twice`},
		{"both --to and --to-db-login", []string{"grant", "editor", "--to", "subject:ada", "--to-db-login", "bi"}, "give --to ACTOR or --to-db-login LOGIN, not both"},
		{"neither --to nor --to-db-login", []string{"grant", "editor"}, "--to ACTOR or --to-db-login LOGIN is required"},
		{"--password-file with --to", []string{"grant", "editor", "--to", "subject:ada", "--password-file", "pw"}, "--password-file goes with --to-db-login"},
		{"--expires with --to-db-login", []string{"grant", "viewer", "--to-db-login", "bi", "--expires", "2099-01-02T03:04:05Z"}, "--expires goes with --to ACTOR, not --to-db-login"},
		{"db login scope without a value", []string{"grant", "viewer", "--to-db-login", "bi", "--scope", "region="}, `--scope "region=" must be k=v with a value`},
		{"db login scope key in capitals", []string{"grant", "viewer", "--to-db-login", "bi", "--scope", "Region=eu"}, `key "Region" must match`},
		{"db login scope key twice", []string{"grant", "viewer", "--to-db-login", "bi", "--scope", "region=eu", "--scope", "region=us"}, `--scope key "region" is given twice`},
		{"grant with two roles", []string{"grant", "editor", "viewer", "--to", "subject:ada"}, "accepts 1 arg(s)"},
		{"revoke from an unknown actor kind", []string{"revoke", "editor", "--from", "user:ann"}, `revoke: --from "user:ann": ACTOR must be`},
		{"revoke from a bad api key", []string{"revoke", "editor", "--from", "api-key:123"}, `"123" is not a UUID`},
		{"revoke with both --from and --from-db-login", []string{"revoke", "editor", "--from", "subject:ada", "--from-db-login", "bi"}, "give --from ACTOR or --from-db-login LOGIN, not both"},
		{"revoke with neither --from nor --from-db-login", []string{"revoke", "editor"}, "--from ACTOR or --from-db-login LOGIN is required"},
	}
	for _, tc := range cases {
		r := runAPI(t, api, tc.args...)
		require.Equal(t, ExitUsage, r.code, "%s: %s", tc.name, r.stderr)
		require.True(t, strings.HasPrefix(r.stderr, "error: "), "%s: %s", tc.name, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.name)
		require.Empty(t, r.stdout, tc.name)
		require.Empty(t, api.requests(), "%s sent a request", tc.name)
	}
}

func TestGrantToActor(t *testing.T) {
	t.Parallel()
	answer := `{"id":"0193b6f0-0000-7000-8000-000000000001","role":"editor","subject_kind":"subject","subject":"ada",` +
		`"scope":{"region":"eu","team":"a=b,c"},"expires_at":"2099-01-02T01:04:05Z","created_at":"2026-01-01T00:00:00Z","created_by":"api_key:x"}`
	api := newFakeAPI(t, map[string]reply{"POST /admin/role-bindings": {http.StatusCreated, answer}})

	r := runAPI(t, api, "grant", "editor", "--to", "subject:ada", "--expires", "2099-01-02T03:04:05+02:00",
		"--scope", "region=eu", "--scope", "team=a=b,c")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"ID", "ROLE", "ACTOR", "EXPIRES", "SCOPE"},
		{"0193b6f0-0000-7000-8000-000000000001", "editor", "subject:ada", "2099-01-02T01:04:05Z", "region=eu,team=a=b,c"},
	}, tableRows(r.stdout))

	r = runAPI(t, api, "-o", "json", "grant", "editor", "--to", "group:data-team")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, answer, r.stdout, "-o json prints the API's binding")

	r = runAPI(t, api, "grant", "viewer", "--to", "api-key:0193B6F0-8C2E-7D4A-9B1F-2A3C4D5E6F70")
	require.Equal(t, ExitOK, r.code, r.stderr)

	reqs := api.requests()
	require.Len(t, reqs, 3)
	require.Equal(t, "POST /admin/role-bindings", reqs[0].Method+" "+reqs[0].Path)
	require.Equal(t, testKey, reqs[0].APIKey)
	require.Equal(t, "application/json", reqs[0].ContentType)
	require.JSONEq(t, `{"role":"editor","subject_kind":"subject","subject":"ada","expires_at":"2099-01-02T03:04:05+02:00",`+
		`"scope":{"region":"eu","team":"a=b,c"}}`, reqs[0].Body)
	require.JSONEq(t, `{"role":"editor","subject_kind":"group","subject":"data-team"}`, reqs[1].Body, "no expiry and no scope are left out")
	require.JSONEq(t, `{"role":"viewer","subject_kind":"api_key","subject":"0193b6f0-8c2e-7d4a-9b1f-2a3c4d5e6f70"}`, reqs[2].Body)
}

func TestGrantToActorRefusedByTheAPI(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/role-bindings": {http.StatusUnprocessableEntity,
		`{"status":422,"title":"Unprocessable Entity","detail":"validation failed","errors":[{"location":"body.role","message":"unknown role \"edtor\""}]}`}})
	r := runAPI(t, api, "grant", "edtor", "--to", "subject:ada")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: grant edtor to subject:ada: Unprocessable Entity (422): validation failed\n  body.role: unknown role \"edtor\"\n", r.stderr)
	require.Empty(t, r.stdout)
}

func TestRevokeFromActor(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{
		"DELETE /admin/role-bindings?role=editor&subject_kind=subject&subject=ada":      {http.StatusNoContent, ""},
		"DELETE /admin/role-bindings?role=viewer&subject_kind=group&subject=bi+%26+ops": {http.StatusNoContent, ""},
		"DELETE /admin/role-bindings?role=admin&subject_kind=subject&subject=ada": {http.StatusNotFound,
			`{"status":404,"title":"Not Found","detail":"no binding of role admin to subject ada"}`},
	})

	r := runAPI(t, api, "revoke", "editor", "--from", "subject:ada")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{{"ROLE", "ACTOR", "STATUS"}, {"editor", "subject:ada", "revoked"}}, tableRows(r.stdout))

	r = runAPI(t, api, "-o", "json", "revoke", "viewer", "--from", "group:bi & ops")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, `{"role":"viewer","actor":"group:bi & ops","status":"revoked"}`, r.stdout)

	r = runAPI(t, api, "revoke", "admin", "--from", "subject:ada")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: revoke admin from subject:ada: Not Found (404): no binding of role admin to subject ada\n", r.stderr)
	require.Empty(t, r.stdout)

	reqs := api.requests()
	require.Len(t, reqs, 3)
	require.Equal(t, request{Method: "DELETE", Path: "/admin/role-bindings?role=editor&subject_kind=subject&subject=ada", APIKey: testKey}, reqs[0])
	require.Equal(t, "/admin/role-bindings?role=viewer&subject_kind=group&subject=bi+%26+ops", reqs[1].Path, "the query is escaped")
}

// TestGrantAndRevokeAgainstRealAPI grants, lists and revokes a binding through a real API on
// a real Postgres, and checks the table afterwards.
func TestGrantAndRevokeAgainstRealAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRealAPI(t)
	bindings := func() []map[string]any {
		t.Helper()
		res := runEnv(t, r.env, "role", "list", "-o", "json")
		require.Equal(t, ExitOK, res.code, res.stderr)
		var list struct {
			Items []map[string]any `json:"items"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &list))
		var ada []map[string]any
		for _, b := range list.Items {
			if b["subject_kind"] == "subject" && b["subject"] == "ada" {
				ada = append(ada, b)
			}
		}
		return ada
	}
	rows := func() int {
		t.Helper()
		var n int
		require.NoError(t, r.db.Super(t).QueryRow(ctx,
			`SELECT count(*) FROM velocity.role_bindings WHERE subject_kind = 'subject' AND subject = 'ada'`).Scan(&n))
		return n
	}

	res := runEnv(t, r.env, "-o", "json", "grant", "editor", "--to", "subject:ada", "--scope", "region=eu",
		"--expires", "2099-01-02T03:04:05+02:00")
	require.Equal(t, ExitOK, res.code, res.stderr)
	var granted map[string]any
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &granted))
	require.Equal(t, "editor", granted["role"])
	require.Equal(t, map[string]any{"region": "eu"}, granted["scope"])
	expires, err := time.Parse(time.RFC3339, granted["expires_at"].(string))
	require.NoError(t, err)
	require.True(t, expires.Equal(time.Date(2099, 1, 2, 1, 4, 5, 0, time.UTC)), "expires_at %v", expires)

	listed := bindings()
	require.Len(t, listed, 1)
	require.Equal(t, granted["id"], listed[0]["id"])
	require.Equal(t, "editor", listed[0]["role"])
	require.Equal(t, map[string]any{"region": "eu"}, listed[0]["scope"])
	require.Equal(t, 1, rows())

	res = runEnv(t, r.env, "revoke", "editor", "--from", "subject:ada")
	require.Equal(t, ExitOK, res.code, res.stderr)
	require.Empty(t, bindings())
	require.Zero(t, rows())

	res = runEnv(t, r.env, "revoke", "editor", "--from", "subject:ada")
	require.Equal(t, ExitError, res.code)
	require.Contains(t, res.stderr, "error: revoke editor from subject:ada: Not Found (404)")
}

// TestGrantToDBLoginWithScopeAgainstRealAPI grants a role with scope attributes to a database
// login through a real API, connects as the login and reads its actor; granting again replaces
// the scope.
func TestGrantToDBLoginWithScopeAgainstRealAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRealAPI(t)
	login := "cli_scope_" + r.db.Name[len(r.db.Name)-6:]
	pw := writeFile(t, filepath.Join(t.TempDir(), "pw"), "correct-horse-battery\n")
	attributes := func() map[string]any {
		t.Helper()
		conn, err := pgx.Connect(ctx, r.db.LoginDSN(login, "correct-horse-battery"))
		require.NoError(t, err)
		defer func() { _ = conn.Close(ctx) }()
		var attrs map[string]any
		require.NoError(t, conn.QueryRow(ctx, `SELECT velocity.current_actor() -> 'attributes'`).Scan(&attrs))
		return attrs
	}

	res := runEnv(t, r.env, "grant", "viewer", "--to-db-login", login, "--password-file", pw, "--scope", "region=eu", "--scope", "team=a,b")
	require.Equal(t, ExitOK, res.code, res.stderr)
	rows := tableRows(res.stdout)
	require.Len(t, rows, 2)
	require.Equal(t, []string{"ID", "ROLE", "LOGIN", "SCOPE"}, rows[0])
	require.Equal(t, []string{"viewer", login, "region=eu,team=a,b"}, rows[1][1:])
	require.Equal(t, map[string]any{"region": "eu", "team": "a,b"}, attributes())

	res = runEnv(t, r.env, "role", "list", "-o", "json")
	require.Equal(t, ExitOK, res.code, res.stderr)
	var list struct {
		Items []roleBinding `json:"items"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &list))
	var found bool
	for _, b := range list.Items {
		if b.SubjectKind == "db_login" && b.Subject == login {
			found = true
			require.Equal(t, map[string]any{"region": "eu", "team": "a,b"}, b.Scope)
		}
	}
	require.True(t, found, "role list shows the login's binding")

	// Granting again replaces the scope; the password stays.
	res = runEnv(t, r.env, "-o", "json", "grant", "viewer", "--to-db-login", login, "--scope", "region=us")
	require.Equal(t, ExitOK, res.code, res.stderr)
	var granted dbLogin
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &granted))
	require.Equal(t, map[string]any{"region": "us"}, granted.Scope)
	require.Equal(t, map[string]any{"region": "us"}, attributes())
}
