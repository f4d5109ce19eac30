package sqlbuild_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/pgtest"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

func snapshotSpec() schemadef.Spec {
	return schemadef.Spec{
		Org: "acme", App: "lab", Domain: "test", Object: "things", Version: 1,
		Fields: []schemadef.Field{
			{Name: "name", Type: schemadef.TypeString},
			{Name: "n", Type: schemadef.TypeInteger},
			{Name: "amount", Type: schemadef.TypeDecimal},
			{Name: "meta", Type: schemadef.TypeJSON},
			{Name: "secret", Type: schemadef.TypeString},
		},
		Access: schemadef.Access{Roles: map[string][]string{
			"admin": {"read", "create", "update", "delete", "history"}, "viewer": {"read"},
		}, Fields: map[string]schemadef.FieldAccess{
			// Reads go through the history view, which masks name for everyone but admin.
			"name": {Read: []string{"admin"}, Mask: schemadef.MaskPartial},
		}},
		History: schemadef.History{Redact: []string{"secret"}},
	}
}

func TestSnapshotSQL(t *testing.T) {
	t.Parallel()
	tbl := sqlbuild.NewTable(snapshotSpec())
	from := `FROM (SELECT DISTINCT ON (h.record_id) h.op, h.image, h.redacted FROM "acme__lab"."test__things__history_read" h` +
		` WHERE h.at <= coalesce($1::timestamptz, 'infinity') ORDER BY h.record_id DESC, h.at DESC, h.event_id DESC) s` +
		` WHERE s.op <> 'DELETE' AND s.op <> 'PURGE'`
	at := time.Date(2026, 1, 31, 12, 0, 0, 0, time.UTC)

	got := tbl.SnapshotJSON(at)
	keys := `ARRAY['id', 'version', 'created_at', 'updated_at', 'created_by', 'updated_by', 'name', 'n', 'amount', 'meta', 'secret']::text[]`
	val := func(f string) string {
		return `CASE WHEN s.redacted = '{}' OR NOT s.redacted @> ARRAY['` + f + `'] THEN s.image -> '` + f + `' END`
	}
	text := func(f string) string {
		return `CASE WHEN s.redacted = '{}' OR NOT s.redacted @> ARRAY['` + f + `'] THEN s.image ->> '` + f + `' END`
	}
	require.Equal(t, `SELECT (CASE WHEN s.redacted = '{}' AND s.image ?& `+keys+` AND s.image - `+keys+` = '{}'::jsonb`+
		` THEN s.image || jsonb_build_object('secret', NULL::jsonb)`+
		` ELSE jsonb_build_object('id', s.image -> 'id', 'version', s.image -> 'version', `+
		`'created_at', s.image -> 'created_at', 'updated_at', s.image -> 'updated_at', 'created_by', s.image -> 'created_by', `+
		`'updated_by', s.image -> 'updated_by', 'name', `+val("name")+`, 'n', `+val("n")+`, 'amount', `+val("amount")+`, `+
		`'meta', `+val("meta")+`, 'secret', NULL::jsonb) END)::text `+from, got.SQL)
	require.Equal(t, []any{at}, got.Args)

	got = tbl.SnapshotColumns(nil)
	require.Equal(t, `SELECT s.image ->> 'id', s.image ->> 'version', s.image ->> 'created_at', s.image ->> 'updated_at', `+
		`s.image ->> 'created_by', s.image ->> 'updated_by', `+text("name")+`, `+text("n")+`, `+text("amount")+`, `+
		`nullif(`+val("meta")+`, 'null'::jsonb)::text, NULL::text `+from, got.SQL)
	require.Equal(t, []any{nil}, got.Args)

	set := sqlbuild.SnapshotSettings(90 * time.Second)
	require.Equal(t, []any{"90000ms"}, set.Args)
}

// TestSnapshotWideDefinition: jsonb_build_object takes at most 100 arguments, so a wide
// definition joins several objects.
func TestSnapshotWideDefinition(t *testing.T) {
	t.Parallel()
	spec := snapshotSpec()
	spec.Fields = nil
	for i := 0; i < schemadef.MaxFields; i++ {
		spec.Fields = append(spec.Fields, schemadef.Field{Name: fmt.Sprintf("f%03d", i), Type: schemadef.TypeInteger})
	}
	sql := sqlbuild.NewTable(spec).SnapshotJSON(nil).SQL
	require.Equal(t, 11, strings.Count(sql, "jsonb_build_object("), "506 fields, 50 a call")
	require.Equal(t, 10, strings.Count(sql, ") || jsonb_build_object("))
}

