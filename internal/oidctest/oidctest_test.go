package oidctest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"
)

const redirectURI = "https://app.test/auth/callback"

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// authorize asks for a code with the challenge of verifier and returns the redirect.
func authorize(t *testing.T, p *Provider, verifier string, edit func(url.Values)) *url.URL {
	t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {p.ClientID}, "redirect_uri": {redirectURI},
		"scope": {"openid email"}, "state": {"st"}, "nonce": {"no"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	if edit != nil {
		edit(q)
	}
	resp, err := noRedirects.Get(p.Issuer() + "/authorize?" + q.Encode())
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	u, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "st", u.Query().Get("state"))
	return u
}

func exchange(t *testing.T, p *Provider, code, verifier string) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(p.Issuer()+"/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
		"client_id": {p.ClientID}, "code_verifier": {verifier},
	})
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

func TestProvider(t *testing.T) {
	t.Parallel()
	p := Start(t)
	p.RegisterRedirectURI(redirectURI)
	p.SetUser("alice", map[string]any{"groups": []string{"a", "b"}, "sub": "ignored"})

	var md map[string]any
	getJSON(t, p.Issuer()+"/.well-known/openid-configuration", &md)
	require.Equal(t, p.Issuer(), md["issuer"])
	require.Equal(t, p.Issuer()+"/token", md["token_endpoint"])
	require.Equal(t, p.JWKSURL(), md["jwks_uri"])

	verifier := strings.Repeat("v", 43)
	u := authorize(t, p, verifier, nil)
	code := u.Query().Get("code")
	require.NotEmpty(t, code)
	require.Equal(t, "S256", p.Authorizations()[0].CodeChallengeMethod)

	status, body := exchange(t, p, code, verifier)
	require.Equal(t, http.StatusOK, status, body)
	require.Equal(t, "Bearer", body["token_type"])

	var set jose.JSONWebKeySet
	getJSON(t, p.JWKSURL(), &set)
	require.Len(t, set.Keys, 1)
	tok, err := jwt.ParseSigned(body["id_token"].(string), []jose.SignatureAlgorithm{jose.RS256})
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, tok.Claims(set.Keys[0].Key, &claims))
	require.Equal(t, p.Issuer(), claims["iss"])
	require.Equal(t, p.ClientID, claims["aud"])
	require.Equal(t, "alice", claims["sub"])
	require.Equal(t, "no", claims["nonce"])
	require.Equal(t, []any{"a", "b"}, claims["groups"])
	require.NotNil(t, claims["exp"])

	// Single use.
	status, body = exchange(t, p, code, verifier)
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_grant", body["error"])
	require.Equal(t, 2, p.TokenRequests())
}

func TestProviderRefusals(t *testing.T) {
	t.Parallel()
	p := Start(t)
	p.RegisterRedirectURI(redirectURI)
	p.SetUser("alice", nil)
	verifier := strings.Repeat("v", 43)

	// The wrong verifier spends the code.
	code := authorize(t, p, verifier, nil).Query().Get("code")
	status, body := exchange(t, p, code, strings.Repeat("w", 43))
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_grant", body["error"])
	status, _ = exchange(t, p, code, verifier)
	require.Equal(t, http.StatusBadRequest, status)

	// PKCE is required, with S256.
	u := authorize(t, p, verifier, func(q url.Values) { q.Set("code_challenge_method", "plain") })
	require.Equal(t, "invalid_request", u.Query().Get("error"))
	require.Empty(t, u.Query().Get("code"))

	// Unknown redirect URIs and clients get no redirect.
	for _, edit := range []func(url.Values){
		func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") },
		func(q url.Values) { q.Set("client_id", "other") },
	} {
		q := url.Values{"response_type": {"code"}, "client_id": {p.ClientID}, "redirect_uri": {redirectURI}}
		edit(q)
		resp, err := noRedirects.Get(p.Issuer() + "/authorize?" + q.Encode())
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	}

	p.SetRejectPKCE(true)
	code = authorize(t, p, verifier, nil).Query().Get("code")
	status, _ = exchange(t, p, code, verifier)
	require.Equal(t, http.StatusBadRequest, status)
	p.SetRejectPKCE(false)

	p.SetClientSecret("s3cret")
	code = authorize(t, p, verifier, nil).Query().Get("code")
	status, body = exchange(t, p, code, verifier)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "invalid_client", body["error"])
}
