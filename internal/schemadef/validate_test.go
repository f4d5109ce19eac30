package schemadef

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// validationErrors returns the problems Validate found in d, or nil.
func validationErrors(t *testing.T, d Definition) []FieldError {
	t.Helper()
	err := d.Validate()
	if err == nil {
		return nil
	}
	var verr *ValidationError
	require.ErrorAs(t, err, &verr)
	require.NotEmpty(t, verr.Errors, "a ValidationError without errors")
	return verr.Errors
}

func TestValidateOrdersExample(t *testing.T) {
	t.Parallel()

	d := ordersDefinition()
	require.NoError(t, d.Validate())
	d.Normalize()
	require.NoError(t, d.Validate())
}

func TestValidateEverythingWrong(t *testing.T) {
	t.Parallel()

	d, err := Parse(readTestdata(t, "everything_wrong.yaml"))
	require.NoError(t, err)
	want := []FieldError{
		{"apiVersion", `must be "velocity.dev/v1alpha1", not "velocity.dev/v1beta1"`},
		{"kind", `must be "SchemaDefinition", not "Schema"`},
		{"metadata.name", `"Orders_2024" is not a valid name: use at most 63 of a-z, 0-9 and -, starting and ending with a letter or digit`},
		{"spec.org", `"admin" is reserved`},
		{"spec.app", `"Shop" is not a valid name: use 1 to 31 of a-z, 0-9 and _, starting with a letter`},
		{"spec.domain", `"sales__eu" must not contain "__", the separator of derived names`},
		{"spec.object", `"orders_" must not end with "_"`},
		{"spec.version", "must be at least 1"},
		{"spec.fields[0].type", `unknown type "strng"`},
		{"spec.fields[1].maxLength", "only allowed on string and text fields"},
		{"spec.fields[2].name", `"id" is a system field`},
		{"spec.fields[3].name", `duplicate field "total" (first at spec.fields[1])`},
		{"spec.fields[3].default", "must be an integer"},
		{"spec.fields[4].values[2]", `duplicate value "pending" (first at spec.fields[4].values[0])`},
		{"spec.fields[4].values[3]", `"two words" is not a valid enum value: use 1 to 63 of A-Z, a-z, 0-9 and _ . : -`},
		{"spec.fields[4].default", `"refunded" is not one of the enum values [pending paid pending two words]`},
		{"spec.fields[5].default", "is 12 characters, over maxLength 5"},
		{"spec.fields[6].sortable", "not allowed on json fields"},
		{"spec.fields[6].filterable", "not allowed on json fields"},
		{"spec.fields[6].facet", "only allowed on string, enum, boolean and integer fields"},
		{"spec.fields[6].searchable", "only allowed on string and text fields"},
		{"spec.fields[7].name", `"pg_internal" must not start with "pg_", which Postgres reserves`},
		{"spec.fields[8].name", `"a__b" must not contain "__", which is reserved for generated names`},
		{"spec.fields[9].values", "only allowed on enum fields"},
		{"spec.fields[9].default", "must be a boolean"},
		{"spec.fields[10].default", `must be an RFC 3339 timestamp, such as "2024-01-31T12:00:00Z"`},
		{"spec.fields[11].default", "must be a date as YYYY-MM-DD"},
		{"spec.fields[12].default", `must be a UUID, such as "123e4567-e89b-12d3-a456-426614174000"`},
		{"spec.fields[13].default", "must be a number or a numeric string"},
		{"spec.fields[14].type", "required"},
		{"spec.search.tier", "must be 1, 2 or 3"},
		{"spec.search.language", `unknown language "klingon" (want one of english, german, french, spanish, portuguese, italian, dutch, swedish, norwegian, danish, russian, chinese, japanese)`},
		{"spec.access.roles.Editor", `"Editor" is not a valid role name: use 1 to 41 of a-z, 0-9 and _, starting with a letter`},
		{"spec.access.roles.viewer[1]", `unknown verb "raed"`},
		{"spec.access.abac[0].verbs", "at least one verb is required"},
		{"spec.access.abac[0].rule", "required"},
		{"spec.access.fields.customer_email.read[1]", `unknown role "auditor" (roles are defined in spec.access.roles)`},
		{"spec.access.fields.customer_email.mask", `unknown mask "blur" (want partial, full or redact)`},
		{"spec.access.fields.ghost", `unknown field "ghost"`},
		{"spec.policy.requireReason[1]", `unknown verb "erase"`},
		{"spec.policy.breakingChanges", `must be "requireApproval" or "allow", not "sometimes"`},
		{"spec.history.redact[1]", `unknown field "nope"`},
		{"spec.archive.afterDays", "must not be negative"},
	}
	require.Equal(t, want, validationErrors(t, d))

	// The same problems, in the same order, every time: map keys are visited sorted.
	for range 20 {
		require.Equal(t, want, validationErrors(t, d))
	}
}

