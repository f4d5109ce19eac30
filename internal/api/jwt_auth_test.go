package api_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
)

// idp is an identity provider for tests: a JWKS endpoint and a key to sign tokens with.
type idp struct {
	t      *testing.T
	issuer string
	key    *rsa.PrivateKey
	jwks   *httptest.Server
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	p := &idp{t: t, issuer: "https://idp.test/", key: key}
	p.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(p.jwks.Close)
	return p
}

// token signs claims over the defaults: this issuer, audience velocity, valid for an hour.
func (p *idp) token(claims map[string]any) string {
	p.t.Helper()
	all := map[string]any{"iss": p.issuer, "aud": "velocity", "sub": "ada", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	for k, v := range claims {
		all[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	require.NoError(p.t, err)
	raw, err := jwt.Signed(signer).Claims(all).Serialize()
	require.NoError(p.t, err)
	return raw
}

func (p *idp) config(strategies ...string) *auth.Config {
	p.t.Helper()
	raw, err := json.Marshal(map[string]any{
		"strategies": strategies,
		"jwt": map[string]any{"issuers": []any{map[string]any{
			"issuer": p.issuer, "jwksURL": p.jwks.URL, "audiences": []string{"velocity"},
			"claims": map[string]any{
				"roles":      []any{map[string]any{"claim": "groups", "transforms": []any{map[string]any{"kind": "prefix_strip", "prefix": "velocity-"}}}},
				"attributes": map[string]any{"region": map[string]any{"claim": "region"}},
			},
		}}},
	})
	require.NoError(p.t, err)
	cfg, err := auth.LoadConfig(raw)
	require.NoError(p.t, err)
	return &cfg
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

func TestJWTAuthentication(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	e := newEnv(t, api.Config{Auth: p.config(auth.StrategyAPIKey, auth.StrategyJWT)})
	e.apply("testdata/orders.yaml")

	editor := p.token(map[string]any{"groups": []string{"velocity-editor", "other-team"}, "region": "eu"})
	r := e.do("POST", ordersPath, "", map[string]any{"customer_email": "jwt@example.com"}, append(bearer(editor), "X-Request-ID", "req-jwt-1")...)
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, "jwt:ada", r.json(t)["created_by"])

	decision := e.waitAudit("request_id=req-jwt-1&action=authz", 1)[0]
	require.Equal(t, "jwt", decision["strategy"])
	require.Equal(t, "jwt:ada", decision["actor"])

	viewer := p.token(map[string]any{"sub": "bob", "groups": []string{"velocity-viewer"}})
	p403 := requireProblem(t, e.do("POST", ordersPath, "", map[string]any{"customer_email": "v@example.com"}, bearer(viewer)...), http.StatusForbidden)
	require.EqualValues(t, 1, p403["layer"])
	require.Equal(t, http.StatusOK, e.do("GET", ordersPath, "", nil, bearer(viewer)...).status)

	// Refused tokens are 401 with a Bearer challenge, and audited with the strategy.
	for name, tok := range map[string]string{
		"expired":      p.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}),
		"wrong aud":    p.token(map[string]any{"aud": "someone-else"}),
		"unknown iss":  p.token(map[string]any{"iss": "https://evil.test/"}),
		"not a jwt":    "not.a.jwt",
		"tampered sig": editor[:len(editor)-4] + "AAAA",
	} {
		r := e.do("GET", ordersPath, "", nil, append(bearer(tok), "X-Request-ID", "req-bad-"+name)...)
		requireProblem(t, r, http.StatusUnauthorized)
		require.Contains(t, r.header.Get("WWW-Authenticate"), `Bearer error="invalid_token"`, name)
		authn := e.waitAudit("request_id="+urlQuery("req-bad-"+name), 1)[0]
		require.Equal(t, "authn", authn["action"], name)
		require.Equal(t, "jwt", authn["strategy"], name)
	}
	// No token in any entry.
	all, _ := e.auditItems("limit=1000")
	require.NotContains(t, string(toJSON(t, all)), editor[:40])
}

// The first strategy that recognizes a credential decides: a bad token is refused even
// beside a good API key when jwt comes first, and the API key decides when it comes first.
func TestAuthStrategiesInOrder(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	bad := "Bearer " + p.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})

	jwtFirst := newEnv(t, api.Config{Auth: p.config(auth.StrategyJWT, auth.StrategyAPIKey)})
	jwtFirst.apply("testdata/orders.yaml")
	requireProblem(t, jwtFirst.do("GET", ordersPath, jwtFirst.admin, nil, "Authorization", bad), http.StatusUnauthorized)
	require.Equal(t, http.StatusOK, jwtFirst.do("GET", ordersPath, jwtFirst.admin, nil).status)

	keyFirst := newEnv(t, api.Config{Auth: p.config(auth.StrategyAPIKey, auth.StrategyJWT)})
	keyFirst.apply("testdata/orders.yaml")
	require.Equal(t, http.StatusOK, keyFirst.do("GET", ordersPath, keyFirst.admin, nil, "Authorization", bad).status)

	// Without jwt configured, a bearer token is no credential at all.
	keysOnly := newEnv(t, api.Config{})
	r := keysOnly.do("GET", "/admin/schemas", "", nil, "Authorization", bad)
	requireProblem(t, r, http.StatusUnauthorized)
	require.Contains(t, string(r.body), "send X-API-Key")
}

