package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/store"
)

func TestRevokeCredential(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	key, err := e.st.CreateAPIKey(ctx, admin(), "ci", []string{"viewer"}, 0, nil)
	require.NoError(t, err)

	exp := time.Now().Add(time.Hour)
	reason := "leaked in a log"
	r, err := e.st.RevokeCredential(ctx, admin(), store.RevokeJTI, "tok-1", &exp, &reason)
	require.NoError(t, err)
	require.Equal(t, "user:alice", r.CreatedBy)
	_, err = e.st.RevokeCredential(ctx, admin(), store.RevokeAPIKey, key.ID.String(), nil, nil)
	require.NoError(t, err)
	_, err = e.st.VerifyAPIKey(ctx, key.Secret)
	require.ErrorIs(t, err, store.ErrNotFound, "a revoked key is revoked in Postgres too")

	active, err := e.st.ActiveRevocations(ctx)
	require.NoError(t, err)
	require.Len(t, active, 2)
	_, err = e.super.Exec(ctx, `UPDATE velocity.revocations SET expires_at = now() - interval '1 second' WHERE value = 'tok-1'`)
	require.NoError(t, err)
	active, err = e.st.ActiveRevocations(ctx)
	require.NoError(t, err)
	require.Len(t, active, 1, "an expired revocation is forgotten")
	require.Equal(t, 2, scalar[int](t, e.super, `SELECT count(*)::int FROM velocity.audit_entry WHERE action = 'revocation.create'`))

	for _, c := range []struct{ kind, value, column string }{
		{"password", "x", "kind"},
		{store.RevokeSubject, "", "value"},
		{store.RevokeAPIKey, "00000000-0000-0000-0000-000000000000", "value"},
	} {
		_, err := e.st.RevokeCredential(ctx, admin(), c.kind, c.value, nil, nil)
		var dbErr *store.DBError
		require.True(t, errors.As(err, &dbErr), "%v", err)
		require.ErrorIs(t, err, store.ErrInvalid)
		require.Equal(t, c.column, dbErr.Column)
	}
	_, err = e.st.RevokeCredential(ctx, actor("user:bob", "viewer"), store.RevokeSubject, "jwt:ada", nil, nil)
	require.ErrorIs(t, err, store.ErrPermission)
}
