package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/oidctest"
)

// syncBuffer is a bytes.Buffer that the CLI writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// loginEnv is a CLI environment whose config dir, and so token file, is the test's own.
func loginEnv(t *testing.T) (env map[string]string, tokenFile string) {
	dir := t.TempDir()
	return map[string]string{EnvConfig: filepath.Join(dir, "config.yaml")}, filepath.Join(dir, "token.json")
}

// startProvider runs an OIDC provider that takes the CLI's loopback redirect on any port.
func startProvider(t *testing.T) *oidctest.Provider {
	p := oidctest.Start(t)
	p.RegisterRedirectURI("http://127.0.0.1/callback")
	p.SetUser("ann@example.com", map[string]any{"email": "ann@example.com"})
	return p
}

// login runs `auth login --no-browser` in the background. It returns the authorization URL
// the command printed and a function that waits for the command to exit.
func login(t *testing.T, env map[string]string, args ...string) (authURL string, wait func() result) {
	t.Helper()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(append([]string{"auth", "login", "--no-browser"}, args...), &out, &errb, func(k string) string { return env[k] })
	}()
	wait = func() result {
		select {
		case code := <-done:
			return result{code, out.String(), errb.String()}
		case <-time.After(30 * time.Second):
			t.Fatalf("auth login did not exit; stderr: %s", errb.String())
			return result{}
		}
	}
	const prefix = "Open this URL to log in: "
	require.Eventually(t, func() bool {
		return strings.Contains(errb.String(), prefix) || len(done) > 0
	}, 10*time.Second, 5*time.Millisecond)
	s := errb.String()
	i := strings.Index(s, prefix)
	if i < 0 {
		r := wait()
		t.Fatalf("auth login exited %d before printing the URL: %s", r.code, r.stderr)
	}
	line, _, _ := strings.Cut(s[i+len(prefix):], "\n")
	return line, wait
}

// noRedirects is the test's browser: it shows each redirect instead of following it.
var noRedirects = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// authorize does the browser's part up to the redirect: it returns the callback URL.
func authorize(t *testing.T, authURL string) *url.URL {
	t.Helper()
	resp, err := noRedirects.Get(authURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	loc, err := resp.Location()
	require.NoError(t, err)
	return loc
}

// visit GETs the callback as the browser would and returns the page's status and body.
func visit(t *testing.T, u *url.URL) (int, string) {
	t.Helper()
	resp, err := noRedirects.Get(u.String())
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestAuthLoginEndToEnd(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	env, tokenFile := loginEnv(t)

	authURL, wait := login(t, env, "--issuer", p.Issuer(), "--client-id", p.ClientID, "--scope", "email")
	u, err := url.Parse(authURL)
	require.NoError(t, err)
	require.Equal(t, p.Issuer()+"/authorize", u.Scheme+"://"+u.Host+u.Path)
	require.Equal(t, "S256", u.Query().Get("code_challenge_method"))
	require.Equal(t, "openid email", u.Query().Get("scope"))
	require.True(t, strings.HasPrefix(u.Query().Get("redirect_uri"), "http://127.0.0.1:"))

	callback := authorize(t, authURL)
	require.Equal(t, "/callback", callback.Path)
	status, page := visit(t, callback)
	require.Equal(t, http.StatusOK, status, page)
	require.Contains(t, page, "close this tab")

	r := wait()
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "Logged in as ann@example.com until ")

	info, err := os.Stat(tokenFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the token file holds a bearer token")
	var stored storedLogin
	data, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &stored))
	require.Equal(t, p.Issuer(), stored.Issuer)
	require.NotContains(t, r.stdout+r.stderr, stored.Token, "the token is never printed")

	v, err := auth.NewJWTVerifier([]auth.IssuerConfig{{Issuer: p.Issuer(), JWKSURL: p.JWKSURL(), Audiences: []string{p.ClientID}}}, auth.JWTOptions{})
	require.NoError(t, err)
	vt, err := v.Verify(context.Background(), stored.Token)
	require.NoError(t, err)
	require.Equal(t, "ann@example.com", vt.Subject)
	require.WithinDuration(t, vt.Expiry, stored.ExpiresAt, time.Second)

	st := runEnv(t, env, "auth", "status")
	require.Equal(t, ExitOK, st.code, st.stderr)
	require.Contains(t, st.stdout, "ann@example.com")
	require.Contains(t, st.stdout, p.Issuer())
	require.NotContains(t, st.stdout, stored.Token)
	st = runEnv(t, env, "-o", "json", "auth", "status")
	require.Equal(t, ExitOK, st.code, st.stderr)
	require.JSONEq(t, `{"issuer":"`+p.Issuer()+`","subject":"ann@example.com","expires_at":"`+stored.ExpiresAt.Format(time.RFC3339Nano)+`"}`, st.stdout)

	// An API call sends the stored token; an API key, when given, wins over it.
	var mu sync.Mutex
	var authz []string
	api := newFakeAPIFunc(t, func(r *http.Request, _ int) reply {
		mu.Lock()
		defer mu.Unlock()
		authz = append(authz, r.Header.Get("Authorization"))
		return reply{http.StatusOK, `{"items":[]}`}
	})
	withURL := copyEnv(env)
	withURL[EnvAPIURL] = api.URL
	r = runEnv(t, withURL, "role", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	r = runEnv(t, withURL, "--api-key", testKey, "role", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	reqs := api.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, []string{"Bearer " + stored.Token, ""}, authz)
	require.Equal(t, []string{"", testKey}, []string{reqs[0].APIKey, reqs[1].APIKey})

	r = runEnv(t, env, "auth", "logout")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.NoFileExists(t, tokenFile)
	st = runEnv(t, env, "auth", "status")
	require.Equal(t, ExitError, st.code)
	require.Contains(t, st.stderr, "not logged in")
	r = runEnv(t, env, "auth", "logout")
	require.Equal(t, ExitOK, r.code, "logging out twice is fine: %s", r.stderr)
}

func TestAuthLoginSettingsFromEnv(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	env, tokenFile := loginEnv(t)
	env[EnvOIDCIssuer], env[EnvOIDCClientID] = p.Issuer(), p.ClientID

	authURL, wait := login(t, env, "-o", "json")
	status, page := visit(t, authorize(t, authURL))
	require.Equal(t, http.StatusOK, status, page)
	r := wait()
	require.Equal(t, ExitOK, r.code, r.stderr)
	var out map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	require.Equal(t, "ann@example.com", out["subject"])
	require.NotContains(t, out, "token")
	require.FileExists(t, tokenFile)
}

func TestAuthLoginWrongStateFails(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	env, tokenFile := loginEnv(t)

	authURL, wait := login(t, env, "--issuer", p.Issuer(), "--client-id", p.ClientID)
	callback := authorize(t, authURL)
	q := callback.Query()
	q.Set("state", "forged")
	callback.RawQuery = q.Encode()
	status, page := visit(t, callback)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, page, "state does not match")

	r := wait()
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "error: auth login: the redirect's state does not match this login")
	require.Zero(t, p.TokenRequests(), "a forged redirect's code is never redeemed")
	require.NoFileExists(t, tokenFile)
}

