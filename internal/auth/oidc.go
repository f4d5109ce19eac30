package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/velocitydev/velocity/internal/store"
)

// StrategySession is the name of the OIDC session cookie strategy.
const StrategySession = "session"

// The cookies of the browser login. Both are HttpOnly, SameSite=Lax and, when the request
// came over TLS, Secure.
const (
	// SessionCookie holds a signed session: the verified id_token claims and an expiry.
	SessionCookie = "velocity_session"
	// LoginCookie holds one login's state, nonce, PKCE verifier and return path, from
	// /auth/login to /auth/callback. It is scoped to the redirect URL's path.
	LoginCookie = "velocity_oidc"
)

// OIDCConfig configures the browser login (authorization code flow with PKCE S256).
//
// Issuer must also be one of the issuers of the JWTVerifier given to NewOIDC, with ClientID
// among its audiences: the id_token is verified with that issuer's JWKS, algorithms and
// clock skew, and the session's claims are mapped with the CompiledMapping given to
// SessionStrategy (normally the same issuer's claim mapping). The discovery document's
// jwks_uri is not used.
type OIDCConfig struct {
	Issuer       string   `json:"issuer"`
	ClientID     string   `json:"clientID"`
	ClientSecret string   `json:"clientSecret,omitempty"`
	RedirectURL  string   `json:"redirectURL"`      // e.g. https://api.example.com/auth/callback
	Scopes       []string `json:"scopes,omitempty"` // default openid profile email; must hold openid
	// SessionTTL is how long a session lasts after login (a Go duration; default 8h, at most
	// 30 days). It does not follow the id_token's exp: the id_token proves the login, and
	// the session is the deployment's to bound.
	SessionTTL string `json:"sessionTTL,omitempty"`
}

// OIDCOptions tunes an OIDC; the zero value is ready for production.
type OIDCOptions struct {
	HTTPClient *http.Client     // for discovery and the token endpoint; nil = 10s timeout
	Now        func() time.Time // nil = time.Now (tests inject)
}

const (
	defaultSessionTTL = 8 * time.Hour
	maxSessionTTL     = 30 * 24 * time.Hour
	// loginTTL bounds the time between /auth/login and /auth/callback.
	loginTTL = 10 * time.Minute
	// maxCookieBytes keeps a cookie under what every browser stores (4096 with its name).
	maxCookieBytes = 4000
	maxOIDCBody    = 1 << 20
	cookieVersion  = "v1"
)

// sessionDropClaims are the protocol claims a session does not keep: they describe the
// id_token, not the user, and only make the cookie larger.
var sessionDropClaims = []string{"aud", "azp", "exp", "iat", "nbf", "nonce", "at_hash", "c_hash", "auth_time", "jti"}

// OIDC runs the browser login: /auth/login, /auth/callback and /auth/logout.
//
// Sessions are stateless signed cookies (HMAC-SHA256, not encrypted: the browser can read,
// but not change, its own claims). Logout clears the browser's cookie; a copy of the value
// stays valid until it expires, so cutting a user off goes through /admin/revocations
// (the actor's TokenID is the session id).
type OIDC struct {
	cfg         OIDCConfig
	verifier    *JWTVerifier
	client      *http.Client
	now         func() time.Time
	scopes      []string
	ttl         time.Duration
	loginPath   string // the redirect URL's path, where the login cookie is sent
	sessionMAC  []byte
	loginMAC    []byte
	discoverURL string

	mu        sync.Mutex
	providers *providerMetadata // nil until discovery succeeds
}

type providerMetadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
}

