package api_test

import (
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/oidctest"
	"github.com/velocitydev/velocity/internal/store"
)

// A browser logs in through the OIDC provider (authorization code + PKCE), gets a session
// cookie, uses the API with it as the session strategy, and logs out.
func TestOIDCBrowserLogin(t *testing.T) {
	t.Parallel()
	prov := oidctest.Start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + ln.Addr().String()
	prov.RegisterRedirectURI(base + "/auth/callback")
	prov.SetUser("alice", map[string]any{"groups": []string{"velocity-editor"}})

	raw, err := json.Marshal(map[string]any{
		"strategies": []string{auth.StrategyAPIKey, auth.StrategySession},
		"jwt": map[string]any{"issuers": []any{map[string]any{
			"issuer": prov.Issuer(), "jwksURL": prov.JWKSURL(), "audiences": []string{prov.ClientID},
			"claims": map[string]any{"roles": []any{map[string]any{"claim": "groups", "transforms": []any{map[string]any{"kind": "prefix_strip", "prefix": "velocity-"}}}}},
		}}},
		"oidc": map[string]any{"issuer": prov.Issuer(), "clientID": prov.ClientID, "redirectURL": base + "/auth/callback"},
	})
	require.NoError(t, err)
	cfg, err := auth.LoadConfig(raw)
	require.NoError(t, err)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e := newEnvFor(t, func(*store.Store) api.Config { return api.Config{Auth: &cfg, SessionKey: key} })
	e.apply("testdata/orders.yaml")
	hs := &httptest.Server{Listener: ln, Config: &http.Server{Handler: e.server}}
	hs.Start()
	t.Cleanup(hs.Close)

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) *http.Response {
		t.Helper()
		res, err := browser.Get(u)
		require.NoError(t, err)
		res.Body.Close()
		return res
	}
	res := get(base + "/auth/login?return_to=" + ordersPath)
	require.Equal(t, http.StatusFound, res.StatusCode)
	require.True(t, strings.HasPrefix(res.Header.Get("Location"), prov.Issuer()), res.Header.Get("Location"))
	res = get(res.Header.Get("Location")) // the provider signs alice in
	require.Equal(t, http.StatusFound, res.StatusCode)
	res = get(res.Header.Get("Location")) // the callback
	require.Equal(t, http.StatusFound, res.StatusCode)
	require.Equal(t, ordersPath, res.Header.Get("Location"))

	res = get(base + ordersPath)
	require.Equal(t, http.StatusOK, res.StatusCode)
	req, _ := http.NewRequest("POST", base+ordersPath, strings.NewReader(`{"customer_email": "alice@example.com"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-ID", "req-session-1")
	res, err = browser.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	entry := e.waitAudit("request_id=req-session-1&action=authz", 1)[0]
	require.Equal(t, "session", entry["strategy"])
	require.Equal(t, "jwt:alice", entry["actor"])

	req, _ = http.NewRequest("POST", base+"/auth/logout", nil)
	res, err = browser.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Contains(t, []int{http.StatusNoContent, http.StatusFound}, res.StatusCode)
	require.Equal(t, http.StatusUnauthorized, get(base+ordersPath).StatusCode, "logged out")

	// The login itself is audited, and so is a callback that fails.
	require.Equal(t, http.StatusBadRequest, get(base+"/auth/callback?code=x&state=forged").StatusCode)
	outcomes := map[string]int{}
	for _, it := range e.waitAudit("action=authn.login", 2) {
		require.Equal(t, "session", it["strategy"])
		outcomes[it["outcome"].(string)]++
	}
	require.Equal(t, map[string]int{"allowed": 1, "denied": 1}, outcomes)
}
