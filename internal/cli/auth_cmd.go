package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/velocitydev/velocity/internal/auth"
)

// Environment variables of `velocity auth login`, read after its flags.
const (
	EnvOIDCIssuer   = "VELOCITY_OIDC_ISSUER"
	EnvOIDCClientID = "VELOCITY_OIDC_CLIENT_ID"
)

const (
	// maxOIDCBody caps what is read of a discovery or token response.
	maxOIDCBody = 1 << 20
	// oidcHTTPTimeout bounds one request to the identity provider.
	oidcHTTPTimeout = 30 * time.Second
)

// storedLogin is the token file beside the config file. It holds a bearer token: 0600.
type storedLogin struct {
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// loginStatus is what login and status print: the stored login without its token.
type loginStatus struct {
	Issuer    string    `json:"issuer"`
	Subject   string    `json:"subject"`
	ExpiresAt time.Time `json:"expires_at"`
}

func newAuthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "auth", Short: "Log the CLI in to an OpenID Connect provider, or out"}
	cmd.AddCommand(newAuthLoginCmd(g), newAuthLogoutCmd(g), newAuthStatusCmd(g))
	return cmd
}

// authLogin is one `velocity auth login`: authorization code with PKCE through a loopback
// redirect (RFC 8252), the way a native app logs in.
type authLogin struct {
	issuer, clientID, clientSecret string
	scopes                         []string
	noBrowser                      bool
	timeout                        time.Duration
}

func newAuthLoginCmd(g *globals) *cobra.Command {
	var l authLogin
	cmd := &cobra.Command{
		Use:   "login --issuer URL --client-id ID [--scope S]... [--no-browser]",
		Short: "Log in through the browser and store the id_token for later commands",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			l.issuer = g.setting(l.issuer, EnvOIDCIssuer, func(Config) string { return "" })
			l.clientID = g.setting(l.clientID, EnvOIDCClientID, func(Config) string { return "" })
			switch {
			case l.issuer == "":
				return usageError{fmt.Errorf("auth login: no issuer: pass --issuer or set %s", EnvOIDCIssuer)}
			case l.clientID == "":
				return usageError{fmt.Errorf("auth login: no client id: pass --client-id or set %s", EnvOIDCClientID)}
			case l.timeout <= 0:
				return usageError{errors.New("auth login: --timeout must be positive")}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), l.timeout)
			defer cancel()
			s, err := l.run(ctx, cmd.ErrOrStderr())
			if err != nil {
				return fmt.Errorf("auth login: %w", err)
			}
			if err := saveLogin(tokenPath(g), s); err != nil {
				return fmt.Errorf("auth login: store token: %w", err)
			}
			st := loginStatus{s.Issuer, s.Subject, s.ExpiresAt}
			return g.print(cmd, st, func() [][]string {
				return [][]string{{fmt.Sprintf("Logged in as %s until %s", st.Subject, st.ExpiresAt.Format(time.RFC3339))}}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&l.issuer, "issuer", "", "OpenID Connect issuer URL (env "+EnvOIDCIssuer+")")
	f.StringVar(&l.clientID, "client-id", "", "OAuth client id (env "+EnvOIDCClientID+")")
	f.StringVar(&l.clientSecret, "client-secret", "", "client secret, for a confidential client (sent with HTTP Basic)")
	f.StringArrayVar(&l.scopes, "scope", nil, "extra scope to ask for, besides openid (repeatable)")
	f.BoolVar(&l.noBrowser, "no-browser", false, "only print the URL to open")
	f.DurationVar(&l.timeout, "timeout", 5*time.Minute, "how long to wait for the login to finish")
	return cmd
}

// providerMetadata is the part of the discovery document the login uses.
type providerMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
}