// NewOIDC checks cfg and returns the login flow. It fetches nothing: the provider's discovery
// document is fetched on the first login and kept once it has been read. sessionKey signs the
// cookies and must be at least 32 random bytes, the same on every replica.
func NewOIDC(cfg OIDCConfig, verifier *JWTVerifier, sessionKey []byte, opt OIDCOptions) (*OIDC, error) {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("issuer: required"))
	}
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("clientID: required"))
	}
	redirect, err := url.Parse(cfg.RedirectURL)
	if err != nil || (redirect.Scheme != "https" && redirect.Scheme != "http") || redirect.Host == "" {
		errs = append(errs, fmt.Errorf("redirectURL: want an absolute http or https URL, got %q", cfg.RedirectURL))
		redirect = &url.URL{Path: "/"}
	}
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{"openid", "profile", "email"}
	} else if !slices.Contains(scopes, "openid") {
		errs = append(errs, errors.New("scopes: must include openid"))
	}
	ttl := defaultSessionTTL
	if cfg.SessionTTL != "" {
		ttl, err = time.ParseDuration(cfg.SessionTTL)
		if err != nil || ttl < time.Minute || ttl > maxSessionTTL {
			errs = append(errs, fmt.Errorf("sessionTTL: %q is not a duration between 1m and %s", cfg.SessionTTL, maxSessionTTL))
		}
	}
	if len(sessionKey) < 32 {
		errs = append(errs, errors.New("session key: want at least 32 bytes"))
	}
	if verifier == nil {
		errs = append(errs, errors.New("verifier: required"))
	} else if is, ok := verifier.issuers[cfg.Issuer]; !ok {
		errs = append(errs, fmt.Errorf("issuer: %q is not an issuer of the JWT verifier", cfg.Issuer))
	} else if !slices.Contains(is.audiences, cfg.ClientID) {
		errs = append(errs, fmt.Errorf("issuer: the JWT issuer %q does not accept the audience %q (the client id)", cfg.Issuer, cfg.ClientID))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oidc config: %w", errors.Join(errs...))
	}
	client := opt.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	loginPath := redirect.Path
	if loginPath == "" {
		loginPath = "/"
	}
	return &OIDC{
		cfg:         cfg,
		verifier:    verifier,
		client:      client,
		now:         now,
		scopes:      slices.Clone(scopes),
		ttl:         ttl,
		loginPath:   loginPath,
		sessionMAC:  deriveKey(sessionKey, SessionCookie),
		loginMAC:    deriveKey(sessionKey, LoginCookie),
		discoverURL: strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration",
	}, nil
}

// deriveKey gives each cookie its own key, so one can never be passed off as the other.
func deriveKey(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("velocity oidc cookie key " + cookieVersion + " " + purpose))
	return m.Sum(nil)
}

// loginState is the login cookie's payload.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

// session is the session cookie's payload.
type session struct {
	ID       string         `json:"sid"`
	Issuer   string         `json:"iss"`
	IssuedAt int64          `json:"iat"`
	Expires  int64          `json:"exp"`
	Claims   map[string]any `json:"claims"`
}

