package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"
)

const testIssuer = "https://idp.test"

// testKeySet holds the private keys every test signs with, generated once: RSA generation is
// slow under -race.
type testKeySet struct {
	rsa1, rsa2, rsa3 *rsa.PrivateKey
	ec1, ec2         *ecdsa.PrivateKey
	ec384            *ecdsa.PrivateKey
	ed               ed25519.PrivateKey
}

var testKeys = sync.OnceValue(func() testKeySet {
	rsaKey := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return testKeySet{
		rsa1: rsaKey(), rsa2: rsaKey(), rsa3: rsaKey(),
		ec1: ecKey(elliptic.P256()), ec2: ecKey(elliptic.P256()), ec384: ecKey(elliptic.P384()),
		ed: ed,
	}
})

// jwksServer serves a JWK set that a test can change, and counts its requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	body   []byte
	status int
	header http.Header
	delay  time.Duration
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, header: http.Header{}}
	s.setKeys(t, keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status, delay := s.body, s.status, s.delay
		for k, v := range s.header {
			w.Header()[k] = v
		}
		s.mu.Unlock()
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t *testing.T, keys ...jose.JSONWebKey) {
	t.Helper()
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	require.NoError(t, err)
	s.setBody(http.StatusOK, body)
}

func (s *jwksServer) setBody(status int, body []byte) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

func (s *jwksServer) setHeader(name, value string) {
	s.mu.Lock()
	s.header.Set(name, value)
	s.mu.Unlock()
}

// publicJWK is the public half of priv as a JWK with kid, and alg and use when not empty.
func publicJWK(kid string, priv any, alg, use string) jose.JSONWebKey {
	var pub any
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case ed25519.PrivateKey:
		pub = k.Public()
	}
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: use}
}

// signToken signs claims with key under alg, naming kid in the header when it is not empty.
func signToken(t *testing.T, alg, kid string, key any, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	require.NoError(t, err)
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	require.NoError(t, err)
	return token
}

// claimsAt are valid claims for testIssuer at now, changed by edit.
func claimsAt(now time.Time, edit func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss":   testIssuer,
		"aud":   "velocity",
		"sub":   "user-1",
		"exp":   now.Add(10 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"email": "user@example.test",
	}
	if edit != nil {
		edit(c)
	}
	return c
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now().Truncate(time.Second)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestVerifier returns a verifier of testIssuer whose keys srv serves, on clock.
func newTestVerifier(t *testing.T, srv *jwksServer, clock *testClock, edit func(*IssuerConfig), opt JWTOptions) *JWTVerifier {
	t.Helper()
	cfg := IssuerConfig{Issuer: testIssuer, JWKSURL: srv.URL, Audiences: []string{"velocity", "velocity-admin"}}
	if edit != nil {
		edit(&cfg)
	}
	opt.Now = clock.Now
	v, err := NewJWTVerifier([]IssuerConfig{cfg}, opt)
	require.NoError(t, err)
	return v
}

func TestJWTVerifyClaims(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t,
		publicJWK("rsa-1", k.rsa1, "", "sig"),
		publicJWK("ec-1", k.ec1, "", ""),
	)
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{})
	now := clock.Now()

	tests := []struct {
		name    string
		alg     string
		kid     string
		key     any
		edit    func(map[string]any)
		wantErr error
	}{
		{name: "valid RS256", alg: "RS256", kid: "rsa-1", key: k.rsa1},
		{name: "valid ES256", alg: "ES256", kid: "ec-1", key: k.ec1},
		{name: "no kid tries the keys that fit", alg: "RS256", key: k.rsa1},
		{name: "aud array with one accepted", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["aud"] = []string{"other", "velocity-admin"} }},
		{name: "wrong aud", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["aud"] = "other" }, wantErr: ErrTokenInvalid},
		{name: "aud missing", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { delete(c, "aud") }, wantErr: ErrTokenInvalid},
		{name: "unknown issuer", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["iss"] = "https://evil.test" }, wantErr: ErrUnknownIssuer},
		{name: "iss missing", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { delete(c, "iss") }, wantErr: ErrUnknownIssuer},
		{name: "iss not a string", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["iss"] = 7 }, wantErr: ErrTokenInvalid},
		{name: "expired beyond skew", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["exp"] = now.Add(-90 * time.Second).Unix() }, wantErr: ErrTokenExpired},
		{name: "expired within skew", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["exp"] = now.Add(-30 * time.Second).Unix() }},
		{name: "exp missing", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { delete(c, "exp") }, wantErr: ErrTokenInvalid},
		{name: "nbf in the future", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }, wantErr: ErrTokenInvalid},
		{name: "nbf within skew", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["nbf"] = now.Add(30 * time.Second).Unix() }},
		{name: "iat in the future", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() }, wantErr: ErrTokenInvalid},
		{name: "sub missing", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { delete(c, "sub") }, wantErr: ErrTokenInvalid},
		{name: "sub empty", alg: "RS256", kid: "rsa-1", key: k.rsa1, edit: func(c map[string]any) { c["sub"] = "" }, wantErr: ErrTokenInvalid},
		{name: "alg not allowed for the issuer", alg: "PS256", kid: "rsa-1", key: k.rsa1, wantErr: ErrTokenInvalid},
		{name: "signed by another key under a known kid", alg: "RS256", kid: "rsa-1", key: k.rsa2, wantErr: ErrTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := signToken(t, tt.alg, tt.kid, tt.key, claimsAt(now, tt.edit))
			got, err := v.Verify(context.Background(), token)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.NotContains(t, err.Error(), token)
				return
			}
			require.NoError(t, err)
			require.Equal(t, testIssuer, got.Issuer)
			require.Equal(t, "user-1", got.Subject)
			require.Equal(t, "user@example.test", got.Claims["email"])
			require.False(t, got.Expiry.IsZero())
		})
	}
}