// run logs in and returns the verified login. Progress goes to stderr.
func (l *authLogin) run(ctx context.Context, stderr io.Writer) (storedLogin, error) {
	client := &http.Client{Timeout: oidcHTTPTimeout}
	md, err := l.discover(ctx, client)
	if err != nil {
		return storedLogin{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return storedLogin{}, fmt.Errorf("listen for the redirect: %w", err)
	}
	redirectURI := fmt.Sprintf("http://%s/callback", ln.Addr())
	state, nonce, verifier := randomToken(), randomToken(), randomToken()
	challenge := sha256.Sum256([]byte(verifier))

	authURL, _ := url.Parse(md.AuthorizationEndpoint) // checked by discover
	q := authURL.Query()
	q.Set("response_type", "code")
	q.Set("client_id", l.clientID)
	q.Set("redirect_uri", redirectURI)
	q.Set("scope", strings.Join(append([]string{"openid"}, l.scopes...), " "))
	q.Set("state", state)
	q.Set("nonce", nonce)
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(challenge[:]))
	q.Set("code_challenge_method", "S256")
	authURL.RawQuery = q.Encode()

	// The handler hands each callback to this goroutine and answers the browser with its
	// outcome; once the login is over, later callbacks are turned away.
	callbacks, over := make(chan callback), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		cb := callback{query: r.URL.Query(), done: make(chan error, 1)}
		select {
		case callbacks <- cb:
			writeCallbackPage(w, <-cb.done)
		case <-over:
			writeCallbackPage(w, errors.New("this login is no longer in progress; run `velocity auth login` again"))
		case <-r.Context().Done():
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		close(over)
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx) // lets the callback page finish
	}()

	fmt.Fprintf(stderr, "Open this URL to log in: %s\n", authURL)
	if !l.noBrowser {
		openBrowser(authURL.String())
	}
	select {
	case <-ctx.Done():
		return storedLogin{}, fmt.Errorf("no redirect from the identity provider within %s", l.timeout)
	case cb := <-callbacks:
		s, err := l.finish(ctx, client, md, cb.query, state, nonce, verifier, redirectURI)
		cb.done <- err
		return s, err
	}
}

// callback is one redirect to the loopback listener; done takes the login's outcome.
type callback struct {
	query url.Values
	done  chan error
}

// finish checks the redirect, redeems its code and verifies the id_token.
func (l *authLogin) finish(ctx context.Context, client *http.Client, md *providerMetadata, q url.Values, state, nonce, verifier, redirectURI string) (storedLogin, error) {
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		return storedLogin{}, errors.New("the redirect's state does not match this login (a stale or forged redirect); nothing was stored")
	}
	if e := q.Get("error"); e != "" {
		msg := "the identity provider refused the login: " + truncateText(e, 100)
		if d := q.Get("error_description"); d != "" {
			msg += " (" + truncateText(d, 200) + ")"
		}
		return storedLogin{}, errors.New(msg)
	}
	code := q.Get("code")
	if code == "" {
		return storedLogin{}, errors.New("the redirect carries no authorization code")
	}
	idToken, err := l.exchange(ctx, client, md, code, verifier, redirectURI)
	if err != nil {
		return storedLogin{}, err
	}
	v, err := auth.NewJWTVerifier([]auth.IssuerConfig{{
		Issuer: l.issuer, JWKSURL: md.JWKSURI, Audiences: []string{l.clientID},
	}}, auth.JWTOptions{HTTPClient: client})
	if err != nil {
		return storedLogin{}, fmt.Errorf("verify id_token: %w", err)
	}
	vt, err := v.Verify(ctx, idToken)
	if err != nil {
		return storedLogin{}, fmt.Errorf("verify id_token: %w", err)
	}
	if got, _ := vt.Claims["nonce"].(string); subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return storedLogin{}, errors.New("verify id_token: its nonce does not match this login")
	}
	if azp, ok := vt.Claims["azp"]; ok && azp != l.clientID {
		return storedLogin{}, errors.New("verify id_token: its azp does not name this client")
	}
	return storedLogin{Issuer: vt.Issuer, Subject: vt.Subject, Token: idToken, ExpiresAt: vt.Expiry.UTC()}, nil
}

func (l *authLogin) discover(ctx context.Context, client *http.Client) (*providerMetadata, error) {
	u := strings.TrimRight(l.issuer, "/") + "/.well-known/openid-configuration"
	var md providerMetadata
	if err := getJSON(ctx, client, u, &md); err != nil {
		return nil, fmt.Errorf("oidc discovery: %w", err)
	}
	if md.Issuer != l.issuer {
		return nil, fmt.Errorf("oidc discovery %s: issuer %q is not %q", u, truncateText(md.Issuer, 100), l.issuer)
	}
	for name, raw := range map[string]string{
		"authorization_endpoint": md.AuthorizationEndpoint, "token_endpoint": md.TokenEndpoint, "jwks_uri": md.JWKSURI,
	} {
		if !auth.EndpointURL(raw) {
			return nil, fmt.Errorf("oidc discovery %s: %s %q is not an https URL", u, name, truncateText(raw, 200))
		}
	}
	return &md, nil
}

