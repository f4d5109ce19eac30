package auth

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/redistest"
)

// durableRevocations stands in for the store's table of revocations. Redis here is real
// (redistest); only the Postgres side is faked, which the store's own tests cover.
type durableRevocations struct {
	mu   sync.Mutex
	revs []Revocation
}

func (d *durableRevocations) add(rev Revocation) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.revs = append(d.revs, rev)
}

func (d *durableRevocations) ActiveRevocations(context.Context) ([]Revocation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Revocation(nil), d.revs...), nil
}

// clock is a settable time for the cache's TTL.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// replica is one API process: its own Redis client and revocation checks. With subscribe, its
// subscriber runs until the test ends and has loaded the durable revocations on return.
func replica(t *testing.T, srv *redistest.Server, durable DurableRevocations, opt RevocationOptions, subscribe bool) *Revocations {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r := NewRevocations(srv.Client(t), durable, opt)
	if subscribe {
		ctx, cancel := context.WithCancel(context.Background())
		r.Start(ctx)
		t.Cleanup(func() { cancel(); <-r.done })
		select {
		case <-r.Ready():
		case <-time.After(5 * time.Second):
			t.Fatal("subscriber not ready after 5s")
		}
	}
	return r
}

func requireNotRevoked(t *testing.T, r *Revocations, creds ...Credential) {
	t.Helper()
	got, failOpen, err := r.Check(context.Background(), creds)
	require.NoError(t, err)
	require.False(t, failOpen)
	require.Nil(t, got)
}

// revokedNow reports whether Check answers that want is revoked, without error.
func revokedNow(r *Revocations, want Credential, creds ...Credential) bool {
	got, _, err := r.Check(context.Background(), creds)
	return err == nil && got != nil && *got == want
}

func TestRevocationReachesOtherReplicaThroughPubSub(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	durable := &durableRevocations{}
	opt := RevocationOptions{CacheTTL: 5 * time.Minute}
	a := replica(t, srv, durable, opt, true)
	b := replica(t, srv, durable, opt, true)

	jti := Credential{Kind: CredentialJTI, Value: "tok-1"}
	subject := Credential{Kind: CredentialSubject, Value: "jwt:ada"}
	requireNotRevoked(t, b, jti, subject) // warms b's cache for both

	rev := Revocation{Credential: subject}
	durable.add(rev)
	require.NoError(t, a.Publish(context.Background(), rev))
	require.True(t, revokedNow(a, subject, jti, subject), "the publishing replica applies it at once")
	require.Eventually(t, func() bool { return revokedNow(b, subject, jti, subject) },
		time.Second, 10*time.Millisecond, "b still accepts the subject a second after its revocation")
	requireNotRevoked(t, b, jti)
}

func TestRevocationReachesReplicaWithoutPubSubAfterCacheTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	durable := &durableRevocations{}
	clk := &clock{now: time.Now()}
	a := replica(t, srv, durable, RevocationOptions{}, false)
	b := replica(t, srv, durable, RevocationOptions{CacheTTL: time.Minute, Now: clk.Now}, false)

	key := Credential{Kind: CredentialAPIKey, Value: "6f1c8a52-4f0e-4c55-9d0b-0c4a3f0e9a11"}
	requireNotRevoked(t, b, key)
	require.NoError(t, a.Publish(context.Background(), Revocation{Credential: key}))
	requireNotRevoked(t, b, key) // its "ok" is younger than CacheTTL

	clk.advance(time.Minute)
	require.True(t, revokedNow(b, key, key), "after CacheTTL, b asks Redis")
	require.True(t, revokedNow(b, key, key))
}

func TestRevocationCacheTTLIsCapped(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := replica(t, srv, &durableRevocations{}, RevocationOptions{CacheTTL: time.Hour}, false)
	require.Equal(t, 5*time.Minute, r.opt.CacheTTL)
}

func TestRevocationExpiredIsIgnored(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	past := time.Now().Add(-time.Minute)
	old := Credential{Kind: CredentialJTI, Value: "expired-in-postgres"}
	durable := &durableRevocations{revs: []Revocation{{Credential: old, ExpiresAt: &past}}}
	a := replica(t, srv, durable, RevocationOptions{}, true)
	b := replica(t, srv, durable, RevocationOptions{}, true)
	requireNotRevoked(t, a, old)
	require.Zero(t, srv.Client(t).Exists(context.Background(), a.key(old)).Val(), "an expired revocation was written to redis")

	stale := Credential{Kind: CredentialJTI, Value: "published-after-exp"}
	require.NoError(t, a.Publish(context.Background(), Revocation{Credential: stale, ExpiresAt: &past}))
	requireNotRevoked(t, a, stale)
	requireNotRevoked(t, b, stale)

	soon := time.Now().Add(time.Second)
	short := Credential{Kind: CredentialJTI, Value: "expires-soon"}
	require.NoError(t, a.Publish(context.Background(), Revocation{Credential: short, ExpiresAt: &soon}))
	require.True(t, revokedNow(a, short, short))
	require.Eventually(t, func() bool { return revokedNow(b, short, short) }, time.Second, 10*time.Millisecond)
	time.Sleep(time.Until(soon) + 10*time.Millisecond)
	requireNotRevoked(t, a, short)
	requireNotRevoked(t, b, short)
}

func TestRevocationRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	durable := &durableRevocations{}
	closed := replica(t, srv, durable, RevocationOptions{CacheTTL: 5 * time.Minute}, true)
	open := replica(t, srv, durable, RevocationOptions{CacheTTL: 5 * time.Minute, FailOpen: true}, true)

	warm := Credential{Kind: CredentialSubject, Value: "jwt:warm"}
	cold := Credential{Kind: CredentialSubject, Value: "jwt:cold"}
	gone := Credential{Kind: CredentialJTI, Value: "revoked-before-the-crash"}
	requireNotRevoked(t, closed, warm)
	durable.add(Revocation{Credential: gone})
	require.NoError(t, open.Publish(context.Background(), Revocation{Credential: gone}))
	require.Eventually(t, func() bool { return revokedNow(closed, gone, gone) }, time.Second, 10*time.Millisecond)

	srv.Kill()

	started := time.Now()
	got, failOpen, err := closed.Check(context.Background(), []Credential{warm, cold})
	require.ErrorIs(t, err, ErrRevocationUnavailable, "fail closed")
	require.Nil(t, got)
	require.False(t, failOpen)
	require.Less(t, time.Since(started), time.Second)

	requireNotRevoked(t, closed, warm) // its "ok" is still fresh

	got, failOpen, err = open.Check(context.Background(), []Credential{cold})
	require.NoError(t, err)
	require.Nil(t, got)
	require.True(t, failOpen, "fail open must be reported, for the audit")

	for _, r := range []*Revocations{closed, open} {
		got, failOpen, err = r.Check(context.Background(), []Credential{cold, gone})
		require.NoError(t, err)
		require.False(t, failOpen)
		require.Equal(t, &gone, got, "a known revocation holds while redis is down")
	}
}

func TestRevocationRedisRestartIsReseeded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	durable := &durableRevocations{}
	a := replica(t, srv, durable, RevocationOptions{}, true)

	rev := Revocation{Credential: Credential{Kind: CredentialSubject, Value: "jwt:mallory"}}
	later := time.Now().Add(time.Hour)
	timed := Revocation{Credential: Credential{Kind: CredentialJTI, Value: "tok-9"}, ExpiresAt: &later}
	for _, r := range []Revocation{rev, timed} {
		durable.add(r) // Postgres first, as the API does
		require.NoError(t, a.Publish(context.Background(), r))
	}

	srv.Restart() // empty: both keys are gone

	ctx := context.Background()
	rdb := srv.Client(t)
	require.Eventually(t, func() bool {
		// A fresh replica that knows nothing and asks Redis, which only a reseeding fills.
		fresh := replica(t, srv, durable, RevocationOptions{}, false)
		return revokedNow(fresh, rev.Credential, rev.Credential) && revokedNow(fresh, timed.Credential, timed.Credential)
	}, 10*time.Second, 50*time.Millisecond, "redis was not reseeded after its restart")
	ttl := rdb.PTTL(ctx, a.key(timed.Credential)).Val()
	require.Greater(t, ttl, 59*time.Minute, "the reseeded key lost its expiry")
	require.LessOrEqual(t, ttl, time.Hour)
	require.Equal(t, time.Duration(-1), rdb.PTTL(ctx, a.key(rev.Credential)).Val())

	// The subscriber listens again: a new revocation reaches a.
	b := replica(t, srv, durable, RevocationOptions{}, false)
	next := Credential{Kind: CredentialJTI, Value: "after-restart"}
	requireNotRevoked(t, a, next)
	require.NoError(t, b.Publish(ctx, Revocation{Credential: next}))
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.revoked[next]
		return ok
	}, time.Second, 10*time.Millisecond)
}

func TestRevocationOKCacheIsBounded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := replica(t, srv, &durableRevocations{}, RevocationOptions{}, false)
	for i := range maxCachedOK {
		r.ok[Credential{Kind: CredentialJTI, Value: strconv.Itoa(i)}] = time.Now()
	}
	requireNotRevoked(t, r, Credential{Kind: CredentialJTI, Value: "one-more"})
	require.Len(t, r.ok, 1)
}
