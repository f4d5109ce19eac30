package sqlbuild_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/sqlbuild"
)

const view = `"acme__lab"."test__things__read"`

func query(where string, orderBy []sqlbuild.OrderBy, limit *int, cursor string) sqlbuild.QueryInput {
	in := sqlbuild.QueryInput{OrderBy: orderBy, Limit: limit, Cursor: cursor}
	if where != "" {
		in.Where = json.RawMessage(where)
	}
	return in
}

// whereOf returns the WHERE clause of a built statement, or "" when it has none.
func whereOf(sql string) string {
	// The conditions are in the pick of the page, after the outer query's WHERE v.id = ANY.
	_, pick, _ := strings.Cut(sql, "ARRAY(")
	_, rest, ok := strings.Cut(pick, " WHERE ")
	if !ok {
		return ""
	}
	clause, _, _ := strings.Cut(rest, " ORDER BY ")
	return clause
}

// requireNoValuesInSQL checks that no argument's text appears in the statement.
func requireNoValuesInSQL(t *testing.T, st sqlbuild.Statement, values ...string) {
	t.Helper()
	for _, v := range values {
		require.NotContains(t, st.SQL, v, "a value reached the SQL text")
	}
}

// requireParamsUsed checks that $1..$n each appear in the statement for its n arguments:
// Postgres cannot type a parameter the text never uses, and refuses the statement.
func requireParamsUsed(t *testing.T, st sqlbuild.Statement) {
	t.Helper()
	for i := len(st.Args); i >= 1; i-- {
		p := fmt.Sprintf("$%d", i)
		uses := strings.Count(st.SQL, p)
		for j := 10 * i; j < 10*i+10 && j <= len(st.Args); j++ {
			uses -= strings.Count(st.SQL, fmt.Sprintf("$%d", j)) // $1 is a prefix of $10
		}
		require.Positive(t, uses, "%s is never used in %s", p, st.SQL)
	}
	require.NotContains(t, st.SQL, fmt.Sprintf("$%d", len(st.Args)+1), "more parameters than arguments")
}

