package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/velocitydev/velocity/internal/api"
)

func yamlJSON(t *testing.T, doc string) []byte {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	require.NoError(t, err)
	return js
}

func readOrders(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/orders.yaml")
	require.NoError(t, err)
	return string(data)
}

func TestSchemaApplyLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	v1 := readOrders(t)
	ctx := context.Background()

	// Dry run plans and changes nothing.
	r := e.do("POST", "/admin/schemas/apply?dry_run=true", e.admin, yamlJSON(t, v1))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "dry_run", r.json(t)["status"])
	require.Contains(t, r.json(t)["plan"], "CREATE TABLE")
	requireProblem(t, e.do("GET", ordersPath, e.admin, nil), http.StatusNotFound)

	res := e.applyYAML(v1)
	require.Equal(t, "applied", res["status"])
	require.EqualValues(t, 0, res["from_version"])
	require.EqualValues(t, 1, res["to_version"])
	// Re-applying the same version is a no-op.
	res = e.applyYAML(v1)
	require.Equal(t, "unchanged", res["status"])
	require.Empty(t, res["steps"])
	var versions int
	require.NoError(t, e.super.QueryRow(ctx, `SELECT count(*) FROM velocity.schema_versions`).Scan(&versions))
	require.Equal(t, 1, versions)

	r = e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "keep@example.com"})
	require.Equal(t, http.StatusCreated, r.status)
	id := r.json(t)["id"].(string)

	// Same version, other content: 409 naming spec.version.
	changed := strings.Replace(v1, "    - name: note\n      type: text\n", "    - name: note\n      type: text\n    - name: coupon\n      type: string\n", 1)
	p := requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, changed)), http.StatusConflict)
	require.Equal(t, []string{"body.spec.version"}, locations(p))

	// v2 adds a field in place: the row survives and the route knows the field at once.
	v2 := strings.Replace(changed, "version: 1", "version: 2", 1)
	res = e.applyYAML(v2)
	require.Equal(t, "applied", res["status"])
	require.Contains(t, res["plan"], `ADD COLUMN "coupon" text`)
	r = e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"coupon": "XMAS"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "keep@example.com", r.json(t)["customer_email"])

	// A lower version is refused.
	p = requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, v1)), http.StatusConflict)
	require.Equal(t, []string{"body.spec.version"}, locations(p))

	// v3 drops a field: breaking, so it waits for a second admin's approval (202) and
	// nothing changes.
	v3 := strings.Replace(strings.Replace(v2, "    - name: coupon\n      type: string\n", "", 1), "version: 2", "version: 3", 1)
	r = e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, v3))
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	require.Equal(t, "pending_approval", r.json(t)["status"])
	require.Equal(t, []any{`field "coupon" is dropped with its data`}, r.json(t)["breaking"])
	var cols int
	require.NoError(t, e.super.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = 'acme__shop' AND column_name = 'coupon'`).Scan(&cols))
	require.Equal(t, 2, cols, "column still in table and view")
	// The dry run shows it as breaking, needing approval.
	r = e.do("POST", "/admin/schemas/diff", e.admin, yamlJSON(t, v3))
	require.Equal(t, http.StatusOK, r.status)
	require.NotEmpty(t, r.json(t)["breaking"])
	require.Equal(t, true, r.json(t)["approval_required"])
	// Allowed by policy, it applies.
	v3allow := strings.Replace(v3, "  access:\n", "  policy:\n    breakingChanges: allow\n  access:\n", 1)
	require.Equal(t, "applied", e.applyYAML(v3allow)["status"])
	p = requireProblem(t, e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"coupon": "XMAS"}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.coupon"}, locations(p))

	// Registry routes.
	r = e.do("GET", "/admin/schemas", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), `"version":3`)
	r = e.do("GET", "/admin/schemas/orders/versions", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, r.json(t)["items"], 3)
	r = e.do("GET", "/admin/schemas/orders", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	requireProblem(t, e.do("GET", "/admin/schemas/nope", e.admin, nil), http.StatusNotFound)
}

func TestBadSchemaDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	doc := `
apiVersion: velocity.dev/v1alpha1
kind: SchemaDefinition
metadata:
  name: orders
spec:
  org: admin
  app: "shop; DROP SCHEMA velocity"
  domain: sales
  object: orders
  version: 0
  fields:
    - name: id
      type: uuid
    - name: total
      type: strng
    - name: status
      type: enum
      values: [a, b]
      default: c
    - name: status
      type: string
    - name: "x\"; DROP TABLE y; --"
      type: string
    - name: ` + strings.Repeat("f", 64) + `
      type: string
  access:
    roles:
      viewer: [raed]
`
	p := requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, doc)), http.StatusUnprocessableEntity)
	locs := strings.Join(locations(p), "\n")
	for _, want := range []string{
		"body.spec.org", "body.spec.app", "body.spec.version", "body.spec.fields[0].name", "body.spec.fields[1].type",
		"body.spec.fields[2].default", "body.spec.fields[3].name", "body.spec.fields[4].name", "body.spec.fields[5].name",
		"body.spec.access.roles.viewer[0]",
	} {
		require.Contains(t, locs, want)
	}
	require.Contains(t, string(toJSON(t, p)), `unknown type \"strng\"`)

	// Unknown keys, wrong types, malformed bodies.
	p = requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, strings.Replace(readOrders(t), "maxLength: 32", "maxlenght: 32", 1))), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.spec.fields[0].maxlenght"}, locations(p))
	p = requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, strings.Replace(readOrders(t), "version: 1", "version: one", 1))), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.spec.version"}, locations(p))
	requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, `{"apiVersion": `), http.StatusBadRequest)
	requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, strings.Repeat(" ", 2<<20)), http.StatusRequestEntityTooLarge)

	// Access rules are compiled at apply: an unknown field, a CEL error, a rule too deep, a
	// record read in a list verb's rule and a row filter outside the SQL subset each name
	// their rule, and nothing is applied.
	badRules := strings.Replace(readOrders(t), "  access:\n", "  access:\n"+
		"    abac:\n"+
		"      - verbs: [update]\n        rule: \"record.nope == 1\"\n"+
		"      - verbs: [delete]\n        rule: \"actor.id ==\"\n"+
		"      - verbs: [create]\n        rule: \"((((((((((((actor.id == 'x'))))))))))))  && [[[[[[[[[[[1]]]]]]]]]]].size() > 0\"\n"+
		"      - verbs: [read]\n        rule: \"record.region == 'eu'\"\n"+
		"    rowFilter: \"record.region.startsWith(actor.attributes.region)\"\n", 1)
	p = requireProblem(t, e.do("POST", "/admin/schemas/apply", e.admin, yamlJSON(t, badRules)), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.spec.access.abac[0].rule", "body.spec.access.abac[1].rule", "body.spec.access.abac[2].rule",
		"body.spec.access.abac[3].rule", "body.spec.access.rowFilter"}, locations(p))
	require.Contains(t, string(toJSON(t, p)), "nope")
	require.Contains(t, string(toJSON(t, p)), "startsWith")

	var n int
	require.NoError(t, e.super.QueryRow(context.Background(), `SELECT count(*) FROM velocity.schemas`).Scan(&n))
	require.Equal(t, 0, n, "nothing applied")

	// Parts that change no guarantee are applied with a warning.
	withTier := strings.Replace(readOrders(t), "  access:\n", "  search:\n    tier: 2\n    language: english\n  access:\n", 1)
	res := e.applyYAML(withTier)
	require.Equal(t, []any{"spec.search.tier: tier 2 search is not served yet; tier 1 (trigram) indexes are created"}, res["warnings"])
}

