package auth

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
)

// countingVerifier answers from a map and counts lookups. It is not a stand-in for
// Postgres in an integration test (internal/api tests verify keys against a real one); it
// lets this unit test see when the cache goes to the store.
type countingVerifier struct {
	keys  map[string]store.VerifiedKey
	calls int
}

func (v *countingVerifier) VerifyAPIKey(_ context.Context, secret string) (store.VerifiedKey, error) {
	v.calls++
	k, ok := v.keys[secret]
	if !ok {
		return store.VerifiedKey{}, store.ErrNotFound
	}
	return k, nil
}

func TestAPIKeysCacheAndChecks(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-time.Minute)
	v := &countingVerifier{keys: map[string]store.VerifiedKey{
		"vk_good":    {ID: uuid.New(), Roles: []string{"viewer"}},
		"vk_expired": {ID: uuid.New(), Roles: []string{"viewer"}, ExpiresAt: &past},
		"vk_office":  {ID: uuid.New(), Roles: []string{"viewer"}, AllowIPs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
	}}
	a := NewAPIKeys(v, time.Hour)
	now := time.Now()
	a.now = func() time.Time { return now }
	req := func(key, remote string) error {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		if key != "" {
			r.Header.Set(HeaderAPIKey, key)
		}
		_, err := a.Authenticate(context.Background(), r)
		return err
	}

	require.NoError(t, req("vk_good", "127.0.0.1:5000"))
	require.NoError(t, req("vk_good", "127.0.0.1:5000"))
	require.Equal(t, 1, v.calls, "the second request is served from the cache")
	now = now.Add(2 * time.Hour)
	require.NoError(t, req("vk_good", "127.0.0.1:5000"))
	require.Equal(t, 2, v.calls, "an entry older than the TTL is looked up again")

	for _, c := range []struct {
		key, remote string
		want        error
	}{
		{"", "127.0.0.1:1", ErrNoCredential},
		{"bearer-something", "127.0.0.1:1", ErrMalformed},
		{"vk_unknown", "127.0.0.1:1", ErrUnknownKey},
		{"vk_expired", "127.0.0.1:1", ErrExpiredKey},
		{"vk_office", "127.0.0.1:1", ErrAddress},
		{"vk_office", "[::ffff:10.1.2.3]:1", nil},
		{"vk_office", "10.1.200.9:1", nil},
	} {
		err := req(c.key, c.remote)
		if c.want == nil {
			require.NoError(t, err, c.key)
		} else {
			require.True(t, errors.Is(err, c.want), "%s from %s: got %v, want %v", c.key, c.remote, err, c.want)
		}
	}

	// A refused secret is answered from memory for a moment: guessing costs no lookups.
	calls := v.calls
	require.ErrorIs(t, req("vk_unknown", "127.0.0.1:1"), ErrUnknownKey)
	require.Equal(t, calls, v.calls)
	now = now.Add(3 * time.Second)
	require.ErrorIs(t, req("vk_unknown", "127.0.0.1:1"), ErrUnknownKey)
	require.Equal(t, calls+1, v.calls)

	// Revocation through this process drops the cache at once.
	delete(v.keys, "vk_good")
	require.NoError(t, req("vk_good", "127.0.0.1:5000"), "still cached")
	a.Forget()
	require.ErrorIs(t, req("vk_good", "127.0.0.1:5000"), ErrUnknownKey)
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.5/32")}
	for _, c := range []struct {
		name, remote string
		xff          []string
		trusted      []netip.Prefix
		want         string
	}{
		{"no proxies: the header is ignored", "203.0.113.7:1", []string{"10.1.2.3"}, nil, "203.0.113.7"},
		{"an untrusted peer cannot forward", "203.0.113.7:1", []string{"10.1.2.3"}, proxies, "203.0.113.7"},
		{"one trusted proxy", "10.0.0.2:1", []string{"198.51.100.9"}, proxies, "198.51.100.9"},
		{"a chain of trusted proxies", "10.0.0.2:1", []string{"198.51.100.9, 192.168.1.5", "10.9.9.9"}, proxies, "198.51.100.9"},
		{"a spoofed first hop is not believed", "10.0.0.2:1", []string{"10.1.1.1, 198.51.100.9"}, proxies, "198.51.100.9"},
		{"everything trusted: the leftmost hop", "10.0.0.2:1", []string{"10.1.1.1"}, proxies, "10.1.1.1"},
		{"no header behind a proxy: the proxy", "10.0.0.2:1", nil, proxies, "10.0.0.2"},
		{"a malformed hop: unknown", "10.0.0.2:1", []string{"198.51.100.9, not-an-ip"}, proxies, "invalid IP"},
		{"IPv4 in IPv6", "[::ffff:10.0.0.2]:1", []string{"::ffff:198.51.100.9"}, proxies, "198.51.100.9"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		for _, h := range c.xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		require.Equal(t, c.want, ClientIP(r, c.trusted).String(), c.name)
	}

	// An allowlisted key behind a trusted proxy is checked against the client, not the proxy.
	v := &countingVerifier{keys: map[string]store.VerifiedKey{
		"vk_office": {ID: uuid.New(), Roles: []string{"viewer"}, AllowIPs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
	}}
	a := NewAPIKeys(v, time.Hour)
	a.TrustProxies(proxies)
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.2:1"
	r.Header.Set(HeaderAPIKey, "vk_office")
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	_, err := a.Authenticate(context.Background(), r)
	require.NoError(t, err)
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	_, err = a.Authenticate(context.Background(), r)
	require.ErrorIs(t, err, ErrAddress)
	r.RemoteAddr = "203.0.113.8:1" // not a proxy: its header means nothing
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	_, err = a.Authenticate(context.Background(), r)
	require.ErrorIs(t, err, ErrAddress)
}
