// Package auth turns a request's credentials into a verified actor: the strategies (API keys,
// JWT bearer tokens and OIDC browser sessions) in the order a deployment lists them, their
// caches, the claim mapping, and the reasons a credential is refused.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/velocitydev/velocity/internal/store"
)

// Sentinel errors: each is a 401 with its own reason, except ErrKeysUnavailable, a 503: the
// issuer's keys cannot be had, so the token is neither accepted nor called bad (fail closed).
var (
	ErrNoCredential    = errors.New("no credential")
	ErrUnknownKey      = errors.New("unknown or revoked api key")
	ErrExpiredKey      = errors.New("api key expired")
	ErrAddress         = errors.New("api key not allowed from this address")
	ErrMalformed       = errors.New("malformed credential")
	ErrTokenInvalid    = errors.New("invalid bearer token")
	ErrTokenExpired    = errors.New("bearer token expired")
	ErrUnknownIssuer   = errors.New("bearer token from an unknown issuer")
	ErrKeysUnavailable = errors.New("issuer signing keys unavailable")
	ErrSessionExpired  = errors.New("session expired")
)

// HeaderAPIKey carries an API key.
const HeaderAPIKey = "X-API-Key"

// KeyVerifier looks an API key secret up; *store.Store is one.
type KeyVerifier interface {
	VerifyAPIKey(ctx context.Context, secret string) (store.VerifiedKey, error)
}

// APIKeys authenticates X-API-Key. Verified keys are cached for TTL so the hot path does not
// pay a database round trip per request; a key revoked through this process is dropped from
// the cache at once, and elsewhere within TTL.
type APIKeys struct {
	verifier KeyVerifier
	ttl      time.Duration
	now      func() time.Time
	// trusted are the proxies whose X-Forwarded-For is believed (ClientIP).
	trusted []netip.Prefix

	mu      sync.Mutex
	cache   map[[32]byte]cachedKey
	unknown map[[32]byte]time.Time // recently refused secrets, so guessing costs no lookups
}

// unknownTTL is how long a refused secret is answered without a lookup. It is short: a key
// created a moment after someone tried its secret is not realistic, but a flood of guesses is.
const unknownTTL = 2 * time.Second

type cachedKey struct {
	key     store.VerifiedKey
	fetched time.Time
}

const maxCachedKeys = 10000

// NewAPIKeys returns the API key strategy. ttl 0 means 5 seconds.
func NewAPIKeys(v KeyVerifier, ttl time.Duration) *APIKeys {
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return &APIKeys{verifier: v, ttl: ttl, now: time.Now, cache: map[[32]byte]cachedKey{}, unknown: map[[32]byte]time.Time{}}
}

// Authenticate returns the actor of r's API key. ErrNoCredential means r carries none.
func (a *APIKeys) Authenticate(ctx context.Context, r *http.Request) (store.Actor, error) {
	secret := r.Header.Get(HeaderAPIKey)
	if secret == "" {
		return store.Actor{}, ErrNoCredential
	}
	if !strings.HasPrefix(secret, store.APIKeyPrefix) || len(secret) > 200 {
		return store.Actor{}, ErrMalformed
	}
	sum := sha256.Sum256([]byte(secret))
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[sum]
	refused, wasRefused := a.unknown[sum]
	a.mu.Unlock()
	if !ok && wasRefused && now.Sub(refused) < unknownTTL {
		return store.Actor{}, ErrUnknownKey
	}
	if !ok || now.Sub(c.fetched) > a.ttl {
		key, err := a.verifier.VerifyAPIKey(ctx, secret)
		if errors.Is(err, store.ErrNotFound) {
			a.mu.Lock()
			delete(a.cache, sum)
			if len(a.unknown) >= maxCachedKeys {
				clear(a.unknown)
			}
			a.unknown[sum] = now
			a.mu.Unlock()
			return store.Actor{}, ErrUnknownKey
		}
		if err != nil {
			return store.Actor{}, err
		}
		c = cachedKey{key: key, fetched: now}
		a.mu.Lock()
		if len(a.cache) >= maxCachedKeys {
			clear(a.cache)
		}
		a.cache[sum] = c
		a.mu.Unlock()
	}
	if c.key.ExpiresAt != nil && !now.Before(*c.key.ExpiresAt) {
		return store.Actor{}, ErrExpiredKey
	}
	if len(c.key.AllowIPs) > 0 && !allowed(c.key.AllowIPs, ClientIP(r, a.trusted)) {
		return store.Actor{}, ErrAddress
	}
	return store.Actor{
		ID:         "apikey:" + c.key.ID.String(),
		Kind:       "api_key",
		Roles:      c.key.Roles,
		Attributes: map[string]any{},
	}, nil
}

// TrustProxies sets the proxies whose X-Forwarded-For names the client of an allowlisted key.
func (a *APIKeys) TrustProxies(p []netip.Prefix) { a.trusted = p }

// ClientIP is the client's address as the API keys see it: X-Forwarded-For counts only
// behind the trusted proxies (see ClientIP). Layer 2 rules read it as request.ip.
func (a *APIKeys) ClientIP(r *http.Request) netip.Addr { return ClientIP(r, a.trusted) }

// Forget drops every cached key, after a revocation.
func (a *APIKeys) Forget() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

func allowed(prefixes []netip.Prefix, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ClientIP is the address a request comes from. It is the peer's address, unless the peer is
// one of the trusted proxies: then X-Forwarded-For is read from the right, past every trusted
// proxy, and the first address that is not one is the client. Nothing else is believed (no
// X-Real-IP, no Forwarded), and with no trusted proxies the header is ignored, so a client
// cannot claim an allowlisted address by sending it.
func ClientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	ip = ip.Unmap()
	if !allowed(trusted, ip) {
		return ip
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{} // a malformed hop: the client cannot be known
		}
		hop = hop.Unmap()
		if !allowed(trusted, hop) {
			return hop
		}
		ip = hop
	}
	return ip
}
