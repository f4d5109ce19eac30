package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
)

// snapshotFixture is the orders object with a history around time at:
//
//	a: created before at, changed after it     -> at: as created; now: changed
//	b: created and deleted before at           -> absent from both
//	c: created after at                        -> now only
//	d: created before at with only its required field (nulls elsewhere)
//	e: created before at, deleted after it     -> at only
//	f: created and changed before at           -> at: as changed
//
// asOfAt holds each record present at `at` as the API returned it then; present now is
// filled by now() from GET.
type snapshotFixture struct {
	at     time.Time
	ids    map[string]string
	asOfAt map[string]map[string]any
}

func newSnapshotFixture(t *testing.T, e *env) *snapshotFixture {
	t.Helper()
	f := &snapshotFixture{ids: map[string]string{}, asOfAt: map[string]map[string]any{}}
	create := func(name string, body map[string]any) map[string]any {
		r := e.do("POST", ordersPath, e.admin, body)
		require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
		rec := r.json(t)
		f.ids[name] = rec["id"].(string)
		return rec
	}
	patch := func(name string, body map[string]any) map[string]any {
		r := e.do("PATCH", ordersPath+"/"+f.ids[name], e.admin, body)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		return r.json(t)
	}
	del := func(name string) {
		r := e.do("DELETE", ordersPath+"/"+f.ids[name], e.admin, nil)
		require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	}
	f.asOfAt["a"] = create("a", map[string]any{
		"customer_email": "a@example.com", "total": "12.50", "quantity": 3, "gift": true, "region": "eu",
		"ship_at": "2026-11-28T10:00:00.25Z", "due": "2026-12-01", "ref": "0b5e7a2c-8f0e-4a51-9a57-3f1a2b3c4d5e",
		"meta": map[string]any{"a": 1, "tags": []string{"x"}}, "note": "line one\nline \"two\"",
	})
	create("b", map[string]any{"customer_email": "b@example.com"})
	del("b")
	f.asOfAt["d"] = create("d", map[string]any{"customer_email": "d@example.com"})
	f.asOfAt["e"] = create("e", map[string]any{"customer_email": "e@example.com", "quantity": -7, "gift": false})
	create("f", map[string]any{"customer_email": "f@example.com", "total": 1})
	f.asOfAt["f"] = patch("f", map[string]any{"total": "99.99", "status": "shipped"})

	// Each event's time is its transaction's start (a delete's, the clock at the delete):
	// every later request starts after this.
	require.NoError(t, e.super.QueryRow(context.Background(), "SELECT clock_timestamp()").Scan(&f.at))

	create("c", map[string]any{"customer_email": "c@example.com", "quantity": 1})
	patch("a", map[string]any{"status": "paid", "quantity": 4, "note": nil})
	del("e")
	return f
}

// now reads every record present now through GET P/{id}, by fixture name.
func (f *snapshotFixture) now(t *testing.T, e *env) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, name := range []string{"a", "c", "d", "f"} {
		r := e.do("GET", ordersPath+"/"+f.ids[name], e.admin, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		out[name] = r.json(t)
	}
	return out
}

func (f *snapshotFixture) atParam() string { return url.QueryEscape(f.at.Format(time.RFC3339Nano)) }

// byName keys snapshot records by fixture name; a record not in the fixture fails the test.
func (f *snapshotFixture) byName(t *testing.T, recs []map[string]any) map[string]map[string]any {
	t.Helper()
	names := map[string]string{}
	for n, id := range f.ids {
		names[id] = n
	}
	out := map[string]map[string]any{}
	for _, rec := range recs {
		n, ok := names[rec["id"].(string)]
		require.True(t, ok, "unknown record %v", rec["id"])
		require.NotContains(t, out, n, "record %s twice", n)
		out[n] = rec
	}
	return out
}

// ndjsonRecords splits an NDJSON body into its records.
func ndjsonRecords(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "line %q", sc.Text())
		out = append(out, rec)
	}
	require.NoError(t, sc.Err())
	if len(body) > 0 {
		require.Equal(t, byte('\n'), body[len(body)-1])
	}
	return out
}

