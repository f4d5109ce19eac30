package sqlbuild_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
)

func ptr[T any](v T) *T { return &v }

// everything is a definition with a field of every type and of every rule CheckRecord knows.
func everything(t *testing.T) schemadef.Definition {
	t.Helper()
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion,
		Kind:       schemadef.Kind,
		Metadata:   schemadef.Metadata{Name: "things"},
		Spec: schemadef.Spec{
			Org: "acme", App: "lab", Domain: "test", Object: "things", Version: 1,
			Fields: []schemadef.Field{
				{Name: "s", Type: schemadef.TypeString, MaxLength: ptr(5), Filterable: true, Sortable: true},
				{Name: "t", Type: schemadef.TypeText, Filterable: true},
				{Name: "i", Type: schemadef.TypeInteger, Filterable: true, Sortable: true},
				{Name: "n", Type: schemadef.TypeNumber, Filterable: true, Sortable: true},
				{Name: "d", Type: schemadef.TypeDecimal, Filterable: true, Sortable: true},
				{Name: "b", Type: schemadef.TypeBoolean, Filterable: true, Sortable: true},
				{Name: "ts", Type: schemadef.TypeTimestamp, Filterable: true, Sortable: true},
				{Name: "dt", Type: schemadef.TypeDate, Filterable: true, Sortable: true},
				{Name: "u", Type: schemadef.TypeUUID, Filterable: true, Sortable: true},
				{Name: "j", Type: schemadef.TypeJSON},
				{Name: "e", Type: schemadef.TypeEnum, Values: []string{"a", "b", "c"}, Filterable: true, Sortable: true},
				{Name: "req", Type: schemadef.TypeString, Required: true},
				{Name: "reqdef", Type: schemadef.TypeString, Required: true, Default: json.RawMessage(`"x"`)},
				{Name: "hidden", Type: schemadef.TypeString},
			},
			Access: schemadef.Access{Roles: map[string][]string{"admin": {"read", "create", "update", "delete"}}},
		},
	}
	def.Normalize()
	require.NoError(t, def.Validate())
	return def
}

func table(t *testing.T) *sqlbuild.Table { return sqlbuild.NewTable(everything(t).Spec) }

func body(t *testing.T, s string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(s), &m))
	return m
}