func TestBuildQueryOperators(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	tests := []struct {
		where string
		want  string
		args  []any // without the trailing limit
	}{
		{`{"i": {"eq": 5}}`, `(v."i" = $1::text::bigint)`, []any{"5"}},
		{`{"s": {"ne": "x"}}`, `(v."s" IS DISTINCT FROM $1::text)`, []any{"x"}},
		{`{"n": {"lt": 1.5}}`, `(v."n" < $1::text::double precision)`, []any{"1.5"}},
		{`{"d": {"lte": "2.50"}}`, `(v."d" <= $1::text::numeric)`, []any{"2.50"}},
		{`{"ts": {"gt": "2024-01-31T12:00:00Z"}}`, `(v."ts" > $1::text::timestamptz)`, []any{"2024-01-31T12:00:00Z"}},
		{`{"dt": {"gte": "2024-01-31"}}`, `(v."dt" >= $1::text::date)`, []any{"2024-01-31"}},
		{`{"b": {"eq": true}}`, `(v."b" = $1::text::boolean)`, []any{"true"}},
		{`{"u": {"eq": "123E4567-E89B-12D3-A456-426614174000"}}`, `(v."u" = $1::text::uuid)`, []any{"123e4567-e89b-12d3-a456-426614174000"}},
		{`{"i": {"lt": 10, "gte": 1}}`, `(v."i" >= $1::text::bigint AND v."i" < $2::text::bigint)`, []any{"1", "10"}},
		{`{"e": {"in": ["a", "b"]}}`, `(v."e" = ANY($1::text[]::text[]))`, []any{[]string{"a", "b"}}},
		{`{"i": {"in": []}}`, `(v."i" = ANY($1::text[]::bigint[]))`, []any{[]string{}}},
		{`{"i": {"nin": [1, 2]}}`, `((v."i" IS NULL OR v."i" <> ALL($1::text[]::bigint[])))`, []any{[]string{"1", "2"}}},
		{`{"t": {"contains": "50%_off\\"}}`, `(v."t" ILIKE $1)`, []any{`%50\%\_off\\%`}},
		{`{"s": {"isNull": true}}`, `(v."s" IS NULL)`, nil},
		{`{"s": {"isNull": false}}`, `(v."s" IS NOT NULL)`, nil},
		{`{"created_at": {"gte": "2024-01-01T00:00:00Z"}, "version": {"gt": 1}}`,
			`(v."created_at" >= $1::text::timestamptz AND v."version" > $2::text::bigint)`, []any{"2024-01-01T00:00:00Z", "1"}},
		{`{"s": {"eq": "x"}, "b": {"eq": false}}`, `(v."b" = $1::text::boolean AND v."s" = $2::text)`, []any{"false", "x"}},
		{`{"and": [{"i": {"eq": 1}}, {"e": {"eq": "a"}}]}`,
			`(((v."i" = $1::text::bigint) AND (v."e" = $2::text)))`, []any{"1", "a"}},
		{`{"or": [{"i": {"eq": 1}}, {"i": {"isNull": true}}]}`,
			`(((v."i" = $1::text::bigint) OR (v."i" IS NULL)))`, []any{"1"}},
		{`{"not": {"e": {"eq": "a"}}}`, `(NOT ((v."e" = $1::text)))`, []any{"a"}},
		{`{"or": [{"and": [{"i": {"gt": 1}}, {"not": {"s": {"isNull": true}}}]}, {"e": {"nin": ["c"]}}]}`,
			`(((((v."i" > $1::text::bigint) AND (NOT ((v."s" IS NULL))))) OR ((v."e" IS NULL OR v."e" <> ALL($2::text[]::text[])))))`,
			[]any{"1", []string{"c"}}},
		{`{}`, ``, nil},
		{`null`, ``, nil},
	}
	for _, tt := range tests {
		page, errs := tbl.BuildQuery(query(tt.where, nil, nil, ""), "body")
		require.Empty(t, errs, "BuildQuery(%s) got %q", tt.where, errs)
		got := whereOf(page.Statement.SQL)
		require.Equal(t, tt.want, got, "BuildQuery(%s) got %q, want %q", tt.where, got, tt.want)
		want := append(append([]any{}, tt.args...), sqlbuild.DefaultLimit+1)
		require.Equal(t, want, page.Statement.Args, "BuildQuery(%s) args", tt.where)
		requireParamsUsed(t, page.Statement)
		require.True(t, strings.HasPrefix(page.Statement.SQL, "SELECT row_to_json(v) FROM "+view+" v WHERE v.id = ANY (ARRAY(SELECT v.id FROM "+view+" v"), page.Statement.SQL)
		require.True(t, strings.HasSuffix(page.Statement.SQL, fmt.Sprintf(` ORDER BY v."id" ASC NULLS LAST LIMIT $%d::integer)) ORDER BY v."id" ASC NULLS LAST`, len(want))), page.Statement.SQL)
	}
}

func TestBuildQueryValuesAreParameters(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	hostile := []string{`x' OR '1'='1`, `"); DROP TABLE things; --`, `\'; SELECT pg_sleep(10); --`}
	for _, h := range hostile {
		enc, err := json.Marshal(h)
		require.NoError(t, err)
		v := string(enc)
		where := `{"or": [{"t": {"eq": ` + v + `}}, {"t": {"ne": ` + v + `}}, {"t": {"in": [` + v + `]}}, {"t": {"nin": [` + v + `]}}, {"t": {"contains": ` + v + `}}, {"t": {"gte": ` + v + `}}]}`
		page, errs := tbl.BuildQuery(query(where, nil, nil, ""), "body")
		require.Empty(t, errs)
		requireNoValuesInSQL(t, page.Statement, h, "DROP", "pg_sleep", "OR '1'")
		require.Contains(t, page.Statement.Args, h)
	}
}

