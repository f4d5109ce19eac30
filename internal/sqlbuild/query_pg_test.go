package sqlbuild_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// scoreRow is one generated record; nil fields are NULL.
type scoreRow struct {
	id     string
	score  *int64
	name   *string
	at     *time.Time
	amount *string
	grp    string
	label  string
}

// scoresEnv is a database with the scores schema applied and 250 rows with NULLs and
// duplicates in every sortable field.
type scoresEnv struct {
	st    *store.Store
	tbl   *sqlbuild.Table
	rows  []scoreRow
	super *pgxpool.Pool
}

func newScoresEnv(t *testing.T) *scoresEnv {
	t.Helper()
	ctx := context.Background()
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "scores"},
		Spec: schemadef.Spec{
			Org: "acme", App: "lab", Domain: "game", Object: "scores", Version: 1,
			Fields: []schemadef.Field{
				{Name: "score", Type: schemadef.TypeInteger, Filterable: true, Sortable: true},
				{Name: "name", Type: schemadef.TypeString, Filterable: true, Sortable: true},
				{Name: "at", Type: schemadef.TypeTimestamp, Filterable: true, Sortable: true},
				{Name: "amount", Type: schemadef.TypeDecimal, Filterable: true, Sortable: true},
				{Name: "grp", Type: schemadef.TypeEnum, Values: []string{"x", "y"}, Required: true, Filterable: true},
				{Name: "label", Type: schemadef.TypeText, Filterable: true},
			},
			Access: schemadef.Access{Roles: map[string][]string{"admin": {"read", "create"}}},
		},
	}
	def.Normalize()
	require.NoError(t, def.Validate())

	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)

	base := time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC)
	labels := []string{"50% off", "50_off", `back\slash`, "plain", "PLAIN deal", "it's"}
	rows := make([]scoreRow, 250)
	var ids, grps, labelCol []string
	var scores []*int64
	var names, amounts []*string
	var ats []*time.Time
	for i := range rows {
		r := scoreRow{id: uuid.NewString(), grp: []string{"x", "y"}[i%2], label: labels[i%len(labels)]}
		if i%7 != 0 {
			r.score = ptr(int64((i * 37) % 20)) // 20 distinct values, each many times
		}
		if i%11 != 0 {
			r.name = ptr(fmt.Sprintf("n%02d", (i*13)%30))
		}
		if i%5 != 0 {
			r.at = ptr(base.Add(time.Duration(i%40) * time.Minute))
		}
		if i%9 != 0 {
			r.amount = ptr(fmt.Sprintf("%d.%02d", (i*7)%13, (i*3)%4*25))
		}
		rows[i] = r
		ids, grps, labelCol = append(ids, r.id), append(grps, r.grp), append(labelCol, r.label)
		scores, names, ats, amounts = append(scores, r.score), append(names, r.name), append(ats, r.at), append(amounts, r.amount)
	}
	super := db.Super(t)
	_, err = super.Exec(ctx, `INSERT INTO acme__lab.game__scores (id, score, name, at, amount, grp, label)
		SELECT * FROM unnest($1::text[]::uuid[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[]::numeric[], $6::text[], $7::text[])`,
		ids, scores, names, ats, amounts, grps, labelCol)
	require.NoError(t, err)
	return &scoresEnv{st: st, tbl: sqlbuild.NewTable(def.Spec), rows: rows, super: super}
}

var scoresAdmin = store.Request{Actor: store.Actor{ID: "user:admin", Kind: "subject", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}

// page runs one built query and returns its rows as JSON.
func (e *scoresEnv) page(t *testing.T, in sqlbuild.QueryInput) (*sqlbuild.Page, [][]byte) {
	t.Helper()
	pg, errs := e.tbl.BuildQuery(in, "body")
	require.Empty(t, errs)
	var out [][]byte
	err := e.st.InRequest(context.Background(), scoresAdmin, []store.Statement{{SQL: pg.Statement.SQL, Args: pg.Statement.Args}},
		func(_ int, rows pgx.Rows) error {
			var err error
			out, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
			return err
		})
	require.NoError(t, err)
	return pg, out
}

// all pages through a query with the given page size and returns the ids in order.
func (e *scoresEnv) all(t *testing.T, where string, order []sqlbuild.OrderBy, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 300, "pagination does not end")
		pg, rows := e.page(t, query(where, order, &limit, cursor))
		require.LessOrEqual(t, len(rows), limit+1)
		more := len(rows) > limit
		if more {
			rows = rows[:limit]
		}
		for _, r := range rows {
			var rec struct {
				ID string `json:"id"`
			}
			require.NoError(t, json.Unmarshal(r, &rec))
			ids = append(ids, rec.ID)
		}
		if !more {
			return ids
		}
		var err error
		cursor, err = pg.NextCursor(rows[len(rows)-1])
		require.NoError(t, err)
	}
}

