package auth

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// ruleValues runs rule through Compile and Apply as the attribute "v" and returns the
// values it yields, nil for none.
func ruleValues(t *testing.T, rule ClaimRule, claims map[string]any) []string {
	t.Helper()
	c, err := ClaimMapping{Attributes: map[string]ClaimRule{"v": rule}}.Compile()
	require.NoError(t, err)
	withSub := map[string]any{"sub": "u1"}
	maps.Copy(withSub, claims)
	a, err := c.Apply(withSub)
	require.NoError(t, err)
	switch v := a.Attributes["v"].(type) {
	case nil:
		return nil
	case string:
		return []string{v}
	case []string:
		return v
	default:
		t.Fatalf("attribute v is a %T", v)
		return nil
	}
}

func TestClaimTransforms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		transform ClaimTransform
		in        []any
		want      []string
	}{
		{"identity", ClaimTransform{Kind: "identity"}, []any{"a", "B"}, []string{"a", "B"}},
		{"identity none", ClaimTransform{Kind: "identity"}, []any{}, nil},

		{"prefix_strip", ClaimTransform{Kind: "prefix_strip", Prefix: "velocity-"}, []any{"velocity-editor", "staff", "velocity-viewer"}, []string{"editor", "viewer"}},
		{"prefix_strip drops the bare prefix", ClaimTransform{Kind: "prefix_strip", Prefix: "velocity-"}, []any{"velocity-"}, nil},
		{"prefix_strip is case-sensitive", ClaimTransform{Kind: "prefix_strip", Prefix: "velocity-"}, []any{"Velocity-editor"}, nil},

		{"split", ClaimTransform{Kind: "split", Separator: ","}, []any{"a,b", "c"}, []string{"a", "b", "c"}},
		{"split drops empty parts", ClaimTransform{Kind: "split", Separator: ","}, []any{",a,,b,"}, []string{"a", "b"}},
		{"split on a longer separator", ClaimTransform{Kind: "split", Separator: " | "}, []any{"x | y"}, []string{"x", "y"}},
		{"split without the separator", ClaimTransform{Kind: "split", Separator: ";"}, []any{"whole"}, []string{"whole"}},

		{"uppercase", ClaimTransform{Kind: "uppercase"}, []any{"eu-west", "Us"}, []string{"EU-WEST", "US"}},

		{"lookup", ClaimTransform{Kind: "lookup", Table: map[string]string{"grp-1": "editor", "grp-2": "viewer"}}, []any{"grp-2", "grp-9", "grp-1"}, []string{"viewer", "editor"}},
		{"lookup drops every unknown value", ClaimTransform{Kind: "lookup", Table: map[string]string{"a": "x"}}, []any{"b"}, nil},

		{"regex_extract", ClaimTransform{Kind: "regex_extract", Pattern: `^store-(\d+)$`}, []any{"store-12", "store-x", "store-7"}, []string{"12", "7"}},
		{"regex_extract is not anchored", ClaimTransform{Kind: "regex_extract", Pattern: `ou=(\w+)`}, []any{"cn=ann,ou=sales,dc=example"}, []string{"sales"}},
		{"regex_extract drops an empty group", ClaimTransform{Kind: "regex_extract", Pattern: `^a(b*)$`}, []any{"a", "abb"}, []string{"bb"}},
		{"regex_extract drops a group that did not take part", ClaimTransform{Kind: "regex_extract", Pattern: `^a(?:-(\w+))?$`}, []any{"a", "a-z"}, []string{"z"}},

		{"static_append", ClaimTransform{Kind: "static_append", Values: []string{"member"}}, []any{"a"}, []string{"a", "member"}},
		{"static_append to nothing", ClaimTransform{Kind: "static_append", Values: []string{"member", "reader"}}, []any{}, []string{"member", "reader"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := ruleValues(t, ClaimRule{Claim: "c", Transforms: []ClaimTransform{tt.transform}}, map[string]any{"c": tt.in})
			require.Equal(t, tt.want, got, "%s(%q) got %q, want %q", tt.transform.Kind, tt.in, got, tt.want)
		})
	}
}

func TestClaimStaticAppendToMissingClaim(t *testing.T) {
	t.Parallel()
	got := ruleValues(t, ClaimRule{Claim: "absent", Transforms: []ClaimTransform{{Kind: "static_append", Values: []string{"eu"}}}}, nil)
	require.Equal(t, []string{"eu"}, got)
}