func TestCheckRecordValues(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	tests := []struct {
		field string
		raw   string
		want  *string // the text Postgres gets; nil with no err means NULL
		err   string  // a fragment of the message
	}{
		// string: maxLength counts characters, not bytes
		{field: "s", raw: `"hello"`, want: ptr("hello")},
		{field: "s", raw: `"héllo"`, want: ptr("héllo")},
		{field: "s", raw: `"日本語日本"`, want: ptr("日本語日本")},
		{field: "s", raw: `"😀😀😀😀😀"`, want: ptr("😀😀😀😀😀")},
		{field: "s", raw: `"héllo!"`, err: "is 6 characters, longer than maxLength 5"},
		{field: "s", raw: `"😀😀😀😀😀😀"`, err: "is 6 characters, longer than maxLength 5"},
		{field: "s", raw: `"a\u0000b"`, err: "must not contain the NUL character"},
		{field: "s", raw: `12`, err: "expected a string"},
		{field: "s", raw: `["a"]`, err: "expected a string"},
		{field: "s", raw: `null`},
		{field: "s", raw: `""`, want: ptr("")},
		{field: "s", raw: `"it's'; DROP TABLE x; --"`, err: "longer than maxLength"},
		// text
		{field: "t", raw: `"it's'; DROP TABLE x; --"`, want: ptr("it's'; DROP TABLE x; --")},
		{field: "t", raw: `"` + strings.Repeat("x", 100000) + `"`, want: ptr(strings.Repeat("x", 100000))},
		{field: "t", raw: `"\u0000"`, err: "NUL"},
		{field: "t", raw: `true`, err: "expected a string"},
		// integer
		{field: "i", raw: `42`, want: ptr("42")},
		{field: "i", raw: `-7`, want: ptr("-7")},
		{field: "i", raw: `3.0`, want: ptr("3")},
		{field: "i", raw: `1e3`, want: ptr("1000")},
		{field: "i", raw: `9223372036854775807`, want: ptr("9223372036854775807")},
		{field: "i", raw: `-9223372036854775808`, want: ptr("-9223372036854775808")},
		{field: "i", raw: `9223372036854775808`, err: "out of range"},
		{field: "i", raw: `1e400`, err: "out of range"},
		{field: "i", raw: `3.5`, err: "expected an integer"},
		{field: "i", raw: `"42"`, err: "expected an integer"},
		{field: "i", raw: `true`, err: "expected an integer"},
		// number
		{field: "n", raw: `1.5`, want: ptr("1.5")},
		{field: "n", raw: `-2e-3`, want: ptr("-2e-3")},
		{field: "n", raw: `1e400`, err: "out of range"},
		{field: "n", raw: `"1.5"`, err: "expected a number"},
		// decimal: a JSON number or a numeric string, kept exactly
		{field: "d", raw: `12.50`, want: ptr("12.50")},
		{field: "d", raw: `"12.50"`, want: ptr("12.50")},
		{field: "d", raw: `"-0.000000000000000000000001"`, want: ptr("-0.000000000000000000000001")},
		{field: "d", raw: `"1e5"`, want: ptr("1e5")},
		{field: "d", raw: `123456789012345678901234567890.123456789`, want: ptr("123456789012345678901234567890.123456789")},
		{field: "d", raw: `"abc"`, err: "expected a decimal number"},
		{field: "d", raw: `"1,5"`, err: "expected a decimal number"},
		{field: "d", raw: `"NaN"`, err: "expected a decimal number"},
		{field: "d", raw: `" 1"`, err: "expected a decimal number"},
		{field: "d", raw: `true`, err: "expected a decimal number"},
		// boolean
		{field: "b", raw: `true`, want: ptr("true")},
		{field: "b", raw: `false`, want: ptr("false")},
		{field: "b", raw: `"true"`, err: "expected true or false"},
		{field: "b", raw: `1`, err: "expected true or false"},
		// timestamp: RFC 3339 only
		{field: "ts", raw: `"2024-01-31T12:00:00Z"`, want: ptr("2024-01-31T12:00:00Z")},
		{field: "ts", raw: `"2024-01-31T12:00:00.123456+02:00"`, want: ptr("2024-01-31T12:00:00.123456+02:00")},
		{field: "ts", raw: `"2024-01-31"`, err: "is not an RFC 3339 timestamp"},
		{field: "ts", raw: `"2024-01-31 12:00:00"`, err: "is not an RFC 3339 timestamp"},
		{field: "ts", raw: `"now"`, err: "is not an RFC 3339 timestamp"},
		{field: "ts", raw: `1706702400`, err: "expected an RFC 3339 timestamp string"},
		// date
		{field: "dt", raw: `"2024-02-29"`, want: ptr("2024-02-29")},
		{field: "dt", raw: `"2023-02-29"`, err: "is not a date"},
		{field: "dt", raw: `"2024-01-31T00:00:00Z"`, err: "is not a date"},
		{field: "dt", raw: `"today"`, err: "is not a date"},
		{field: "dt", raw: `20240131`, err: "expected a date string"},
		// uuid: the canonical 36-character form, normalized to lower case
		{field: "u", raw: `"123e4567-e89b-12d3-a456-426614174000"`, want: ptr("123e4567-e89b-12d3-a456-426614174000")},
		{field: "u", raw: `"123E4567-E89B-12D3-A456-426614174000"`, want: ptr("123e4567-e89b-12d3-a456-426614174000")},
		{field: "u", raw: `"{123e4567-e89b-12d3-a456-426614174000}"`, err: "is not a UUID"},
		{field: "u", raw: `"urn:uuid:123e4567-e89b-12d3-a456-426614174000"`, err: "is not a UUID"},
		{field: "u", raw: `"123e4567e89b12d3a456426614174000"`, err: "is not a UUID"},
		{field: "u", raw: `"nope"`, err: "is not a UUID"},
		{field: "u", raw: `7`, err: "expected a UUID string"},
		// json: any JSON value, passed as its text
		{field: "j", raw: `{"a":1,"b":[true,null]}`, want: ptr(`{"a":1,"b":[true,null]}`)},
		{field: "j", raw: `[1,2]`, want: ptr(`[1,2]`)},
		{field: "j", raw: `"str"`, want: ptr(`"str"`)},
		{field: "j", raw: `1.5`, want: ptr(`1.5`)},
		{field: "j", raw: `{"a":"\u0000"}`, err: "must not contain the NUL character"},
		{field: "j", raw: `{"\u0000":1}`, err: "must not contain the NUL character"},
		// An escaped backslash followed by "u0000" is six ordinary characters, not NUL.
		{field: "j", raw: `{"path":"C:\\u0000"}`, want: ptr(`{"path":"C:\\u0000"}`)},
		// enum
		{field: "e", raw: `"a"`, want: ptr("a")},
		{field: "e", raw: `"c"`, want: ptr("c")},
		{field: "e", raw: `"z"`, err: `"z" is not one of a, b, c`},
		{field: "e", raw: `"A"`, err: `"A" is not one of a, b, c`},
		{field: "e", raw: `""`, err: "is not one of"},
		{field: "e", raw: `"a\u0000"`, err: "NUL"},
		{field: "e", raw: `1`, err: "expected a string"},
	}
	for _, tt := range tests {
		raw := `{"req": "r", "` + tt.field + `": ` + tt.raw + `}`
		vals, errs := tbl.CheckRecord(body(t, raw), sqlbuild.ForCreate)
		if tt.err != "" {
			require.Len(t, errs, 1, "CheckRecord(%s) got %q, want one error", raw, errs)
			require.Equal(t, "body."+tt.field, errs[0].Location)
			require.Contains(t, errs[0].Message, tt.err, "CheckRecord(%s) got %q, want %q", raw, errs[0].Message, tt.err)
			continue
		}
		require.Empty(t, errs, "CheckRecord(%s) got %q, want no errors", raw, errs)
		got, ok := vals[tt.field]
		require.True(t, ok, "CheckRecord(%s) left out %s", raw, tt.field)
		if tt.want == nil {
			require.Nil(t, got, "CheckRecord(%s) got %v, want NULL", raw, got)
		} else {
			require.NotNil(t, got, "CheckRecord(%s) got NULL, want %q", raw, *tt.want)
			require.Equal(t, *tt.want, *got, "CheckRecord(%s) got %q, want %q", raw, *got, *tt.want)
		}
	}
}