// compareNullable orders a and b ascending with NULLs last, or descending with NULLs first,
// as the builder's ORDER BY does.
func compareNullable[T any](a, b *T, desc bool, cmpFn func(a, b T) int) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1 - 2*boolInt(desc) // last ascending, first descending
	case b == nil:
		return -1 + 2*boolInt(desc)
	}
	c := cmpFn(*a, *b)
	if desc {
		return -c
	}
	return c
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func decimalCmp(a, b string) int {
	x, _ := new(big.Rat).SetString(a)
	y, _ := new(big.Rat).SetString(b)
	return x.Cmp(y)
}

// expected orders rows in Go, independently of Postgres: each key, then id ascending.
func expected(rows []scoreRow, keep func(scoreRow) bool, keys ...func(a, b scoreRow) int) []string {
	var sel []scoreRow
	for _, r := range rows {
		if keep == nil || keep(r) {
			sel = append(sel, r)
		}
	}
	slices.SortFunc(sel, func(a, b scoreRow) int {
		for _, k := range keys {
			if c := k(a, b); c != 0 {
				return c
			}
		}
		return strings.Compare(a.id, b.id)
	})
	ids := make([]string, len(sel))
	for i, r := range sel {
		ids[i] = r.id
	}
	return ids
}

func byScore(desc bool) func(a, b scoreRow) int {
	return func(a, b scoreRow) int { return compareNullable(a.score, b.score, desc, cmp.Compare[int64]) }
}

func byAt(desc bool) func(a, b scoreRow) int {
	return func(a, b scoreRow) int {
		return compareNullable(a.at, b.at, desc, func(x, y time.Time) int { return x.Compare(y) })
	}
}

func byAmount(desc bool) func(a, b scoreRow) int {
	return func(a, b scoreRow) int { return compareNullable(a.amount, b.amount, desc, decimalCmp) }
}

func TestPaginationOnPostgres(t *testing.T) {
	t.Parallel()
	e := newScoresEnv(t)
	isX := func(r scoreRow) bool { return r.grp == "x" }
	tests := []struct {
		name  string
		where string
		order []sqlbuild.OrderBy
		limit int
		want  []string
	}{
		{"score asc", "", []sqlbuild.OrderBy{{Field: "score"}}, 7, expected(e.rows, nil, byScore(false))},
		{"score desc", "", []sqlbuild.OrderBy{{Field: "score", Dir: "desc"}}, 7, expected(e.rows, nil, byScore(true))},
		{"at asc", "", []sqlbuild.OrderBy{{Field: "at"}}, 10, expected(e.rows, nil, byAt(false))},
		{"at desc", "", []sqlbuild.OrderBy{{Field: "at", Dir: "desc"}}, 10, expected(e.rows, nil, byAt(true))},
		{"amount asc", "", []sqlbuild.OrderBy{{Field: "amount"}}, 9, expected(e.rows, nil, byAmount(false))},
		{"amount desc", "", []sqlbuild.OrderBy{{Field: "amount", Dir: "desc"}}, 9, expected(e.rows, nil, byAmount(true))},
		{"score desc, at asc", "", []sqlbuild.OrderBy{{Field: "score", Dir: "desc"}, {Field: "at"}}, 6, expected(e.rows, nil, byScore(true), byAt(false))},
		{"at asc, amount desc", "", []sqlbuild.OrderBy{{Field: "at"}, {Field: "amount", Dir: "desc"}}, 11, expected(e.rows, nil, byAt(false), byAmount(true))},
		{"filtered, score asc", `{"grp": {"eq": "x"}}`, []sqlbuild.OrderBy{{Field: "score"}}, 8, expected(e.rows, isX, byScore(false))},
		{"default order", "", nil, 50, expected(e.rows, nil)},
		{"one page", "", []sqlbuild.OrderBy{{Field: "score", Dir: "desc"}}, 1000, expected(e.rows, nil, byScore(true))},
		{"exact pages", "", []sqlbuild.OrderBy{{Field: "score"}}, 25, expected(e.rows, nil, byScore(false))},
	}
	for _, tt := range tests {
		got := e.all(t, tt.where, tt.order, tt.limit)
		require.Equal(t, len(tt.want), len(got), "%s: rows", tt.name)
		require.Equal(t, tt.want, got, "%s: pages do not concatenate to the ordered set", tt.name)
	}

	// Strings sort by the database's collation; the pages must concatenate to Postgres's own
	// full ordering, which has NULLs and duplicates too.
	for _, dir := range []string{"asc", "desc"} {
		nulls := map[string]string{"asc": "NULLS LAST", "desc": "NULLS FIRST"}[dir]
		rows, err := e.super.Query(context.Background(), `SELECT id::text FROM acme__lab.game__scores ORDER BY name `+dir+` `+nulls+`, id`)
		require.NoError(t, err)
		want, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		got := e.all(t, "", []sqlbuild.OrderBy{{Field: "name", Dir: dir}}, 7)
		require.Equal(t, want, got, "name %s", dir)
		got = e.all(t, "", []sqlbuild.OrderBy{{Field: "name", Dir: dir}, {Field: "score", Dir: dir}}, 13)
		require.Len(t, got, 250)
		require.Len(t, uniq(got), 250, "name, score %s: duplicates across pages", dir)
	}
}

