package cli

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

const testKey = "vk_test_key"

// request is what fakeAPI saw of one request.
type request struct {
	Method      string
	Path        string // with the query, if any
	Body        string
	APIKey      string
	ContentType string
}

// reply is how fakeAPI answers a route. A status of 400 or more answers as problem+json.
type reply struct {
	status int
	body   string
}

// fakeAPI stands in for the API: it records every request and answers the routes it was
// given ("METHOD /path?query") the way the API would, and anything else with a 404 problem.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []request
}

func newFakeAPI(t *testing.T, routes map[string]reply) *fakeAPI {
	t.Helper()
	return newFakeAPIFunc(t, func(r *http.Request, _ int) reply {
		rep, ok := routes[r.Method+" "+r.URL.RequestURI()]
		if !ok {
			rep = reply{http.StatusNotFound, `{"status":404,"title":"Not Found","detail":"no route ` + r.Method + " " + r.URL.Path + `"}`}
		}
		return rep
	})
}

// newFakeAPIFunc is a fakeAPI that answers the nth request (from 1) with answer(r, n).
func newFakeAPIFunc(t *testing.T, answer func(r *http.Request, n int) reply) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, request{
			Method:      r.Method,
			Path:        r.URL.RequestURI(),
			Body:        string(body),
			APIKey:      r.Header.Get("X-API-Key"),
			ContentType: r.Header.Get("Content-Type"),
		})
		n := len(f.reqs)
		f.mu.Unlock()
		rep := answer(r, n)
		if rep.status >= 400 {
			w.Header().Set("Content-Type", "application/problem+json")
		} else if rep.body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(rep.status)
		io.WriteString(w, rep.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.reqs...)
}

// result is one run of the CLI.
type result struct {
	code   int
	stdout string
	stderr string
}

// runEnv runs the CLI with env as its whole environment. Unless env names a config file, it
// gets one that does not exist, so the machine's own config never leaks into a test.
func runEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	if _, ok := env[EnvConfig]; !ok {
		env = copyEnv(env)
		env[EnvConfig] = filepath.Join(t.TempDir(), "absent.yaml")
	}
	var out, errb bytes.Buffer
	code := execute(args, &out, &errb, func(k string) string { return env[k] })
	return result{code, out.String(), errb.String()}
}

// runAPI runs the CLI against api with the test key.
func runAPI(t *testing.T, api *fakeAPI, args ...string) result {
	t.Helper()
	return runEnv(t, nil, append([]string{"--api-url", api.URL, "--api-key", testKey}, args...)...)
}

func copyEnv(env map[string]string) map[string]string {
	c := map[string]string{}
	for k, v := range env {
		c[k] = v
	}
	return c
}

// tableRows splits table output into its rows' fields.
func tableRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestExitCodesOfUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"schema", "list", "--bogus"}},
		{"unknown command", []string{"bogus"}},
		{"unknown subcommand", []string{"schema", "bogus"}},
		{"unknown subcommand of a group in a group", []string{"api-key", "lst"}},
		{"bad -o", []string{"-o", "yaml", "schema", "list"}},
		{"flag without value", []string{"schema", "apply", "-f"}},
		{"apply without -f", []string{"schema", "apply"}},
		{"apply with an argument", []string{"schema", "apply", "-f", "x.yaml", "extra"}},
		{"diff without -f", []string{"schema", "diff"}},
		{"get without NAME", []string{"schema", "get"}},
		{"get with two names", []string{"schema", "get", "a", "b"}},
		{"list with an argument", []string{"schema", "list", "x"}},
		{"api-key revoke without ID", []string{"api-key", "revoke"}},
		{"api-key create without --name", []string{"api-key", "create", "--role", "admin"}},
		{"api-key create without --role", []string{"api-key", "create", "--name", "ci"}},
		{"api-key create with a bad --ttl", []string{"api-key", "create", "--name", "ci", "--role", "admin", "--ttl", "30 days"}},
		{"api-key create with a negative --ttl", []string{"api-key", "create", "--name", "ci", "--role", "admin", "--ttl", "-1h"}},
		{"api-key create with a bad --allow-ip", []string{"api-key", "create", "--name", "ci", "--role", "admin", "--allow-ip", "10.0.0.0/33"}},
		{"grant without ROLE", []string{"grant", "--to-db-login", "bi"}},
		{"grant without --to-db-login", []string{"grant", "viewer"}},
		{"grant --to is not there yet", []string{"grant", "viewer", "--to", "user:ann"}},
		{"revoke without --from-db-login", []string{"revoke", "viewer"}},
		{"revoke with two roles", []string{"revoke", "viewer", "editor", "--from-db-login", "bi"}},
		{"role list with an argument", []string{"role", "list", "x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// None of these reach the network or read settings, so Execute itself is safe here.
			var out, errb bytes.Buffer
			code := Execute(append([]string{"--api-url", "http://127.0.0.1:1"}, tc.args...), &out, &errb)
			require.Equal(t, ExitUsage, code, "stderr: %s", errb.String())
			require.True(t, strings.HasPrefix(errb.String(), "error: "), errb.String())
		})
	}
}

