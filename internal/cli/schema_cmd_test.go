package cli

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

const ordersYAML = `apiVersion: velocity.dev/v1alpha1
kind: SchemaDefinition
metadata:
  name: orders
spec:
  org: acme
  app: shop
  domain: sales
  object: orders
  version: 1
  fields:
    - name: total
      type: decimal
`

const ordersJSON = `{"apiVersion":"velocity.dev/v1alpha1","kind":"SchemaDefinition","metadata":{"name":"orders"},` +
	`"spec":{"org":"acme","app":"shop","domain":"sales","object":"orders","version":1,"fields":[{"name":"total","type":"decimal"}]}}`

// definition is a small definition named name, in YAML and in JSON.
func definition(name string) (yamlDoc, jsonDoc string) {
	return fmt.Sprintf("metadata:\n  name: %s\nspec:\n  version: 1\n", name),
		fmt.Sprintf(`{"metadata":{"name":%q},"spec":{"version":1}}`, name)
}

// planReply is the API's answer to applying the definition named name.
func planReply(name, status string) reply {
	return reply{http.StatusOK, fmt.Sprintf(`{"key":"acme.shop.sales.%[1]s","name":%[1]q,"from_version":0,"to_version":1,"status":%[2]q,`+
		`"plan":"CREATE TABLE acme_shop.%[1]s ();\nSELECT velocity.attach('%[1]s');\n",`+
		`"steps":[{"comment":"create table","sql":"CREATE TABLE acme_shop.%[1]s ();"},{"comment":"attach","sql":"SELECT velocity.attach('%[1]s');"}],"breaking":[]}`, name, status)}
}

// planTable is how apply prints planReply.
func planTable(name, status string) string {
	return fmt.Sprintf("# %[1]s (acme.shop.sales.%[1]s): 0 -> 1 %[2]s\nCREATE TABLE acme_shop.%[1]s ();\nSELECT velocity.attach('%[1]s');\n", name, status)
}

// bodies are the request bodies api saw, in order.
func bodies(t *testing.T, api *fakeAPI) []string {
	t.Helper()
	var out []string
	for _, r := range api.requests() {
		require.Equal(t, testKey, r.APIKey)
		require.Equal(t, "application/json", r.ContentType)
		out = append(out, r.Body)
	}
	return out
}

func requireJSONs(t *testing.T, want, got []string) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		require.JSONEq(t, want[i], got[i], "body %d", i)
	}
}

// seenPaths are the "METHOD path" of each request api saw.
func seenPaths(api *fakeAPI) []string {
	var out []string
	for _, r := range api.requests() {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func TestSchemaApplyFileOfSeveralDocuments(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/apply": planReply("orders", "applied")})
	_, customersJSON := definition("customers")
	file := writeFile(t, filepath.Join(t.TempDir(), "defs.yaml"),
		"---\n"+ordersYAML+"--- # the second one\n# only a comment\n---\n\n---\nmetadata:\n  name: customers\nspec:\n  version: 1\n...\n")

	r := runAPI(t, api, "schema", "apply", "-f", file)
	require.Equal(t, ExitOK, r.code, r.stderr)
	requireJSONs(t, []string{ordersJSON, customersJSON}, bodies(t, api))
	require.Equal(t, []string{"POST /admin/schemas/apply", "POST /admin/schemas/apply"}, seenPaths(api))
	require.Equal(t, planTable("orders", "applied")+"\n"+planTable("orders", "applied"), r.stdout)
}

func TestSchemaApplyDirectoryInLexicalOrder(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/apply?dry_run=true": planReply("x", "dry_run")})
	dir := t.TempDir()
	aYAML, aJSON := definition("a")
	_, bJSON := definition("b")
	cYAML, cJSON := definition("c")
	dYAML, dJSON := definition("d")
	writeFile(t, filepath.Join(dir, "c.yml"), cYAML)
	writeFile(t, filepath.Join(dir, "b.json"), "{\n\t\"metadata\": {\"name\": \"b\"},\n\t\"spec\": {\"version\": 1}\n}\n")
	writeFile(t, filepath.Join(dir, "a.yaml"), aYAML+"---\n"+dYAML)
	writeFile(t, filepath.Join(dir, "notes.txt"), "not a definition")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "nested.yaml"), 0o700))
	writeFile(t, filepath.Join(dir, "nested.yaml", "e.yaml"), "metadata: {name: e}\n")

	r := runAPI(t, api, "schema", "apply", "--dry-run", "-f", dir)
	require.Equal(t, ExitOK, r.code, r.stderr)
	requireJSONs(t, []string{aJSON, dJSON, bJSON, cJSON}, bodies(t, api))
	for _, p := range seenPaths(api) {
		require.Equal(t, "POST /admin/schemas/apply?dry_run=true", p)
	}
}