func uniq(ids []string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func TestOperatorsOnPostgres(t *testing.T) {
	t.Parallel()
	// Each operator's SQL runs on Postgres and selects exactly the rows Go says it should.
	e := newScoresEnv(t)
	base := time.Date(2024, 1, 31, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		where string
		keep  func(r scoreRow) bool
	}{
		{`{"score": {"eq": 3}}`, func(r scoreRow) bool { return r.score != nil && *r.score == 3 }},
		{`{"score": {"ne": 3}}`, func(r scoreRow) bool { return r.score == nil || *r.score != 3 }},
		{`{"score": {"lt": 5}}`, func(r scoreRow) bool { return r.score != nil && *r.score < 5 }},
		{`{"score": {"lte": 5, "gt": 2}}`, func(r scoreRow) bool { return r.score != nil && *r.score <= 5 && *r.score > 2 }},
		{`{"score": {"gte": 18}}`, func(r scoreRow) bool { return r.score != nil && *r.score >= 18 }},
		{`{"score": {"in": [1, 2, 3]}}`, func(r scoreRow) bool { return r.score != nil && *r.score >= 1 && *r.score <= 3 }},
		{`{"score": {"nin": [1, 2, 3]}}`, func(r scoreRow) bool { return r.score == nil || *r.score < 1 || *r.score > 3 }},
		{`{"score": {"in": []}}`, func(r scoreRow) bool { return false }},
		{`{"score": {"isNull": true}}`, func(r scoreRow) bool { return r.score == nil }},
		{`{"score": {"isNull": false}}`, func(r scoreRow) bool { return r.score != nil }},
		{`{"amount": {"gt": "5.5"}}`, func(r scoreRow) bool { return r.amount != nil && decimalCmp(*r.amount, "5.5") > 0 }},
		{`{"amount": {"eq": 5.50}}`, func(r scoreRow) bool { return r.amount != nil && decimalCmp(*r.amount, "5.5") == 0 }},
		{`{"at": {"gte": "2024-01-31T12:20:00Z"}}`, func(r scoreRow) bool { return r.at != nil && !r.at.Before(base.Add(20*time.Minute)) }},
		// The same instant in another zone.
		{`{"at": {"lt": "2024-01-31T14:10:00+02:00"}}`, func(r scoreRow) bool { return r.at != nil && r.at.Before(base.Add(10*time.Minute)) }},
		{`{"name": {"eq": "n03"}}`, func(r scoreRow) bool { return r.name != nil && *r.name == "n03" }},
		{`{"grp": {"in": ["y"]}}`, func(r scoreRow) bool { return r.grp == "y" }},
		// contains is a case-insensitive substring; %, _ and \ are literal.
		{`{"label": {"contains": "50%"}}`, func(r scoreRow) bool { return r.label == "50% off" }},
		{`{"label": {"contains": "0_o"}}`, func(r scoreRow) bool { return r.label == "50_off" }},
		{`{"label": {"contains": "k\\s"}}`, func(r scoreRow) bool { return r.label == `back\slash` }},
		{`{"label": {"contains": "plain"}}`, func(r scoreRow) bool { return strings.Contains(strings.ToLower(r.label), "plain") }},
		{`{"label": {"contains": "'s"}}`, func(r scoreRow) bool { return r.label == "it's" }},
		{`{"and": [{"grp": {"eq": "x"}}, {"score": {"gt": 10}}]}`, func(r scoreRow) bool { return r.grp == "x" && r.score != nil && *r.score > 10 }},
		{`{"or": [{"score": {"isNull": true}}, {"name": {"isNull": true}}]}`, func(r scoreRow) bool { return r.score == nil || r.name == nil }},
		{`{"not": {"grp": {"eq": "x"}}}`, func(r scoreRow) bool { return r.grp != "x" }},
		{`{"not": {"or": [{"score": {"lt": 10}}, {"score": {"isNull": true}}]}}`, func(r scoreRow) bool { return r.score != nil && *r.score >= 10 }},
		{`{"id": {"eq": "` + e.rows[17].id + `"}}`, func(r scoreRow) bool { return r.id == e.rows[17].id }},
	}
	for _, tt := range tests {
		got := e.all(t, tt.where, nil, 1000)
		want := expected(e.rows, tt.keep)
		if len(want) == 0 {
			require.Empty(t, got, "where %s", tt.where)
			continue
		}
		require.Equal(t, want, got, "where %s", tt.where)
	}
}
