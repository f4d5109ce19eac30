package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
)

type fakeStrategy struct {
	name, header string
	err          error
	calls        int
}

func (f *fakeStrategy) Name() string                    { return f.name }
func (f *fakeStrategy) Recognizes(r *http.Request) bool { return r.Header.Get(f.header) != "" }
func (f *fakeStrategy) Authenticate(context.Context, *http.Request) (store.Actor, error) {
	f.calls++
	return store.Actor{ID: f.name}, f.err
}

func TestChainFirstRecognizerDecides(t *testing.T) {
	bad := &fakeStrategy{name: "first", header: "A", err: errors.New("refused")}
	good := &fakeStrategy{name: "second", header: "B"}
	chain := Chain{bad, good}

	r := httptest.NewRequest("GET", "/", nil)
	_, name, err := chain.Authenticate(context.Background(), r)
	require.ErrorIs(t, err, ErrNoCredential)
	require.Empty(t, name)

	r.Header.Set("B", "x")
	actor, name, err := chain.Authenticate(context.Background(), r)
	require.NoError(t, err)
	require.Equal(t, "second", name)
	require.Equal(t, "second", actor.ID)

	// Both credentials: the first recognizer refuses, and nothing falls through.
	r.Header.Set("A", "x")
	_, name, err = chain.Authenticate(context.Background(), r)
	require.EqualError(t, err, "refused")
	require.Equal(t, "first", name)
	require.Equal(t, 1, good.calls)
	require.Equal(t, []string{"first", "second"}, chain.Names())
}

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig([]byte(`
strategies: [jwt, api-key]
jwt:
  issuers:
    - issuer: https://idp.example.com/
      jwksURL: https://idp.example.com/jwks.json
      audiences: [velocity]
      clockSkew: 30s
      claims:
        roles:
          - claim: groups
            transforms: [{kind: prefix_strip, prefix: velocity-}]
`))
	require.NoError(t, err)
	require.Equal(t, []string{"jwt", "api-key"}, cfg.Strategies)
	require.Len(t, cfg.JWT.Issuers, 1)

	for doc, want := range map[string]string{
		`strategies: []`:                    "strategies: list at least one",
		`strategies: [api-key, saml]`:       `strategies[1]: unknown strategy "saml"`,
		`strategies: [api-key, api-key]`:    `strategies[1]: "api-key" is listed twice`,
		`strategies: [jwt]`:                 "jwt.issuers: the jwt strategy needs at least one issuer",
		`{strategies: [api-key], bogus: 1}`: `unknown field "bogus"`,
		"strategies: [api-key]\njwt: {issuers: [{issuer: x, jwksURL: y, audiences: [a]}]}":                                                           "issuers are configured but neither jwt nor session is in strategies",
		"strategies: [jwt]\njwt: {issuers: [{issuer: x, jwksURL: y, audiences: [a], clockSkew: soon}]}":                                              `jwt.issuers[0].clockSkew: "soon" is not a duration`,
		"strategies: [jwt]\njwt: {issuers: [{issuer: x, jwksURL: y, audiences: [a], claims: {roles: [{claim: g, transforms: [{kind: explode}]}]}}]}": "jwt.issuers[0].claims: ",
	} {
		_, err := LoadConfig([]byte(doc))
		require.ErrorContains(t, err, want, doc)
	}
}

// Build refuses what the verifier refuses (here a symmetric algorithm), naming the issuer.
func TestBuildChecksIssuers(t *testing.T) {
	cfg, err := LoadConfig([]byte(`
strategies: [api-key, jwt]
jwt:
  issuers:
    - {issuer: https://idp.example.com/, jwksURL: https://idp.example.com/jwks.json, audiences: [velocity], algorithms: [HS256]}
`))
	require.NoError(t, err)
	_, err = cfg.Build(NewAPIKeys(nil, 0), JWTOptions{})
	require.ErrorContains(t, err, "HS256")
	cfg.JWT.Issuers[0].Algorithms = []string{"RS256"}
	chain, err := cfg.Build(NewAPIKeys(nil, 0), JWTOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"api-key", "jwt"}, chain.Names())
}