func TestSchemaApplyJSONOutputIsTheListOfAnswers(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/apply": planReply("orders", "unchanged")})
	file := writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), ordersYAML+"---\n"+ordersYAML)

	r := runAPI(t, api, "-o", "json", "schema", "apply", "-f", file)
	require.Equal(t, ExitOK, r.code, r.stderr)
	one := planReply("orders", "unchanged").body
	require.JSONEq(t, "["+one+","+one+"]", r.stdout)
}

func TestSchemaApplyPrintsBreakingChanges(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/apply?dry_run=true": {http.StatusOK,
		`{"key":"acme.shop.sales.orders","name":"orders","from_version":1,"to_version":2,"status":"dry_run","plan":"ALTER TABLE t DROP COLUMN region;",` +
			`"steps":[],"breaking":["drop field region"]}`}})
	file := writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), ordersYAML)

	r := runAPI(t, api, "schema", "apply", "-f", file, "--dry-run")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, "# orders (acme.shop.sales.orders): 1 -> 2 dry_run\n# breaking: drop field region\nALTER TABLE t DROP COLUMN region;\n", r.stdout)
}

func TestSchemaApplyStopsAtTheFirstFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, _ := definition("a")
	writeFile(t, filepath.Join(dir, "1.yaml"), a)
	writeFile(t, filepath.Join(dir, "2.yaml"), a+"---\n"+a)

	for _, output := range []string{"table", "json"} {
		// The second definition is refused, so the third must not be sent.
		api := newFakeAPIFunc(t, func(_ *http.Request, n int) reply {
			if n == 2 {
				return reply{http.StatusConflict, `{"status":409,"title":"Conflict","detail":"version already applied with different content",` +
					`"errors":[{"location":"body.spec.version","message":"must be higher than the applied version to change the schema"}]}`}
			}
			return planReply("orders", "applied")
		})
		r := runAPI(t, api, "-o", output, "schema", "apply", "-f", dir)
		require.Equal(t, ExitError, r.code)
		require.Len(t, api.requests(), 2)
		require.Equal(t, "error: apply "+filepath.Join(dir, "2.yaml")+" (document 1): Conflict (409): version already applied with different content\n"+
			"  body.spec.version: must be higher than the applied version to change the schema\n", r.stderr)
		if output == "table" {
			require.Equal(t, planTable("orders", "applied"), r.stdout, "what was applied is shown")
		} else {
			require.JSONEq(t, "["+planReply("orders", "applied").body+"]", r.stdout)
		}
	}
}

func TestSchemaApplyRefusesBadFilesBeforeSendingAnything(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	dir := t.TempDir()
	good, _ := definition("good")
	cases := []struct {
		name    string
		files   map[string]string
		path    string // relative to the case's directory
		wantErr string // with {dir} for the case's directory
	}{
		{"missing file", nil, "absent.yaml", "{dir}/absent.yaml: no such file or directory"},
		{"not YAML", map[string]string{"bad.yaml": "a: [1, 2\n"}, "bad.yaml", "{dir}/bad.yaml: document 1: not valid YAML"},
		{"bad YAML in a later document", map[string]string{"bad.yaml": good + "---\n" + good + "---\na: b: c\n"}, "bad.yaml", "{dir}/bad.yaml: document 3: not valid YAML"},
		{"duplicate key", map[string]string{"dup.yaml": "metadata: {}\nmetadata: {}\n"}, "dup.yaml", "{dir}/dup.yaml: document 1: not valid YAML"},
		{"not a mapping", map[string]string{"text.yml": "just some words\n"}, "text.yml", "{dir}/text.yml: not a schema definition"},
		{"not JSON", map[string]string{"bad.json": `{"a":`}, "bad.json", "{dir}/bad.json: not valid JSON"},
		{"only comments", map[string]string{"empty.yaml": "# nothing\n---\n"}, "empty.yaml", "no schema definitions in {dir}/empty.yaml"},
		{"empty directory", map[string]string{"readme.md": "hi"}, ".", "no schema definitions in {dir}"},
		{"a bad file among good ones", map[string]string{"a.yaml": good, "b.json": "[1]", "c.yaml": good}, ".", "{dir}/b.json: not a schema definition"},
	}
	for i, tc := range cases {
		caseDir := filepath.Join(dir, fmt.Sprint(i))
		require.NoError(t, os.Mkdir(caseDir, 0o700))
		for name, content := range tc.files {
			writeFile(t, filepath.Join(caseDir, name), content)
		}
		path := filepath.Join(caseDir, tc.path)
		r := runAPI(t, api, "schema", "apply", "-f", path)
		require.Equal(t, ExitError, r.code, tc.name)
		require.Contains(t, r.stderr, strings.ReplaceAll(tc.wantErr, "{dir}", caseDir), tc.name)
	}
	require.Empty(t, api.requests())
}