// withField returns the orders example with one more field, at spec.fields[4].
func withField(f Field) func(*Definition) {
	return func(d *Definition) { d.Spec.Fields = append(d.Spec.Fields, f) }
}

func TestValidate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		change func(*Definition)
		want   []FieldError // nil: valid
	}{
		// The header.
		{name: "missing header", change: func(d *Definition) { d.APIVersion, d.Kind, d.Metadata.Name = "", "", "" },
			want: []FieldError{{"apiVersion", "required"}, {"kind", "required"}, {"metadata.name", "required"}}},
		{name: "metadata name of 63 bytes", change: func(d *Definition) { d.Metadata.Name = strings.Repeat("a", 63) }},
		{name: "metadata name of 64 bytes", change: func(d *Definition) { d.Metadata.Name = strings.Repeat("a", 64) },
			want: []FieldError{{"metadata.name", `"` + strings.Repeat("a", 64) + `" is not a valid name: use at most 63 of a-z, 0-9 and -, starting and ending with a letter or digit`}}},
		{name: "metadata name with dashes and digits", change: func(d *Definition) { d.Metadata.Name = "0rders-2024-eu" }},
		{name: "metadata name ending in a dash", change: func(d *Definition) { d.Metadata.Name = "orders-" },
			want: []FieldError{{"metadata.name", `"orders-" is not a valid name: use at most 63 of a-z, 0-9 and -, starting and ending with a letter or digit`}}},

		// org, app, domain and object.
		{name: "route names missing", change: func(d *Definition) { d.Spec.Org, d.Spec.App, d.Spec.Domain, d.Spec.Object = "", "", "", "" },
			want: []FieldError{{"spec.org", "required"}, {"spec.app", "required"}, {"spec.domain", "required"}, {"spec.object", "required"}}},
		{name: "route name of 31 bytes", change: func(d *Definition) { d.Spec.Object = "o" + strings.Repeat("_x", 15) }},
		{name: "route name of 32 bytes", change: func(d *Definition) { d.Spec.Object = strings.Repeat("o", 32) },
			want: []FieldError{{"spec.object", `"` + strings.Repeat("o", 32) + `" is not a valid name: use 1 to 31 of a-z, 0-9 and _, starting with a letter`}}},
		{name: "route name starting with a digit", change: func(d *Definition) { d.Spec.Domain = "2sales" },
			want: []FieldError{{"spec.domain", `"2sales" is not a valid name: use 1 to 31 of a-z, 0-9 and _, starting with a letter`}}},
		{name: "route name with a single underscore", change: func(d *Definition) { d.Spec.App = "web_shop" }},
		{name: "route name with a double underscore", change: func(d *Definition) { d.Spec.App = "web__shop" },
			want: []FieldError{{"spec.app", `"web__shop" must not contain "__", the separator of derived names`}}},
		{name: "route name ending in an underscore", change: func(d *Definition) { d.Spec.Org = "acme_" },
			want: []FieldError{{"spec.org", `"acme_" must not end with "_"`}}},
		{name: "every reserved org", change: func(d *Definition) { d.Spec.Org = "openapi" },
			want: []FieldError{{"spec.org", `"openapi" is reserved`}}},
		{name: "reserved word as an app is fine", change: func(d *Definition) { d.Spec.App = "admin" }},

		// version.
		{name: "version 0", change: func(d *Definition) { d.Spec.Version = 0 },
			want: []FieldError{{"spec.version", "must be at least 1"}}},
		{name: "version negative", change: func(d *Definition) { d.Spec.Version = -3 },
			want: []FieldError{{"spec.version", "must be at least 1"}}},

		// Field names.
		{name: "no fields", change: func(d *Definition) { d.Spec.Fields = nil; d.Spec.Access.Fields = nil; d.Spec.History.Redact = nil },
			want: []FieldError{{"spec.fields", "at least one field is required"}}},
		{name: "field name missing", change: withField(Field{Type: TypeText}),
			want: []FieldError{{"spec.fields[4].name", "required"}}},
		{name: "every system field is reserved", change: func(d *Definition) {
			for _, name := range SystemFields {
				d.Spec.Fields = append(d.Spec.Fields, Field{Name: name, Type: TypeText})
			}
		}, want: []FieldError{
			{"spec.fields[4].name", `"id" is a system field`},
			{"spec.fields[5].name", `"version" is a system field`},
			{"spec.fields[6].name", `"created_at" is a system field`},
			{"spec.fields[7].name", `"updated_at" is a system field`},
			{"spec.fields[8].name", `"created_by" is a system field`},
			{"spec.fields[9].name", `"updated_by" is a system field`},
		}},
		{name: "field name with uppercase", change: withField(Field{Name: "Total", Type: TypeText}),
			want: []FieldError{{"spec.fields[4].name", `"Total" is not a valid field name: use 1 to 63 of a-z, 0-9 and _, starting with a letter`}}},
		{name: "field name starting with an underscore", change: withField(Field{Name: "_total", Type: TypeText}),
			want: []FieldError{{"spec.fields[4].name", `"_total" is not a valid field name: use 1 to 63 of a-z, 0-9 and _, starting with a letter`}}},
		{name: "field name ending in an underscore is fine", change: withField(Field{Name: "total_", Type: TypeText})},
		{name: "postgres keyword as a field name is fine", change: withField(Field{Name: "select", Type: TypeText})},
		{name: "field name starting with pg_", change: withField(Field{Name: "pg_class", Type: TypeText}),
			want: []FieldError{{"spec.fields[4].name", `"pg_class" must not start with "pg_", which Postgres reserves`}}},
		{name: "field name containing pg_ is fine", change: withField(Field{Name: "epg_code", Type: TypeText})},
		{name: "field name with a double underscore", change: withField(Field{Name: "total__eur", Type: TypeText}),
			want: []FieldError{{"spec.fields[4].name", `"total__eur" must not contain "__", which is reserved for generated names`}}},
		{name: "duplicate field", change: withField(Field{Name: "region", Type: TypeText}),
			want: []FieldError{{"spec.fields[4].name", `duplicate field "region" (first at spec.fields[2])`}}},
		{name: "field duplicated twice names the first", change: func(d *Definition) {
			d.Spec.Fields = append(d.Spec.Fields, Field{Name: "total", Type: TypeText}, Field{Name: "total", Type: TypeText})
		}, want: []FieldError{
			{"spec.fields[4].name", `duplicate field "total" (first at spec.fields[3])`},
			{"spec.fields[5].name", `duplicate field "total" (first at spec.fields[3])`},
		}},

		// Types.
		{name: "every type is accepted", change: func(d *Definition) {
			for _, typ := range FieldTypes {
				f := Field{Name: "f_" + string(typ), Type: typ}
				if typ == TypeEnum {
					f.Values = []string{"a"}
				}
				d.Spec.Fields = append(d.Spec.Fields, f)
			}
		}},
		{name: "type missing", change: withField(Field{Name: "note"}),
			want: []FieldError{{"spec.fields[4].type", "required"}}},
		{name: "unknown type", change: withField(Field{Name: "note", Type: "strng"}),
			want: []FieldError{{"spec.fields[4].type", `unknown type "strng"`}}},
		{name: "types are case-sensitive", change: withField(Field{Name: "note", Type: "String"}),
			want: []FieldError{{"spec.fields[4].type", `unknown type "String"`}}},
		{name: "unknown type reports nothing that depends on the type", change: withField(Field{Name: "note", Type: "strng",
			MaxLength: ptr(5), Values: []string{"a"}, Default: json.RawMessage(`1`), Facet: true, Searchable: ptr(true)}),
			want: []FieldError{{"spec.fields[4].type", `unknown type "strng"`}}},

		// maxLength.
		{name: "maxLength on text", change: withField(Field{Name: "note", Type: TypeText, MaxLength: ptr(MaxStringLength)})},
		{name: "maxLength of 1", change: withField(Field{Name: "note", Type: TypeString, MaxLength: ptr(1)})},
		{name: "maxLength of 0", change: withField(Field{Name: "note", Type: TypeString, MaxLength: ptr(0)}),
			want: []FieldError{{"spec.fields[4].maxLength", "must be between 1 and 10485760"}}},
		{name: "maxLength too large", change: withField(Field{Name: "note", Type: TypeString, MaxLength: ptr(MaxStringLength + 1)}),
			want: []FieldError{{"spec.fields[4].maxLength", "must be between 1 and 10485760"}}},
		{name: "maxLength on an integer", change: withField(Field{Name: "count", Type: TypeInteger, MaxLength: ptr(10)}),
			want: []FieldError{{"spec.fields[4].maxLength", "only allowed on string and text fields"}}},

		// Enum values.
		{name: "enum without values", change: withField(Field{Name: "state", Type: TypeEnum}),
			want: []FieldError{{"spec.fields[4].values", "required for enum fields"}}},
		{name: "enum with empty values", change: withField(Field{Name: "state", Type: TypeEnum, Values: []string{}}),
			want: []FieldError{{"spec.fields[4].values", "required for enum fields"}}},
		{name: "enum values with every allowed character", change: withField(Field{Name: "state", Type: TypeEnum,
			Values: []string{"A-z_0.9:x", strings.Repeat("v", 63)}})},
		{name: "enum value bad", change: withField(Field{Name: "state", Type: TypeEnum,
			Values: []string{"ok", "", strings.Repeat("v", 64), "it's", "ok"}}),
			want: []FieldError{
				{"spec.fields[4].values[1]", `"" is not a valid enum value: use 1 to 63 of A-Z, a-z, 0-9 and _ . : -`},
				{"spec.fields[4].values[2]", `"` + strings.Repeat("v", 64) + `" is not a valid enum value: use 1 to 63 of A-Z, a-z, 0-9 and _ . : -`},
				{"spec.fields[4].values[3]", `"it's" is not a valid enum value: use 1 to 63 of A-Z, a-z, 0-9 and _ . : -`},
				{"spec.fields[4].values[4]", `duplicate value "ok" (first at spec.fields[4].values[0])`},
			}},
		{name: "values on a string", change: withField(Field{Name: "note", Type: TypeString, Values: []string{"a"}}),
			want: []FieldError{{"spec.fields[4].values", "only allowed on enum fields"}}},

		// Flags.
		{name: "json field may not sort or filter", change: withField(Field{Name: "doc", Type: TypeJSON, Sortable: true, Filterable: true}),
			want: []FieldError{{"spec.fields[4].sortable", "not allowed on json fields"}, {"spec.fields[4].filterable", "not allowed on json fields"}}},
		{name: "facet on each allowed type", change: func(d *Definition) {
			d.Spec.Fields = append(d.Spec.Fields,
				Field{Name: "a", Type: TypeString, Facet: true},
				Field{Name: "b", Type: TypeEnum, Values: []string{"x"}, Facet: true},
				Field{Name: "c", Type: TypeBoolean, Facet: true},
				Field{Name: "d", Type: TypeInteger, Facet: true})
		}},
		{name: "facet on text and decimal", change: func(d *Definition) {
			d.Spec.Fields = append(d.Spec.Fields, Field{Name: "a", Type: TypeText, Facet: true}, Field{Name: "b", Type: TypeDecimal, Facet: true})
		}, want: []FieldError{
			{"spec.fields[4].facet", "only allowed on string, enum, boolean and integer fields"},
			{"spec.fields[5].facet", "only allowed on string, enum, boolean and integer fields"},
		}},
		{name: "searchable on an integer", change: withField(Field{Name: "count", Type: TypeInteger, Searchable: ptr(true)}),
			want: []FieldError{{"spec.fields[4].searchable", "only allowed on string and text fields"}}},
		{name: "searchable false on an integer is fine", change: withField(Field{Name: "count", Type: TypeInteger, Searchable: ptr(false)})},
		{name: "searchable on text", change: withField(Field{Name: "note", Type: TypeText, Searchable: ptr(true)})},

		// search.
		{name: "search tier 0 means the default", change: func(d *Definition) { d.Spec.Search = Search{} }},
		{name: "search tier 3", change: func(d *Definition) { d.Spec.Search = Search{Tier: 3} }},
		{name: "search tier negative", change: func(d *Definition) { d.Spec.Search.Tier = -1 },
			want: []FieldError{{"spec.search.tier", "must be 1, 2 or 3"}}},
		{name: "language without tier 2 is fine", change: func(d *Definition) { d.Spec.Search = Search{Tier: 1, Language: "japanese"} }},
		{name: "languages are case-sensitive", change: func(d *Definition) { d.Spec.Search.Language = "English" },
			want: []FieldError{{"spec.search.language", `unknown language "English" (want one of english, german, french, spanish, portuguese, italian, dutch, swedish, norwegian, danish, russian, chinese, japanese)`}}},

		// access.roles.
		{name: "role name too long", change: func(d *Definition) { d.Spec.Access.Roles["r"+strings.Repeat("x", 41)] = []string{"read"} },
			want: []FieldError{{"spec.access.roles.r" + strings.Repeat("x", 41), `"r` + strings.Repeat("x", 41) + `" is not a valid role name: use 1 to 41 of a-z, 0-9 and _, starting with a letter`}}},
		{name: "role name of 41 bytes", change: func(d *Definition) { d.Spec.Access.Roles["r"+strings.Repeat("x", 40)] = []string{"read"} }},
		{name: "role without verbs is fine", change: func(d *Definition) { d.Spec.Access.Roles["auditor"] = nil }},
		{name: "role verbs unknown and duplicated, roles in sorted order", change: func(d *Definition) {
			d.Spec.Access.Roles["viewer"] = []string{"read", "raed", "read"}
			d.Spec.Access.Roles["admin"] = []string{"READ"}
		}, want: []FieldError{
			{"spec.access.roles.admin[0]", `unknown verb "READ"`},
			{"spec.access.roles.viewer[1]", `unknown verb "raed"`},
			{"spec.access.roles.viewer[2]", `duplicate verb "read"`},
		}},

		// access.abac and rowFilter.
		{name: "abac rule of the largest size", change: func(d *Definition) { d.Spec.Access.ABAC[0].Rule = strings.Repeat("x", MaxRuleLength) }},
		{name: "abac rule too large", change: func(d *Definition) { d.Spec.Access.ABAC[0].Rule = strings.Repeat("x", MaxRuleLength+1) },
			want: []FieldError{{"spec.access.abac[0].rule", "is 10241 bytes, over the limit of 10240"}}},
		{name: "abac rule empty and verbs unknown", change: func(d *Definition) {
			d.Spec.Access.ABAC = append(d.Spec.Access.ABAC, ABACRule{Verbs: []string{"read", "write"}})
		}, want: []FieldError{{"spec.access.abac[1].verbs[1]", `unknown verb "write"`}, {"spec.access.abac[1].rule", "required"}}},
		{name: "abac rule is not compiled here", change: func(d *Definition) { d.Spec.Access.ABAC[0].Rule = "this is not CEL (" }},
		{name: "a reserved name", change: func(d *Definition) { d.Metadata.Name = "approvals" },
			want: []FieldError{{"metadata.name", `"approvals" is reserved: /admin/schemas/approvals is another route`}}},
		{name: "row filter too large", change: func(d *Definition) { d.Spec.Access.RowFilter = strings.Repeat("x", MaxRuleLength+1) },
			want: []FieldError{{"spec.access.rowFilter", "is 10241 bytes, over the limit of 10240"}}},

		// access.fields.
		{name: "field rules on a system field", change: func(d *Definition) { d.Spec.Access.Fields["id"] = FieldAccess{Read: []string{"admin"}} },
			want: []FieldError{{"spec.access.fields.id", `unknown field "id"`}}},
		{name: "field rules with unknown roles and mask", change: func(d *Definition) {
			d.Spec.Access.Fields["total"] = FieldAccess{Read: []string{"viewer", "guest"}, Write: []string{"root"}, Mask: "Partial"}
		}, want: []FieldError{
			{"spec.access.fields.total.read[1]", `unknown role "guest" (roles are defined in spec.access.roles)`},
			{"spec.access.fields.total.write[0]", `unknown role "root" (roles are defined in spec.access.roles)`},
			{"spec.access.fields.total.mask", `unknown mask "Partial" (want partial, full or redact)`},
		}},
		{name: "every mask", change: func(d *Definition) {
			d.Spec.Access.Fields["region"] = FieldAccess{Read: []string{"admin"}, Mask: MaskFull}
			d.Spec.Access.Fields["status"] = FieldAccess{Read: []string{"admin"}, Mask: MaskRedact}
			d.Spec.Access.Fields["total"] = FieldAccess{}
		}},
		{name: "a mask without read roles, and a string mask on a number", change: func(d *Definition) {
			d.Spec.Access.Fields["region"] = FieldAccess{Mask: MaskFull}
			d.Spec.Access.Fields["total"] = FieldAccess{Read: []string{"admin"}, Mask: MaskPartial}
		}, want: []FieldError{
			{"spec.access.fields.region.mask", "a mask applies to the roles not in read; give read the roles that see the value"},
			{"spec.access.fields.total.mask", `mask "partial" needs a string or text field; total is decimal (use "redact" to hide its value)`},
		}},
		{name: "field rules without roles", change: func(d *Definition) { d.Spec.Access.Roles = nil },
			want: []FieldError{
				{"spec.access.fields.customer_email.read[0]", `unknown role "admin" (roles are defined in spec.access.roles)`},
				{"spec.access.fields.customer_email.read[1]", `unknown role "editor" (roles are defined in spec.access.roles)`},
				{"spec.access.fields.customer_email.write[0]", `unknown role "admin" (roles are defined in spec.access.roles)`},
			}},

		// policy, history and archive.
		{name: "breaking changes allowed", change: func(d *Definition) { d.Spec.Policy.BreakingChanges = BreakingAllow }},
		{name: "breaking changes empty", change: func(d *Definition) { d.Spec.Policy.BreakingChanges = "" }},
		{name: "require reason duplicated", change: func(d *Definition) { d.Spec.Policy.RequireReason = []string{"purge", "purge"} },
			want: []FieldError{{"spec.policy.requireReason[1]", `duplicate verb "purge"`}}},
		{name: "history redacts a system field", change: func(d *Definition) { d.Spec.History.Redact = []string{"updated_by"} },
			want: []FieldError{{"spec.history.redact[0]", `unknown field "updated_by"`}}},
		{name: "archive after 0 days", change: func(d *Definition) { d.Spec.Archive.AfterDays = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := ordersDefinition()
			tt.change(&d)
			require.Equal(t, tt.want, validationErrors(t, d), "Validate(%s)", tt.name)
		})
	}
}

