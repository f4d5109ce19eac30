package auth

import (
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// IssuerConfig configures one trusted issuer.
type IssuerConfig struct {
	Issuer    string   // the exact iss value
	JWKSURL   string   // https or http URL of the JWK set
	Audiences []string // the token's aud must contain one of these (required, non-empty)
	// Algorithms is the allow-list, asymmetric only: RS256 RS384 RS512 PS256 PS384 PS512
	// ES256 ES384 ES512 EdDSA. Empty means RS256 and ES256.
	Algorithms []string
	ClockSkew  time.Duration // leeway for exp/nbf/iat; 0 = 60s; max 5m
}

// JWTOptions tunes a JWTVerifier; the zero value is ready for production.
type JWTOptions struct {
	HTTPClient *http.Client     // nil = a client with a 5s timeout
	Now        func() time.Time // nil = time.Now (tests inject)
	CacheSize  int              // verified-token cache entries; 0 = 10000
	// MinRefresh is the least time between two JWKS fetches of one issuer prompted by unknown
	// kids, and between retries after a failed fetch; 0 = 30s.
	MinRefresh time.Duration
	// DefaultKeyTTL is the key lifetime when the JWKS response has no Cache-Control max-age
	// or Expires; 0 = 1h. What the server sends is clamped to [1m, 24h].
	DefaultKeyTTL time.Duration
}

// VerifiedToken is what a verified bearer token says. Claims is shared with the token cache:
// read it, do not change it.
type VerifiedToken struct {
	Issuer  string
	Subject string
	Expiry  time.Time
	Claims  map[string]any // every claim, decoded from JSON
}

// signatureAlgorithms are the only algorithms an issuer may allow. HMAC is not among them: a
// verifier holding only public keys must never accept a MAC keyed with one.
var signatureAlgorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}

// parseAlgorithms is signatureAlgorithms as go-jose takes them.
var parseAlgorithms = func() []jose.SignatureAlgorithm {
	algs := make([]jose.SignatureAlgorithm, len(signatureAlgorithms))
	for i, a := range signatureAlgorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return algs
}()

const (
	defaultClockSkew  = 60 * time.Second
	maxClockSkew      = 5 * time.Minute
	defaultCacheSize  = 10000
	defaultMinRefresh = 30 * time.Second
	defaultKeyTTL     = time.Hour
	// maxTokenBytes refuses absurd tokens before any parsing; real ones stay under 8 KiB.
	maxTokenBytes = 32 << 10
)

// JWTVerifier verifies bearer JWTs against the JWK sets of the configured issuers, and
// caches the tokens it has verified.
type JWTVerifier struct {
	issuers map[string]*issuer
	now     func() time.Time
	cache   *tokenCache

	// signatureChecks counts tokens that reached a signature check; tests read it to see
	// the cache at work.
	signatureChecks atomic.Int64
}

type issuer struct {
	name      string
	audiences []string
	algs      []string
	skew      time.Duration
	keys      *keySet
}

// NewJWTVerifier checks the issuer configuration and returns a verifier. It fetches nothing:
// each issuer's keys are fetched on its first token.
func NewJWTVerifier(issuers []IssuerConfig, opt JWTOptions) (*JWTVerifier, error) {
	if len(issuers) == 0 {
		return nil, errors.New("jwt: at least one issuer is required")
	}
	client := opt.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	minRefresh := cmpOr(opt.MinRefresh, defaultMinRefresh)
	defaultTTL := cmpOr(opt.DefaultKeyTTL, defaultKeyTTL)
	v := &JWTVerifier{
		issuers: map[string]*issuer{},
		now:     opt.Now,
		cache:   newTokenCache(cmpOr(opt.CacheSize, defaultCacheSize)),
	}
	if v.now == nil {
		v.now = time.Now
	}
	for i, cfg := range issuers {
		if cfg.Issuer == "" {
			return nil, fmt.Errorf("jwt issuer %d: issuer: required", i)
		}
		is, err := newIssuer(cfg)
		if err != nil {
			return nil, fmt.Errorf("jwt issuer %q: %w", cfg.Issuer, err)
		}
		if _, dup := v.issuers[is.name]; dup {
			return nil, fmt.Errorf("jwt issuer %q: issuer: configured twice", is.name)
		}
		is.keys = &keySet{url: cfg.JWKSURL, client: client, minRefresh: minRefresh, defaultTTL: defaultTTL}
		v.issuers[is.name] = is
	}
	return v, nil
}