func TestSchemaDiff(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, map[string]reply{"POST /admin/schemas/diff": planReply("orders", "dry_run")})
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "orders.yaml"), ordersYAML+"---\n"+ordersYAML)

	r := runAPI(t, api, "schema", "diff", "-f", file)
	require.Equal(t, ExitOK, r.code, r.stderr)
	requireJSONs(t, []string{ordersJSON, ordersJSON}, bodies(t, api))
	require.Equal(t, planTable("orders", "dry_run")+"\n"+planTable("orders", "dry_run"), r.stdout)

	r = runAPI(t, api, "-o", "json", "schema", "diff", "-f", file)
	require.Equal(t, ExitOK, r.code, r.stderr)
	one := planReply("orders", "dry_run").body
	require.JSONEq(t, "["+one+","+one+"]", r.stdout)

	r = runAPI(t, api, "schema", "diff", "-f", dir)
	require.Equal(t, ExitUsage, r.code, "diff takes one file")
	require.Len(t, api.requests(), 4)
}

func TestSchemaList(t *testing.T) {
	t.Parallel()
	body := `{"items":[{"key":"acme.shop.sales.orders","name":"orders","version":3,"updated_at":"2025-01-02T03:04:05Z"},` +
		`{"key":"acme.crm.sales.customers","name":"customers","version":1,"updated_at":"2025-01-01T00:00:00Z","extra":true}]}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/schemas": {http.StatusOK, body}})

	r := runAPI(t, api, "schema", "list")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.Equal(t, [][]string{
		{"NAME", "KEY", "VERSION", "UPDATED"},
		{"orders", "acme.shop.sales.orders", "3", "2025-01-02T03:04:05Z"},
		{"customers", "acme.crm.sales.customers", "1", "2025-01-01T00:00:00Z"},
	}, tableRows(r.stdout))

	r = runAPI(t, api, "schema", "list", "-o", "json")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout, "every field the server sent")
	require.Equal(t, []request{{Method: "GET", Path: "/admin/schemas", APIKey: testKey}, {Method: "GET", Path: "/admin/schemas", APIKey: testKey}}, api.requests())
}

func TestSchemaGet(t *testing.T) {
	t.Parallel()
	body := `{"key":"acme.shop.sales.orders","name":"orders","version":1,"updated_at":"2025-01-02T03:04:05Z","definition":` + ordersJSON + `}`
	api := newFakeAPI(t, map[string]reply{"GET /admin/schemas/orders": {http.StatusOK, body}})

	r := runAPI(t, api, "schema", "get", "orders")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "apiVersion: velocity.dev/v1alpha1\nkind: SchemaDefinition\n"), r.stdout)
	asJSON, err := yaml.YAMLToJSON([]byte(r.stdout))
	require.NoError(t, err)
	require.JSONEq(t, ordersJSON, string(asJSON), "the definition, as YAML")

	r = runAPI(t, api, "-o", "json", "schema", "get", "orders")
	require.Equal(t, ExitOK, r.code, r.stderr)
	require.JSONEq(t, body, r.stdout)

	r = runAPI(t, api, "schema", "get", "missing")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "error: get schema missing: Not Found (404): no route GET /admin/schemas/missing\n", r.stderr)
}

func TestSchemaGetEscapesTheName(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	r := runAPI(t, api, "schema", "get", "a/b?c")
	require.Equal(t, ExitError, r.code)
	require.Equal(t, "/admin/schemas/a%2Fb%3Fc", api.requests()[0].Path)
}

func TestSplitYAML(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []string
	}{
		{"a: 1\n", []string{"a: 1\n"}},
		{"a: 1\n---\nb: 2", []string{"a: 1\n", "b: 2"}},
		{"---\r\na: 1\r\n--- # next\r\nb: 2\r\n", []string{"", "a: 1\r\n", "b: 2\r\n"}},
		{"a: |\n  ---\n  x\n----\n---x\n", []string{"a: |\n  ---\n  x\n----\n---x\n"}},
	}
	for _, tc := range cases {
		var got []string
		for _, d := range splitYAML([]byte(tc.in)) {
			got = append(got, string(d))
		}
		require.Equal(t, tc.want, got, "splitYAML(%q)", tc.in)
	}
}

// The JSON sent for a YAML definition is what the file says, key for key.
func TestDefinitionYAMLBecomesTheSameJSON(t *testing.T) {
	t.Parallel()
	file := writeFile(t, filepath.Join(t.TempDir(), "orders.yaml"), ordersYAML)
	docs, err := readDefinitions(file)
	require.NoError(t, err)
	require.Len(t, docs, 1)
	require.Equal(t, file, docs[0].source)
	require.JSONEq(t, ordersJSON, string(docs[0].body))
}
