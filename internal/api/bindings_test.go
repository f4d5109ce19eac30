package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/auth"
)

// Role bindings give JWT subjects, token groups and API keys their roles; an expired or
// revoked binding stops counting without a restart.
func TestRoleBindings(t *testing.T) {
	t.Parallel()
	p := newIDP(t)
	cfg := p.config(auth.StrategyAPIKey, auth.StrategyJWT)
	cfg.JWT.Issuers[0].Claims.Attributes["groups"] = auth.ClaimRule{Claim: "groups"}
	e := newEnv(t, api.Config{Auth: cfg, BindingCacheTTL: -1})
	e.apply("testdata/orders.yaml")
	n := 0
	create := func(key string, headers ...string) int {
		n++
		return e.do("POST", ordersPath, key, map[string]any{"customer_email": fmt.Sprintf("b%d@example.com", n)}, headers...).status
	}
	grant := func(body map[string]any) response {
		return e.do("POST", "/admin/role-bindings", e.admin, body)
	}

	// A subject whose token carries no role of the schema.
	ada := bearer(p.token(map[string]any{"sub": "ada", "groups": []string{"team-ops"}}))
	require.Equal(t, http.StatusForbidden, create("", ada...))
	r := grant(map[string]any{"role": "editor", "subject_kind": "subject", "subject": "ada", "scope": map[string]any{"region": "eu"}})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, map[string]any{"region": "eu"}, r.json(t)["scope"])
	require.Equal(t, http.StatusCreated, create("", ada...))
	r = e.do("DELETE", "/admin/role-bindings?role=editor&subject_kind=subject&subject=ada", e.admin, nil)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	require.Equal(t, http.StatusForbidden, create("", ada...))
	requireProblem(t, e.do("DELETE", "/admin/role-bindings?role=editor&subject_kind=subject&subject=ada", e.admin, nil), http.StatusNotFound)

	// A group from the token.
	require.Equal(t, http.StatusCreated, grant(map[string]any{"role": "editor", "subject_kind": "group", "subject": "team-ops"}).status)
	require.Equal(t, http.StatusCreated, create("", ada...))

	// An API key, with an expiry that passes: the binding stops counting.
	viewer := e.key("viewer")
	keys := e.do("GET", "/admin/api-keys", e.admin, nil).json(t)["items"].([]any)
	var viewerID string
	for _, k := range keys {
		if m := k.(map[string]any); m["name"] == "test viewer" {
			viewerID = m["id"].(string)
		}
	}
	require.NotEmpty(t, viewerID)
	require.Equal(t, http.StatusForbidden, create(viewer))
	soon := time.Now().Add(1500 * time.Millisecond)
	r = grant(map[string]any{"role": "editor", "subject_kind": "api_key", "subject": viewerID, "expires_at": soon.Format(time.RFC3339Nano)})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.Equal(t, http.StatusCreated, create(viewer))
	time.Sleep(time.Until(soon) + 100*time.Millisecond)
	require.Equal(t, http.StatusForbidden, create(viewer), "an expired binding counts no more")

	// Every change is in the audit log.
	actions := map[string]int{}
	for _, it := range e.waitAudit("action=binding.grant", 3) {
		actions[it["action"].(string)]++
	}
	require.Equal(t, 3, actions["binding.grant"])
	require.Len(t, e.waitAudit("action=binding.revoke", 1), 1)

	// Bad input names the field; nothing is bound.
	for body, loc := range map[string]map[string]any{
		"body.role":         {"role": "Editor!", "subject_kind": "subject", "subject": "x"},
		"body.subject_kind": {"role": "editor", "subject_kind": "db_login", "subject": "x"},
		"body.subject":      {"role": "editor", "subject_kind": "api_key", "subject": "not-a-key"},
		"body.expires_at":   {"role": "editor", "subject_kind": "subject", "subject": "x", "expires_at": "2001-01-01T00:00:00Z"},
		"body.scope":        {"role": "editor", "subject_kind": "subject", "subject": "x", "scope": map[string]any{"Bad Key": 1}},
	} {
		r := grant(loc)
		require.Contains(t, []int{400, 422}, r.status, "%s: %s", body, r.body)
		require.Contains(t, locations(requireProblem(t, r, r.status)), body, "%s", r.body)
	}
	var bound int
	require.NoError(t, e.super.QueryRow(context.Background(), `SELECT count(*)::int FROM velocity.role_bindings WHERE subject = 'x'`).Scan(&bound))
	require.Zero(t, bound)
	// Only platform admins bind.
	requireProblem(t, e.do("POST", "/admin/role-bindings", viewer, map[string]any{"role": "admin", "subject_kind": "subject", "subject": "me"}), http.StatusForbidden)
}