func TestClaimTransformChain(t *testing.T) {
	t.Parallel()
	rule := ClaimRule{Claim: "groups", Transforms: []ClaimTransform{
		{Kind: "split", Separator: ","},
		{Kind: "prefix_strip", Prefix: "app-"},
		{Kind: "lookup", Table: map[string]string{"admins": "admin", "writers": "editor"}},
		{Kind: "static_append", Values: []string{"viewer"}},
	}}
	tests := []struct {
		in   any
		want []string
	}{
		{"app-admins,other,app-writers", []string{"admin", "editor", "viewer"}},
		{[]any{"app-writers,app-unknown", "app-admins"}, []string{"editor", "admin", "viewer"}},
		{"nothing-here", []string{"viewer"}},
	}
	for _, tt := range tests {
		got := ruleValues(t, rule, map[string]any{"groups": tt.in})
		require.Equal(t, tt.want, got, "chain(%q) got %q, want %q", tt.in, got, tt.want)
	}

	// Order matters: upper-casing before the lookup leaves nothing the table knows.
	rule = ClaimRule{Claim: "r", Transforms: []ClaimTransform{
		{Kind: "uppercase"},
		{Kind: "lookup", Table: map[string]string{"eu": "europe"}},
	}}
	require.Nil(t, ruleValues(t, rule, map[string]any{"r": "eu"}))
}

func TestClaimReading(t *testing.T) {
	t.Parallel()
	claims := map[string]any{
		"str":                        "one",
		"empty_list":                 []any{},
		"int":                        float64(42),
		"float":                      1.5,
		"big":                        1e21,
		"number":                     json.Number("12345678901234567890"),
		"go_int":                     7,
		"yes":                        true,
		"no":                         false,
		"mixed":                      []any{"a", float64(2), true, nil},
		"go_strings":                 []string{"x", "y"},
		"null":                       nil,
		"realm_access":               map[string]any{"roles": []any{"editor"}, "deep": map[string]any{"region": "eu"}},
		"https://example.com/roles":  []any{"namespaced"},
		"https://example.com/claims": map[string]any{"store_id": "s-9"},
		"a.b":                        "literal key",
		"a":                          map[string]any{"b": "walked"},
		"scalar":                     "not an object",
	}
	tests := []struct {
		claim string
		want  []string
	}{
		{"str", []string{"one"}},
		{"empty_list", nil},
		{"int", []string{"42"}},
		{"float", []string{"1.5"}},
		{"big", []string{"1e+21"}},
		{"number", []string{"12345678901234567890"}},
		{"go_int", []string{"7"}},
		{"yes", []string{"true"}},
		{"no", []string{"false"}},
		{"mixed", []string{"a", "2", "true"}},
		{"go_strings", []string{"x", "y"}},
		{"null", nil},
		{"missing", nil},
		{"realm_access.roles", []string{"editor"}},
		{"realm_access.deep.region", []string{"eu"}},
		{"realm_access.missing", nil},
		{"realm_access.roles.more", nil},
		{"https://example.com/roles", []string{"namespaced"}},
		{"https://example.com/claims.store_id", []string{"s-9"}},
		{"a.b", []string{"literal key"}},
		{"scalar.x", nil},
	}
	for _, tt := range tests {
		got := ruleValues(t, ClaimRule{Claim: tt.claim}, claims)
		require.Equal(t, tt.want, got, "read(%q) got %q, want %q", tt.claim, got, tt.want)
	}
}

func TestClaimApplyErrors(t *testing.T) {
	t.Parallel()
	claims := map[string]any{
		"sub":    "u1",
		"obj":    map[string]any{"k": "v"},
		"nested": map[string]any{"obj": map[string]any{"k": "v"}},
		"arrobj": []any{"ok", map[string]any{"k": "v"}},
		"arrarr": []any{[]any{"a"}},
	}
	tests := []struct {
		mapping ClaimMapping
		want    string
	}{
		{ClaimMapping{Attributes: map[string]ClaimRule{"dept": {Claim: "obj"}}}, `attributes["dept"]: claim "obj": is an object`},
		{ClaimMapping{Attributes: map[string]ClaimRule{"dept": {Claim: "nested.obj"}}}, `attributes["dept"]: claim "nested.obj": is an object`},
		{ClaimMapping{Roles: []ClaimRule{{Claim: "sub"}, {Claim: "arrobj"}}}, `roles[1]: claim "arrobj"[1]: is an object`},
		{ClaimMapping{Roles: []ClaimRule{{Claim: "arrarr"}}}, `roles[0]: claim "arrarr"[0]: is an array`},
		{ClaimMapping{ID: &ClaimRule{Claim: "obj"}}, `id: claim "obj": is an object`},
	}
	for _, tt := range tests {
		c, err := tt.mapping.Compile()
		require.NoError(t, err)
		_, err = c.Apply(claims)
		require.ErrorContains(t, err, tt.want)
	}
}

