package api_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/redistest"
	"github.com/velocitydev/velocity/internal/store"
)

// A revocation made on one replica is refused by another within a second, through a real
// redis-server; with Redis killed the replicas fail closed, audited; once Redis is back
// (empty) they reseed it from Postgres and the revocation still holds.
func TestRevocationsReachEveryReplica(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs := redistest.Start(t)
	p := newIDP(t)
	cfg := p.config(auth.StrategyAPIKey, auth.StrategyJWT)
	var replicaB *api.Server
	e := newEnvFor(t, func(st *store.Store) api.Config {
		revA := auth.NewRevocations(rs.Client(t), api.NewDurableRevocations(st), auth.RevocationOptions{CacheTTL: 5 * time.Minute})
		go revA.Start(ctx)
		revB := auth.NewRevocations(rs.Client(t), api.NewDurableRevocations(st), auth.RevocationOptions{CacheTTL: 5 * time.Minute})
		go revB.Start(ctx)
		var err error
		replicaB, err = api.New(ctx, st, api.Config{Auth: cfg, Revocations: revB})
		require.NoError(t, err)
		t.Cleanup(func() { replicaB.Close(context.Background()) })
		return api.Config{Auth: cfg, Revocations: revA}
	})
	b := newHTTPServer(t, replicaB)
	e.apply("testdata/orders.yaml")
	go replicaB.Listen(ctx)
	// The admin env talks to replica A; these requests go to replica B.
	onB := func(token string, headers ...string) response {
		t.Helper()
		return doAt(t, b.URL, "GET", ordersPath, token, headers...)
	}

	tok := p.token(map[string]any{"jti": "tok-1", "groups": []string{"velocity-viewer"}})
	require.Eventually(t, func() bool { return onB(tok).status == http.StatusOK }, 10*time.Second, 20*time.Millisecond, "replica B serves the schema")

	r := e.do("POST", "/admin/revocations", e.admin, map[string]any{"kind": "jti", "value": "tok-1", "reason": "test"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, true, r.json(t)["propagated"])
	start := time.Now()
	require.Eventually(t, func() bool { return onB(tok).status == http.StatusUnauthorized }, time.Second, 10*time.Millisecond,
		"the other replica refuses the token within a second, despite its warm cache")
	t.Logf("revocation reached replica B in %v", time.Since(start))

	// A subject: every token of bob's.
	bob := p.token(map[string]any{"sub": "bob", "jti": "tok-2", "groups": []string{"velocity-viewer"}})
	require.Equal(t, http.StatusOK, onB(bob).status)
	require.Equal(t, http.StatusCreated, e.do("POST", "/admin/revocations", e.admin, map[string]any{"kind": "subject", "value": "jwt:bob"}).status)
	require.Eventually(t, func() bool { return onB(bob).status == http.StatusUnauthorized }, time.Second, 10*time.Millisecond)

	// Redis dies: credentials not already known fail closed (503), and that is audited.
	rs.Kill()
	fresh := p.token(map[string]any{"sub": "cy", "jti": "tok-3", "groups": []string{"velocity-viewer"}})
	r = onB(fresh, "X-Request-ID", "req-redis-down")
	requireProblem(t, r, http.StatusServiceUnavailable)
	require.Equal(t, http.StatusUnauthorized, onB(tok).status, "a known revocation holds while Redis is down")
	entry := e.waitAudit("request_id=req-redis-down", 1)[0]
	require.Equal(t, "failed", entry["outcome"])
	require.Equal(t, "closed", entry["fail_mode"])

	// Redis is back, empty: the replicas reseed it from Postgres.
	rs.Restart()
	require.Eventually(t, func() bool { return onB(fresh).status == http.StatusOK }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, http.StatusUnauthorized, onB(tok).status)
	require.Eventually(t, func() bool {
		// A fresh checker knows nothing itself: it asks Redis.
		other := auth.NewRevocations(rs.Client(t), nil, auth.RevocationOptions{})
		revoked, _, err := other.Check(ctx, []auth.Credential{{Kind: "jti", Value: "tok-1"}})
		return err == nil && revoked != nil
	}, 10*time.Second, 50*time.Millisecond, "Redis itself holds the revocation again")

	// Bad input names the field.
	p422 := requireProblem(t, e.do("POST", "/admin/revocations", e.admin, map[string]any{"kind": "api_key", "value": "nope"}), http.StatusUnprocessableEntity)
	require.Contains(t, locations(p422), "body.value")
}

// doAt sends a request with a bearer token to the server at base.
func doAt(t *testing.T, base, method, path, token string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{status: res.StatusCode, header: res.Header, body: raw}
}