// snapshotDB is the snapshot spec applied in a fresh database, with a history written by the
// table's own triggers.
type snapshotDB struct {
	st    *store.Store
	tbl   *sqlbuild.Table
	super *pgtest.DB
	at    time.Time // between the two batches of changes
}

var (
	snapshotAdmin  = store.Request{Actor: store.Actor{ID: "user:admin", Kind: "subject", Roles: []string{"admin"}, Attributes: map[string]any{}}}
	snapshotViewer = store.Request{Actor: store.Actor{ID: "user:viewer", Kind: "subject", Roles: []string{"viewer"}, Attributes: map[string]any{}}}
)

func newSnapshotDB(t *testing.T) *snapshotDB {
	t.Helper()
	ctx := context.Background()
	def := schemadef.Definition{APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "things"}, Spec: snapshotSpec()}
	def.Normalize()
	require.NoError(t, def.Validate())
	db := pgtest.TestDB(t)
	st, err := store.Open(ctx, db.DSN(store.AuthenticatorRole), db.DSN(store.OwnerRole), 4)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	_, err = st.ApplySchema(ctx, def, false, "test")
	require.NoError(t, err)
	s := &snapshotDB{st: st, tbl: sqlbuild.NewTable(def.Spec), super: db}

	super := db.Super(t)
	exec := func(sql string) {
		_, err := super.Exec(ctx, sql)
		require.NoError(t, err)
	}
	exec(`INSERT INTO acme__lab.test__things (id, name, n, amount, meta, secret) VALUES
		('00000000-0000-0000-0000-00000000000a', 'a', 1, 1.50, '{"k": [1, "x"]}', 's3cret'),
		('00000000-0000-0000-0000-00000000000b', 'b', NULL, NULL, '"just a string"', NULL),
		('00000000-0000-0000-0000-00000000000c', 'c', 3, 123456789012345678901234567890.123456789, NULL, 'x'),
		('00000000-0000-0000-0000-00000000000d', 'd', 4, NULL, 'null', NULL)`)
	exec(`UPDATE acme__lab.test__things SET n = 10 WHERE name = 'a'`)
	exec(`DELETE FROM acme__lab.test__things WHERE name = 'c'`)
	// An image from an older definition: a field since dropped, one not yet added.
	exec(`INSERT INTO acme__lab.test__things__history (event_id, xid, at, record_id, op, version, actor, image)
		VALUES (0, pg_current_xact_id(), now() - interval '1 hour', '00000000-0000-0000-0000-00000000000e', 'INSERT', 1, 'test',
		  '{"id": "00000000-0000-0000-0000-00000000000e", "version": 1, "created_at": "2026-01-01T00:00:00+00:00",
		    "updated_at": "2026-01-01T00:00:00+00:00", "created_by": "x", "updated_by": "x", "name": "e", "dropped": true}')`)
	require.NoError(t, super.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&s.at))
	exec(`UPDATE acme__lab.test__things SET name = 'a2' WHERE name = 'a'`)
	exec(`DELETE FROM acme__lab.test__things WHERE name = 'b'`)
	exec(`INSERT INTO acme__lab.test__things (id, name) VALUES ('00000000-0000-0000-0000-00000000000f', 'f')`)
	return s
}

// rows runs statements in one request and returns the rows of the last as text.
func (s *snapshotDB) rows(t *testing.T, req store.Request, stmts ...sqlbuild.Statement) [][]*string {
	t.Helper()
	var out [][]*string
	batch := make([]store.Statement, len(stmts))
	for i, st := range stmts {
		batch[i] = store.Statement{SQL: st.SQL, Args: st.Args}
	}
	err := s.st.InRequest(context.Background(), req, batch, func(i int, rows pgx.Rows) error {
		if i < len(stmts)-1 {
			return nil
		}
		for rows.Next() {
			row := make([]*string, len(rows.RawValues()))
			for j, v := range rows.RawValues() {
				if v != nil {
					row[j] = ptr(string(v))
				}
			}
			out = append(out, row)
		}
		return rows.Err()
	})
	require.NoError(t, err)
	return out
}