// TestRoutesFollowAppliesOnOtherReplicas: a second API process on the same database gets
// the routes of a schema applied through the first, without restarting (ADR-001).
func TestRoutesFollowAppliesOnOtherReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	replica, err := api.New(ctx, e.st, api.Config{})
	require.NoError(t, err)
	defer replica.Close(context.Background())
	gen := replica.Generation()
	go replica.Listen(ctx)
	// Wait until the replica is listening (its first reload bumps the generation).
	require.Eventually(t, func() bool { return replica.Generation() > gen }, 10*time.Second, 10*time.Millisecond)

	e.apply("testdata/orders.yaml")
	other := &env{t: t, http: newHTTPServer(t, replica), admin: e.admin}
	require.Eventually(t, func() bool {
		return other.do("GET", ordersPath, e.admin, nil).status == http.StatusOK
	}, 10*time.Second, 20*time.Millisecond)
}

// TestConcurrentAppliesInOneApp: objects of one org/app share a Postgres schema and all
// schemas share the group roles; applies of different objects at once must all succeed.
func TestConcurrentAppliesInOneApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	base := readOrders(t)
	const n = 6
	status := make(chan int, n)
	for i := 0; i < n; i++ {
		doc := strings.Replace(strings.Replace(base, "object: orders", fmt.Sprintf("object: o%d", i), 1),
			"name: orders", fmt.Sprintf("name: o%d", i), 1)
		req, err := http.NewRequest("POST", e.http.URL+"/admin/schemas/apply", bytes.NewReader(yamlJSON(t, doc)))
		require.NoError(t, err)
		req.Header.Set("X-API-Key", e.admin)
		go func() {
			res, err := e.http.Client().Do(req)
			if err != nil {
				status <- 0
				return
			}
			res.Body.Close()
			status <- res.StatusCode
		}()
	}
	for i := 0; i < n; i++ {
		require.Equal(t, http.StatusOK, <-status)
	}
	r := e.do("GET", "/admin/schemas", e.admin, nil)
	require.Len(t, r.json(t)["items"], n)
}
