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
