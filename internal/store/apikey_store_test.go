package store_test

import (
	"context"
	"crypto/sha256"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
)

func TestAPIKeyLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}

	key, err := e.st.CreateAPIKey(ctx, admin(), "ci", []string{"viewer", "editor", "viewer"}, time.Hour, allow)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(key.Secret, store.APIKeyPrefix), key.Secret)
	require.Len(t, key.Secret, len(store.APIKeyPrefix)+43, "32 random bytes, base64url")
	require.Equal(t, key.Secret[len(key.Secret)-4:], key.Hint)
	require.Equal(t, "ci", key.Name)
	require.Equal(t, []string{"editor", "viewer"}, key.Roles, "sorted and deduplicated")
	require.Equal(t, allow, key.AllowIPs)
	require.Equal(t, "user:alice", key.CreatedBy)
	require.NotNil(t, key.ExpiresAt)
	require.WithinDuration(t, time.Now().Add(time.Hour), *key.ExpiresAt, time.Minute)
	require.Nil(t, key.RevokedAt)

	// Only the SHA-256 of the secret is stored: no column holds the secret, or its random part.
	var hash []byte
	require.NoError(t, e.super.QueryRow(ctx, `SELECT key_hash FROM velocity.api_keys WHERE id = $1`, key.ID).Scan(&hash))
	want := sha256.Sum256([]byte(key.Secret))
	require.Equal(t, want[:], hash)
	require.Equal(t, store.HashAPIKey(key.Secret), hash)
	require.True(t, scalar[bool](t, e.super, `SELECT key_hash = sha256(convert_to($1, 'UTF8')) FROM velocity.api_keys WHERE id = $2`, key.Secret, key.ID))
	secretPart := strings.TrimPrefix(key.Secret, store.APIKeyPrefix)
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.api_keys k WHERE strpos(k::text, $1) > 0 OR strpos(k::text, $2) > 0`,
		key.Secret, secretPart[:len(secretPart)-4]))

	// The key verifies by its secret, and by nothing else.
	got, err := e.st.VerifyAPIKey(ctx, key.Secret)
	require.NoError(t, err)
	require.Equal(t, key.ID, got.ID)
	require.Equal(t, "ci", got.Name)
	require.Equal(t, []string{"editor", "viewer"}, got.Roles)
	require.Equal(t, allow, got.AllowIPs)
	require.Equal(t, key.ExpiresAt.UTC(), got.ExpiresAt.UTC())
	for _, wrong := range []string{"", store.APIKeyPrefix, key.Secret + "x", key.Secret[:len(key.Secret)-1], strings.ToUpper(key.Secret)} {
		_, err := e.st.VerifyAPIKey(ctx, wrong)
		require.ErrorIs(t, err, store.ErrNotFound, "VerifyAPIKey(%q)", wrong)
	}

	list, err := e.st.ListAPIKeys(ctx, admin())
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, key.APIKey.ID, list[0].ID)

	// Revoked: it no longer verifies, and stays listed as revoked.
	require.NoError(t, e.st.RevokeAPIKey(ctx, admin(), key.ID))
	_, err = e.st.VerifyAPIKey(ctx, key.Secret)
	require.ErrorIs(t, err, store.ErrNotFound)
	list, err = e.st.ListAPIKeys(ctx, admin())
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NotNil(t, list[0].RevokedAt)

	// Revoking twice, or a key that never was, is not found.
	require.ErrorIs(t, e.st.RevokeAPIKey(ctx, admin(), key.ID), store.ErrNotFound)
	require.ErrorIs(t, e.st.RevokeAPIKey(ctx, admin(), uuid.New()), store.ErrNotFound)
}

func TestAPIKeysAreDistinct(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	seen := map[string]bool{}
	for range 5 {
		k, err := e.st.CreateAPIKey(ctx, admin(), "k", []string{"viewer"}, 0, nil)
		require.NoError(t, err)
		require.False(t, seen[k.Secret])
		seen[k.Secret] = true
		require.Nil(t, k.ExpiresAt, "no ttl, no expiry")
		require.Equal(t, []netip.Prefix{}, k.AllowIPs)
	}
}

func TestAPIKeyAdminOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	key, err := e.st.CreateAPIKey(ctx, admin(), "ci", []string{"viewer"}, 0, nil)
	require.NoError(t, err)

	for _, req := range []store.Request{actor("user:bob", "editor", "viewer"), actor("anonymous"), {}} {
		_, err := e.st.CreateAPIKey(ctx, req, "mine", []string{"admin"}, 0, nil)
		require.ErrorIs(t, err, store.ErrPermission, "CreateAPIKey as %q", req.Actor.ID)
		_, err = e.st.ListAPIKeys(ctx, req)
		require.ErrorIs(t, err, store.ErrPermission, "ListAPIKeys as %q", req.Actor.ID)
		require.ErrorIs(t, e.st.RevokeAPIKey(ctx, req, key.ID), store.ErrPermission, "RevokeAPIKey as %q", req.Actor.ID)
	}
	require.Equal(t, 1, scalar[int](t, e.super, `SELECT count(*) FROM velocity.api_keys`))
	_, err = e.st.VerifyAPIKey(ctx, key.Secret)
	require.NoError(t, err, "still valid")
}

func TestAPIKeyInvalidInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	tests := []struct {
		name  string
		roles []string
		ttl   time.Duration
	}{
		{"", []string{"viewer"}, 0},
		{strings.Repeat("n", 201), []string{"viewer"}, 0},
		{"ok", nil, 0},
		{"ok", []string{"Bad Role"}, 0},
		{"ok", []string{"viewer"}, -time.Hour}, // never "no expiry"
		{"ok", []string{"viewer"}, time.Nanosecond},
	}
	for _, tt := range tests {
		_, err := e.st.CreateAPIKey(ctx, admin(), tt.name, tt.roles, tt.ttl, nil)
		require.ErrorIs(t, err, store.ErrInvalid, "CreateAPIKey(%q, %q, %s)", tt.name, tt.roles, tt.ttl)
	}
	require.Equal(t, 0, scalar[int](t, e.super, `SELECT count(*) FROM velocity.api_keys`))
}