// TestJWTRejectsForgedAlgorithms checks the attacks on the alg header against an issuer that
// allows every asymmetric algorithm, so that none of them is refused by the allow-list alone.
func TestJWTRejectsForgedAlgorithms(t *testing.T) {
	t.Parallel()
	k := testKeys()
	rsa1 := publicJWK("rsa-1", k.rsa1, "", "")
	srv := newJWKSServer(t,
		rsa1,
		publicJWK("rsa-pinned", k.rsa2, "RS256", "sig"),
		publicJWK("rsa-enc", k.rsa3, "", "enc"),
		publicJWK("ec-1", k.ec1, "", ""),
		publicJWK("ed-1", k.ed, "", ""),
	)
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, func(c *IssuerConfig) { c.Algorithms = signatureAlgorithms }, JWTOptions{})
	now := clock.Now()
	claims := claimsAt(now, nil)
	good := signToken(t, "RS256", "rsa-1", k.rsa1, claims)
	_, err := v.Verify(context.Background(), good)
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), signToken(t, "EdDSA", "ed-1", k.ed, claims))
	require.NoError(t, err)

	pkix, err := x509.MarshalPKIXPublicKey(&k.rsa1.PublicKey)
	require.NoError(t, err)
	pkixPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	pkcs1 := x509.MarshalPKCS1PublicKey(&k.rsa1.PublicKey)
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: pkcs1})
	jwkJSON, err := json.Marshal(rsa1)
	require.NoError(t, err)

	b64 := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	parts := strings.Split(good, ".")
	payload := b64(claims)

	tests := []struct {
		name  string
		token string
	}{
		{"alg none", b64(map[string]any{"alg": "none", "typ": "JWT", "kid": "rsa-1"}) + "." + payload + "."},
		{"alg None with a signature", b64(map[string]any{"alg": "None", "kid": "rsa-1"}) + "." + payload + "." + parts[2]},
		{"HS256 keyed with the PKIX PEM public key", signToken(t, "HS256", "rsa-1", pkixPEM, claims)},
		{"HS256 keyed with the PKCS1 PEM public key", signToken(t, "HS256", "rsa-1", pkcs1PEM, claims)},
		{"HS256 keyed with the DER public key", signToken(t, "HS256", "rsa-1", pkix, claims)},
		{"HS512 keyed with the JWK", signToken(t, "HS512", "rsa-1", jwkJSON, claims)},
		{"HS256 without kid", signToken(t, "HS256", "", pkixPEM, claims)},
		{"tampered payload", parts[0] + "." + b64(claimsAt(now, func(c map[string]any) { c["sub"] = "admin" })) + "." + parts[2]},
		{"header alg switched to PS256", b64(map[string]any{"alg": "PS256", "kid": "rsa-1"}) + "." + parts[1] + "." + parts[2]},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"key pinned to RS256 used with PS256", signToken(t, "PS256", "rsa-pinned", k.rsa2, claims)},
		{"key with use enc", signToken(t, "RS256", "rsa-enc", k.rsa3, claims)},
		{"ES384 under a P-256 kid", signToken(t, "ES384", "ec-1", k.ec384, claims)},
		{"RSA kid with an EC alg", signToken(t, "ES256", "rsa-1", k.ec1, claims)},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`},
		{"garbage", "not.a.jwt"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.Verify(context.Background(), tt.token)
			require.ErrorIs(t, err, ErrTokenInvalid)
			if tt.token != "" {
				require.NotContains(t, err.Error(), tt.token)
			}
		})
	}
}

func TestJWTUnknownKidRefreshesOncePerMinRefresh(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, publicJWK("rsa-1", k.rsa1, "", ""))
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{MinRefresh: 30 * time.Second})
	ctx := context.Background()

	_, err := v.Verify(ctx, signToken(t, "RS256", "rsa-1", k.rsa1, claimsAt(clock.Now(), nil)))
	require.NoError(t, err)
	require.EqualValues(t, 1, srv.hits.Load())

	// The issuer rotates a key in. A token under the new kid right after the first fetch
	// waits for MinRefresh; after it, one fetch picks the key up.
	srv.setKeys(t, publicJWK("rsa-1", k.rsa1, "", ""), publicJWK("rsa-2", k.rsa2, "", ""))
	_, err = v.Verify(ctx, signToken(t, "RS256", "rsa-2", k.rsa2, claimsAt(clock.Now(), nil)))
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.EqualValues(t, 1, srv.hits.Load(), "no fetch within MinRefresh of the last")
	clock.Advance(31 * time.Second)
	_, err = v.Verify(ctx, signToken(t, "RS256", "rsa-2", k.rsa2, claimsAt(clock.Now(), nil)))
	require.NoError(t, err)
	require.EqualValues(t, 2, srv.hits.Load())

	// Made-up kids: the first after MinRefresh fetches, the rest do not.
	clock.Advance(31 * time.Second)
	for i := range 5 {
		_, err := v.Verify(ctx, signToken(t, "RS256", fmt.Sprintf("ghost-%d", i), k.rsa3, claimsAt(clock.Now(), nil)))
		require.ErrorIs(t, err, ErrTokenInvalid)
		require.Contains(t, err.Error(), "ghost-")
	}
	require.EqualValues(t, 3, srv.hits.Load())
	clock.Advance(31 * time.Second)
	_, err = v.Verify(ctx, signToken(t, "RS256", "ghost-again", k.rsa3, claimsAt(clock.Now(), nil)))
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.EqualValues(t, 4, srv.hits.Load())

	// A key the issuer dropped goes when the set is fetched again.
	srv.setKeys(t, publicJWK("rsa-2", k.rsa2, "", ""))
	clock.Advance(2 * time.Hour)
	_, err = v.Verify(ctx, signToken(t, "RS256", "rsa-1", k.rsa1, claimsAt(clock.Now(), nil)))
	require.ErrorIs(t, err, ErrTokenInvalid)
	require.EqualValues(t, 5, srv.hits.Load(), "expired keys are fetched again, and the unknown kid is within MinRefresh of that")
}

func TestJWTCacheControlMaxAge(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, publicJWK("ec-1", k.ec1, "", ""))
	srv.setHeader("Cache-Control", "public, max-age=300")
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{DefaultKeyTTL: 24 * time.Hour})
	verify := func() {
		t.Helper()
		_, err := v.Verify(context.Background(), signToken(t, "ES256", "ec-1", k.ec1, claimsAt(clock.Now(), nil)))
		require.NoError(t, err)
	}

	verify()
	require.EqualValues(t, 1, srv.hits.Load())
	clock.Advance(299 * time.Second)
	verify()
	require.EqualValues(t, 1, srv.hits.Load(), "keys serve for max-age")
	clock.Advance(2 * time.Second)
	verify()
	require.EqualValues(t, 2, srv.hits.Load(), "keys past max-age are fetched again")
}

func TestJWTKeyTTL(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"no header", nil, time.Hour},
		{"max-age", map[string]string{"Cache-Control": "public, max-age=300"}, 5 * time.Minute},
		{"quoted max-age", map[string]string{"Cache-Control": `max-age="600"`}, 10 * time.Minute},
		{"max-age less Age", map[string]string{"Cache-Control": "max-age=900", "Age": "300"}, 10 * time.Minute},
		{"short max-age clamped up", map[string]string{"Cache-Control": "max-age=5"}, time.Minute},
		{"long max-age clamped down", map[string]string{"Cache-Control": "max-age=31536000"}, 24 * time.Hour},
		{"no-store", map[string]string{"Cache-Control": "no-store"}, time.Minute},
		{"bad max-age falls back", map[string]string{"Cache-Control": "max-age=soon"}, time.Hour},
		{"Expires against Date", map[string]string{"Expires": "Wed, 01 Jan 2020 02:00:00 GMT", "Date": "Wed, 01 Jan 2020 00:00:00 GMT"}, 2 * time.Hour},
		{"Expires against now", map[string]string{"Expires": now.Add(30 * time.Minute).Format(http.TimeFormat)}, 30 * time.Minute},
		{"Expires unparsable", map[string]string{"Expires": "0"}, time.Minute},
		{"max-age wins over Expires", map[string]string{"Cache-Control": "max-age=120", "Expires": now.Add(5 * time.Hour).Format(http.TimeFormat)}, 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			got := keyTTL(h, now, time.Hour)
			require.Equal(t, tt.want, got, "keyTTL(%v) got %s, want %s", tt.header, got, tt.want)
		})
	}
}

func TestJWTTwoIssuers(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srvA := newJWKSServer(t, publicJWK("a-1", k.rsa1, "", ""))
	srvB := newJWKSServer(t, publicJWK("b-1", k.ec2, "", ""))
	clock := newTestClock()
	v, err := NewJWTVerifier([]IssuerConfig{
		{Issuer: "https://a.test", JWKSURL: srvA.URL, Audiences: []string{"velocity"}},
		{Issuer: "https://b.test/tenant", JWKSURL: srvB.URL, Audiences: []string{"api://velocity"}, Algorithms: []string{"ES256"}, ClockSkew: 10 * time.Second},
	}, JWTOptions{Now: clock.Now})
	require.NoError(t, err)
	ctx := context.Background()
	now := clock.Now()
	forA := func(c map[string]any) { c["iss"] = "https://a.test" }
	forB := func(c map[string]any) { c["iss"], c["aud"] = "https://b.test/tenant", []string{"api://velocity"} }

	got, err := v.Verify(ctx, signToken(t, "RS256", "a-1", k.rsa1, claimsAt(now, forA)))
	require.NoError(t, err)
	require.Equal(t, "https://a.test", got.Issuer)
	got, err = v.Verify(ctx, signToken(t, "ES256", "b-1", k.ec2, claimsAt(now, forB)))
	require.NoError(t, err)
	require.Equal(t, "https://b.test/tenant", got.Issuer)
	require.EqualValues(t, 1, srvA.hits.Load())
	require.EqualValues(t, 1, srvB.hits.Load())

	// One issuer's key does not vouch for the other, nor its audience, algorithms or skew.
	_, err = v.Verify(ctx, signToken(t, "ES256", "b-1", k.ec2, claimsAt(now, forA)))
	require.ErrorIs(t, err, ErrTokenInvalid)
	_, err = v.Verify(ctx, signToken(t, "RS256", "a-1", k.rsa1, claimsAt(now, forB)))
	require.ErrorIs(t, err, ErrTokenInvalid, "RS256 is allowed for a.test only")
	_, err = v.Verify(ctx, signToken(t, "ES256", "b-1", k.ec2, claimsAt(now, func(c map[string]any) { forB(c); c["aud"] = "velocity" })))
	require.ErrorIs(t, err, ErrTokenInvalid)
	_, err = v.Verify(ctx, signToken(t, "ES256", "b-1", k.ec2, claimsAt(now, func(c map[string]any) { forB(c); c["exp"] = now.Add(-30 * time.Second).Unix() })))
	require.ErrorIs(t, err, ErrTokenExpired, "b.test's skew is 10s")
	_, err = v.Verify(ctx, signToken(t, "RS256", "a-1", k.rsa1, claimsAt(now, func(c map[string]any) { forA(c); c["exp"] = now.Add(-30 * time.Second).Unix() })))
	require.NoError(t, err, "a.test's skew is the default 60s")
}

func TestJWTKeysServeWhileEndpointDown(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, publicJWK("rsa-1", k.rsa1, "", ""))
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{DefaultKeyTTL: 10 * time.Minute})
	ctx := context.Background()
	token := func() string {
		return signToken(t, "RS256", "rsa-1", k.rsa1, claimsAt(clock.Now(), func(c map[string]any) {
			c["exp"] = clock.Now().Add(time.Hour).Unix()
		}))
	}

	cached := token()
	_, err := v.Verify(ctx, cached)
	require.NoError(t, err)
	srv.Close()

	clock.Advance(5 * time.Minute)
	_, err = v.Verify(ctx, token())
	require.NoError(t, err, "cached keys serve while the endpoint is down")
	_, err = v.Verify(ctx, signToken(t, "RS256", "rsa-new", k.rsa2, claimsAt(clock.Now(), nil)))
	require.ErrorIs(t, err, ErrTokenInvalid, "an unknown kid is refused when the refresh fails and keys remain")
	_, err = v.Verify(ctx, token())
	require.NoError(t, err, "the failed refresh kept the cached keys")

	clock.Advance(5*time.Minute + time.Second)
	_, err = v.Verify(ctx, token())
	require.ErrorIs(t, err, ErrKeysUnavailable, "expired keys and no endpoint fail closed")
	_, err = v.Verify(ctx, cached)
	require.ErrorIs(t, err, ErrKeysUnavailable, "a cached token fails closed once its keys expire")
}

func TestJWTKeysFetchFailures(t *testing.T) {
	t.Parallel()
	k := testKeys()
	good, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{publicJWK("rsa-1", k.rsa1, "", "")}})
	require.NoError(t, err)
	symmetric, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "rsa-1"}}})
	require.NoError(t, err)
	private, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.rsa1, KeyID: "rsa-1"}}})
	require.NoError(t, err)
	huge := []byte(`{"pad":"` + strings.Repeat("a", maxJWKSBytes) + `",` + string(good[1:]))
	tests := []struct {
		name   string
		status int
		body   []byte
		reason string
	}{
		{"status 500", http.StatusInternalServerError, good, "status 500"},
		{"status 204", http.StatusNoContent, nil, "status 204"},
		{"not JSON", http.StatusOK, []byte("<html>"), "decode jwk set"},
		{"no keys", http.StatusOK, []byte(`{"keys":[]}`), "no usable signing key"},
		{"only a symmetric key", http.StatusOK, symmetric, "no usable signing key"},
		{"only a private key", http.StatusOK, private, "no usable signing key"},
		{"over 1 MiB", http.StatusOK, huge, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t)
			srv.setBody(tt.status, tt.body)
			clock := newTestClock()
			v := newTestVerifier(t, srv, clock, nil, JWTOptions{MinRefresh: 30 * time.Second})
			token := signToken(t, "RS256", "rsa-1", k.rsa1, claimsAt(clock.Now(), nil))

			_, err := v.Verify(context.Background(), token)
			require.ErrorIs(t, err, ErrKeysUnavailable)
			require.Contains(t, err.Error(), tt.reason)
			_, err = v.Verify(context.Background(), token)
			require.ErrorIs(t, err, ErrKeysUnavailable)
			require.EqualValues(t, 1, srv.hits.Load(), "a failed fetch is not retried within MinRefresh")

			srv.setBody(http.StatusOK, good)
			clock.Advance(31 * time.Second)
			_, err = v.Verify(context.Background(), token)
			require.NoError(t, err, "the endpoint is asked again after MinRefresh")
			require.EqualValues(t, 2, srv.hits.Load())
		})
	}
}

func TestJWTFirstUseSharesOneFetch(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, publicJWK("ec-1", k.ec1, "", ""))
	srv.mu.Lock()
	srv.delay = 100 * time.Millisecond
	srv.mu.Unlock()
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{})

	const n = 20
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = signToken(t, "ES256", "ec-1", k.ec1, claimsAt(clock.Now(), func(c map[string]any) { c["sub"] = fmt.Sprint("user-", i) }))
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, token := range tokens {
		wg.Go(func() { _, errs[i] = v.Verify(context.Background(), token) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, srv.hits.Load())
}

func TestJWTTokenCache(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, publicJWK("rsa-1", k.rsa1, "", ""))
	clock := newTestClock()
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{})
	ctx := context.Background()
	token := signToken(t, "RS256", "rsa-1", k.rsa1, claimsAt(clock.Now(), func(c map[string]any) {
		c["exp"] = clock.Now().Add(2 * time.Minute).Unix()
	}))

	first, err := v.Verify(ctx, token)
	require.NoError(t, err)
	require.EqualValues(t, 1, v.signatureChecks.Load())
	srv.Close()
	second, err := v.Verify(ctx, token)
	require.NoError(t, err)
	require.Equal(t, first, second)
	require.EqualValues(t, 1, v.signatureChecks.Load(), "the second Verify is answered from the cache")

	clock.Advance(2*time.Minute + 59*time.Second)
	_, err = v.Verify(ctx, token)
	require.NoError(t, err, "within the skew after exp")
	clock.Advance(time.Second)
	_, err = v.Verify(ctx, token)
	require.ErrorIs(t, err, ErrTokenExpired)
	require.EqualValues(t, 1, v.signatureChecks.Load(), "expiry is checked on the cached entry")
	require.Zero(t, v.cache.len(), "the expired entry is dropped")

	// A failure is never cached: the same bad token is checked each time.
	bad := signToken(t, "RS256", "rsa-1", k.rsa2, claimsAt(clock.Now(), nil))
	for range 2 {
		_, err = v.Verify(ctx, bad)
		require.ErrorIs(t, err, ErrTokenInvalid)
	}
	require.EqualValues(t, 3, v.signatureChecks.Load())
	require.Zero(t, v.cache.len())
}

func TestJWTTokenCacheBounded(t *testing.T) {
	t.Parallel()
	k := testKeys()
	srv := newJWKSServer(t, publicJWK("ec-1", k.ec1, "", ""))
	clock := newTestClock()
	const size = 8
	v := newTestVerifier(t, srv, clock, nil, JWTOptions{CacheSize: size})

	var tokens []string
	for i := range size + 5 {
		token := signToken(t, "ES256", "ec-1", k.ec1, claimsAt(clock.Now(), func(c map[string]any) { c["sub"] = fmt.Sprint("user-", i) }))
		tokens = append(tokens, token)
		_, err := v.Verify(context.Background(), token)
		require.NoError(t, err)
		require.LessOrEqual(t, v.cache.len(), size)
	}
	require.Equal(t, size, v.cache.len())

	// LRU: the newest token is a hit, the oldest was evicted and is verified again.
	checks := v.signatureChecks.Load()
	_, err := v.Verify(context.Background(), tokens[len(tokens)-1])
	require.NoError(t, err)
	require.Equal(t, checks, v.signatureChecks.Load())
	_, err = v.Verify(context.Background(), tokens[0])
	require.NoError(t, err)
	require.Equal(t, checks+1, v.signatureChecks.Load())
	require.Equal(t, size, v.cache.len())
}

func TestNewJWTVerifierConfigErrors(t *testing.T) {
	t.Parallel()
	valid := IssuerConfig{Issuer: "https://idp.test", JWKSURL: "https://idp.test/jwks.json", Audiences: []string{"velocity"}}
	tests := []struct {
		name string
		edit func(*IssuerConfig) // applied to a copy of valid
		dup  bool                // configure the issuer twice
		want []string            // substrings of the error
	}{
		{name: "symmetric alg", edit: func(c *IssuerConfig) { c.Algorithms = []string{"RS256", "HS256"} }, want: []string{"https://idp.test", "algorithms", "HS256"}},
		{name: "alg none", edit: func(c *IssuerConfig) { c.Algorithms = []string{"none"} }, want: []string{"https://idp.test", "algorithms", "none"}},
		{name: "unknown alg", edit: func(c *IssuerConfig) { c.Algorithms = []string{"rs256"} }, want: []string{"https://idp.test", "algorithms", "rs256"}},
		{name: "empty audiences", edit: func(c *IssuerConfig) { c.Audiences = nil }, want: []string{"https://idp.test", "audiences"}},
		{name: "empty audience", edit: func(c *IssuerConfig) { c.Audiences = []string{""} }, want: []string{"https://idp.test", "audiences"}},
		{name: "bad URL scheme", edit: func(c *IssuerConfig) { c.JWKSURL = "ftp://idp.test/jwks" }, want: []string{"https://idp.test", "jwks url"}},
		{name: "relative URL", edit: func(c *IssuerConfig) { c.JWKSURL = "/jwks.json" }, want: []string{"https://idp.test", "jwks url"}},
		{name: "unparsable URL", edit: func(c *IssuerConfig) { c.JWKSURL = "https://idp.test/%zz" }, want: []string{"https://idp.test", "jwks url"}},
		{name: "empty URL", edit: func(c *IssuerConfig) { c.JWKSURL = "" }, want: []string{"https://idp.test", "jwks url"}},
		{name: "duplicate issuer", dup: true, want: []string{"https://idp.test", "configured twice"}},
		{name: "skew too large", edit: func(c *IssuerConfig) { c.ClockSkew = 6 * time.Minute }, want: []string{"https://idp.test", "clock skew"}},
		{name: "negative skew", edit: func(c *IssuerConfig) { c.ClockSkew = -time.Second }, want: []string{"https://idp.test", "clock skew"}},
		{name: "no issuer name", edit: func(c *IssuerConfig) { c.Issuer = "" }, want: []string{"jwt issuer 0", "issuer: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid
			if tt.edit != nil {
				tt.edit(&c)
			}
			issuers := []IssuerConfig{c}
			if tt.dup {
				issuers = append(issuers, c)
			}
			_, err := NewJWTVerifier(issuers, JWTOptions{})
			require.Error(t, err)
			for _, want := range tt.want {
				require.Contains(t, err.Error(), want)
			}
		})
	}

	_, err := NewJWTVerifier(nil, JWTOptions{})
	require.ErrorContains(t, err, "at least one issuer")

	v, err := NewJWTVerifier([]IssuerConfig{valid}, JWTOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"RS256", "ES256"}, v.issuers["https://idp.test"].algs)
	require.Equal(t, defaultClockSkew, v.issuers["https://idp.test"].skew)
	require.Equal(t, defaultCacheSize, v.cache.size)
}