// exchange redeems code at the token endpoint and returns the id_token.
func (l *authLogin) exchange(ctx context.Context, client *http.Client, md *providerMetadata, code, verifier, redirectURI string) (string, error) {
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
	if l.clientSecret == "" {
		form.Set("client_id", l.clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, md.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if l.clientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(l.clientID), url.QueryEscape(l.clientSecret))
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, maxOIDCBody)).Decode(&tr)
	switch {
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized:
		// invalid_grant covers a spent or expired code and a PKCE verifier that does not
		// match; invalid_client a wrong client id or secret.
		return "", fmt.Errorf("the identity provider refused the authorization code: %s", truncateText(cmp.Or(tr.Error, "unknown error"), 100))
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("token endpoint answered status %d", resp.StatusCode)
	case tr.IDToken == "":
		return "", errors.New("the token response has no id_token")
	}
	return tr.IDToken, nil
}

func newAuthLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Remove the stored token",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := os.Remove(tokenPath(g))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("auth logout: %w", err)
			}
			removed := err == nil
			return g.print(cmd, map[string]bool{"logged_out": removed}, func() [][]string {
				if !removed {
					return [][]string{{"Not logged in"}}
				}
				return [][]string{{"Logged out"}}
			})
		},
	}
}

func newAuthStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show who the stored token logs in as, and until when",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadLogin(tokenPath(g))
			if err != nil {
				return fmt.Errorf("auth status: %w", err)
			}
			if s == nil {
				return errors.New("not logged in")
			}
			st := loginStatus{s.Issuer, s.Subject, s.ExpiresAt}
			if err := g.print(cmd, st, func() [][]string {
				return [][]string{{"ISSUER", "SUBJECT", "EXPIRES_AT"}, {st.Issuer, st.Subject, st.ExpiresAt.Format(time.RFC3339)}}
			}); err != nil {
				return err
			}
			return s.expired()
		},
	}
}

// storedBearer is the token of `velocity auth login` for an API call, "" when there is none.
func (g *globals) storedBearer() (string, error) {
	s, err := loadLogin(tokenPath(g))
	if err != nil || s == nil {
		return "", err
	}
	if err := s.expired(); err != nil {
		return "", err
	}
	return s.Token, nil
}

func (s *storedLogin) expired() error {
	if time.Now().Before(s.ExpiresAt) {
		return nil
	}
	return fmt.Errorf("the stored login of %s expired at %s; run `velocity auth login` again", s.Subject, s.ExpiresAt.Format(time.RFC3339))
}

// tokenPath is the token file: token.json beside the config file.
func tokenPath(g *globals) string {
	return filepath.Join(filepath.Dir(configPath(g.getenv)), "token.json")
}

// loadLogin reads the token file; nil when there is none.
func loadLogin(path string) (*storedLogin, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stored token: %w", err)
	}
	var s storedLogin
	if err := json.Unmarshal(data, &s); err != nil || s.Token == "" {
		return nil, fmt.Errorf("stored token %s is unreadable; run `velocity auth login` again", path)
	}
	return &s, nil
}

// saveLogin writes the token file owner-only, replacing it in one rename.
func saveLogin(path string, s storedLogin) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*.json") // created 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func getJSON(ctx context.Context, client *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxOIDCBody)).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// openBrowser tries to show u; the URL is printed anyway, so any failure is ignored.
func openBrowser(u string) {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return
	}
	c := exec.Command(path, u)
	if c.Start() == nil {
		go func() { _ = c.Wait() }()
	}
}

func writeCallbackPage(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	msg := "Logged in to Velocity."
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		msg = "Login failed: " + err.Error()
	}
	fmt.Fprintf(w, "<!doctype html><title>Velocity login</title><p>%s</p><p>You can close this tab and return to the terminal.</p>\n", html.EscapeString(msg))
}

// randomToken is 256 bits from crypto/rand, base64url: a state, nonce or PKCE verifier (43
// characters, as RFC 7636 asks).
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
