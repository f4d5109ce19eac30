package redistest_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/redistest"
)

func TestServerKillRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())

	srv.Kill()
	require.Error(t, rdb.Ping(ctx).Err(), "a killed server answers")

	srv.Restart()
	require.NoError(t, rdb.Ping(ctx).Err())
	require.ErrorIs(t, rdb.Get(ctx, "k").Err(), redis.Nil, "a restarted server is empty")
}

func TestServersAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := redistest.Start(t), redistest.Start(t)
	require.NotEqual(t, a.Addr(), b.Addr())
	require.NoError(t, a.Client(t).Set(ctx, "k", "a", 0).Err())
	require.ErrorIs(t, b.Client(t).Get(ctx, "k").Err(), redis.Nil)
}