func TestClaimID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		id      *ClaimRule
		claims  map[string]any
		want    string
		wantErr string
	}{
		{"sub by default", nil, map[string]any{"sub": "abc"}, "abc", ""},
		{"numeric sub", nil, map[string]any{"sub": float64(1001)}, "1001", ""},
		{"no sub", nil, map[string]any{"email": "a@example.com"}, "", `id: claim "sub" gives no value`},
		{"empty sub", nil, map[string]any{"sub": ""}, "", `id: claim "sub" is empty`},
		{"several values", &ClaimRule{Claim: "ids"}, map[string]any{"ids": []any{"a", "b"}}, "", `id: claim "ids" gives 2 values, want one`},
		{"empty array", &ClaimRule{Claim: "ids"}, map[string]any{"ids": []any{}}, "", `id: claim "ids" gives no value`},
		{"transforms leave none", &ClaimRule{Claim: "email", Transforms: []ClaimTransform{{Kind: "regex_extract", Pattern: `^(.+)@corp\.example$`}}},
			map[string]any{"email": "ann@gmail.com"}, "", `id: claim "email" gives no value`},
		{"transforms make several", &ClaimRule{Claim: "email", Transforms: []ClaimTransform{{Kind: "split", Separator: "@"}}},
			map[string]any{"email": "ann@corp.example"}, "", `id: claim "email" gives 2 values, want one`},
		{"mapped", &ClaimRule{Claim: "email", Transforms: []ClaimTransform{{Kind: "regex_extract", Pattern: `^(.+)@corp\.example$`}}},
			map[string]any{"email": "ann@corp.example"}, "ann", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ClaimMapping{ID: tt.id}.Compile()
			require.NoError(t, err)
			a, err := c.Apply(tt.claims)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, a.ID)
		})
	}
}

func TestClaimRoles(t *testing.T) {
	t.Parallel()
	c, err := ClaimMapping{Roles: []ClaimRule{
		{Claim: "realm_access.roles"},
		{Claim: "groups", Transforms: []ClaimTransform{{Kind: "prefix_strip", Prefix: "velocity-"}}},
		{Claim: "absent", Transforms: []ClaimTransform{{Kind: "static_append", Values: []string{"viewer"}}}},
	}}.Compile()
	require.NoError(t, err)
	a, err := c.Apply(map[string]any{
		"sub": "u1",
		"realm_access": map[string]any{"roles": []any{
			"editor", "viewer", "Admin", "offline-access", "9lives", "", strings.Repeat("r", 42), strings.Repeat("r", 41),
		}},
		"groups": []any{"velocity-editor", "velocity-store_manager", "staff"},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"editor", strings.Repeat("r", 41), "store_manager", "viewer"}, a.Roles,
		"roles are deduplicated, sorted, and those that are not role names are dropped")

	c, err = ClaimMapping{}.Compile()
	require.NoError(t, err)
	a, err = c.Apply(map[string]any{"sub": "u1", "roles": []any{"admin"}})
	require.NoError(t, err)
	require.Equal(t, []string{}, a.Roles, "no role rules, no roles")
	require.Equal(t, map[string]any{}, a.Attributes)
}

func TestClaimAttributes(t *testing.T) {
	t.Parallel()
	c, err := ClaimMapping{Attributes: map[string]ClaimRule{
		"department":   {Claim: "dept"},
		"store_id":     {Claim: "stores"},
		"region":       {Claim: "ext.region", Transforms: []ClaimTransform{{Kind: "uppercase"}}},
		"cost_center":  {Claim: "absent"},
		"stores_empty": {Claim: "none"},
	}}.Compile()
	require.NoError(t, err)
	a, err := c.Apply(map[string]any{
		"sub":    "u1",
		"dept":   "sales",
		"stores": []any{"s1", "s2"},
		"ext":    map[string]any{"region": "eu"},
		"none":   []any{},
	})
	require.NoError(t, err)
	require.Equal(t, map[string]any{
		"department": "sales",
		"store_id":   []string{"s1", "s2"},
		"region":     "EU",
	}, a.Attributes, "one value is a string, several a []string, none absent")

	a, err = c.Apply(map[string]any{"sub": "u1", "stores": []any{"s1"}})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"store_id": "s1"}, a.Attributes, "a one-element array gives a string")
}