func TestBuildQueryErrors(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	nested := func(n int) string {
		return strings.Repeat(`{"not": `, n) + `{"i": {"eq": 1}}` + strings.Repeat(`}`, n)
	}
	many := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = `{"i": {"eq": 1}}`
		}
		return `{"and": [` + strings.Join(items, ", ") + `]}`
	}
	manyValues := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprint(i)
		}
		return `{"i": {"in": [` + strings.Join(items, ", ") + `]}}`
	}
	tests := []struct {
		name     string
		where    string
		orderBy  []sqlbuild.OrderBy
		limit    *int
		location string
		message  string // a fragment; "" means the query is valid
	}{
		{name: "unknown operator", where: `{"s": {"like": "x"}}`, location: "body.where.s.like", message: `unknown operator "like"`},
		{name: "unknown operator beside a good one", where: `{"s": {"eq": "x", "regex": ".*"}}`, location: "body.where.s.regex", message: `unknown operator "regex"`},
		{name: "not filterable", where: `{"hidden": {"eq": "x"}}`, location: "body.where.hidden", message: `field "hidden" is not filterable`},
		{name: "json not filterable", where: `{"j": {"eq": 1}}`, location: "body.where.j", message: `field "j" is not filterable`},
		{name: "unknown field", where: `{"nope": {"eq": 1}}`, location: "body.where.nope", message: `unknown field "nope"`},
		{name: "hostile field", where: `{"i\" = 1 OR 1=1; --": {"eq": 1}}`, location: `body.where.i" = 1 OR 1=1; --`, message: "unknown field"},
		{name: "hostile nested field", where: `{"or": [{"i": {"eq": 1}}, {"x\") OR (1=1": {"isNull": true}}]}`, location: `body.where.or[1].x") OR (1=1`, message: "unknown field"},
		{name: "eq null", where: `{"i": {"eq": null}}`, location: "body.where.i.eq", message: "use isNull"},
		{name: "wrong type", where: `{"i": {"gt": "x"}}`, location: "body.where.i.gt", message: "expected an integer"},
		{name: "bad enum value", where: `{"e": {"eq": "z"}}`, location: "body.where.e.eq", message: "is not one of a, b, c"},
		{name: "in not a list", where: `{"i": {"in": 1}}`, location: "body.where.i.in", message: "expected an array"},
		{name: "in null list", where: `{"i": {"in": null}}`, location: "body.where.i.in", message: "expected an array"},
		{name: "in with null", where: `{"i": {"in": [1, null]}}`, location: "body.where.i.in[1]", message: "use isNull"},
		{name: "in with a bad value", where: `{"i": {"nin": [1, "x"]}}`, location: "body.where.i.nin[1]", message: "expected an integer"},
		{name: "in at the limit", where: manyValues(1000)},
		{name: "in over the limit", where: manyValues(1001), location: "body.where.i.in", message: "more than 1000 values"},
		{name: "contains on a number", where: `{"i": {"contains": "1"}}`, location: "body.where.i.contains", message: "string and text fields only"},
		{name: "contains empty", where: `{"t": {"contains": ""}}`, location: "body.where.t.contains", message: "expected a non-empty string"},
		{name: "contains NUL", where: `{"t": {"contains": "a\u0000"}}`, location: "body.where.t.contains", message: "expected a non-empty string"},
		{name: "contains not a string", where: `{"t": {"contains": 5}}`, location: "body.where.t.contains", message: "expected a non-empty string"},
		{name: "isNull not a boolean", where: `{"s": {"isNull": "yes"}}`, location: "body.where.s.isNull", message: "expected true or false"},
		{name: "operators not an object", where: `{"i": 5}`, location: "body.where.i", message: "expected an object of operators"},
		{name: "no operators", where: `{"i": {}}`, location: "body.where.i", message: "expected an object of operators"},
		{name: "where not an object", where: `[1]`, location: "body.where", message: "expected an object of conditions"},
		{name: "where a string", where: `"i = 1"`, location: "body.where", message: "expected an object of conditions"},
		{name: "and empty", where: `{"and": []}`, location: "body.where.and", message: "expected a non-empty array"},
		{name: "or not a list", where: `{"or": {"i": {"eq": 1}}}`, location: "body.where.or", message: "expected a non-empty array"},
		{name: "not a list item", where: `{"and": [1]}`, location: "body.where.and[0]", message: "expected an object of conditions"},
		{name: "not not an object", where: `{"not": 5}`, location: "body.where.not", message: "expected an object of conditions"},
		// An empty condition inside and/or/not would otherwise vanish with its siblings.
		{name: "empty condition in and", where: `{"and": [{}, {"i": {"eq": 1}}]}`, location: "body.where.and[0]", message: "expected a non-empty object of conditions"},
		{name: "empty condition in not", where: `{"not": {}}`, location: "body.where.not", message: "expected a non-empty object of conditions"},
		{name: "depth at the limit", where: nested(10)},
		{name: "depth over the limit", where: nested(11), location: "body.where" + strings.Repeat(".not", 11), message: "nested deeper than 10 levels"},
		{name: "conditions at the limit", where: many(99)},
		{name: "conditions over the limit", where: many(100), location: "body.where.and", message: "more than 100 conditions"},
		{name: "limit zero", limit: ptr(0), location: "body.limit", message: "must be between 1 and 1000"},
		{name: "limit negative", limit: ptr(-1), location: "body.limit", message: "must be between 1 and 1000"},
		{name: "limit over", limit: ptr(1001), location: "body.limit", message: "must be between 1 and 1000"},
		{name: "limit one", limit: ptr(1)},
		{name: "limit max", limit: ptr(1000)},
		{name: "order unknown", orderBy: []sqlbuild.OrderBy{{Field: "nope"}}, location: "body.orderBy[0].field", message: `unknown field "nope"`},
		{name: "order hostile", orderBy: []sqlbuild.OrderBy{{Field: `i"; DROP TABLE x; --`}}, location: "body.orderBy[0].field", message: "unknown field"},
		{name: "order not sortable", orderBy: []sqlbuild.OrderBy{{Field: "i"}, {Field: "t"}}, location: "body.orderBy[1].field", message: `field "t" is not sortable`},
		{name: "order json", orderBy: []sqlbuild.OrderBy{{Field: "j"}}, location: "body.orderBy[0].field", message: `field "j" is not sortable`},
		{name: "order twice", orderBy: []sqlbuild.OrderBy{{Field: "i"}, {Field: "i", Dir: "desc"}}, location: "body.orderBy[1].field", message: "sorted twice"},
		{name: "order bad dir", orderBy: []sqlbuild.OrderBy{{Field: "i", Dir: "up"}}, location: "body.orderBy[0].dir", message: `must be asc or desc, not "up"`},
		{name: "order bad dir hostile", orderBy: []sqlbuild.OrderBy{{Field: "i", Dir: "; DROP"}}, location: "body.orderBy[0].dir", message: "must be asc or desc"},
		{name: "order upper case", orderBy: []sqlbuild.OrderBy{{Field: "i", Dir: "DESC"}, {Field: "s", Dir: "Asc"}}},
		{name: "order system field", orderBy: []sqlbuild.OrderBy{{Field: "created_at", Dir: "desc"}, {Field: "id"}}},
	}
	for _, tt := range tests {
		page, errs := tbl.BuildQuery(query(tt.where, tt.orderBy, tt.limit, ""), "body")
		if tt.message == "" {
			require.Empty(t, errs, "BuildQuery(%q) got %q, want no errors", tt.name, errs)
			require.NotNil(t, page)
			continue
		}
		require.Nil(t, page, "BuildQuery(%q) built SQL for a bad query", tt.name)
		require.NotEmpty(t, errs, "BuildQuery(%q) got no errors, want %q", tt.name, tt.message)
		found := false
		for _, e := range errs {
			if e.Location == tt.location && strings.Contains(e.Message, tt.message) {
				found = true
			}
			require.NotContains(t, e.Message, "SELECT", "an error leaks SQL")
		}
		require.True(t, found, "BuildQuery(%q) got %q, want %s: %q", tt.name, errs, tt.location, tt.message)
	}
}