func TestValidateDefault(t *testing.T) {
	t.Parallel()

	tests := []struct {
		field Field
		def   string
		want  string // the message at spec.fields[4].default; "" when valid
	}{
		{Field{Type: TypeString}, `"x"`, ""},
		{Field{Type: TypeString}, `""`, ""},
		{Field{Type: TypeString}, `1`, "must be a string"},
		{Field{Type: TypeString, MaxLength: ptr(3)}, `"äöü"`, ""},
		{Field{Type: TypeString, MaxLength: ptr(3)}, `"abcd"`, "is 4 characters, over maxLength 3"},
		{Field{Type: TypeText}, `true`, "must be a string"},
		{Field{Type: TypeInteger}, `42`, ""},
		{Field{Type: TypeInteger}, `-9223372036854775808`, ""},
		{Field{Type: TypeInteger}, `2.0`, ""},
		{Field{Type: TypeInteger}, `2.5`, "must be an integer"},
		{Field{Type: TypeInteger}, `"42"`, "must be an integer"},
		{Field{Type: TypeInteger}, `9223372036854775808`, "is out of range"},
		{Field{Type: TypeNumber}, `-1.5e3`, ""},
		{Field{Type: TypeNumber}, `1e400`, "is out of range"},
		{Field{Type: TypeNumber}, `"1.5"`, "must be a number"},
		{Field{Type: TypeDecimal}, `12345678901234567890.123456789`, ""},
		{Field{Type: TypeDecimal}, `"12.50"`, ""},
		{Field{Type: TypeDecimal}, `"-.5"`, ""},
		{Field{Type: TypeDecimal}, `"1e-3"`, ""},
		{Field{Type: TypeDecimal}, `"12,50"`, "must be a number or a numeric string"},
		{Field{Type: TypeDecimal}, `"NaN"`, "must be a number or a numeric string"},
		{Field{Type: TypeDecimal}, `" 1"`, "must be a number or a numeric string"},
		{Field{Type: TypeDecimal}, `true`, "must be a number or a numeric string"},
		{Field{Type: TypeBoolean}, `false`, ""},
		{Field{Type: TypeBoolean}, `"true"`, "must be a boolean"},
		{Field{Type: TypeTimestamp}, `"2024-01-31T12:00:00Z"`, ""},
		{Field{Type: TypeTimestamp}, `"2024-01-31T12:00:00.123456+02:00"`, ""},
		{Field{Type: TypeTimestamp}, `"2024-01-31 12:00:00"`, `must be an RFC 3339 timestamp, such as "2024-01-31T12:00:00Z"`},
		{Field{Type: TypeTimestamp}, `"2024-01-31"`, `must be an RFC 3339 timestamp, such as "2024-01-31T12:00:00Z"`},
		{Field{Type: TypeTimestamp}, `1706702400`, `must be an RFC 3339 timestamp, such as "2024-01-31T12:00:00Z"`},
		{Field{Type: TypeDate}, `"2024-02-29"`, ""},
		{Field{Type: TypeDate}, `"2023-02-29"`, "must be a date as YYYY-MM-DD"},
		{Field{Type: TypeDate}, `"2024-1-31"`, "must be a date as YYYY-MM-DD"},
		{Field{Type: TypeUUID}, `"123e4567-e89b-12d3-a456-426614174000"`, ""},
		{Field{Type: TypeUUID}, `"123E4567-E89B-12D3-A456-426614174000"`, ""},
		{Field{Type: TypeUUID}, `"123e4567e89b12d3a456426614174000"`, `must be a UUID, such as "123e4567-e89b-12d3-a456-426614174000"`},
		{Field{Type: TypeUUID}, `"{123e4567-e89b-12d3-a456-426614174000}"`, `must be a UUID, such as "123e4567-e89b-12d3-a456-426614174000"`},
		{Field{Type: TypeJSON}, `{"a": [1, null]}`, ""},
		{Field{Type: TypeJSON}, `"text"`, ""},
		{Field{Type: TypeJSON}, `{"a": `, "is not valid JSON"},
		{Field{Type: TypeJSON}, `1 2`, "is not valid JSON"},
		{Field{Type: TypeEnum, Values: []string{"pending", "paid", "shipped"}}, `"paid"`, ""},
		{Field{Type: TypeEnum, Values: []string{"pending", "paid", "shipped"}}, `"refunded"`, `"refunded" is not one of the enum values [pending paid shipped]`},
		{Field{Type: TypeEnum, Values: []string{"pending", "paid", "shipped"}}, `"Paid"`, `"Paid" is not one of the enum values [pending paid shipped]`},
		{Field{Type: TypeEnum, Values: []string{"yes", "no"}}, `true`, `true is not one of the enum values [yes no]`},
		{Field{Type: TypeEnum, Values: []string{"a"}}, `null`, ""},
		{Field{Type: TypeDecimal}, `null`, ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.field.Type)+" "+tt.def, func(t *testing.T) {
			t.Parallel()
			d := ordersDefinition()
			f := tt.field
			f.Name = "extra"
			f.Default = json.RawMessage(tt.def)
			d.Spec.Fields = append(d.Spec.Fields, f)
			var want []FieldError
			if tt.want != "" {
				want = []FieldError{{"spec.fields[4].default", tt.want}}
			}
			require.Equal(t, want, validationErrors(t, d), "default %s for %s", tt.def, tt.field.Type)
		})
	}
}