func urlQuery(s string) string { return url.QueryEscape(s) }

// When the JWKS endpoint goes down, the cached keys serve until they expire; then requests
// with tokens fail closed with 503, audited as failed with fail_mode closed. Secrets never
// reach the logs, whatever happens.
func TestJWTFailsClosedAndLogsNoSecrets(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	var logs syncBuffer
	e := newEnv(t, api.Config{
		Auth:   p.config(auth.StrategyAPIKey, auth.StrategyJWT),
		JWT:    auth.JWTOptions{Now: func() time.Time { return *clock.Load() }, DefaultKeyTTL: time.Minute},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	e.apply("testdata/orders.yaml")
	token := p.token(map[string]any{"groups": []string{"velocity-viewer"}})
	require.Equal(t, http.StatusOK, e.do("GET", ordersPath, "", nil, bearer(token)...).status)

	p.jwks.Close()
	other := p.token(map[string]any{"sub": "bob", "groups": []string{"velocity-viewer"}})
	require.Equal(t, http.StatusOK, e.do("GET", ordersPath, "", nil, bearer(other)...).status, "cached keys still serve")

	later := now.Add(2 * time.Minute)
	clock.Store(&later)
	third := p.token(map[string]any{"sub": "cy", "exp": later.Add(time.Hour).Unix(), "groups": []string{"velocity-viewer"}})
	r := e.do("GET", ordersPath, "", nil, append(bearer(third), "X-Request-ID", "req-jwks-down")...)
	requireProblem(t, r, http.StatusServiceUnavailable)
	requireProblem(t, e.do("GET", "/openapi.json", "", nil, bearer(third)...), http.StatusServiceUnavailable)
	entry := e.waitAudit("request_id=req-jwks-down", 1)[0]
	require.Equal(t, "failed", entry["outcome"])
	require.Equal(t, "closed", entry["fail_mode"])
	require.Equal(t, "jwt", entry["strategy"])

	// A wrong API key, a bad token: none of the secrets is in the log.
	e.do("GET", ordersPath, "vk_"+strings.Repeat("z", 43), nil)
	e.do("GET", ordersPath, "", nil, bearer(token+"x")...)
	out := logs.String()
	require.Contains(t, out, "authenticate", "the 503 was logged")
	for _, secret := range []string{token, other, third, e.admin, strings.Repeat("z", 43)} {
		require.NotContains(t, out, secret)
		require.NotContains(t, out, secret[len(secret)-20:], "not even a part of it")
	}
}

// syncBuffer is a bytes.Buffer that the server's goroutines may write while the test reads.
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
