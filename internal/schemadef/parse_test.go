package schemadef

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func ptr[T any](v T) *T { return &v }

// ordersDefinition is testdata/orders.yaml, the example of SPEC.md, as Go.
func ordersDefinition() Definition {
	return Definition{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   Metadata{Name: "orders"},
		Spec: Spec{
			Org:     "acme",
			App:     "shop",
			Domain:  "sales",
			Object:  "orders",
			Version: 1,
			Fields: []Field{
				{Name: "customer_email", Type: TypeString, Required: true, MaxLength: ptr(320),
					Searchable: ptr(true), Filterable: true, Sortable: true, Sensitive: true},
				{Name: "status", Type: TypeEnum, Values: []string{"pending", "paid", "shipped"},
					Default: json.RawMessage(`"pending"`), Filterable: true, Facet: true},
				{Name: "region", Type: TypeString, Filterable: true},
				{Name: "total", Type: TypeDecimal, Filterable: true, Sortable: true},
			},
			Search: Search{Tier: 2, Language: "english"},
			Access: Access{
				Roles: map[string][]string{
					"viewer": {"read", "search"},
					"editor": {"read", "search", "create", "update"},
					"admin":  {"read", "search", "create", "update", "delete", "history", "restore", "archive", "purge"},
				},
				ABAC: []ABACRule{{
					Verbs: []string{"update", "delete"},
					Rule:  "actor.attributes.tenure_years >= 1 || 'admin' in actor.roles",
				}},
				RowFilter: "record.region == actor.attributes.region || 'admin' in actor.roles",
				Fields: map[string]FieldAccess{
					"customer_email": {Read: []string{"admin", "editor"}, Write: []string{"admin"}, Mask: MaskPartial},
				},
			},
			Policy:  Policy{RequireReason: []string{"delete", "restore", "purge"}, BreakingChanges: BreakingRequireApproval},
			History: History{Redact: []string{"customer_email"}},
			Archive: Archive{AfterDays: 90},
		},
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

func TestParseOrdersExample(t *testing.T) {
	t.Parallel()

	yamlDoc := readTestdata(t, "orders.yaml")
	def, err := Parse(yamlDoc)
	require.NoError(t, err)
	require.Equal(t, ordersDefinition(), def)
	require.NoError(t, def.Validate())

	// The same document as JSON reads the same.
	jsonDoc, err := json.Marshal(def)
	require.NoError(t, err)
	fromJSON, err := Parse(jsonDoc)
	require.NoError(t, err)
	require.Equal(t, def, fromJSON)
}

// minimal is the smallest valid document; cases append to or replace parts of it.
const minimal = `apiVersion: velocity.dev/v1alpha1
kind: SchemaDefinition
metadata: {name: orders}
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

func TestParse(t *testing.T) {
	t.Parallel()

	minimalDef := Definition{
		APIVersion: APIVersion, Kind: Kind, Metadata: Metadata{Name: "orders"},
		Spec: Spec{Org: "acme", App: "shop", Domain: "sales", Object: "orders", Version: 1,
			Fields: []Field{{Name: "total", Type: TypeDecimal}}},
	}
	withField := func(f Field) Definition {
		d := minimalDef
		d.Spec.Fields = []Field{f}
		return d
	}

	tests := []struct {
		name string
		in   string
		want Definition
	}{
		{name: "yaml", in: minimal, want: minimalDef},
		{name: "json", in: `{"apiVersion": "velocity.dev/v1alpha1", "kind": "SchemaDefinition", "metadata": {"name": "orders"},
			"spec": {"org": "acme", "app": "shop", "domain": "sales", "object": "orders", "version": 1,
			"fields": [{"name": "total", "type": "decimal"}]}}`, want: minimalDef},
		{name: "yaml flow style", in: `{apiVersion: velocity.dev/v1alpha1, kind: SchemaDefinition, metadata: {name: orders},
			spec: {org: acme, app: shop, domain: sales, object: orders, version: 1, fields: [{name: total, type: decimal}]}}`, want: minimalDef},
		{name: "byte order mark and leading document marker", in: "\xef\xbb\xbf# orders\n---\n" + minimal, want: minimalDef},
		{name: "trailing document end marker", in: minimal + "...\n", want: minimalDef},
		{name: "windows line endings", in: strings.ReplaceAll(minimal, "\n", "\r\n"), want: minimalDef},
		{name: "null means absent", in: minimal + "  search: null\n  archive: {afterDays: ~}\n", want: minimalDef},
		{name: "integer written as a float", in: strings.Replace(minimal, "version: 1", "version: 1.0", 1), want: minimalDef},
		{name: "integer with an exponent in json", in: `{"apiVersion": "velocity.dev/v1alpha1", "kind": "SchemaDefinition", "metadata": {"name": "orders"},
			"spec": {"org": "acme", "app": "shop", "domain": "sales", "object": "orders", "version": 1e0,
			"fields": [{"name": "total", "type": "decimal"}]}}`, want: minimalDef},
		{name: "default keeps the exact json number", in: `{"apiVersion": "velocity.dev/v1alpha1", "kind": "SchemaDefinition", "metadata": {"name": "orders"},
			"spec": {"org": "acme", "app": "shop", "domain": "sales", "object": "orders", "version": 1,
			"fields": [{"name": "total", "type": "decimal", "default": 12345678901234567890.123456789}]}}`,
			want: withField(Field{Name: "total", Type: TypeDecimal, Default: json.RawMessage(`12345678901234567890.123456789`)})},
		{name: "default object", in: strings.Replace(minimal, "type: decimal\n", "type: json\n      default: {b: [1, true], a: null}\n", 1),
			want: withField(Field{Name: "total", Type: TypeJSON, Default: json.RawMessage(`{"a":null,"b":[1,true]}`)})},
		{name: "null default is no default", in: strings.Replace(minimal, "type: decimal\n", "type: decimal\n      default: null\n", 1), want: minimalDef},
		{name: "unquoted yaml date stays a string", in: strings.Replace(minimal, "type: decimal\n", "type: date\n      default: 2024-01-31\n", 1),
			want: withField(Field{Name: "total", Type: TypeDate, Default: json.RawMessage(`"2024-01-31"`)})},
		{name: "searchable false is kept", in: strings.Replace(minimal, "type: decimal\n", "type: string\n      searchable: false\n", 1),
			want: withField(Field{Name: "total", Type: TypeString, Searchable: ptr(false)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse([]byte(tt.in))
			require.NoError(t, err, "Parse(%q)", tt.in)
			require.Equal(t, tt.want, got, "Parse(%q)", tt.in)
		})
	}
}

func TestParseShapeErrors(t *testing.T) {
	t.Parallel()

	field := func(extra string) string {
		return strings.Replace(minimal, "type: decimal\n", "type: decimal\n      "+extra+"\n", 1)
	}
	tests := []struct {
		name string
		in   string
		want []FieldError
	}{
		{name: "unknown top-level key", in: minimal + "status: {}\n",
			want: []FieldError{{"status", "unknown field"}}},
		{name: "unknown field key", in: field("maxlenght: 10"),
			want: []FieldError{{"spec.fields[0].maxlenght", "unknown field"}}},
		{name: "keys are case-sensitive", in: field("Name: x"),
			want: []FieldError{{"spec.fields[0].Name", "unknown field"}}},
		{name: "unknown key deep in access", in: minimal + "  access:\n    fields:\n      total: {read: [a], hide: true}\n",
			want: []FieldError{{"spec.access.fields.total.hide", "unknown field"}}},
		{name: "unknown key in an abac rule", in: minimal + "  access:\n    abac: [{verbs: [read], rule: 'true', effect: deny}]\n",
			want: []FieldError{{"spec.access.abac[0].effect", "unknown field"}}},
		{name: "hostile key is quoted in the path", in: minimal + "\"a\\nb: x\": 1\n",
			want: []FieldError{{`["a\nb: x"]`, "unknown field"}}},
		{name: "version is a string", in: strings.Replace(minimal, "version: 1", "version: \"1\"", 1),
			want: []FieldError{{"spec.version", "must be an integer"}}},
		{name: "version is fractional", in: strings.Replace(minimal, "version: 1", "version: 1.5", 1),
			want: []FieldError{{"spec.version", "must be an integer"}}},
		{name: "version is too large", in: strings.Replace(minimal, "version: 1", "version: 1e30", 1),
			want: []FieldError{{"spec.version", "is out of range"}}},
		{name: "fields is an object", in: minimal + "  search: []\n",
			want: []FieldError{{"spec.search", "must be an object"}}},
		{name: "field is a string", in: strings.Replace(minimal, "  fields:\n", "  fields:\n    - total\n", 1),
			want: []FieldError{{"spec.fields[0]", "must be an object"}}},
		{name: "required is a string", in: field("required: \"true\""),
			want: []FieldError{{"spec.fields[0].required", "must be a boolean"}}},
		{name: "values is a string", in: field("values: a, b"),
			want: []FieldError{{"spec.fields[0].values", "must be an array"}}},
		{name: "yaml boolean where a string belongs", in: field("values: [yes, no]"),
			want: []FieldError{
				{"spec.fields[0].values[0]", "must be a string (YAML reads unquoted yes, no, on, off, true and false as booleans: quote them)"},
				{"spec.fields[0].values[1]", "must be a string (YAML reads unquoted yes, no, on, off, true and false as booleans: quote them)"},
			}},
		{name: "role verbs are strings", in: minimal + "  access:\n    roles:\n      viewer: [read, 3]\n",
			want: []FieldError{{"spec.access.roles.viewer[1]", "must be a string"}}},
		{name: "every problem is reported", in: field("maxlenght: 10\n      unique: 1") + "extra: 1\n",
			want: []FieldError{{"extra", "unknown field"}, {"spec.fields[0].maxlenght", "unknown field"}, {"spec.fields[0].unique", "must be a boolean"}}},
		{name: "json types", in: `{"apiVersion": 1, "kind": null, "metadata": [], "spec": {"version": "2", "fields": {}}}`,
			want: []FieldError{{"apiVersion", "must be a string"}, {"metadata", "must be an object"},
				{"spec.fields", "must be an array"}, {"spec.version", "must be an integer"}}},
		{name: "root is a string", in: "just text\n",
			want: []FieldError{{"", "must be an object"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.in))
			var verr *ValidationError
			require.ErrorAs(t, err, &verr, "Parse(%q)", tt.in)
			require.Equal(t, tt.want, verr.Errors, "Parse(%q)", tt.in)
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   string
		want string // a substring of the error
	}{
		{name: "empty", in: " \n# nothing\n", want: "the document is empty"},
		{name: "duplicate yaml key", in: minimal + "kind: Other\n", want: `key "kind" already set in map`},
		{name: "duplicate yaml key in a field", in: strings.Replace(minimal, "type: decimal\n", "type: decimal\n      type: text\n", 1),
			want: `key "type" already set in map`},
		{name: "duplicate json key", in: `{"spec": {"fields": [{"name": "a", "name": "b"}]}}`,
			want: `parse schema definition as JSON: spec.fields[0]: duplicate key "name"`},
		{name: "bad yaml", in: "spec:\n  org: [\n", want: "parse schema definition as YAML"},
		{name: "bad json", in: `{"spec": {"org": }`, want: "(and as JSON: invalid character '}' looking for beginning of value)"},
		{name: "json with trailing data", in: `{"kind": "x"} {"kind": "y"}`, want: "unexpected data after the top-level value"},
		{name: "nested too deep", in: `{"spec": {"fields": [{"default": ` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}]}}`,
			want: "nested more than 100 deep"},
		{name: "nested too deep in yaml", in: "spec:\n  fields:\n    - default: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n",
			want: "nested more than 100 deep"},
		{name: "yaml after a flow mapping", in: "{apiVersion: velocity.dev/v1alpha1}\nkind: SchemaDefinition\n", want: "unexpected content after the document"},
		{name: "json-like yaml with trailing garbage", in: "{apiVersion: velocity.dev/v1alpha1} x\n", want: "unexpected content after the document"},
		{name: "two documents", in: minimal + "---\n" + minimal, want: "found 2 documents, want one"},
		{name: "an array", in: "[" + `{"kind": "x"}` + "]", want: "the document is an array"},
		{name: "yaml line numbers count from the start of the stream", in: "# a\n---\nkind: x\n---\nkind: [\n", want: "line 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.in))
			require.ErrorContains(t, err, tt.want, "Parse(%q)", tt.in)
			var verr *ValidationError
			require.False(t, errors.As(err, &verr), "Parse(%q) returned a ValidationError for a syntax error", tt.in)
		})
	}
}

func TestParseAll(t *testing.T) {
	t.Parallel()

	second := strings.ReplaceAll(minimal, "orders", "invoices")
	ordersYAML := string(readTestdata(t, "orders.yaml"))
	ordersJSON, err := json.Marshal(ordersDefinition())
	require.NoError(t, err)

	tests := []struct {
		name  string
		in    string
		names []string
	}{
		{name: "one yaml document", in: minimal, names: []string{"orders"}},
		{name: "yaml stream", in: "---\n" + minimal + "---\n# empty\n---\n" + second + "...\n", names: []string{"orders", "invoices"}},
		{name: "yaml stream with the full example", in: ordersYAML + "\n---\n" + second, names: []string{"orders", "invoices"}},
		{name: "content on the marker line", in: "--- " + `{"metadata": {"name": "a"}}` + "\n--- " + `{"metadata": {"name": "b"}}` + "\n", names: []string{"a", "b"}},
		{name: "json documents in a yaml stream", in: `{"metadata": {"name": "a"}}` + "\n---\n" + `{"metadata": {"name": "b"}}`, names: []string{"a", "b"}},
		{name: "json array", in: "[" + string(ordersJSON) + ", null, " + string(ordersJSON) + "]", names: []string{"orders", "orders"}},
		{name: "one json object", in: string(ordersJSON), names: []string{"orders"}},
		{name: "yaml sequence", in: "- metadata: {name: a}\n- metadata: {name: b}\n", names: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defs, err := ParseAll([]byte(tt.in))
			require.NoError(t, err, "ParseAll(%q)", tt.in)
			var names []string
			for _, d := range defs {
				names = append(names, d.Metadata.Name)
			}
			require.Equal(t, tt.names, names, "ParseAll(%q)", tt.in)
		})
	}

	t.Run("the first definition is complete", func(t *testing.T) {
		t.Parallel()
		defs, err := ParseAll([]byte(ordersYAML + "---\n" + second))
		require.NoError(t, err)
		require.Equal(t, ordersDefinition(), defs[0])
	})
}

func TestParseAllErrors(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "empty", in: "---\n---\n", want: "found no documents"},
		{name: "empty json array", in: "[]", want: "found no documents"},
		{name: "shape error names the document", in: minimal + "---\n" + minimal + "bogus: 1\n", want: "document 2 (from line 13): bogus: unknown field"},
		{name: "shape error in a json array", in: `[{"kind": "SchemaDefinition"}, {"kind": 2}]`, want: "document 2: kind: must be a string"},
		{name: "syntax error has the stream's line", in: minimal + "---\nkind: [\n", want: "line 14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseAll([]byte(tt.in))
			require.ErrorContains(t, err, tt.want, "ParseAll(%q)", tt.in)
		})
	}

	t.Run("shape errors stay a ValidationError", func(t *testing.T) {
		t.Parallel()
		_, err := ParseAll([]byte(minimal + "bogus: 1\n"))
		var verr *ValidationError
		require.ErrorAs(t, err, &verr)
		require.Equal(t, []FieldError{{"bogus", "unknown field"}}, verr.Errors)
	})
}
