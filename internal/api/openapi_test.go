package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestOpenAPIDocument checks the live document with an independent OpenAPI 3.1 validator
// and against the committed golden file (go test ./internal/api -run OpenAPI -update).
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")

	r := e.do("GET", "/openapi.json", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)

	doc, err := libopenapi.NewDocument(r.body)
	require.NoError(t, err)
	require.Equal(t, "3.1.0", doc.GetVersion())
	v, errs := validator.NewValidator(doc)
	require.Empty(t, errs)
	ok, verrs := v.ValidateDocument()
	for _, ve := range verrs {
		t.Errorf("openapi: %s: %s", ve.Message, ve.Reason)
	}
	require.True(t, ok)

	// Real per-object schemas, not object blobs.
	var spec struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
				Required   []string                  `json:"required"`
			} `json:"schemas"`
		} `json:"components"`
		Paths map[string]map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(r.body, &spec))
	rec := spec.Components.Schemas["acme.shop.sales.orders"]
	require.Equal(t, "integer", rec.Properties["quantity"]["type"].([]any)[0])
	require.Equal(t, []any{"pending", "paid", "shipped"}, rec.Properties["status"]["enum"])
	require.Equal(t, "date-time", rec.Properties["ship_at"]["format"])
	require.Contains(t, spec.Components.Schemas["acme.shop.sales.orders.create"].Required, "customer_email")
	for _, path := range []string{ordersPath, ordersPath + "/{id}", ordersPath + "/query", "/admin/schemas/apply"} {
		require.Contains(t, spec.Paths, path)
	}

	// The docs page renders.
	require.Equal(t, http.StatusOK, e.do("GET", "/docs", "", nil).status)

	var pretty bytes.Buffer
	require.NoError(t, json.Indent(&pretty, r.body, "", "  "))
	golden := "testdata/openapi.golden.json"
	if *update {
		require.NoError(t, os.WriteFile(golden, pretty.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err, "run with -update to create it")
	if string(want) != pretty.String() {
		wl, gl := strings.Split(string(want), "\n"), strings.Split(pretty.String(), "\n")
		for i := 0; i < len(wl) && i < len(gl); i++ {
			if wl[i] != gl[i] {
				t.Fatalf("the OpenAPI document changed at line %d:\n  golden: %s\n  live:   %s\nreview and run with -update", i+1, wl[i], gl[i])
			}
		}
		t.Fatalf("the OpenAPI document changed length (%d vs %d lines); review and run with -update", len(wl), len(gl))
	}
}

// TestOpenAPIShowsCallersTheirObjects: an object's routes and fields appear only to callers
// holding a verb on it.
func TestOpenAPIShowsCallersTheirObjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	for _, c := range []struct {
		key  string
		want bool
	}{
		{"", false},
		{e.key("auditor"), false},
		{e.key("viewer"), true},
		{e.admin, true},
	} {
		for _, path := range []string{"/openapi.json", "/openapi.yaml", "/openapi-3.0.json"} {
			r := e.do("GET", path, c.key, nil)
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			require.Equal(t, c.want, strings.Contains(string(r.body), "acme.shop.sales.orders"), "%s with key %q", path, c.key)
			require.Contains(t, string(r.body), "/admin/schemas/apply", "platform routes are public")
		}
	}
	requireProblem(t, e.do("GET", "/openapi.json", "vk_bogus", nil), http.StatusUnauthorized)

	public := newEnv(t, api.Config{PublicOpenAPI: true})
	public.apply("testdata/orders.yaml")
	require.Contains(t, string(public.do("GET", "/openapi.json", "", nil).body), "acme.shop.sales.orders")
}