// TestValidateHostileNames checks that names which could break out of a quoted identifier, a
// route or a log line are rejected, and that the message quotes them.
func TestValidateHostileNames(t *testing.T) {
	t.Parallel()

	hostile := []string{
		"orders; drop table x",
		`a"b`,
		"a'b",
		"ördrs",
		"orders\n",
		"orders\x00",
		"ORDERS",
		"orders-eu",
		"orders eu",
		"orders.eu",
		"orders/eu",
		"ｏｒｄｅｒｓ", // fullwidth letters
		"orderѕ", // a Cyrillic s
	}
	targets := []struct {
		path string
		set  func(*Definition, string)
	}{
		{"metadata.name", func(d *Definition, s string) { d.Metadata.Name = s }},
		{"spec.org", func(d *Definition, s string) { d.Spec.Org = s }},
		{"spec.app", func(d *Definition, s string) { d.Spec.App = s }},
		{"spec.domain", func(d *Definition, s string) { d.Spec.Domain = s }},
		{"spec.object", func(d *Definition, s string) { d.Spec.Object = s }},
		{"spec.fields[4].name", func(d *Definition, s string) {
			d.Spec.Fields = append(d.Spec.Fields, Field{Name: s, Type: TypeText})
		}},
		{"spec.fields[1].values[3]", func(d *Definition, s string) { d.Spec.Fields[1].Values = append(d.Spec.Fields[1].Values, s) }},
		{"role", func(d *Definition, s string) { d.Spec.Access.Roles[s] = []string{"read"} }},
	}
	for _, target := range targets {
		for _, name := range hostile {
			if target.path == "metadata.name" && name == "orders-eu" {
				continue // a valid metadata name
			}
			if target.path == "spec.fields[1].values[3]" && (name == "ORDERS" || name == "orders-eu" || name == "orders.eu") {
				continue // valid enum values
			}
			t.Run(target.path+" "+name, func(t *testing.T) {
				t.Parallel()
				d := ordersDefinition()
				target.set(&d, name)
				errs := validationErrors(t, d)
				require.NotEmpty(t, errs, "%s = %q was accepted", target.path, name)
				wantPath := target.path
				if target.path == "role" {
					wantPath = joinKey("spec.access.roles", name)
				}
				require.Equal(t, wantPath, errs[0].Path, "%v", errs)
				require.Contains(t, errs[0].Path+" "+errs[0].Message, strconv.Quote(name), "the error must quote the name: %v", errs)
				lines := strings.Split((&ValidationError{Errors: errs}).Error(), "\n")
				require.Len(t, lines, len(errs), "a name must not add a line of its own")
			})
		}
	}
}

