// Package oidctest runs a real OpenID Connect provider inside a test (discovery, authorize,
// token and JWKS endpoints on httptest), so login flows are tested end to end, not stubbed.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signingKey is generated once per test binary: RSA generation is slow under -race.
var signingKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

const keyID = "oidctest-1"

// Provider is an OpenID Connect provider for one client. It has no login page: /authorize
// signs in the user SetUser configured and redirects straight back to the client.
type Provider struct {
	Server *httptest.Server
	// ClientID is the one client the provider knows. It does not change after Start.
	ClientID string

	mu            sync.Mutex
	clientSecret  string
	redirectURIs  []string
	sub           string
	claims        map[string]any
	codes         map[string]*grant
	authorizes    []Authorization
	tokenRequests int
	wrongNonce    bool
	rejectPKCE    bool
	codeTTL       time.Duration
	idTokenTTL    time.Duration
}

// Authorization is what one /authorize request asked for.
type Authorization struct {
	ClientID, RedirectURI, Scope, State, Nonce, CodeChallenge, CodeChallengeMethod string
}

type grant struct {
	auth    Authorization
	sub     string
	claims  map[string]any
	expires time.Time
	used    bool
}

// Start runs a provider until the test ends. Its client id is "velocity-test" and no
// redirect URI is registered yet: call RegisterRedirectURI.
func Start(t testing.TB) *Provider {
	t.Helper()
	p := &Provider{
		ClientID:   "velocity-test",
		codes:      map[string]*grant{},
		codeTTL:    time.Minute,
		idTokenTTL: 5 * time.Minute,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /jwks", p.jwks)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Server.Close)
	return p
}

// Issuer is the provider's issuer identifier: its base URL.
func (p *Provider) Issuer() string { return p.Server.URL }

// JWKSURL is where the provider publishes its signing keys.
func (p *Provider) JWKSURL() string { return p.Server.URL + "/jwks" }

// RegisterRedirectURI allows uri as a redirect_uri of the client. A loopback IP URI without
// a port, such as http://127.0.0.1/callback, allows that URI with any port (RFC 8252 7.3).
func (p *Provider) RegisterRedirectURI(uri string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirectURIs = append(p.redirectURIs, uri)
}

// SetClientSecret makes the token endpoint require secret (HTTP Basic or client_secret in
// the form); empty makes the client public.
func (p *Provider) SetClientSecret(secret string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clientSecret = secret
}

// SetUser sets who signs in at /authorize and the extra claims of their id_token (groups,
// email…). Registered claims (iss, aud, sub, nonce, exp, iat) are always the provider's own.
// Until it is called, /authorize answers error=access_denied.
func (p *Provider) SetUser(sub string, claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sub, p.claims = sub, claims
}

// SetWrongNonce makes the id_tokens carry a nonce other than the one the client sent.
func (p *Provider) SetWrongNonce(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wrongNonce = on
}

// SetRejectPKCE makes the token endpoint refuse every code_verifier with invalid_grant, as
// it would a verifier that does not match the challenge.
func (p *Provider) SetRejectPKCE(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rejectPKCE = on
}

// SetCodeTTL sets how long an authorization code can be exchanged; the default is a minute.
func (p *Provider) SetCodeTTL(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.codeTTL = d
}

// Authorizations returns the /authorize requests the provider accepted, oldest first.
func (p *Provider) Authorizations() []Authorization {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.authorizes)
}