func TestBuildQueryCollectsEveryError(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	_, errs := tbl.BuildQuery(query(`{"hidden": {"eq": 1}, "i": {"eq": "x"}}`, []sqlbuild.OrderBy{{Field: "t"}}, ptr(0), "%%%"), "query")
	var locs []string
	for _, e := range errs {
		locs = append(locs, e.Location)
	}
	require.Equal(t, []string{"query.where.hidden", "query.where.i.eq", "query.limit", "query.orderBy[0].field", "query.cursor"}, locs)
}

func TestBuildQueryOrder(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	page, errs := tbl.BuildQuery(query("", []sqlbuild.OrderBy{{Field: "i", Dir: "desc"}, {Field: "s"}}, ptr(10), ""), "body")
	require.Empty(t, errs)
	order := ` ORDER BY v."i" DESC NULLS FIRST, v."s" ASC NULLS LAST, v."id" ASC NULLS LAST`
	require.Equal(t, `SELECT row_to_json(v) FROM `+view+` v WHERE v.id = ANY (ARRAY(SELECT v.id FROM `+view+` v`+order+` LIMIT $1::integer))`+order, page.Statement.SQL)
	require.Equal(t, []any{11}, page.Statement.Args)
	require.Equal(t, 10, page.Limit)

	// id given explicitly is the last key, and not added twice.
	page, errs = tbl.BuildQuery(query("", []sqlbuild.OrderBy{{Field: "id", Dir: "desc"}, {Field: "i"}}, nil, ""), "body")
	require.Empty(t, errs)
	order = ` ORDER BY v."id" DESC NULLS FIRST, v."i" ASC NULLS LAST`
	require.Equal(t, `SELECT row_to_json(v) FROM `+view+` v WHERE v.id = ANY (ARRAY(SELECT v.id FROM `+view+` v`+order+` LIMIT $1::integer))`+order, page.Statement.SQL)
	require.Equal(t, sqlbuild.DefaultLimit, page.Limit)
}