func TestAuthLoginRejectedPKCEFails(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	p.SetRejectPKCE(true)
	env, tokenFile := loginEnv(t)

	authURL, wait := login(t, env, "--issuer", p.Issuer(), "--client-id", p.ClientID)
	status, _ := visit(t, authorize(t, authURL))
	require.Equal(t, http.StatusBadRequest, status)

	r := wait()
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "the identity provider refused the authorization code: invalid_grant")
	require.NoFileExists(t, tokenFile)
}

func TestAuthLoginWrongNonceFails(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	p.SetWrongNonce(true)
	env, tokenFile := loginEnv(t)

	authURL, wait := login(t, env, "--issuer", p.Issuer(), "--client-id", p.ClientID)
	visit(t, authorize(t, authURL))
	r := wait()
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "nonce does not match")
	require.NoFileExists(t, tokenFile)
}

func TestAuthLoginConfidentialClient(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	p.SetClientSecret("s3cret")
	env, _ := loginEnv(t)

	authURL, wait := login(t, env, "--issuer", p.Issuer(), "--client-id", p.ClientID, "--client-secret", "s3cret")
	visit(t, authorize(t, authURL))
	r := wait()
	require.Equal(t, ExitOK, r.code, r.stderr)
}

func TestAuthLoginTimesOut(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	env, _ := loginEnv(t)
	_, wait := login(t, env, "--issuer", p.Issuer(), "--client-id", p.ClientID, "--timeout", "200ms")
	r := wait()
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "no redirect from the identity provider within 200ms")
}

func TestAuthLoginUsageErrors(t *testing.T) {
	t.Parallel()
	p := startProvider(t)
	r := runEnv(t, nil, "auth", "login", "--client-id", "x")
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "no issuer")
	r = runEnv(t, nil, "auth", "login", "--issuer", p.Issuer())
	require.Equal(t, ExitUsage, r.code)
	require.Contains(t, r.stderr, "no client id")

	// An issuer that is not the one its discovery document names is refused before any URL.
	r = runEnv(t, nil, "auth", "login", "--issuer", p.Issuer()+"/", "--client-id", p.ClientID)
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "oidc discovery")
	require.NotContains(t, r.stderr, "Open this URL")
}

func TestExpiredStoredTokenAsksForLogin(t *testing.T) {
	t.Parallel()
	env, tokenFile := loginEnv(t)
	require.NoError(t, saveLogin(tokenFile, storedLogin{
		Issuer: "https://idp.example", Subject: "ann", Token: "expired.jwt.token", ExpiresAt: time.Now().Add(-time.Minute),
	}))
	api := newFakeAPI(t, map[string]reply{"GET /admin/role-bindings": {http.StatusOK, `{"items":[]}`}})
	env[EnvAPIURL] = api.URL

	r := runEnv(t, env, "role", "list")
	require.Equal(t, ExitError, r.code)
	require.Contains(t, r.stderr, "expired at")
	require.Contains(t, r.stderr, "run `velocity auth login` again")
	require.Empty(t, api.requests(), "an expired token is not sent")

	st := runEnv(t, env, "auth", "status")
	require.Equal(t, ExitError, st.code)
	require.Contains(t, st.stdout, "ann")
	require.Contains(t, st.stderr, "run `velocity auth login` again")

	// An API key still works without a login.
	r = runEnv(t, env, "--api-key", testKey, "role", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
}