// TestSnapshotMatchesHistoryImage: the snapshot's record is HistoryImage's, byte for byte,
// for every record that existed at the time, and only those.
func TestSnapshotMatchesHistoryImage(t *testing.T) {
	t.Parallel()
	s := newSnapshotDB(t)
	settings := sqlbuild.SnapshotSettings(time.Minute)
	for _, at := range []any{s.at, nil} {
		got := s.rows(t, snapshotAdmin, settings, s.tbl.SnapshotJSON(at))
		// The oracle: HistoryAt (HistoryImage of the latest event at or before at) per id.
		var want []string
		for _, id := range []string{"f", "e", "d", "c", "b", "a"} {
			id = "00000000-0000-0000-0000-00000000000" + id
			bound := at
			if bound == nil {
				bound = time.Now().Add(time.Hour)
			}
			ev := s.rows(t, snapshotAdmin, s.tbl.HistoryAt(id, bound))
			if len(ev) == 1 && *ev[0][2] != "DELETE" {
				want = append(want, *ev[0][7])
			}
		}
		var texts []string
		for _, r := range got {
			texts = append(texts, *r[0])
		}
		require.Equal(t, want, texts, "at %v", at)
	}

	// At s.at: a as updated once, b not yet deleted, c deleted, d, e from an old image; no f.
	got := s.rows(t, snapshotAdmin, settings, s.tbl.SnapshotColumns(s.at))
	require.Len(t, got, 4)
	str := func(v *string) any {
		if v == nil {
			return nil
		}
		return *v
	}
	table := make([][]any, len(got))
	for i, r := range got {
		for _, j := range []int{0, 1, 6, 7, 8, 9, 10} { // id, version, then the user fields
			table[i] = append(table[i], str(r[j]))
		}
	}
	require.Equal(t, [][]any{
		{"00000000-0000-0000-0000-00000000000e", "1", "e", nil, nil, nil, nil},
		{"00000000-0000-0000-0000-00000000000d", "1", "d", "4", nil, nil, nil},
		{"00000000-0000-0000-0000-00000000000b", "1", "b", nil, nil, `"just a string"`, nil},
		{"00000000-0000-0000-0000-00000000000a", "2", "a", "10", "1.50", `{"k": [1, "x"]}`, nil},
	}, table)

	// The history policy is the backstop of the API's RBAC check: no rows without "history".
	require.Empty(t, s.rows(t, snapshotViewer, settings, s.tbl.SnapshotJSON(nil)))
	require.Empty(t, s.rows(t, snapshotViewer, settings, s.tbl.SnapshotColumns(nil)))
}

// TestSnapshotPlan: the snapshot walks the history index in order and streams; no sort of
// the whole history, whose first row would wait for the last.
func TestSnapshotPlan(t *testing.T) {
	t.Parallel()
	s := newSnapshotDB(t)
	settings := sqlbuild.SnapshotSettings(time.Minute)
	for _, q := range []sqlbuild.Statement{s.tbl.SnapshotJSON(nil), s.tbl.SnapshotColumns(s.at)} {
		q.SQL = "EXPLAIN " + q.SQL
		var plan []string
		for _, r := range s.rows(t, snapshotAdmin, settings, q) {
			plan = append(plan, *r[0])
		}
		text := strings.Join(plan, "\n")
		require.Contains(t, text, "Unique", text)
		require.Contains(t, text, "Merge Append", text)
		require.Contains(t, text, "Index Scan Backward using test__things__history", text)
		require.NotRegexp(t, `(?m)^\s*(->\s*)?(Incremental )?Sort\s+\(`, text)
		require.NotContains(t, text, "HashAggregate", text)
	}
}

// TestSnapshotSettings: Postgres arms statement_timeout afresh for each statement of a
// pipeline, so the setting queued first in the batch governs the snapshot after it, and it
// lasts only for that transaction.
func TestSnapshotSettings(t *testing.T) {
	t.Parallel()
	s := newSnapshotDB(t)
	show := sqlbuild.Statement{SQL: "SELECT current_setting('statement_timeout'), current_setting('enable_sort'), current_setting('jit')"}
	got := s.rows(t, snapshotAdmin, sqlbuild.SnapshotSettings(sqlbuild.SnapshotTimeout), show)
	require.Equal(t, []string{"15min", "off", "off"}, []string{*got[0][0], *got[0][1], *got[0][2]})
	got = s.rows(t, snapshotAdmin, show)
	require.Equal(t, "30s", *got[0][0], "the next request has the connection's timeout again")

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.super.SuperuserDSN())
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SET statement_timeout = '200ms'")
	require.NoError(t, err)
	sleep := "SELECT pg_sleep(0.5)"
	set := sqlbuild.SnapshotSettings(10 * time.Second)
	b := &pgx.Batch{}
	b.Queue(set.SQL, set.Args...)
	b.Queue(sleep)
	require.NoError(t, conn.SendBatch(ctx, b).Close(), "the raised timeout applies to the next statement")
	b = &pgx.Batch{}
	b.Queue(sleep)
	require.ErrorContains(t, conn.SendBatch(ctx, b).Close(), "statement timeout")
}