// Login starts a login: it redirects to the provider's authorization endpoint with a fresh
// state, nonce and PKCE S256 challenge, which it keeps in the login cookie with the
// return_to query parameter (a path on this host; anything else becomes "/").
func (o *OIDC) Login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	md, err := o.discover(r.Context())
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "the identity provider's discovery document cannot be read; try again later")
		return
	}
	now := o.now()
	ls := loginState{
		State:    randomToken(),
		Nonce:    randomToken(),
		Verifier: randomToken(),
		ReturnTo: safeReturnTo(r.URL.Query().Get("return_to")),
		Expires:  now.Add(loginTTL).Unix(),
	}
	value, err := sealCookie(o.loginMAC, LoginCookie, ls)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "the login could not be started")
		return
	}
	challenge := sha256.Sum256([]byte(ls.Verifier))
	u, _ := url.Parse(md.AuthorizationEndpoint) // checked by discover
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", o.cfg.ClientID)
	q.Set("redirect_uri", o.cfg.RedirectURL)
	q.Set("scope", strings.Join(o.scopes, " "))
	q.Set("state", ls.State)
	q.Set("nonce", ls.Nonce)
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	http.SetCookie(w, &http.Cookie{
		Name: LoginCookie, Value: value, Path: o.loginPath,
		MaxAge: int(loginTTL / time.Second), Expires: now.Add(loginTTL),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// providerErrorCode is what an OAuth error code may look like before it is quoted back.
var providerErrorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// Callback finishes a login: it checks state against the login cookie, exchanges the code
// with the PKCE verifier, verifies the id_token and its nonce, sets the session cookie and
// redirects to the login's return path. Failures are problem+json: 400 for a missing or
// mismatched state or code, 401 when the provider refuses the code or the id_token does not
// verify, 502 when the provider answers wrongly and 503 when it cannot be reached.
func (o *OIDC) Callback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	c, err := r.Cookie(LoginCookie)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "no login in progress: the "+LoginCookie+" cookie is missing; start again at /auth/login")
		return
	}
	// The login cookie serves one callback, whatever its outcome.
	o.clearCookie(w, r, LoginCookie, o.loginPath)
	var ls loginState
	if err := openCookie(o.loginMAC, LoginCookie, c.Value, &ls); err != nil {
		writeProblem(w, http.StatusBadRequest, "the "+LoginCookie+" cookie is not valid; start again at /auth/login")
		return
	}
	if o.now().Unix() >= ls.Expires {
		writeProblem(w, http.StatusBadRequest, "the login has expired; start again at /auth/login")
		return
	}
	state := q.Get("state")
	if state == "" || subtle.ConstantTimeCompare([]byte(state), []byte(ls.State)) != 1 {
		writeProblem(w, http.StatusBadRequest, "query.state: missing or does not match the login in progress")
		return
	}
	if e := q.Get("error"); e != "" {
		if !providerErrorCode.MatchString(e) {
			e = "unknown"
		}
		writeProblem(w, http.StatusBadRequest, "the identity provider refused the login: "+e)
		return
	}
	code := q.Get("code")
	if code == "" {
		writeProblem(w, http.StatusBadRequest, "query.code: missing")
		return
	}
	md, err := o.discover(r.Context())
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "the identity provider's discovery document cannot be read; try again later")
		return
	}
	idToken, status, detail := o.exchange(r.Context(), md, code, ls.Verifier)
	if status != 0 {
		writeProblem(w, status, detail)
		return
	}
	vt, err := o.verifier.Verify(r.Context(), idToken)
	switch {
	case errors.Is(err, ErrKeysUnavailable):
		writeProblem(w, http.StatusServiceUnavailable, "the identity provider's signing keys cannot be read; try again later")
		return
	case err != nil:
		writeProblem(w, http.StatusUnauthorized, "the id_token does not verify: "+idTokenReason(err))
		return
	}
	if detail := o.checkIDToken(vt, ls.Nonce); detail != "" {
		writeProblem(w, http.StatusUnauthorized, detail)
		return
	}
	now := o.now()
	s := session{ID: randomToken(), Issuer: vt.Issuer, IssuedAt: now.Unix(), Expires: now.Add(o.ttl).Unix(), Claims: map[string]any{}}
	for k, v := range vt.Claims {
		if !slices.Contains(sessionDropClaims, k) {
			s.Claims[k] = v
		}
	}
	value, err := sealCookie(o.sessionMAC, SessionCookie, s)
	if err != nil || len(SessionCookie)+1+len(value) > maxCookieBytes {
		writeProblem(w, http.StatusBadGateway, "the id_token's claims are too large for a session cookie; ask the identity provider for fewer claims")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/",
		MaxAge: int(o.ttl / time.Second), Expires: now.Add(o.ttl),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, ls.ReturnTo, http.StatusFound)
}

// checkIDToken applies what OIDC Core 3.1.3.7 adds to a verified JWT. It returns a problem
// detail, or "" when the token is this login's.
func (o *OIDC) checkIDToken(vt VerifiedToken, nonce string) string {
	if vt.Issuer != o.cfg.Issuer {
		return "the id_token's issuer is not the login's identity provider"
	}
	var aud []string
	switch a := vt.Claims["aud"].(type) {
	case string:
		aud = []string{a}
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok {
				aud = append(aud, s)
			}
		}
	}
	if !slices.Contains(aud, o.cfg.ClientID) {
		return "the id_token's aud does not name this client"
	}
	if azp, ok := vt.Claims["azp"]; (ok || len(aud) > 1) && azp != o.cfg.ClientID {
		return "the id_token's azp does not name this client"
	}
	got, _ := vt.Claims["nonce"].(string)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return "the id_token's nonce does not match the login in progress"
	}
	return ""
}