func TestBuildQueryDeterministic(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	a, errs := tbl.BuildQuery(query(`{"s": {"eq": "x"}, "i": {"lt": 9, "gt": 1}, "e": {"in": ["a"]}}`, nil, nil, ""), "body")
	require.Empty(t, errs)
	for range 20 {
		b, errs := tbl.BuildQuery(query(`{"e": {"in": ["a"]}, "i": {"gt": 1, "lt": 9}, "s": {"eq": "x"}}`, nil, nil, ""), "body")
		require.Empty(t, errs)
		require.Equal(t, a.Statement, b.Statement)
	}
}

func TestBuildQueryHugeExponent(t *testing.T) {
	t.Parallel()
	// 1e999999 is a valid JSON number and, written out, an integer; expanding a thousand of
	// them must not cost the server minutes.
	tbl := table(t)
	items := make([]string, 1000)
	for i := range items {
		items[i] = "1e999999"
	}
	_, errs := tbl.BuildQuery(query(`{"i": {"in": [`+strings.Join(items, ",")+`]}}`, nil, nil, ""), "body")
	require.Len(t, errs, sqlbuild.MaxErrors+1, "reported errors are capped")
	require.Contains(t, errs[0].Message, "out of range")

	_, cerrs := tbl.CheckRecord(map[string]json.RawMessage{"req": json.RawMessage(`"r"`), "i": json.RawMessage(`-1E-999999`)}, sqlbuild.ForCreate)
	require.Len(t, cerrs, 1)
}

// cursorFor builds a page and returns the cursor after row.
func cursorFor(t *testing.T, tbl *sqlbuild.Table, in sqlbuild.QueryInput, row string) string {
	t.Helper()
	page, errs := tbl.BuildQuery(in, "body")
	require.Empty(t, errs)
	c, err := page.NextCursor([]byte(row))
	require.NoError(t, err)
	return c
}