// TokenRequests counts the requests to the token endpoint, refused ones included.
func (p *Provider) TokenRequests() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokenRequests
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	base := p.Server.URL
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"authorization_endpoint":                base + "/authorize",
		"token_endpoint":                        base + "/token",
		"jwks_uri":                              base + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                      []string{"openid", "profile", "email"},
	})
}

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a := Authorization{
		ClientID:            q.Get("client_id"),
		RedirectURI:         q.Get("redirect_uri"),
		Scope:               q.Get("scope"),
		State:               q.Get("state"),
		Nonce:               q.Get("nonce"),
		CodeChallenge:       q.Get("code_challenge"),
		CodeChallengeMethod: q.Get("code_challenge_method"),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// An unknown client or redirect URI must not be redirected to (RFC 6749 4.1.2.1).
	if a.ClientID != p.ClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	if !p.redirectAllowed(a.RedirectURI) {
		http.Error(w, "redirect_uri is not registered", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		u, _ := url.Parse(a.RedirectURI)
		qq := u.Query()
		for k, v := range params {
			qq[k] = v
		}
		if a.State != "" {
			qq.Set("state", a.State)
		}
		u.RawQuery = qq.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		back(url.Values{"error": {"unsupported_response_type"}})
		return
	case !slices.Contains(strings.Fields(a.Scope), "openid"):
		back(url.Values{"error": {"invalid_scope"}})
		return
	case a.CodeChallengeMethod != "S256" || len(a.CodeChallenge) != 43:
		back(url.Values{"error": {"invalid_request"}, "error_description": {"PKCE with S256 is required"}})
		return
	case p.sub == "":
		back(url.Values{"error": {"access_denied"}})
		return
	}
	code := randomString()
	p.codes[code] = &grant{auth: a, sub: p.sub, claims: p.claims, expires: time.Now().Add(p.codeTTL)}
	p.authorizes = append(p.authorizes, a)
	back(url.Values{"code": {code}})
}

// redirectAllowed reports whether uri is registered. A native app listens on whatever
// loopback port is free, so the port of a loopback IP URI is not compared (RFC 8252 7.3).
func (p *Provider) redirectAllowed(uri string) bool {
	if slices.Contains(p.redirectURIs, uri) {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || u.Port() == "" {
		return false
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		return false
	}
	u.Host = strings.TrimSuffix(u.Host, ":"+u.Port())
	return slices.Contains(p.redirectURIs, u.String())
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenRequests++
	w.Header().Set("Cache-Control", "no-store")
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "authorization_code" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	clientID, secret, basic := r.BasicAuth()
	if basic {
		clientID, _ = url.QueryUnescape(clientID)
		secret, _ = url.QueryUnescape(secret)
	} else {
		clientID, secret = f.Get("client_id"), f.Get("client_secret")
	}
	if clientID != p.ClientID ||
		(p.clientSecret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(p.clientSecret)) != 1) {
		tokenError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	g := p.codes[f.Get("code")]
	if g == nil || g.used || time.Now().After(g.expires) {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	// A code is spent by its first exchange, successful or not (RFC 6749 4.1.2).
	g.used = true
	if g.auth.ClientID != clientID || g.auth.RedirectURI != f.Get("redirect_uri") {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if p.rejectPKCE || base64.RawURLEncoding.EncodeToString(sum[:]) != g.auth.CodeChallenge {
		tokenError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	nonce := g.auth.Nonce
	if p.wrongNonce {
		nonce = "not-" + nonce
	}
	now := time.Now()
	claims := map[string]any{}
	for k, v := range g.claims {
		claims[k] = v
	}
	claims["iss"] = p.Server.URL
	claims["aud"] = p.ClientID
	claims["azp"] = p.ClientID
	claims["sub"] = g.sub
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(p.idTokenTTL).Unix()
	if nonce != "" {
		claims["nonce"] = nonce
	}
	idToken, err := p.sign(claims)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": randomString(),
		"id_token":     idToken,
		"token_type":   "Bearer",
		"expires_in":   int(p.idTokenTTL / time.Second),
	})
}

// SignIDToken signs claims as-is with the provider's key, for tests that need a token the
// flow would not produce.
func (p *Provider) SignIDToken(claims map[string]any) (string, error) { return p.sign(claims) }

func (p *Provider) sign(claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: signingKey()},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", keyID))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &signingKey().PublicKey, KeyID: keyID, Algorithm: "RS256", Use: "sig",
	}}})
}

func tokenError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]string{"error": code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