func newIssuer(cfg IssuerConfig) (*issuer, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("jwks url: want an absolute http or https URL, got %q", cfg.JWKSURL)
	}
	if len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, "") {
		return nil, errors.New("audiences: want at least one, none empty")
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{"RS256", "ES256"}
	}
	for _, a := range algs {
		if !slices.Contains(signatureAlgorithms, a) {
			return nil, fmt.Errorf("algorithms: %q is not an asymmetric signature algorithm (want one of %v)", a, signatureAlgorithms)
		}
	}
	skew := cfg.ClockSkew
	switch {
	case skew < 0 || skew > maxClockSkew:
		return nil, fmt.Errorf("clock skew: %s is outside [0, %s]", skew, maxClockSkew)
	case skew == 0:
		skew = defaultClockSkew
	}
	return &issuer{
		name:      cfg.Issuer,
		audiences: slices.Clone(cfg.Audiences),
		algs:      slices.Clone(algs),
		skew:      skew,
	}, nil
}

// Verify checks token and returns what it says. Errors wrap ErrTokenInvalid, ErrTokenExpired,
// ErrUnknownIssuer or ErrKeysUnavailable, and never quote the token.
//
// The token's iss, read before its signature is checked, only picks which issuer's keys and
// algorithms to check it with; nothing else is trusted until the signature holds.
func (v *JWTVerifier) Verify(ctx context.Context, token string) (VerifiedToken, error) {
	if token == "" || len(token) > maxTokenBytes {
		return VerifiedToken{}, fmt.Errorf("%w: malformed", ErrTokenInvalid)
	}
	sum := sha256.Sum256([]byte(token))
	now := v.now()
	if vt, ok, err := v.cache.get(sum, now); ok {
		return vt, err
	}

	// Any asymmetric algorithm parses; the issuer's own allow-list is applied once the issuer
	// is known. HMAC and none never parse.
	parsed, err := jwt.ParseSigned(token, parseAlgorithms)
	if err != nil {
		// go-jose's reason is not passed on: it can quote pieces of the token.
		return VerifiedToken{}, fmt.Errorf("%w: malformed or algorithm not accepted", ErrTokenInvalid)
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := parsed.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return VerifiedToken{}, fmt.Errorf("%w: claims are not a JSON object with a string iss", ErrTokenInvalid)
	}
	is, ok := v.issuers[unverified.Issuer]
	if !ok {
		return VerifiedToken{}, fmt.Errorf("%w: iss %q", ErrUnknownIssuer, truncate(unverified.Issuer, 100))
	}
	header := parsed.Headers[0]
	if !slices.Contains(is.algs, header.Algorithm) {
		return VerifiedToken{}, fmt.Errorf("%w: algorithm %s not allowed for issuer %s", ErrTokenInvalid, header.Algorithm, is.name)
	}

	snap, err := is.keys.get(ctx, now)
	if err != nil {
		return VerifiedToken{}, fmt.Errorf("issuer %s: %w", is.name, err)
	}
	candidates := signingKeys(snap.keys, header.KeyID, header.Algorithm)
	if len(candidates) == 0 {
		// A kid we do not know may be a key the issuer has just rotated in.
		snap, err = is.keys.refresh(ctx, now)
		if err != nil {
			return VerifiedToken{}, fmt.Errorf("issuer %s: %w", is.name, err)
		}
		candidates = signingKeys(snap.keys, header.KeyID, header.Algorithm)
		if len(candidates) == 0 {
			return VerifiedToken{}, fmt.Errorf("%w: no %s key with kid %q at issuer %s", ErrTokenInvalid, header.Algorithm, truncate(header.KeyID, 100), is.name)
		}
	}

	v.signatureChecks.Add(1)
	var std jwt.Claims
	var claims map[string]any
	verified := false
	for _, k := range candidates {
		std, claims = jwt.Claims{}, nil
		if parsed.Claims(k.Key, &std, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return VerifiedToken{}, fmt.Errorf("%w: signature does not verify", ErrTokenInvalid)
	}

	if err := is.check(std, now); err != nil {
		return VerifiedToken{}, err
	}
	vt := VerifiedToken{Issuer: is.name, Subject: std.Subject, Expiry: std.Expiry.Time(), Claims: claims}
	v.cache.put(sum, cachedToken{token: vt, expires: vt.Expiry.Add(is.skew), keysExpire: snap.expires})
	return vt, nil
}

// check applies the registered claims to a token whose signature holds.
func (is *issuer) check(c jwt.Claims, now time.Time) error {
	if c.Issuer != is.name {
		return fmt.Errorf("%w: iss does not match", ErrTokenInvalid)
	}
	if !slices.ContainsFunc(is.audiences, c.Audience.Contains) {
		return fmt.Errorf("%w: aud not accepted by issuer %s", ErrTokenInvalid, is.name)
	}
	if c.Subject == "" {
		return fmt.Errorf("%w: sub missing", ErrTokenInvalid)
	}
	if c.Expiry == nil {
		return fmt.Errorf("%w: exp missing", ErrTokenInvalid)
	}
	if !now.Before(c.Expiry.Time().Add(is.skew)) {
		return fmt.Errorf("%w: exp %s", ErrTokenExpired, c.Expiry.Time().UTC().Format(time.RFC3339))
	}
	if c.NotBefore != nil && now.Add(is.skew).Before(c.NotBefore.Time()) {
		return fmt.Errorf("%w: nbf in the future", ErrTokenInvalid)
	}
	if c.IssuedAt != nil && now.Add(is.skew).Before(c.IssuedAt.Time()) {
		return fmt.Errorf("%w: iat in the future", ErrTokenInvalid)
	}
	return nil
}

// signingKeys are the keys that may have signed a token with this kid and alg. A token
// without a kid may have been signed by any key of the right type.
func signingKeys(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range keys {
		if (kid == "" || k.KeyID == kid) && keyFits(k, alg) {
			out = append(out, k)
		}
	}
	return out
}

// tokenCache holds verified tokens by the SHA-256 of the token, so a repeated bearer token
// costs a hash instead of a signature check. It is an LRU bounded at size entries. An entry
// serves until the token expires (with skew) or the keys that verified it expire, whichever is
// first: after that the token is verified again, so a key the issuer withdrew stops being
// honoured within one key lifetime, and an issuer whose keys cannot be fetched fails closed
// for cached tokens too. Failures are never cached.
type tokenCache struct {
	size int

	mu      sync.Mutex
	entries map[[32]byte]*list.Element
	order   *list.List // of *cachedToken, most recently used first
}

type cachedToken struct {
	sum        [32]byte
	token      VerifiedToken
	expires    time.Time // token exp plus the issuer's skew
	keysExpire time.Time
}

func newTokenCache(size int) *tokenCache {
	return &tokenCache{size: size, entries: map[[32]byte]*list.Element{}, order: list.New()}
}

// get answers from the cache. ok is false when the token must be verified; an expired token
// is ok with ErrTokenExpired.
func (c *tokenCache) get(sum [32]byte, now time.Time) (vt VerifiedToken, ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, found := c.entries[sum]
	if !found {
		return VerifiedToken{}, false, nil
	}
	e := el.Value.(*cachedToken)
	if !now.Before(e.expires) {
		c.removeLocked(el)
		return VerifiedToken{}, true, fmt.Errorf("%w: exp %s", ErrTokenExpired, e.token.Expiry.UTC().Format(time.RFC3339))
	}
	if !now.Before(e.keysExpire) {
		c.removeLocked(el)
		return VerifiedToken{}, false, nil
	}
	c.order.MoveToFront(el)
	return e.token, true, nil
}

func (c *tokenCache) put(sum [32]byte, e cachedToken) {
	e.sum = sum
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, found := c.entries[sum]; found {
		el.Value = &e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.size {
		c.removeLocked(c.order.Back())
	}
	c.entries[sum] = c.order.PushFront(&e)
}

func (c *tokenCache) removeLocked(el *list.Element) {
	c.order.Remove(el)
	delete(c.entries, el.Value.(*cachedToken).sum)
}

func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

// cmpOr returns v, or def when v is zero or negative.
func cmpOr[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// truncate shortens an untrusted value before it goes into an error.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
