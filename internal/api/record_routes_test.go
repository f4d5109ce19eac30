package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

func TestRecordLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	res := e.apply("testdata/orders.yaml")
	require.Equal(t, "applied", res["status"])

	// Create: 201, Location, ETag, system fields made by Postgres, defaults applied.
	r := e.do("POST", ordersPath, e.admin, map[string]any{
		"customer_email": "ann@example.com", "total": "12.50", "quantity": 3, "gift": true,
		"ship_at": "2026-11-28T10:00:00Z", "due": "2026-12-01", "meta": map[string]any{"a": 1, "b": map[string]any{"c": 2}},
		"note": "Robert'); DROP TABLE acme__shop.sales__orders;--",
	})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	rec := r.json(t)
	id := rec["id"].(string)
	require.Equal(t, ordersPath+"/"+id, r.header.Get("Location"))
	require.Equal(t, `"1"`, r.header.Get("ETag"))
	require.EqualValues(t, 1, rec["version"])
	require.Equal(t, "pending", rec["status"])
	require.EqualValues(t, 12.5, rec["total"])
	require.Contains(t, rec["created_by"], "apikey:")
	require.Equal(t, "Robert'); DROP TABLE acme__shop.sales__orders;--", rec["note"], "SQL-looking values are stored verbatim")

	// The row is in Postgres as sent.
	var note string
	var total string
	require.NoError(t, e.super.QueryRow(context.Background(),
		`SELECT note, total::text FROM acme__shop.sales__orders WHERE id = $1`, id).Scan(&note, &total))
	require.Equal(t, "12.50", total)

	// Read.
	r = e.do("GET", ordersPath+"/"+id, e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, `"1"`, r.header.Get("ETag"))

	// Patch with If-Match: merge patch, json fields merged, null clears.
	r = e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{
		"status": "paid", "meta": map[string]any{"b": map[string]any{"c": nil, "d": 4}}, "note": nil,
	}, "If-Match", `"1"`)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	rec = r.json(t)
	require.EqualValues(t, 2, rec["version"])
	require.Equal(t, "paid", rec["status"])
	require.Equal(t, map[string]any{"a": float64(1), "b": map[string]any{"d": float64(4)}}, rec["meta"])
	require.Nil(t, rec["note"])
	require.Equal(t, `"2"`, r.header.Get("ETag"))

	// A stale If-Match is 412 and changes nothing.
	r = e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"status": "shipped"}, "If-Match", "1")
	p := requireProblem(t, r, http.StatusPreconditionFailed)
	require.Equal(t, []string{"header.If-Match"}, locations(p))
	r = e.do("GET", ordersPath+"/"+id, e.admin, nil)
	require.Equal(t, "paid", r.json(t)["status"])

	// If-Match: * matches any current version.
	r = e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"status": "paid"}, "If-Match", "*")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	// A patch that changes nothing keeps the version.
	r = e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"status": "paid"})
	require.Equal(t, http.StatusOK, r.status)
	require.EqualValues(t, 2, r.json(t)["version"])

	// Unique violation is a 409 naming the field.
	r = e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "ann@example.com"})
	p = requireProblem(t, r, http.StatusConflict)
	require.Equal(t, []string{"body.customer_email"}, locations(p))

	// Delete with a stale If-Match is 412; then delete; then 404.
	r = e.do("DELETE", ordersPath+"/"+id, e.admin, nil, "If-Match", "1")
	requireProblem(t, r, http.StatusPreconditionFailed)
	r = e.do("DELETE", ordersPath+"/"+id, e.admin, nil, "If-Match", "2")
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	requireProblem(t, e.do("GET", ordersPath+"/"+id, e.admin, nil), http.StatusNotFound)
	requireProblem(t, e.do("DELETE", ordersPath+"/"+id, e.admin, nil), http.StatusNotFound)
	requireProblem(t, e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{}), http.StatusNotFound)
}

func TestListAndQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	for i := 0; i < 25; i++ {
		region := []string{"eu", "us", "apac"}[i%3]
		r := e.do("POST", ordersPath, e.admin, map[string]any{
			"customer_email": fmt.Sprintf("c%02d@example.com", i), "region": region, "quantity": i % 7,
			"total": fmt.Sprintf("%d.25", i), "status": []string{"pending", "paid", "shipped"}[i%3],
		})
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	}

	// List pages through everything with the cursor, in creation order.
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		path := ordersPath + "?limit=10"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.do("GET", path, e.admin, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		body := r.json(t)
		for _, it := range body["items"].([]any) {
			seen = append(seen, it.(map[string]any)["customer_email"].(string))
		}
		if body["next_cursor"] == nil {
			break
		}
		cursor = body["next_cursor"].(string)
	}
	require.Len(t, seen, 25)
	for i, email := range seen {
		require.Equal(t, fmt.Sprintf("c%02d@example.com", i), email)
	}

	// Equality filters from the query string, typed per field.
	r := e.do("GET", ordersPath+"?region=eu&quantity=3", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	items := r.json(t)["items"].([]any)
	require.Len(t, items, 2)
	require.Equal(t, "c03@example.com", items[0].(map[string]any)["customer_email"])
	require.Equal(t, "c24@example.com", items[1].(map[string]any)["customer_email"])

	// where + orderBy + limit + cursor.
	q := map[string]any{
		"where": map[string]any{"and": []any{
			map[string]any{"status": map[string]any{"in": []string{"paid", "shipped"}}},
			map[string]any{"or": []any{
				map[string]any{"total": map[string]any{"gte": 10}},
				map[string]any{"region": map[string]any{"contains": "AP"}},
			}},
			map[string]any{"not": map[string]any{"quantity": map[string]any{"eq": 0}}},
		}},
		"orderBy": []any{map[string]any{"field": "quantity", "dir": "desc"}, map[string]any{"field": "total"}},
		"limit":   4,
	}
	var got []string
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		r := e.do("POST", ordersPath+"/query", e.admin, q)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		body := r.json(t)
		for _, it := range body["items"].([]any) {
			got = append(got, it.(map[string]any)["customer_email"].(string))
		}
		if body["next_cursor"] == nil {
			break
		}
		q["cursor"] = body["next_cursor"]
	}
	// The same query straight in SQL, as the oracle.
	rows, err := e.super.Query(context.Background(), `SELECT customer_email FROM acme__shop.sales__orders
		WHERE status IN ('paid','shipped') AND (total >= 10 OR region ILIKE '%AP%') AND NOT quantity = 0
		ORDER BY quantity DESC NULLS FIRST, total ASC NULLS LAST, id`)
	require.NoError(t, err)
	var want []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		want = append(want, s)
	}
	require.NotEmpty(t, want)
	require.Equal(t, want, got)

	// A cursor from one query does not fit another.
	q["where"] = map[string]any{"region": map[string]any{"eq": "eu"}}
	q["cursor"] = r.json(t)["next_cursor"]
	first := e.do("POST", ordersPath+"/query", e.admin, map[string]any{"limit": 1})
	q["cursor"] = first.json(t)["next_cursor"]
	p := requireProblem(t, e.do("POST", ordersPath+"/query", e.admin, q), http.StatusBadRequest)
	require.Equal(t, []string{"body.cursor"}, locations(p))
}

func TestBadRecordInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{MaxBodyBytes: 4096})
	e.apply("testdata/orders.yaml")
	count := func() int {
		var n int
		require.NoError(t, e.super.QueryRow(context.Background(), `SELECT count(*) FROM acme__shop.sales__orders`).Scan(&n))
		return n
	}

	cases := []struct {
		name   string
		body   any
		status int
		locs   []string
	}{
		{"malformed JSON", `{"customer_email": "a@b.c"`, 400, []string{"body"}},
		{"not an object", `[1,2]`, 400, []string{"body"}},
		{"trailing data", `{"customer_email": "a@b.c"} {}`, 400, []string{"body"}},
		{"empty body", ``, 400, nil},
		{"wrong types", map[string]any{"customer_email": 5, "quantity": "three", "total": "1,5", "gift": "yes",
			"ship_at": "yesterday", "due": "2026-13-01", "ref": "not-a-uuid"}, 422,
			[]string{"body.customer_email", "body.due", "body.gift", "body.quantity", "body.ref", "body.ship_at", "body.total"}},
		{"fractional integer", map[string]any{"customer_email": "a@b.c", "quantity": 1.5}, 422, []string{"body.quantity"}},
		{"integer out of range", `{"customer_email": "a@b.c", "quantity": 99999999999999999999}`, 422, []string{"body.quantity"}},
		{"unknown field", map[string]any{"customer_email": "a@b.c", "colour": "red"}, 422, []string{"body.colour"}},
		{"SQL in a field name", map[string]any{"customer_email": "a@b.c", "x\"; DROP TABLE y; --": 1}, 422, []string{`body.x"; DROP TABLE y; --`}},
		{"system field", map[string]any{"customer_email": "a@b.c", "version": 7}, 422, []string{"body.version"}},
		{"missing required", map[string]any{"region": "eu"}, 422, []string{"body.customer_email"}},
		{"required null", map[string]any{"customer_email": nil}, 422, []string{"body.customer_email"}},
		{"enum violation", map[string]any{"customer_email": "a@b.c", "status": "refunded"}, 422, []string{"body.status"}},
		{"oversize string", map[string]any{"customer_email": strings.Repeat("x", 33)}, 422, []string{"body.customer_email"}},
		{"NUL character", map[string]any{"customer_email": "a\u0000b"}, 422, []string{"body.customer_email"}},
		{"oversize body", map[string]any{"customer_email": "a@b.c", "note": strings.Repeat("x", 5000)}, 413, nil},
	}
	for _, c := range cases {
		r := e.do("POST", ordersPath, e.admin, c.body)
		p := requireProblem(t, r, c.status)
		if c.locs != nil {
			require.Equal(t, c.locs, locations(p), c.name)
		}
	}
	require.Equal(t, 0, count(), "bad input changed nothing")

	// A multibyte string is counted in characters, not bytes.
	r := e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": strings.Repeat("é", 32)})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)

	// Bad ids, bad If-Match, bad patches.
	p := requireProblem(t, e.do("GET", ordersPath+"/1%20OR%201=1", e.admin, nil), http.StatusBadRequest)
	require.Equal(t, []string{"path.id"}, locations(p))
	p = requireProblem(t, e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"status": "x"}, "If-Match", "abc"), http.StatusBadRequest)
	require.Equal(t, []string{"header.If-Match"}, locations(p))
	p = requireProblem(t, e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"id": id}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.id"}, locations(p))
	p = requireProblem(t, e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"customer_email": nil}), http.StatusUnprocessableEntity)
	require.Equal(t, []string{"body.customer_email"}, locations(p))
	require.Equal(t, 1, count())

	// Bad queries: each names the field.
	qcases := []struct {
		body   any
		status int
		locs   []string
	}{
		{map[string]any{"where": map[string]any{"note": map[string]any{"eq": "x"}}}, 400, []string{"body.where.note"}},
		{map[string]any{"where": map[string]any{"region": map[string]any{"like": "x"}}}, 400, []string{"body.where.region.like"}},
		{map[string]any{"where": map[string]any{"region); DROP TABLE x; --": map[string]any{"eq": "x"}}}, 400, []string{"body.where.region); DROP TABLE x; --"}},
		{map[string]any{"where": map[string]any{"quantity": map[string]any{"gt": "many"}}}, 400, []string{"body.where.quantity.gt"}},
		{map[string]any{"where": map[string]any{"region": "eu"}}, 400, []string{"body.where.region"}},
		{map[string]any{"where": map[string]any{"region": map[string]any{"eq": nil}}}, 400, []string{"body.where.region.eq"}},
		{map[string]any{"orderBy": []any{map[string]any{"field": "region"}}}, 400, []string{"body.orderBy[0].field"}},
		{map[string]any{"orderBy": []any{map[string]any{"field": "total", "dir": "sideways"}}}, 400, []string{"body.orderBy[0].dir"}},
		{map[string]any{"limit": 1001}, 400, []string{"body.limit"}},
		{map[string]any{"cursor": "garbage!"}, 400, []string{"body.cursor"}},
		{map[string]any{"select": "*"}, 400, []string{"body"}},
		{`{"where": `, 400, []string{"body"}},
	}
	for i, c := range qcases {
		p := requireProblem(t, e.do("POST", ordersPath+"/query", e.admin, c.body), c.status)
		require.Equal(t, c.locs, locations(p), "query case %d", i)
	}
	// An injection attempt in a filter value is only a value.
	r = e.do("POST", ordersPath+"/query", e.admin, map[string]any{"where": map[string]any{"region": map[string]any{"eq": "x' OR '1'='1"}}})
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, r.json(t)["items"])
	p = requireProblem(t, e.do("GET", ordersPath+"?colour=red&note=x", e.admin, nil), http.StatusBadRequest)
	require.Equal(t, []string{"query.colour", "query.note"}, locations(p))
	p = requireProblem(t, e.do("GET", ordersPath+"?limit=5000", e.admin, nil), http.StatusBadRequest)
	require.Equal(t, []string{"query.limit"}, locations(p))
	require.Equal(t, 1, count())
}

// TestServerErrorsLeakNothing: when something unexpected breaks, the client gets a plain
// 500 and the cause goes to the log only.
func TestServerErrorsLeakNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	_, err := e.super.Exec(context.Background(), `DROP TABLE acme__shop.sales__orders CASCADE`)
	require.NoError(t, err)
	for _, r := range []response{
		e.do("GET", ordersPath, e.admin, nil),
		e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "x@example.com"}),
	} {
		p := requireProblem(t, r, http.StatusInternalServerError)
		require.Empty(t, p["errors"])
		for _, leak := range []string{"sales__orders", "relation", "does not exist", "42P01"} {
			require.NotContains(t, string(r.body), leak)
		}
	}
}
