package auth

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/oidctest"
)

// oidcFlow is an app serving the login routes and /whoami, an OIDC provider, and a browser
// with a cookie jar that follows redirects only when the test does.
type oidcFlow struct {
	provider *oidctest.Provider
	app      *httptest.Server
	oidc     *OIDC
	strategy Strategy
	clock    *testClock
	jar      http.CookieJar
	browser  *http.Client
}

type flowOptions struct {
	tls          bool
	clientSecret string
}

func newOIDCFlow(t *testing.T, fo flowOptions) *oidcFlow {
	t.Helper()
	f := &oidcFlow{provider: oidctest.Start(t), clock: newTestClock()}
	f.provider.SetUser("alice", map[string]any{
		"groups": []string{"velocity-editor", "staff"},
		"tenant": "acme",
		"email":  "alice@example.com",
	})
	f.provider.SetClientSecret(fo.clientSecret)

	mux := http.NewServeMux()
	if fo.tls {
		f.app = httptest.NewTLSServer(mux)
	} else {
		f.app = httptest.NewServer(mux)
	}
	t.Cleanup(f.app.Close)
	redirect := f.app.URL + "/auth/callback"
	f.provider.RegisterRedirectURI(redirect)

	verifier, err := NewJWTVerifier([]IssuerConfig{{
		Issuer: f.provider.Issuer(), JWKSURL: f.provider.JWKSURL(), Audiences: []string{f.provider.ClientID},
	}}, JWTOptions{})
	require.NoError(t, err)
	f.oidc, err = NewOIDC(OIDCConfig{
		Issuer: f.provider.Issuer(), ClientID: f.provider.ClientID, ClientSecret: fo.clientSecret, RedirectURL: redirect,
	}, verifier, []byte(strings.Repeat("k", 32)), OIDCOptions{Now: f.clock.Now})
	require.NoError(t, err)
	mapping, err := ClaimMapping{
		Roles:      []ClaimRule{{Claim: "groups", Transforms: []ClaimTransform{{Kind: TransformPrefixStrip, Prefix: "velocity-"}}}},
		Attributes: map[string]ClaimRule{"tenant": {Claim: "tenant"}},
	}.Compile()
	require.NoError(t, err)
	f.strategy = f.oidc.SessionStrategy(mapping)
	chain := Chain{f.strategy}

	mux.HandleFunc("GET /auth/login", f.oidc.Login)
	mux.HandleFunc("GET /auth/callback", f.oidc.Callback)
	mux.HandleFunc("/auth/logout", f.oidc.Logout)
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		actor, _, err := chain.Authenticate(r.Context(), r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(actor)
	})

	f.jar, err = cookiejar.New(nil)
	require.NoError(t, err)
	f.browser = f.newBrowser(f.jar)
	return f
}

// newBrowser is a client of the app (trusting its TLS certificate) that does not follow
// redirects.
func (f *oidcFlow) newBrowser(jar http.CookieJar) *http.Client {
	c := *f.app.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (f *oidcFlow) get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

// login goes to /auth/login and through the provider's /authorize, and returns the
// provider's redirect back to /auth/callback, not yet followed.
func (f *oidcFlow) login(t *testing.T, returnTo string) string {
	t.Helper()
	u := f.app.URL + "/auth/login"
	if returnTo != "" {
		u += "?return_to=" + url.QueryEscape(returnTo)
	}
	resp, _ := f.get(t, f.browser, u)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	authorize := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(authorize, f.provider.Issuer()+"/authorize?"), "login redirects to %s", authorize)

	resp, body := f.get(t, f.browser, authorize)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	callback := resp.Header.Get("Location")
	require.True(t, strings.HasPrefix(callback, f.app.URL+"/auth/callback?"), "provider redirects to %s", callback)
	return callback
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// requireProblem checks an RFC 9457 answer that does not quote the authorization code.
func requireProblem(t *testing.T, resp *http.Response, body string, status int, detail, code string) {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, body)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &p))
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Title)
	require.Contains(t, p.Detail, detail)
	if code != "" {
		require.NotContains(t, body, code)
	}
	require.Nil(t, cookieNamed(resp, SessionCookie), "a failed callback sets no session")
}

func queryParam(t *testing.T, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Query().Get(name)
}