func TestGroupWithoutSubcommandPrintsHelp(t *testing.T) {
	t.Parallel()
	r := runEnv(t, nil, "schema")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "velocity schema [command]")
	require.Contains(t, r.stdout, "apply")
}

func TestNoAPIURLIsAUsageError(t *testing.T) {
	t.Parallel()
	r := runEnv(t, nil, "schema", "list")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "no API URL")
}

func TestAPIErrorExitsOne(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{
		"GET /admin/schemas": {http.StatusForbidden, `{"status":403,"title":"Forbidden","detail":"role viewer may not list schemas","layer":1}`},
	})
	r := runAPI(t, api, "schema", "list")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: list schemas: Forbidden (403): role viewer may not list schemas\n", r.stderr)
	require.Empty(t, r.stdout)
}

func TestUnreachableAPIExitsOneNamingTheURL(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	url := api.URL
	api.Close()
	r := runEnv(t, nil, "--api-url", url, "role", "list")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "GET "+url+"/admin/role-bindings: ")
}

func TestSettingsPrecedence(t *testing.T) {
	t.Parallel()
	ok := map[string]reply{"GET /admin/role-bindings": {http.StatusOK, `{"items":[]}`}}
	flagAPI, envAPI, configAPI := newFakeAPI(t, ok), newFakeAPI(t, ok), newFakeAPI(t, ok)

	config := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, SaveConfig(config, Config{APIURL: configAPI.URL, APIKey: "vk_config"}))
	info, err := os.Stat(config)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the config holds a secret")

	cases := []struct {
		name    string
		env     map[string]string
		flags   []string
		wantAPI *fakeAPI
		wantKey string
	}{
		{"config file only", map[string]string{}, nil, configAPI, "vk_config"},
		{"env over config", map[string]string{EnvAPIURL: envAPI.URL, EnvAPIKey: "vk_env"}, nil, envAPI, "vk_env"},
		{"env URL, config key", map[string]string{EnvAPIURL: envAPI.URL}, nil, envAPI, "vk_config"},
		{"flags over env", map[string]string{EnvAPIURL: envAPI.URL, EnvAPIKey: "vk_env"}, []string{"--api-url", flagAPI.URL, "--api-key", "vk_flag"}, flagAPI, "vk_flag"},
		{"flag URL, env key", map[string]string{EnvAPIURL: envAPI.URL, EnvAPIKey: "vk_env"}, []string{"--api-url", flagAPI.URL}, flagAPI, "vk_env"},
	}
	for _, tc := range cases {
		env := copyEnv(tc.env)
		env[EnvConfig] = config
		r := runEnv(t, env, append(tc.flags, "role", "list")...)
		require.Equal(t, ExitOK, r.code, "%s: %s", tc.name, r.stderr)
		reqs := tc.wantAPI.requests()
		require.NotEmpty(t, reqs, tc.name)
		require.Equal(t, tc.wantKey, reqs[len(reqs)-1].APIKey, tc.name)
	}
	require.Len(t, configAPI.requests(), 1)
	require.Len(t, envAPI.requests(), 2)
	require.Len(t, flagAPI.requests(), 2)
}

func TestDatabaseURLPrecedence(t *testing.T) {
	t.Parallel()
	config := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, SaveConfig(config, Config{DatabaseURL: "postgres://config"}))
	cases := []struct {
		flag string
		env  map[string]string
		want string
	}{
		{"", map[string]string{EnvConfig: config}, "postgres://config"},
		{"", map[string]string{EnvConfig: config, EnvDatabaseURL: "postgres://env"}, "postgres://env"},
		{"postgres://flag", map[string]string{EnvConfig: config, EnvDatabaseURL: "postgres://env"}, "postgres://flag"},
	}
	for _, tc := range cases {
		g := &globals{databaseURLFlag: tc.flag, getenv: func(k string) string { return tc.env[k] }, stderr: io.Discard}
		got, err := g.databaseURL()
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
	}
	g := &globals{getenv: func(string) string { return "" }, config: &Config{}, stderr: io.Discard}
	_, err := g.databaseURL()
	var u usageError
	require.ErrorAs(t, err, &u)
}

func TestBadConfigFileWarns(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"GET /admin/role-bindings": {http.StatusOK, `{"items":[]}`}})
	config := writeFile(t, filepath.Join(t.TempDir(), "config.yaml"), "api_urll: typo\n")
	r := runEnv(t, map[string]string{EnvConfig: config, EnvAPIURL: api.URL}, "role", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "warning: config "+config)
}