func TestCursor(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	const id = "123e4567-e89b-12d3-a456-426614174000"
	where := `{"e": {"eq": "a"}}`
	order := []sqlbuild.OrderBy{{Field: "i", Dir: "desc"}, {Field: "s"}}
	c := cursorFor(t, tbl, query(where, order, ptr(5), ""), `{"id": "`+id+`", "i": 7, "s": "x'y", "t": "ignored"}`)

	// Round trip: the next page starts after that row, in key order, values as parameters.
	page, errs := tbl.BuildQuery(query(where, order, ptr(5), c), "body")
	require.Empty(t, errs)
	require.Equal(t, `(v."e" = $1::text) AND ((v."i" < $2::text::bigint) OR (v."i" = $3::text::bigint AND (v."s" > $4::text OR v."s" IS NULL)) OR (v."i" = $5::text::bigint AND v."s" = $6::text AND (v."id" > $7::text::uuid OR v."id" IS NULL)))`,
		whereOf(page.Statement.SQL))
	require.Equal(t, []any{"a", "7", "7", "x'y", "7", "x'y", id, 6}, page.Statement.Args)
	requireParamsUsed(t, page.Statement)
	requireNoValuesInSQL(t, page.Statement, "x'y", id)

	// The limit is not part of the query's identity: a client may change the page size.
	_, errs = tbl.BuildQuery(query(where, order, ptr(50), c), "body")
	require.Empty(t, errs)

	// A cursor is only good for the query that made it.
	tampered := []struct {
		name  string
		in    sqlbuild.QueryInput
		error string
	}{
		{"where changed", query(`{"e": {"eq": "b"}}`, order, nil, c), "cursor belongs to a query with another where or orderBy"},
		{"where dropped", query("", order, nil, c), "cursor belongs to a query with another where or orderBy"},
		{"direction changed", query(where, []sqlbuild.OrderBy{{Field: "i"}, {Field: "s"}}, nil, c), "cursor belongs to a query with another where or orderBy"},
		{"keys swapped", query(where, []sqlbuild.OrderBy{{Field: "s"}, {Field: "i", Dir: "desc"}}, nil, c), "cursor belongs to a query with another where or orderBy"},
		{"key dropped", query(where, order[:1], nil, c), "malformed cursor"},
		{"garbage", query(where, order, nil, "!!!not a cursor!!!"), "malformed cursor"},
		{"not json", query(where, order, nil, base64.RawURLEncoding.EncodeToString([]byte("hello"))), "malformed cursor"},
		{"padded base64", query(where, order, nil, base64.URLEncoding.EncodeToString([]byte(`{"v":[]}`))), "malformed cursor"},
		{"too long", query(where, order, nil, strings.Repeat("A", 100*1024)), "malformed cursor"},
	}
	for _, tt := range tampered {
		page, errs := tbl.BuildQuery(tt.in, "body")
		require.Nil(t, page, tt.name)
		require.Equal(t, sqlbuild.Errors{{Location: "body.cursor", Message: tt.error}}, errs, "cursor %s", tt.name)
	}

	// A forged cursor with the right signature but hostile values is still only parameters,
	// checked against the key types.
	raw, err := base64.RawURLEncoding.DecodeString(c)
	require.NoError(t, err)
	var forged struct {
		V []json.RawMessage `json:"v"`
		S string            `json:"s"`
	}
	require.NoError(t, json.Unmarshal(raw, &forged))
	forge := func(values ...string) string {
		f := forged
		f.V = nil
		for _, v := range values {
			f.V = append(f.V, json.RawMessage(v))
		}
		b, err := json.Marshal(f)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	page, errs = tbl.BuildQuery(query(where, order, nil, forge(`1`, `"';--"`, `"`+id+`"`)), "body")
	require.Empty(t, errs)
	requireNoValuesInSQL(t, page.Statement, "';--")
	require.Contains(t, page.Statement.Args, "';--")
	for _, bad := range [][]string{
		{`"seven"`, `"x"`, `"` + id + `"`}, // an integer key given a string
		{`7`, `"x"`, `"not-a-uuid"`},
		{`7`, `"x"`},                      // too few values
		{`7`, `"x"`, `"` + id + `"`, `1`}, // too many
		{`7`, `"x"`, `{"a": 1}`},
	} {
		_, errs := tbl.BuildQuery(query(where, order, nil, forge(bad...)), "body")
		require.Equal(t, sqlbuild.Errors{{Location: "body.cursor", Message: "malformed cursor"}}, errs, "forged %v", bad)
	}
}

func TestCursorNulls(t *testing.T) {
	t.Parallel()
	tbl := table(t)
	const id = "123e4567-e89b-12d3-a456-426614174000"
	tests := []struct {
		name  string
		order []sqlbuild.OrderBy
		row   string
		want  string
	}{
		{
			// Ascending sorts NULLs last: after a NULL only NULLs with a greater id remain.
			name: "asc null", order: []sqlbuild.OrderBy{{Field: "i"}}, row: `{"id": "` + id + `", "i": null}`,
			want: `((v."i" IS NULL AND (v."id" > $1::text::uuid OR v."id" IS NULL)))`,
		},
		{
			name: "asc value", order: []sqlbuild.OrderBy{{Field: "i"}}, row: `{"id": "` + id + `", "i": 3}`,
			want: `(((v."i" > $1::text::bigint OR v."i" IS NULL)) OR (v."i" = $2::text::bigint AND (v."id" > $3::text::uuid OR v."id" IS NULL)))`,
		},
		{
			// Descending sorts NULLs first: after a NULL come every non-NULL.
			name: "desc null", order: []sqlbuild.OrderBy{{Field: "i", Dir: "desc"}}, row: `{"id": "` + id + `"}`,
			want: `((v."i" IS NOT NULL) OR (v."i" IS NULL AND (v."id" > $1::text::uuid OR v."id" IS NULL)))`,
		},
		{
			name: "desc value", order: []sqlbuild.OrderBy{{Field: "i", Dir: "desc"}}, row: `{"id": "` + id + `", "i": 3}`,
			want: `((v."i" < $1::text::bigint) OR (v."i" = $2::text::bigint AND (v."id" > $3::text::uuid OR v."id" IS NULL)))`,
		},
		{
			// A NULL in a later ascending key adds no condition of its own, and so must not
			// leave the parameters of its equalities behind.
			name: "desc value, asc null", order: []sqlbuild.OrderBy{{Field: "i", Dir: "desc"}, {Field: "ts"}},
			row:  `{"id": "` + id + `", "i": 3, "ts": null}`,
			want: `((v."i" < $1::text::bigint) OR (v."i" = $2::text::bigint AND v."ts" IS NULL AND (v."id" > $3::text::uuid OR v."id" IS NULL)))`,
		},
		{
			// Only the id is left, and id is never NULL: nothing after the last id.
			name: "id desc", order: []sqlbuild.OrderBy{{Field: "id", Dir: "desc"}}, row: `{"id": "` + id + `"}`,
			want: `((v."id" < $1::text::uuid))`,
		},
	}
	for _, tt := range tests {
		c := cursorFor(t, tbl, query("", tt.order, nil, ""), tt.row)
		page, errs := tbl.BuildQuery(query("", tt.order, nil, c), "body")
		require.Empty(t, errs, tt.name)
		got := whereOf(page.Statement.SQL)
		require.Equal(t, tt.want, got, "cursor %s got %q, want %q", tt.name, got, tt.want)
		requireParamsUsed(t, page.Statement)
	}

	page, errs := tbl.BuildQuery(query("", nil, nil, ""), "body")
	require.Empty(t, errs)
	_, err := page.NextCursor([]byte("not json"))
	require.Error(t, err)
}