func TestSnapshotNDJSON(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	f := newSnapshotFixture(t, e)

	r := e.do("GET", ordersPath+"/snapshot?at="+f.atParam(), e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "application/x-ndjson", r.header.Get("Content-Type"))
	require.Equal(t, `attachment; filename="acme.shop.sales.orders.ndjson"`, r.header.Get("Content-Disposition"))
	got := f.byName(t, ndjsonRecords(t, r.body))
	require.Equal(t, f.asOfAt, got, "as of at: a as created, d with its nulls, e not yet deleted, f as changed")
	require.Nil(t, got["d"]["total"])
	require.Equal(t, "line one\nline \"two\"", got["a"]["note"])

	// Default now, and format=ndjson said outright: the records as GET shows them.
	want := f.now(t, e)
	for _, path := range []string{"/snapshot", "/snapshot?format=ndjson"} {
		r = e.do("GET", ordersPath+path, e.admin, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		require.Equal(t, want, f.byName(t, ndjsonRecords(t, r.body)))
	}
	// Before anything existed: no records, no lines.
	r = e.do("GET", ordersPath+"/snapshot?at=2001-01-01T00:00:00Z", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "application/x-ndjson", r.header.Get("Content-Type"))
	require.Empty(t, r.body)
}

func TestSnapshotParquet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	f := newSnapshotFixture(t, e)

	r := e.do("GET", ordersPath+"/snapshot?format=parquet&at="+f.atParam(), e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "application/vnd.apache.parquet", r.header.Get("Content-Type"))
	require.Equal(t, `attachment; filename="acme.shop.sales.orders.parquet"`, r.header.Get("Content-Disposition"))

	// Read back with parquet-go, independent of the Arrow writer.
	file, err := parquet.OpenFile(bytes.NewReader(r.body), int64(len(r.body)))
	require.NoError(t, err)
	require.EqualValues(t, 4, file.NumRows())
	require.Equal(t, []string{
		"id STRING required", "version INT(32,true) required",
		"created_at TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) required",
		"updated_at TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) required",
		"created_by STRING required", "updated_by STRING required",
		"customer_email STRING optional", "status STRING optional", "region STRING optional",
		"total STRING optional", "quantity INT(64,true) optional", "gift BOOLEAN optional",
		"ship_at TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) optional", "due DATE optional",
		"ref STRING optional", "meta STRING optional", "note STRING optional",
	}, parquetSchema(file))
	v, ok := file.Lookup("velocity.object")
	require.True(t, ok)
	require.Equal(t, "acme.shop.sales.orders", v)

	got := f.byName(t, parquetRecords(t, file))
	require.Len(t, got, 4)
	micros := func(s any) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s.(string))
		require.NoError(t, err)
		return tm.UnixMicro()
	}
	for name, want := range f.asOfAt {
		rec := got[name]
		require.Equal(t, want["id"], rec["id"])
		require.EqualValues(t, want["version"], rec["version"])
		require.IsType(t, int32(0), rec["version"])
		require.Equal(t, micros(want["created_at"]), rec["created_at"], name)
		require.Equal(t, micros(want["updated_at"]), rec["updated_at"], name)
		require.Equal(t, want["created_by"], rec["created_by"])
		require.Equal(t, want["customer_email"], rec["customer_email"])
		require.Equal(t, want["status"], rec["status"])
	}
	a := got["a"]
	require.Equal(t, "eu", a["region"])
	require.Equal(t, "12.50", a["total"], "a decimal keeps its digits")
	require.Equal(t, int64(3), a["quantity"])
	require.Equal(t, true, a["gift"])
	require.Equal(t, micros("2026-11-28T10:00:00.25Z"), a["ship_at"])
	day, _ := time.Parse(time.DateOnly, "2026-12-01")
	require.Equal(t, int32(day.Unix()/86400), a["due"])
	require.Equal(t, "0b5e7a2c-8f0e-4a51-9a57-3f1a2b3c4d5e", a["ref"])
	require.JSONEq(t, `{"a": 1, "tags": ["x"]}`, a["meta"].(string))
	require.Equal(t, "line one\nline \"two\"", a["note"])
	require.Equal(t, "pending", a["status"], "a as it was, not as changed after at")
	for _, col := range []string{"region", "total", "quantity", "gift", "ship_at", "due", "ref", "meta", "note"} {
		require.Nil(t, got["d"][col], "d.%s", col)
	}
	require.Equal(t, int64(-7), got["e"]["quantity"])
	require.Equal(t, false, got["e"]["gift"])
	require.Equal(t, "99.99", got["f"]["total"])
	require.Equal(t, "shipped", got["f"]["status"])
	require.EqualValues(t, 2, got["f"]["version"])

	// Now: c appears, e is gone, a is changed.
	r = e.do("GET", ordersPath+"/snapshot?format=parquet", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	file, err = parquet.OpenFile(bytes.NewReader(r.body), int64(len(r.body)))
	require.NoError(t, err)
	got = f.byName(t, parquetRecords(t, file))
	require.ElementsMatch(t, []string{"a", "c", "d", "f"}, keys(got))
	require.Equal(t, "paid", got["a"]["status"])
	require.Equal(t, int64(4), got["a"]["quantity"])
	require.Nil(t, got["a"]["note"])

	// No records: a valid file with the columns and no rows.
	r = e.do("GET", ordersPath+"/snapshot?format=parquet&at=2001-01-01T00:00:00Z", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	file, err = parquet.OpenFile(bytes.NewReader(r.body), int64(len(r.body)))
	require.NoError(t, err)
	require.EqualValues(t, 0, file.NumRows())
	require.Len(t, parquetSchema(file), 17)
}

func TestSnapshotAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.applyYAML(strings.Replace(readFile(t, "testdata/orders.yaml"),
		"      admin:  [read", "      auditor: [history]\n      admin:  [read", 1))
	r := e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "a@example.com"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)

	for _, c := range []struct{ role, verb string }{{"viewer", "history"}, {"editor", "history"}, {"auditor", "read"}} {
		for _, format := range []string{"ndjson", "parquet"} {
			p := requireProblem(t, e.do("GET", ordersPath+"/snapshot?format="+format, e.key(c.role), nil), http.StatusForbidden)
			require.EqualValues(t, 1, p["layer"], c.role)
			require.Contains(t, p["detail"], c.verb, c.role)
		}
	}
	requireProblem(t, e.do("GET", ordersPath+"/snapshot", "", nil), http.StatusUnauthorized)
	r = e.do("GET", ordersPath+"/snapshot", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Len(t, ndjsonRecords(t, r.body), 1)
}

func TestSnapshotBadParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	for _, c := range []struct{ query, loc string }{
		{"at=yesterday", "query.at"},
		{"at=2026-01-31", "query.at"},
		{"at=2026-13-01T00:00:00Z", "query.at"},
		{"format=csv", "query.format"},
		{"format=PARQUET", "query.format"},
	} {
		p := requireProblem(t, e.do("GET", ordersPath+"/snapshot?"+c.query, e.admin, nil), http.StatusBadRequest)
		require.Equal(t, []string{c.loc}, locations(p), c.query)
	}
}

// TestSnapshotOutlivesServerTimeouts: a snapshot may take longer than the server's read and
// write timeouts, which are meant for ordinary requests. Here the history table is locked for
// a while, so the query waits before its first row.
func TestSnapshotOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	newSnapshotFixture(t, e)
	srv := &http.Server{Handler: e.server, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	ctx := context.Background()
	tx, err := e.super.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE acme__shop.sales__orders__history IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	go func() {
		time.Sleep(time.Second)
		_ = tx.Rollback(ctx)
	}()
	for _, format := range []string{"ndjson", "parquet"} {
		req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+ordersPath+"/snapshot?format="+format, nil)
		require.NoError(t, err)
		req.Header.Set("X-API-Key", e.admin)
		start := time.Now()
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode, "%s", body)
		if format == "ndjson" {
			require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond, "the lock held the query")
			require.Len(t, ndjsonRecords(t, body), 4)
		} else {
			file, err := parquet.OpenFile(bytes.NewReader(body), int64(len(body)))
			require.NoError(t, err)
			require.EqualValues(t, 4, file.NumRows())
		}
	}
}