func TestCheckRecordRules(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	const uuid = "123e4567-e89b-12d3-a456-426614174000"
	type loc = sqlbuild.FieldError
	tests := []struct {
		name string
		body string
		mode sqlbuild.RecordMode
		want []loc
		vals []string // the columns set, sorted
	}{
		{name: "required only", body: `{"req": "r"}`, mode: sqlbuild.ForCreate, vals: []string{"req"}},
		{name: "required missing", body: `{}`, mode: sqlbuild.ForCreate,
			want: []loc{{Location: "body.req", Message: "is required"}}},
		{name: "required null", body: `{"req": null}`, mode: sqlbuild.ForCreate,
			want: []loc{{Location: "body.req", Message: "is required and cannot be null"}}},
		{name: "required with default may be left out", body: `{"req": "r"}`, mode: sqlbuild.ForCreate, vals: []string{"req"}},
		{name: "required with default is not null", body: `{"req": "r", "reqdef": null}`, mode: sqlbuild.ForCreate,
			want: []loc{{Location: "body.reqdef", Message: "is required and cannot be null"}}},
		{name: "patch leaves out required", body: `{"s": "x"}`, mode: sqlbuild.ForPatch, vals: []string{"s"}},
		{name: "patch clears optional", body: `{"s": null}`, mode: sqlbuild.ForPatch, vals: []string{"s"}},
		{name: "patch cannot clear required", body: `{"req": null}`, mode: sqlbuild.ForPatch,
			want: []loc{{Location: "body.req", Message: "is required and cannot be null"}}},
		{name: "unknown field", body: `{"req": "r", "nope": 1}`, mode: sqlbuild.ForCreate,
			want: []loc{{Location: "body.nope", Message: "unknown field"}}},
		{name: "hostile field name", body: `{"req": "r", "s\" = 1; DROP TABLE x; --": 1}`, mode: sqlbuild.ForCreate,
			want: []loc{{Location: `body.s" = 1; DROP TABLE x; --`, Message: "unknown field"}}},
		{name: "id on create", body: `{"req": "r", "id": "` + uuid + `"}`, mode: sqlbuild.ForCreate, vals: []string{"id", "req"}},
		{name: "null id on create", body: `{"req": "r", "id": null}`, mode: sqlbuild.ForCreate, vals: []string{"req"}},
		{name: "bad id on create", body: `{"req": "r", "id": "x"}`, mode: sqlbuild.ForCreate,
			want: []loc{{Location: "body.id", Message: `"x" is not a UUID`}}},
		{name: "id on patch", body: `{"id": "` + uuid + `"}`, mode: sqlbuild.ForPatch,
			want: []loc{{Location: "body.id", Message: "id is a read-only system field"}}},
		{name: "system fields", body: `{"req": "r", "version": 9, "created_at": "2024-01-01T00:00:00Z", "updated_by": "me"}`, mode: sqlbuild.ForCreate,
			want: []loc{
				{Location: "body.created_at", Message: "created_at is a read-only system field"},
				{Location: "body.updated_by", Message: "updated_by is a read-only system field"},
				{Location: "body.version", Message: "version is a read-only system field"},
			}},
		{name: "every problem at once, in key order", body: `{"z": 1, "i": "x", "e": "q", "version": 1}`, mode: sqlbuild.ForCreate,
			want: []loc{
				{Location: "body.e", Message: `"q" is not one of a, b, c`},
				{Location: "body.i", Message: "expected an integer"},
				{Location: "body.version", Message: "version is a read-only system field"},
				{Location: "body.z", Message: "unknown field"},
				{Location: "body.req", Message: "is required"},
			}},
	}
	for _, tt := range tests {
		vals, errs := tbl.CheckRecord(body(t, tt.body), tt.mode)
		if tt.want != nil {
			require.Equal(t, sqlbuild.Errors(tt.want), errs, "CheckRecord(%q) got %q, want %q", tt.name, errs, tt.want)
			continue
		}
		require.Empty(t, errs, "CheckRecord(%q) got %q", tt.name, errs)
		var cols []string
		for c := range vals {
			cols = append(cols, c)
		}
		require.ElementsMatch(t, tt.vals, cols, "CheckRecord(%q) got columns %q, want %q", tt.name, cols, tt.vals)
	}
}