// idTokenReason says why a token failed without quoting it.
func idTokenReason(err error) string {
	switch {
	case errors.Is(err, ErrTokenExpired):
		return "expired"
	case errors.Is(err, ErrUnknownIssuer):
		return "unknown issuer"
	default:
		return "bad signature, algorithm, audience or claims"
	}
}

// exchange redeems code at the token endpoint and returns the id_token, or a status and
// problem detail.
func (o *OIDC) exchange(ctx context.Context, md *providerMetadata, code, verifier string) (string, int, string) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {o.cfg.RedirectURL},
		"code_verifier": {verifier},
	}
	// client_secret_basic is the default (OIDC Discovery); the form is used only when the
	// provider says it takes nothing else.
	post := len(md.TokenAuthMethods) > 0 && !slices.Contains(md.TokenAuthMethods, "client_secret_basic")
	if o.cfg.ClientSecret == "" || post {
		form.Set("client_id", o.cfg.ClientID)
	}
	if o.cfg.ClientSecret != "" && post {
		form.Set("client_secret", o.cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", http.StatusInternalServerError, "the token request could not be built"
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if o.cfg.ClientSecret != "" && !post {
		req.SetBasicAuth(url.QueryEscape(o.cfg.ClientID), url.QueryEscape(o.cfg.ClientSecret))
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return "", http.StatusServiceUnavailable, "the identity provider's token endpoint cannot be reached; try again later"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOIDCBody))
	if err != nil {
		return "", http.StatusBadGateway, "the identity provider's token response could not be read"
	}
	var tr struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(body, &tr)
	switch {
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized:
		e := tr.Error
		if !providerErrorCode.MatchString(e) {
			e = "unknown"
		}
		// invalid_grant covers a spent, expired or foreign code and a PKCE verifier that
		// does not match; invalid_client a wrong client secret.
		return "", http.StatusUnauthorized, "the identity provider refused the authorization code: " + e
	case resp.StatusCode != http.StatusOK:
		return "", http.StatusBadGateway, fmt.Sprintf("the identity provider's token endpoint answered status %d", resp.StatusCode)
	case tr.IDToken == "":
		return "", http.StatusBadGateway, "the identity provider's token response has no id_token"
	}
	return tr.IDToken, 0, ""
}

// discover returns the provider's metadata, fetching it until one fetch succeeds.
func (o *OIDC) discover(ctx context.Context) (*providerMetadata, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.providers != nil {
		return o.providers, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.discoverURL, nil)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oidc discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidc discovery %s: status %d", o.discoverURL, resp.StatusCode)
	}
	var md providerMetadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxOIDCBody)).Decode(&md); err != nil {
		return nil, fmt.Errorf("oidc discovery %s: %w", o.discoverURL, err)
	}
	if md.Issuer != o.cfg.Issuer {
		return nil, fmt.Errorf("oidc discovery %s: issuer %q is not the configured %q", o.discoverURL, truncate(md.Issuer, 100), o.cfg.Issuer)
	}
	for name, raw := range map[string]string{"authorization_endpoint": md.AuthorizationEndpoint, "token_endpoint": md.TokenEndpoint} {
		if !EndpointURL(raw) {
			return nil, fmt.Errorf("oidc discovery %s: %s %q is not an https URL", o.discoverURL, name, truncate(raw, 200))
		}
	}
	o.providers = &md
	return &md, nil
}