// TestSnapshotFailure: an error before the first byte is a problem; after it, the connection
// is cut, so the client sees a broken body, never a short one that looks whole. The broken
// record is a history image Postgres's triggers would never write (a version that is not a
// number), written here as the superuser; records stream in descending id order, so the
// all-zero id comes last.
func TestSnapshotFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{})
	e.apply("testdata/orders.yaml")
	ctx := context.Background()
	insert := func(n int) {
		_, err := e.super.Exec(ctx, `INSERT INTO acme__shop.sales__orders__history (event_id, xid, at, record_id, op, version, actor, image)
			SELECT g, pg_current_xact_id(), now(), u, 'INSERT', 1, 'test', jsonb_build_object('id', u, 'version', 1,
			  'created_at', now(), 'updated_at', now(), 'created_by', 'test', 'updated_by', 'test', 'customer_email', 'c' || g || '@example.com')
			FROM generate_series(1, $1::int) g, LATERAL (SELECT gen_random_uuid() WHERE g > 0) x(u)`, n)
		require.NoError(t, err)
	}
	insert(3)
	_, err := e.super.Exec(ctx, `INSERT INTO acme__shop.sales__orders__history (event_id, xid, at, record_id, op, version, actor, image)
		VALUES (0, pg_current_xact_id(), now(), '00000000-0000-0000-0000-000000000000', 'INSERT', 1, 'test',
		  '{"id": "00000000-0000-0000-0000-000000000000", "version": "one", "created_at": "2026-01-01T00:00:00+00:00",
		    "updated_at": "2026-01-01T00:00:00+00:00", "created_by": "test", "updated_by": "test", "customer_email": "bad@example.com"}')`)
	require.NoError(t, err)

	// Before the first row group is sent: a problem, with nothing leaked.
	p := requireProblem(t, e.do("GET", ordersPath+"/snapshot?format=parquet", e.admin, nil), http.StatusInternalServerError)
	require.NotContains(t, p["detail"], "one")

	// After a full row group went out: the body breaks off.
	insert(70000)
	req, err := http.NewRequest("GET", e.http.URL+ordersPath+"/snapshot?format=parquet", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", e.admin)
	res, err := e.http.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	body, err := io.ReadAll(res.Body)
	require.Error(t, err, "the body must not end cleanly")
	require.True(t, errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
	require.Greater(t, len(body), 4)

	// NDJSON has no types to break: the record is shown as stored.
	r := e.do("GET", ordersPath+"/snapshot", e.admin, nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, ndjsonRecords(t, r.body), 70004)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

func keys(m map[string]map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// parquetSchema describes each column of a file as "name TYPE required|optional", the type
// as parquet-go reads it (logical type where there is one, else physical).
func parquetSchema(f *parquet.File) []string {
	var out []string
	for _, c := range f.Schema().Fields() {
		rep := "required"
		if c.Optional() {
			rep = "optional"
		}
		out = append(out, c.Name()+" "+c.Type().String()+" "+rep)
	}
	return out
}

// parquetRecords reads every row of a file with parquet-go as column name -> Go value by
// physical type (string, int32, int64, float64, bool), nil for null.
func parquetRecords(t *testing.T, f *parquet.File) []map[string]any {
	t.Helper()
	fields := f.Schema().Fields()
	r := parquet.NewReader(f)
	defer r.Close()
	var out []map[string]any
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			rec := map[string]any{}
			for _, v := range row {
				rec[fields[v.Column()].Name()] = parquetValue(v)
			}
			out = append(out, rec)
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
	}
}

func parquetValue(v parquet.Value) any {
	if v.IsNull() {
		return nil
	}
	switch v.Kind() {
	case parquet.Boolean:
		return v.Boolean()
	case parquet.Int32:
		return v.Int32()
	case parquet.Int64:
		return v.Int64()
	case parquet.Double:
		return v.Double()
	case parquet.ByteArray:
		return string(v.ByteArray())
	}
	return v.String()
}

// Snapshots each hold an API connection for long: past Config.MaxSnapshots running at once,
// the next gets 429, and a finished one frees its place.
func TestSnapshotLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{MaxSnapshots: 1})
	e.apply("testdata/orders.yaml")
	ctx := context.Background()

	// Hold the first snapshot in its query: a lock on the history table makes it wait.
	tx, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `LOCK TABLE acme__shop.sales__orders__history IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	first := make(chan response, 1)
	go func() { first <- e.do("GET", ordersPath+"/snapshot", e.admin, nil) }()

	require.Eventually(t, func() bool {
		var waiting bool
		require.NoError(t, e.super.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'SELECT (CASE WHEN s.redacted%')`).Scan(&waiting))
		return waiting
	}, 10*time.Second, 20*time.Millisecond, "the first snapshot waits in its query")
	requireProblem(t, e.do("GET", ordersPath+"/snapshot?format=parquet", e.admin, nil), http.StatusTooManyRequests)

	require.NoError(t, tx.Rollback(ctx))
	require.Equal(t, http.StatusOK, (<-first).status)
	require.Equal(t, http.StatusOK, e.do("GET", ordersPath+"/snapshot", e.admin, nil).status)
}