func TestClaimCompileErrors(t *testing.T) {
	t.Parallel()
	rule := func(ts ...ClaimTransform) ClaimRule { return ClaimRule{Claim: "c", Transforms: ts} }
	tests := []struct {
		name    string
		mapping ClaimMapping
		want    string
	}{
		{"id claim", ClaimMapping{ID: &ClaimRule{}}, `id.claim: required`},
		{"role claim", ClaimMapping{Roles: []ClaimRule{rule(), {}}}, `roles[1].claim: required`},
		{"attribute claim", ClaimMapping{Attributes: map[string]ClaimRule{"region": {}}}, `attributes["region"].claim: required`},
		{"attribute name", ClaimMapping{Attributes: map[string]ClaimRule{"Region": rule()}}, `attributes["Region"]: invalid attribute name`},
		{"attribute name digit", ClaimMapping{Attributes: map[string]ClaimRule{"1st": rule()}}, `attributes["1st"]: invalid attribute name`},
		{"attribute name long", ClaimMapping{Attributes: map[string]ClaimRule{"a" + strings.Repeat("b", 63): rule()}}, `invalid attribute name`},
		{"no kind", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{})}}, `roles[0].transforms[0]: kind: required`},
		{"unknown kind", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "identity"}, ClaimTransform{Kind: "lowercase"})}}, `roles[0].transforms[1]: unknown kind "lowercase"`},
		{"prefix missing", ClaimMapping{ID: &ClaimRule{Claim: "c", Transforms: []ClaimTransform{{Kind: "prefix_strip"}}}}, `id.transforms[0]: prefix_strip: prefix is required`},
		{"separator missing", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "split"})}}, `roles[0].transforms[0]: split: separator is required`},
		{"table missing", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "lookup"})}}, `roles[0].transforms[0]: lookup: table is required`},
		{"table empty", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "lookup", Table: map[string]string{}})}}, `roles[0].transforms[0]: lookup: table is required`},
		{"table value empty", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "lookup", Table: map[string]string{"a": ""}})}}, `roles[0].transforms[0]: lookup: table["a"] is empty`},
		{"values missing", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "static_append"})}}, `roles[0].transforms[0]: static_append: values is required`},
		{"values empty string", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "static_append", Values: []string{""}})}}, `roles[0].transforms[0]: static_append: values must not contain an empty string`},
		{"pattern missing", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "regex_extract"})}}, `roles[0].transforms[0]: regex_extract: pattern is required`},
		{"no capture group", ClaimMapping{Roles: []ClaimRule{rule(), rule(ClaimTransform{Kind: "regex_extract", Pattern: `^x$`})}}, `roles[1].transforms[0]: regex_extract: pattern must have exactly one capture group`},
		{"two capture groups", ClaimMapping{Roles: []ClaimRule{rule(), rule(ClaimTransform{Kind: "regex_extract", Pattern: `^(a)(b)$`})}}, `roles[1].transforms[0]: regex_extract: pattern must have exactly one capture group`},
		{"invalid pattern", ClaimMapping{Attributes: map[string]ClaimRule{"store_id": rule(ClaimTransform{Kind: "regex_extract", Pattern: `(`})}}, `attributes["store_id"].transforms[0]: regex_extract: invalid pattern`},
		{"not RE2", ClaimMapping{Attributes: map[string]ClaimRule{"store_id": rule(ClaimTransform{Kind: "regex_extract", Pattern: `(?<=a)(b)`})}}, `attributes["store_id"].transforms[0]: regex_extract: invalid pattern`},
		{"pattern too long", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "regex_extract", Pattern: "(" + strings.Repeat("a", 1000) + ")"})}}, `roles[0].transforms[0]: regex_extract: pattern is longer than 1000 characters`},
		{"identity with prefix", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "identity", Prefix: "x"})}}, `roles[0].transforms[0]: identity: prefix is not allowed`},
		{"uppercase with values", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "uppercase", Values: []string{}})}}, `roles[0].transforms[0]: uppercase: values is not allowed`},
		{"split with table", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "split", Separator: ",", Table: map[string]string{"a": "b"}})}}, `roles[0].transforms[0]: split: table is not allowed`},
		{"lookup with pattern", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "lookup", Table: map[string]string{"a": "b"}, Pattern: "(x)"})}}, `roles[0].transforms[0]: lookup: pattern is not allowed`},
		{"regex_extract with separator", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "regex_extract", Pattern: "(x)", Separator: ","})}}, `roles[0].transforms[0]: regex_extract: separator is not allowed`},
		{"static_append with prefix", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "static_append", Values: []string{"a"}, Prefix: "p"})}}, `roles[0].transforms[0]: static_append: prefix is not allowed`},
		{"prefix_strip with the wrong parameter", ClaimMapping{Roles: []ClaimRule{rule(ClaimTransform{Kind: "prefix_strip", Separator: "-"})}}, `roles[0].transforms[0]: prefix_strip: separator is not allowed; prefix is required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.mapping.Compile()
			require.Nil(t, c)
			require.ErrorContains(t, err, tt.want, "Compile(%s) got %v, want %q", tt.name, err, tt.want)
		})
	}
}

func TestClaimCompileCollectsAllErrors(t *testing.T) {
	t.Parallel()
	_, err := ClaimMapping{
		ID:    &ClaimRule{},
		Roles: []ClaimRule{{Claim: "r", Transforms: []ClaimTransform{{Kind: "split"}, {Kind: "nope"}}}},
		Attributes: map[string]ClaimRule{
			"Zone":   {Claim: "z"},
			"region": {Claim: "r", Transforms: []ClaimTransform{{Kind: "regex_extract", Pattern: "x"}}},
		},
	}.Compile()
	require.EqualError(t, err, strings.Join([]string{
		`id.claim: required`,
		`roles[0].transforms[0]: split: separator is required`,
		`roles[0].transforms[1]: unknown kind "nope" (want one of identity, prefix_strip, split, uppercase, lookup, regex_extract, static_append)`,
		`attributes["Zone"]: invalid attribute name (want ^[a-z][a-z0-9_]{0,62}$)`,
		`attributes["region"].transforms[0]: regex_extract: pattern must have exactly one capture group, has 0`,
	}, "\n"))
}

func TestClaimMappingFromYAML(t *testing.T) {
	t.Parallel()
	const config = `
id:
  claim: preferred_username
  transforms:
    - kind: regex_extract
      pattern: '^(.+)@corp\.example$'
roles:
  - claim: realm_access.roles
  - claim: groups
    transforms:
      - kind: split
        separator: ","
      - kind: prefix_strip
        prefix: velocity-
  - claim: title
    transforms:
      - kind: lookup
        table:
          Store Manager: store_manager
          Clerk: clerk
      - kind: static_append
        values: [member]
attributes:
  department:
    claim: dept
  store_id:
    claim: stores
  region:
    claim: address.region
    transforms:
      - kind: uppercase
`
	var m ClaimMapping
	require.NoError(t, yaml.Unmarshal([]byte(config), &m))
	c, err := m.Compile()
	require.NoError(t, err)

	// The claims as a JWT library decodes them from JSON.
	var claims map[string]any
	require.NoError(t, json.Unmarshal([]byte(`{
		"sub": "f3c1",
		"preferred_username": "ann@corp.example",
		"realm_access": {"roles": ["editor", "offline_access", "uma-authorization"]},
		"groups": "velocity-viewer,staff,velocity-editor",
		"title": "Store Manager",
		"dept": "sales",
		"stores": [101, 102],
		"address": {"region": "eu-west"}
	}`), &claims))
	a, err := c.Apply(claims)
	require.NoError(t, err)
	require.Equal(t, MappedActor{
		ID:    "ann",
		Roles: []string{"editor", "member", "offline_access", "store_manager", "viewer"},
		Attributes: map[string]any{
			"department": "sales",
			"store_id":   []string{"101", "102"},
			"region":     "EU-WEST",
		},
	}, a)

	// A bad file is refused at load, naming the place.
	var bad ClaimMapping
	require.NoError(t, yaml.Unmarshal([]byte("roles:\n  - claim: groups\n    transforms:\n      - kind: prefix_strip\n"), &bad))
	_, err = bad.Compile()
	require.EqualError(t, err, `roles[0].transforms[0]: prefix_strip: prefix is required`)
}