func TestOIDCLoginFlow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fo   flowOptions
	}{
		{"http public client", flowOptions{}},
		{"tls confidential client", flowOptions{tls: true, clientSecret: "s3cret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newOIDCFlow(t, tc.fo)

			resp, _ := f.get(t, f.browser, f.app.URL+"/auth/login?return_to="+url.QueryEscape("/acme/orders?limit=5"))
			require.Equal(t, http.StatusFound, resp.StatusCode)
			lc := cookieNamed(resp, LoginCookie)
			require.NotNil(t, lc)
			require.True(t, lc.HttpOnly)
			require.Equal(t, http.SameSiteLaxMode, lc.SameSite)
			require.Equal(t, tc.fo.tls, lc.Secure)
			require.Equal(t, "/auth/callback", lc.Path)
			require.Positive(t, lc.MaxAge)

			authorize := resp.Header.Get("Location")
			resp, body := f.get(t, f.browser, authorize)
			require.Equal(t, http.StatusFound, resp.StatusCode, body)
			callback := resp.Header.Get("Location")
			auths := f.provider.Authorizations()
			require.Len(t, auths, 1)
			a := auths[0]
			require.Equal(t, "S256", a.CodeChallengeMethod)
			require.Len(t, a.CodeChallenge, 43)
			require.Len(t, a.State, 43)
			require.Len(t, a.Nonce, 43)
			require.NotEqual(t, a.State, a.Nonce)
			require.Equal(t, "openid profile email", a.Scope)
			require.NotContains(t, lc.Value, a.State, "the login cookie is encoded, state is not in it verbatim")

			resp, body = f.get(t, f.browser, callback)
			require.Equal(t, http.StatusFound, resp.StatusCode, body)
			require.Equal(t, "/acme/orders?limit=5", resp.Header.Get("Location"))
			require.Equal(t, 1, f.provider.TokenRequests())
			cleared := cookieNamed(resp, LoginCookie)
			require.NotNil(t, cleared)
			require.Negative(t, cleared.MaxAge, "the login cookie serves one callback")
			sc := cookieNamed(resp, SessionCookie)
			require.NotNil(t, sc)
			require.True(t, sc.HttpOnly)
			require.Equal(t, http.SameSiteLaxMode, sc.SameSite)
			require.Equal(t, tc.fo.tls, sc.Secure)
			require.Equal(t, "/", sc.Path)
			require.Equal(t, int((8 * time.Hour).Seconds()), sc.MaxAge)
			require.WithinDuration(t, time.Now().Add(8*time.Hour), sc.Expires, time.Minute)
			require.True(t, strings.HasPrefix(sc.Value, "v1."))

			resp, body = f.get(t, f.browser, f.app.URL+"/whoami")
			require.Equal(t, http.StatusOK, resp.StatusCode, body)
			var actor struct {
				ID         string         `json:"id"`
				Kind       string         `json:"kind"`
				Roles      []string       `json:"roles"`
				Attributes map[string]any `json:"attributes"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &actor))
			require.Equal(t, "jwt:alice", actor.ID)
			require.Equal(t, "session", actor.Kind)
			require.Equal(t, []string{"editor"}, actor.Roles)
			require.Equal(t, map[string]any{"tenant": "acme"}, actor.Attributes)

			// Logout clears the browser's cookie.
			resp, _ = f.get(t, f.browser, f.app.URL+"/auth/logout")
			require.Equal(t, http.StatusNoContent, resp.StatusCode)
			gone := cookieNamed(resp, SessionCookie)
			require.NotNil(t, gone)
			require.Negative(t, gone.MaxAge)
			require.Empty(t, gone.Value)
			require.Equal(t, tc.fo.tls, gone.Secure)
			resp, body = f.get(t, f.browser, f.app.URL+"/whoami")
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.Contains(t, body, ErrNoCredential.Error())

			// The session is stateless: a copy of the old value stays valid until it expires.
			// Cutting a subject off is /admin/revocations' job (TokenID is the session id).
			req := httptest.NewRequest(http.MethodGet, "/whoami", nil)
			req.AddCookie(&http.Cookie{Name: SessionCookie, Value: sc.Value})
			got, err := f.strategy.Authenticate(t.Context(), req)
			require.NoError(t, err)
			require.Equal(t, "jwt:alice", got.ID)
			require.Len(t, got.TokenID, 43)
		})
	}
}

func TestOIDCCallbackStateChecks(t *testing.T) {
	t.Parallel()

	t.Run("state mismatch", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		code := queryParam(t, callback, "code")
		bad := strings.Replace(callback, "state=", "state=x", 1)
		resp, body := f.get(t, f.browser, bad)
		requireProblem(t, resp, body, http.StatusBadRequest, "query.state", code)
		require.Zero(t, f.provider.TokenRequests(), "the code is not redeemed")
	})

	t.Run("missing state", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		u, _ := url.Parse(callback)
		q := u.Query()
		q.Del("state")
		u.RawQuery = q.Encode()
		resp, body := f.get(t, f.browser, u.String())
		requireProblem(t, resp, body, http.StatusBadRequest, "query.state", q.Get("code"))
	})

	t.Run("missing login cookie", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		// Another browser, as a login CSRF would use, has no login cookie.
		other := f.newBrowser(nil)
		resp, body := f.get(t, other, callback)
		requireProblem(t, resp, body, http.StatusBadRequest, LoginCookie+" cookie is missing", queryParam(t, callback, "code"))
		require.Zero(t, f.provider.TokenRequests())
	})

	t.Run("tampered login cookie", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		u, _ := url.Parse(callback)
		forged, err := sealCookie([]byte(strings.Repeat("x", 32)), LoginCookie,
			loginState{State: queryParam(t, callback, "state"), Verifier: "v", ReturnTo: "/", Expires: time.Now().Add(time.Hour).Unix()})
		require.NoError(t, err)
		f.jar.SetCookies(u, []*http.Cookie{{Name: LoginCookie, Value: forged, Path: "/auth/callback"}})
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusBadRequest, "not valid", queryParam(t, callback, "code"))
	})

	t.Run("expired login", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		f.clock.Advance(loginTTL + time.Second)
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusBadRequest, "expired", queryParam(t, callback, "code"))
	})

	t.Run("missing code", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		u, _ := url.Parse(callback)
		q := u.Query()
		q.Del("code")
		u.RawQuery = q.Encode()
		resp, body := f.get(t, f.browser, u.String())
		requireProblem(t, resp, body, http.StatusBadRequest, "query.code", "")
	})

	t.Run("provider refuses the login", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		f.provider.SetUser("", nil)
		callback := f.login(t, "")
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusBadRequest, "access_denied", "")
	})
}

func TestOIDCCallbackTokenChecks(t *testing.T) {
	t.Parallel()

	t.Run("replayed code", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		u, _ := url.Parse(callback)
		var loginValue string
		for _, c := range f.jar.Cookies(u) {
			if c.Name == LoginCookie {
				loginValue = c.Value
			}
		}
		require.NotEmpty(t, loginValue)
		resp, body := f.get(t, f.browser, callback)
		require.Equal(t, http.StatusFound, resp.StatusCode, body)

		// Even with the login cookie copied back, the provider refuses a spent code.
		f.jar.SetCookies(u, []*http.Cookie{{Name: LoginCookie, Value: loginValue, Path: "/auth/callback"}})
		other := f.newBrowser(f.jar)
		resp, body = f.get(t, other, callback)
		requireProblem(t, resp, body, http.StatusUnauthorized, "invalid_grant", queryParam(t, callback, "code"))
		require.Equal(t, 2, f.provider.TokenRequests())
	})

	t.Run("wrong nonce", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		f.provider.SetWrongNonce(true)
		callback := f.login(t, "")
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusUnauthorized, "nonce does not match", queryParam(t, callback, "code"))
	})

	t.Run("provider rejects pkce", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		f.provider.SetRejectPKCE(true)
		callback := f.login(t, "")
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusUnauthorized, "invalid_grant", queryParam(t, callback, "code"))
	})

	t.Run("pkce verifier mismatch", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		callback := f.login(t, "")
		// A login cookie that is well signed but holds another verifier: the provider's
		// own S256 check refuses it.
		u, _ := url.Parse(callback)
		forged, err := sealCookie(f.oidc.loginMAC, LoginCookie, loginState{
			State: queryParam(t, callback, "state"), Nonce: "n", Verifier: randomToken(), ReturnTo: "/",
			Expires: time.Now().Add(time.Minute).Unix(),
		})
		require.NoError(t, err)
		f.jar.SetCookies(u, []*http.Cookie{{Name: LoginCookie, Value: forged, Path: "/auth/callback"}})
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusUnauthorized, "invalid_grant", queryParam(t, callback, "code"))
	})

	t.Run("wrong client secret", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{clientSecret: "s3cret"})
		f.provider.SetClientSecret("other")
		callback := f.login(t, "")
		resp, body := f.get(t, f.browser, callback)
		requireProblem(t, resp, body, http.StatusUnauthorized, "invalid_client", queryParam(t, callback, "code"))
		require.NotContains(t, body, "s3cret")
	})

	t.Run("provider unreachable", func(t *testing.T) {
		t.Parallel()
		f := newOIDCFlow(t, flowOptions{})
		f.provider.Server.Close()
		resp, body := f.get(t, f.browser, f.app.URL+"/auth/login")
		requireProblem(t, resp, body, http.StatusServiceUnavailable, "discovery", "")
		require.Nil(t, cookieNamed(resp, LoginCookie))
	})
}

func TestOIDCOpenRedirect(t *testing.T) {
	t.Parallel()
	f := newOIDCFlow(t, flowOptions{})
	callback := f.login(t, "https://evil.example/steal")
	resp, body := f.get(t, f.browser, callback)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	require.Equal(t, "/", resp.Header.Get("Location"))

	resp, _ = f.get(t, f.browser, f.app.URL+"/auth/logout?return_to="+url.QueryEscape("//evil.example"))
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"))
	resp, _ = f.get(t, f.browser, f.app.URL+"/auth/logout?return_to="+url.QueryEscape("/bye"))
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/bye", resp.Header.Get("Location"))
}

func TestSafeReturnTo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/acme/orders?limit=5#top", "/acme/orders?limit=5#top"},
		{"https://evil.example", "/"},
		{"//evil.example", "/"},
		{"///evil.example", "/"},
		{"/\\evil.example", "/"},
		{"\\\\evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"evil.example", "/"},
		{"/a\r\nSet-Cookie: x=y", "/"},
		{"/a\x00b", "/"},
	} {
		require.Equal(t, tc.want, safeReturnTo(tc.in), "safeReturnTo(%q)", tc.in)
	}
}

func TestSessionStrategyRejects(t *testing.T) {
	t.Parallel()
	f := newOIDCFlow(t, flowOptions{})
	callback := f.login(t, "")
	resp, body := f.get(t, f.browser, callback)
	require.Equal(t, http.StatusFound, resp.StatusCode, body)
	sc := cookieNamed(resp, SessionCookie)
	require.NotNil(t, sc)

	auth := func(value string) error {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: value})
		require.True(t, f.strategy.Recognizes(req))
		_, err := f.strategy.Authenticate(t.Context(), req)
		return err
	}
	require.NoError(t, auth(sc.Value))

	// Rewrite the payload to another subject, keeping the signature.
	parts := strings.Split(sc.Value, ".")
	require.Len(t, parts, 3)
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var s session
	require.NoError(t, json.Unmarshal(raw, &s))
	s.Claims["sub"] = "admin"
	s.Claims["groups"] = []string{"velocity-admin"}
	raw, err = json.Marshal(s)
	require.NoError(t, err)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw) + "." + parts[2]
	require.ErrorIs(t, auth(tampered), ErrMalformed)

	require.ErrorIs(t, auth("v2."+parts[1]+"."+parts[2]), ErrMalformed)
	require.ErrorIs(t, auth(parts[1]), ErrMalformed)
	require.ErrorIs(t, auth(""), ErrMalformed)

	// Signed with another deployment's key.
	foreign, err := sealCookie(deriveKey([]byte(strings.Repeat("z", 32)), SessionCookie), SessionCookie, s)
	require.NoError(t, err)
	require.ErrorIs(t, auth(foreign), ErrMalformed)

	// A login cookie is signed with its own key and cannot pass for a session.
	asLogin, err := sealCookie(f.oidc.loginMAC, LoginCookie, s)
	require.NoError(t, err)
	require.ErrorIs(t, auth(asLogin), ErrMalformed)

	// Expired: the server checks the expiry it signed, whatever the browser keeps.
	f.clock.Advance(8*time.Hour + time.Second)
	require.ErrorIs(t, auth(sc.Value), ErrSessionExpired)

	req := httptest.NewRequest(http.MethodGet, "/", nil)
	require.False(t, f.strategy.Recognizes(req))
	require.Equal(t, StrategySession, f.strategy.Name())
}

func TestNewOIDCConfig(t *testing.T) {
	t.Parallel()
	verifier, err := NewJWTVerifier([]IssuerConfig{{
		Issuer: "https://idp.test", JWKSURL: "https://idp.test/jwks", Audiences: []string{"app"},
	}}, JWTOptions{})
	require.NoError(t, err)
	key := []byte(strings.Repeat("k", 32))
	good := OIDCConfig{Issuer: "https://idp.test", ClientID: "app", RedirectURL: "https://api.test/auth/callback"}
	_, err = NewOIDC(good, verifier, key, OIDCOptions{})
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		edit func(*OIDCConfig)
		key  []byte
		want string
	}{
		{"short key", func(*OIDCConfig) {}, key[:31], "session key"},
		{"unknown issuer", func(c *OIDCConfig) { c.Issuer = "https://other.test" }, key, "not an issuer of the JWT verifier"},
		{"client not an audience", func(c *OIDCConfig) { c.ClientID = "other" }, key, "does not accept the audience"},
		{"relative redirect", func(c *OIDCConfig) { c.RedirectURL = "/auth/callback" }, key, "redirectURL"},
		{"no openid scope", func(c *OIDCConfig) { c.Scopes = []string{"email"} }, key, "scopes"},
		{"bad ttl", func(c *OIDCConfig) { c.SessionTTL = "forever" }, key, "sessionTTL"},
	} {
		cfg := good
		tc.edit(&cfg)
		_, err := NewOIDC(cfg, verifier, tc.key, OIDCOptions{})
		require.ErrorContains(t, err, tc.want, tc.name)
	}
}
