package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	// maxJWKSBytes bounds a JWK set response; real ones are a few kilobytes.
	maxJWKSBytes = 1 << 20
	// keysFetchTimeout bounds one JWKS fetch even when the configured client has no timeout.
	// The fetch is shared by every request waiting on it, so no one caller's context cancels it.
	keysFetchTimeout = 10 * time.Second
	minKeyTTL        = time.Minute
	maxKeyTTL        = 24 * time.Hour
	// minRSABits refuses keys that no issuer should still sign with.
	minRSABits = 2048
)

// keySet is one issuer's JWK set, fetched lazily and kept until its HTTP cache lifetime ends.
// Requests that need a fetch while one is running wait for that one instead of starting
// their own.
type keySet struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	defaultTTL time.Duration

	mu        sync.Mutex
	keys      []jose.JSONWebKey // replaced whole on each fetch, never changed in place
	expires   time.Time         // keys serve until then; zero before the first fetch
	attempted time.Time         // start of the last fetch, whether it worked or not
	lastErr   error             // why the last fetch failed; nil after a success
	inflight  *keyFetch
}

type keyFetch struct {
	done chan struct{}
	err  error
}

// keySnapshot is the key set as one request saw it.
type keySnapshot struct {
	keys    []jose.JSONWebKey
	expires time.Time
}

// get returns unexpired keys, fetching the set when there are none. After a failed fetch it
// answers ErrKeysUnavailable without asking the endpoint again for minRefresh, so an outage
// is not met with one fetch per request.
func (s *keySet) get(ctx context.Context, now time.Time) (keySnapshot, error) {
	s.mu.Lock()
	if now.Before(s.expires) {
		snap := keySnapshot{keys: s.keys, expires: s.expires}
		s.mu.Unlock()
		return snap, nil
	}
	if s.inflight == nil && s.lastErr != nil && now.Sub(s.attempted) < s.minRefresh {
		err := s.lastErr
		s.mu.Unlock()
		return keySnapshot{}, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
	}
	f := s.startFetchLocked(ctx, now)
	s.mu.Unlock()
	return s.wait(ctx, f, now)
}

// refresh fetches the set again because a token names a key it lacks. It fetches at most once
// per minRefresh, since anyone can send a token with a made-up kid; otherwise, and when the
// fetch fails, it returns the keys it has while they last.
func (s *keySet) refresh(ctx context.Context, now time.Time) (keySnapshot, error) {
	s.mu.Lock()
	if s.inflight == nil && now.Sub(s.attempted) < s.minRefresh {
		snap := keySnapshot{keys: s.keys, expires: s.expires}
		err := s.lastErr
		s.mu.Unlock()
		if !now.Before(snap.expires) {
			return keySnapshot{}, fmt.Errorf("%w: %v", ErrKeysUnavailable, err)
		}
		return snap, nil
	}
	f := s.startFetchLocked(ctx, now)
	s.mu.Unlock()
	return s.wait(ctx, f, now)
}

// startFetchLocked joins the running fetch or starts one. s.mu must be held.
func (s *keySet) startFetchLocked(ctx context.Context, now time.Time) *keyFetch {
	if s.inflight != nil {
		return s.inflight
	}
	f := &keyFetch{done: make(chan struct{})}
	s.inflight = f
	s.attempted = now
	go func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keysFetchTimeout)
		defer cancel()
		keys, ttl, err := s.fetch(fctx, now)
		s.mu.Lock()
		if err == nil {
			s.keys = keys
			// Counted from the start of the fetch, so the keys never outlive what the server said.
			s.expires = now.Add(ttl)
		}
		s.lastErr = err
		f.err = err
		s.inflight = nil
		s.mu.Unlock()
		close(f.done)
	}()
	return f
}

// wait returns the keys once f is done: the new ones, or after a failed fetch the old ones
// while they have not expired.
func (s *keySet) wait(ctx context.Context, f *keyFetch, now time.Time) (keySnapshot, error) {
	select {
	case <-f.done:
	case <-ctx.Done():
		return keySnapshot{}, fmt.Errorf("%w: %w", ErrKeysUnavailable, ctx.Err())
	}
	s.mu.Lock()
	snap := keySnapshot{keys: s.keys, expires: s.expires}
	s.mu.Unlock()
	if now.Before(snap.expires) {
		return snap, nil
	}
	return keySnapshot{}, fmt.Errorf("%w: %v", ErrKeysUnavailable, f.err)
}

// fetch gets and parses the JWK set, with how long its keys may be used.
func (s *keySet) fetch(ctx context.Context, now time.Time) ([]jose.JSONWebKey, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetch jwks %s: status %d", s.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks %s: read body: %w", s.url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("fetch jwks %s: body larger than %d bytes", s.url, maxJWKSBytes)
	}
	keys, err := parseJWKS(body)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch jwks %s: %w", s.url, err)
	}
	return keys, keyTTL(resp.Header, now, s.defaultTTL), nil
}

// parseJWKS keeps the set's public signing keys. A key this package cannot use (another kty,
// "use":"enc", private or symmetric material, a short RSA modulus) is skipped rather than
// failing the set, so one odd key at the issuer does not lock every token out. A set with no
// usable key is an error, which keeps the previous keys serving.
func parseJWKS(body []byte) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decode jwk set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.Valid() {
			continue
		}
		switch pub := k.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("jwk set has no usable signing key")
	}
	return keys, nil
}

// keyFits reports whether k may check a signature made with alg: the key type and curve must
// be the algorithm's, and a key that names its own alg must name this one.
func keyFits(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return true
		}
	case *ecdsa.PublicKey:
		curve := pub.Curve.Params().Name
		return alg == "ES256" && curve == "P-256" ||
			alg == "ES384" && curve == "P-384" ||
			alg == "ES512" && curve == "P-521"
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// keyTTL is how long a JWK set fetched at now may be used: Cache-Control max-age (less Age),
// else Expires, else fallback. What the server says is clamped to [minKeyTTL, maxKeyTTL], so
// no-store does not mean a fetch per request and a typo does not pin keys for a year.
func keyTTL(h http.Header, now time.Time, fallback time.Duration) time.Duration {
	ttl, ok := maxAge(strings.Join(h.Values("Cache-Control"), ","))
	if ok {
		if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
			ttl -= time.Duration(min(age, int64(maxKeyTTL/time.Second))) * time.Second
		}
	} else if exp := h.Get("Expires"); exp != "" {
		expires, err := http.ParseTime(exp)
		if err != nil {
			// RFC 9111: an Expires that does not parse means already expired.
			expires = now
		}
		// Measured against the server's own Date when it sends one, so clock drift between
		// the two machines does not stretch or shrink the lifetime.
		base := now
		if date, err := http.ParseTime(h.Get("Date")); err == nil {
			base = date
		}
		ttl = expires.Sub(base)
	} else {
		return fallback
	}
	return min(max(ttl, minKeyTTL), maxKeyTTL)
}

// maxAge reads max-age from a Cache-Control value; no-store and no-cache count as max-age=0.
func maxAge(cacheControl string) (time.Duration, bool) {
	found := false
	var ttl time.Duration
	for _, directive := range strings.Split(cacheControl, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return 0, true
		case "max-age":
			secs, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64)
			if err != nil || secs < 0 {
				continue
			}
			ttl = time.Duration(min(secs, int64(maxKeyTTL/time.Second))) * time.Second
			found = true
		}
	}
	return ttl, found
}