// EndpointURL accepts https, and http only on a loopback host (a provider in a test or a
// sidecar), since the token endpoint receives the code and the client secret. The CLI's
// login uses it too.
func EndpointURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	if u.Scheme != "http" {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// Logout clears the session cookie, then answers 204, or 302 to the return_to query
// parameter when it is a path on this host. The cookie is stateless: a copied value stays
// valid until it expires, so revoking a user goes through /admin/revocations.
func (o *OIDC) Logout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	o.clearCookie(w, r, SessionCookie, "/")
	if rt := r.URL.Query().Get("return_to"); rt != "" {
		http.Redirect(w, r, safeReturnTo(rt), http.StatusFound)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (o *OIDC) clearCookie(w http.ResponseWriter, r *http.Request, name, path string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: path, MaxAge: -1, Expires: time.Unix(0, 0),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
}

// safeReturnTo keeps a return path only when it stays on this host: an absolute path, not
// "//host" or "/\host" (which browsers read as another host), with no scheme or host.
func safeReturnTo(raw string) string {
	if raw == "" || len(raw) > 2000 || !strings.HasPrefix(raw, "/") ||
		strings.HasPrefix(raw, "//") || strings.ContainsAny(raw, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	return raw
}

// SessionStrategy authenticates the session cookie. Its actors have the id "jwt:" and the
// id mapping makes of the session's claims, like bearer tokens of the same issuer, the kind
// "session", and the session id as TokenID. mapping is normally the issuer's claim mapping;
// nil maps sub to the id and nothing else. The mapping runs on each request, so a changed
// mapping applies to existing sessions.
func (o *OIDC) SessionStrategy(mapping *CompiledMapping) Strategy {
	if mapping == nil {
		mapping, _ = ClaimMapping{}.Compile() // the id is sub; no roles or attributes
	}
	return &sessionStrategy{oidc: o, mapping: mapping}
}

type sessionStrategy struct {
	oidc    *OIDC
	mapping *CompiledMapping
}

// Name implements Strategy.
func (s *sessionStrategy) Name() string { return StrategySession }

// Recognizes implements Strategy: a velocity_session cookie.
func (s *sessionStrategy) Recognizes(r *http.Request) bool {
	_, err := r.Cookie(SessionCookie)
	return err == nil
}

// Authenticate implements Strategy.
func (s *sessionStrategy) Authenticate(ctx context.Context, r *http.Request) (store.Actor, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return store.Actor{}, ErrNoCredential
	}
	var sess session
	if err := openCookie(s.oidc.sessionMAC, SessionCookie, c.Value, &sess); err != nil {
		return store.Actor{}, fmt.Errorf("%w: session cookie: %v", ErrMalformed, err)
	}
	if s.oidc.now().Unix() >= sess.Expires {
		return store.Actor{}, fmt.Errorf("%w: session expired at %s", ErrSessionExpired, time.Unix(sess.Expires, 0).UTC().Format(time.RFC3339))
	}
	if sess.Issuer != s.oidc.cfg.Issuer || sess.ID == "" {
		return store.Actor{}, fmt.Errorf("%w: session cookie from another issuer", ErrMalformed)
	}
	return mappedActor(s.mapping, sess.Claims, StrategySession, sess.ID)
}

// sealCookie encodes v as "v1.<base64url JSON>.<base64url HMAC-SHA256>". The MAC covers the
// version and the cookie's name, and its key is the cookie's own (deriveKey).
func sealCookie(key []byte, name string, v any) (string, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("seal cookie %s: %w", name, err)
	}
	body := cookieVersion + "." + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(cookieMAC(key, name, body)), nil
}

// openCookie checks a sealCookie value and decodes its payload into v.
func openCookie(key []byte, name, value string, v any) error {
	if len(value) > maxCookieBytes {
		return errors.New("too large")
	}
	body, sig, ok := strings.Cut(value, ".")
	if !ok || body != cookieVersion {
		return errors.New("unknown format")
	}
	payload, sig, ok := strings.Cut(sig, ".")
	if !ok {
		return errors.New("unknown format")
	}
	body = cookieVersion + "." + payload
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, cookieMAC(key, name, body)) {
		return errors.New("signature does not match")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return errors.New("payload is not base64url")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errors.New("payload is not the expected JSON")
	}
	return nil
}

func cookieMAC(key []byte, name, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name + "\x00" + body))
	return m.Sum(nil)
}

// randomToken is 256 bits from crypto/rand, base64url: a state, nonce, PKCE verifier (43
// characters, as RFC 7636 asks) or session id.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// writeProblem answers an RFC 9457 problem. detail never holds a token, code or cookie.
func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   "about:blank",
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
	})
}