func TestErrorsMessage(t *testing.T) {
	t.Parallel()
	errs := sqlbuild.Errors{{Location: "body.a", Message: "x"}, {Location: "body.b", Message: "y"}}
	require.Equal(t, "body.a: x; body.b: y", errs.Error())
}

func TestTableStatements(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	const id = "123e4567-e89b-12d3-a456-426614174000"
	secret := "it's'; DROP TABLE x; --"
	vals := sqlbuild.Values{"t": &secret, "i": ptr("5"), "j": ptr(`{"a":1}`), "s": nil}

	ins := tbl.Insert(id, vals)
	// Columns in definition order, id first, every value a typed parameter.
	require.Equal(t, `INSERT INTO "acme__lab"."test__things" ("id", "s", "t", "i", "j") VALUES ($1::text::uuid, $2::text, $3::text, $4::text::bigint, $5::text::jsonb)`, ins.SQL)
	require.Equal(t, []any{(*string)(nil), &secret, vals["i"], vals["j"]}, ins.Args[1:])
	require.Equal(t, id, *(ins.Args[0].(*string)))
	require.NotContains(t, ins.SQL, "DROP")
	// The same fields give the same text, so one prepared statement serves them all.
	require.Equal(t, ins.SQL, tbl.Insert("223e4567-e89b-12d3-a456-426614174000", vals).SQL)

	up := tbl.Update(id, vals, 3)
	require.Equal(t, `UPDATE "acme__lab"."test__things" SET "s" = $2::text, "t" = $3::text, "i" = $4::text::bigint, "j" = velocity.jsonb_merge_patch("j", $5::text::jsonb) WHERE id = $1::uuid AND version = $6::integer RETURNING version`, up.SQL)
	require.Equal(t, []any{id, (*string)(nil), &secret, vals["i"], vals["j"], int64(3)}, up.Args)
	require.Equal(t, `UPDATE "acme__lab"."test__things" SET id = id WHERE id = $1::uuid RETURNING version`, tbl.Update(id, nil, 0).SQL)

	require.Equal(t, `DELETE FROM "acme__lab"."test__things" WHERE id = $1::uuid RETURNING id`, tbl.Delete(id, 0).SQL)
	require.Equal(t, []any{id, int64(2)}, tbl.Delete(id, 2).Args)
	require.Equal(t, `SELECT row_to_json(v), v.version FROM "acme__lab"."test__things__read" v WHERE v.id = $1::uuid`, tbl.Get(id).SQL)
	require.Equal(t, []any{id}, tbl.Get(id).Args)
	require.Equal(t, `SELECT version FROM "acme__lab"."test__things__read" WHERE id = $1::uuid`, tbl.Version(id).SQL)
}

func TestQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ fn, in, want string }{
		{"Ident", `name`, `"name"`},
		{"Ident", `a"b`, `"a""b"`},
		{"Ident", `"; DROP TABLE x; --`, `"""; DROP TABLE x; --"`},
		{"Literal", `it's`, `'it''s'`},
		{"Literal", `a\'b`, `'a\''b'`},
		{"Literal", "nul\x00byte", `'nulbyte'`},
	}
	for _, tt := range tests {
		var got string
		switch tt.fn {
		case "Ident":
			got = sqlbuild.Ident(tt.in)
		case "Literal":
			got = sqlbuild.Literal(tt.in)
		}
		require.Equal(t, tt.want, got, "%s(%q) got %q, want %q", tt.fn, tt.in, got, tt.want)
	}
	require.Equal(t, `"a"."b"`, sqlbuild.Qualified("a", "b"))
	require.Equal(t, `'a', 'b''c'`, sqlbuild.LiteralList([]string{"a", "b'c"}))
}