func TestValidateNameLengths(t *testing.T) {
	t.Parallel()

	x := func(n int) string { return "a" + strings.Repeat("b", n-1) }
	tests := []struct {
		name   string
		change func(*Definition)
		want   []FieldError
	}{
		{name: "schema name of 63 bytes", change: func(d *Definition) { d.Spec.Org, d.Spec.App = x(31), x(30) }},
		{name: "schema name of 64 bytes", change: func(d *Definition) { d.Spec.Org, d.Spec.App = x(31), x(31) },
			want: []FieldError{{"spec", `derived Postgres name "` + x(31) + "__" + x(31) + `" is 64 bytes, over the limit of 63`}}},
		{name: "history table of 64 bytes", change: func(d *Definition) {
			d.Spec.Domain, d.Spec.Object = x(27), x(26)
			d.Spec.Fields = d.Spec.Fields[3:]
			d.Spec.Access.Fields, d.Spec.History.Redact = nil, nil
		}, want: []FieldError{
			{"spec", `derived Postgres name "` + x(27) + "__" + x(26) + `__history" is 64 bytes, over the limit of 63`},
			{"spec.fields[0].name", `field name too long: generated name "` + x(27) + "__" + x(26) + `__total__check" is 69 bytes, over Postgres's 63-byte limit`},
		}},
		{name: "schema and table names too long", change: func(d *Definition) {
			d.Spec.Org, d.Spec.App, d.Spec.Domain, d.Spec.Object = x(31), x(31), x(30), x(30)
			d.Spec.Fields = d.Spec.Fields[3:]
			d.Spec.Access.Fields, d.Spec.History.Redact = nil, nil
		}, want: []FieldError{
			{"spec", `derived Postgres name "` + x(31) + "__" + x(31) + `" is 64 bytes, over the limit of 63`},
			{"spec", `derived Postgres name "` + x(30) + "__" + x(30) + `__history" is 71 bytes, over the limit of 63`},
			{"spec.fields[0].name", `field name too long: generated name "` + x(30) + "__" + x(30) + `__total__check" is 76 bytes, over Postgres's 63-byte limit`},
		}},
		{name: "constraint name of 63 bytes", change: func(d *Definition) {
			// sales__orders__{field}__check: 13 + 2 + len(field) + 7
			d.Spec.Fields = append(d.Spec.Fields, Field{Name: x(41), Type: TypeText})
		}},
		{name: "constraint name of 64 bytes", change: func(d *Definition) {
			d.Spec.Fields = append(d.Spec.Fields, Field{Name: x(42), Type: TypeText})
		}, want: []FieldError{{"spec.fields[4].name", `field name too long: generated name "sales__orders__` + x(42) + `__check" is 64 bytes, over Postgres's 63-byte limit`}}},
		{name: "every field is checked", change: func(d *Definition) { d.Spec.Domain, d.Spec.Object = x(20), x(20) },
			want: []FieldError{
				{"spec.fields[0].name", `field name too long: generated name "` + x(20) + "__" + x(20) + `__customer_email__check" is 65 bytes, over Postgres's 63-byte limit`},
			}},
		{name: "an invalid name is not also reported as too long", change: func(d *Definition) { d.Spec.Org, d.Spec.App = x(40), x(40) },
			want: []FieldError{
				{"spec.org", `"` + x(40) + `" is not a valid name: use 1 to 31 of a-z, 0-9 and _, starting with a letter`},
				{"spec.app", `"` + x(40) + `" is not a valid name: use 1 to 31 of a-z, 0-9 and _, starting with a letter`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := ordersDefinition()
			tt.change(&d)
			require.Equal(t, tt.want, validationErrors(t, d), "Validate(%s)", tt.name)
		})
	}
}

func TestIndexName(t *testing.T) {
	t.Parallel()

	n := NamesOf(ordersDefinition().Spec)
	tests := []struct {
		field, suffix, want string
	}{
		{"total", IndexSuffixBtree, "sales__orders__total__idx"},
		{"customer_email", IndexSuffixTrigram, "sales__orders__customer_email__trgm"},
		{"customer_email", IndexSuffixUnique, "sales__orders__customer_email__key"},
		{"status", IndexSuffixCheck, "sales__orders__status__check"},
		{"region", IndexSuffixFullText, "sales__orders__region__fts"},
	}
	for _, tt := range tests {
		got := IndexName(n, tt.field, tt.suffix)
		require.Equal(t, tt.want, got, "IndexName(%q, %q) got %q, want %q", tt.field, tt.suffix, got, tt.want)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()

	d := ordersDefinition()
	d.Spec.Search = Search{}
	d.Spec.Policy.BreakingChanges = ""
	require.NoError(t, d.Validate())

	d.Normalize()
	require.Equal(t, Search{Tier: DefaultSearchTier}, d.Spec.Search)
	require.Equal(t, BreakingRequireApproval, d.Spec.Policy.BreakingChanges)
	require.NoError(t, d.Validate())

	want := ordersDefinition()
	got := ordersDefinition()
	got.Normalize()
	require.Equal(t, want, got, "Normalize changed a definition with every default given")

	got.Spec.Policy.BreakingChanges = BreakingAllow
	got.Normalize()
	require.Equal(t, BreakingAllow, got.Spec.Policy.BreakingChanges)
}

func TestValidationError(t *testing.T) {
	t.Parallel()

	d := ordersDefinition()
	d.Kind = ""
	d.Spec.Version = 0
	err := d.Validate()
	require.EqualError(t, err, "kind: required\nspec.version: must be at least 1")

	var verr *ValidationError
	require.True(t, errors.As(err, &verr))
	require.Len(t, verr.Errors, 2)

	require.Equal(t, "must be an object", FieldError{Message: "must be an object"}.Error())
}
