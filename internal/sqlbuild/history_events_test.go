package sqlbuild_test

import (
	"context"
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

// eventsEnv is a database with the notes schema (history on) applied.
type eventsEnv struct {
	st    *store.Store
	tbl   *sqlbuild.Table
	super *pgxpool.Pool
}

func newEventsEnv(t *testing.T) *eventsEnv {
	t.Helper()
	ctx := context.Background()
	def := schemadef.Definition{
		APIVersion: schemadef.APIVersion, Kind: schemadef.Kind, Metadata: schemadef.Metadata{Name: "notes"},
		Spec: schemadef.Spec{
			Org: "acme", App: "lab", Domain: "desk", Object: "notes", Version: 1,
			Fields: []schemadef.Field{{Name: "title", Type: schemadef.TypeString}},
			Access: schemadef.Access{Roles: map[string][]string{
				"admin":  {"read", "create", "update", "history"},
				"reader": {"read"},
			}, Fields: map[string]schemadef.FieldAccess{
				// Events are read through the history view, which masks title for all but admin.
				"title": {Read: []string{"admin"}, Mask: schemadef.MaskFull},
			}},
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
	return &eventsEnv{st: st, tbl: sqlbuild.NewTable(def.Spec), super: db.Super(t)}
}

var notesAdmin = store.Request{Actor: store.Actor{ID: "user:admin", Kind: "subject", Roles: []string{"admin"}, Attributes: map[string]any{}}}

type eventRow struct {
	xid     uint64
	eventID int64
	op      string
	record  string
	title   string
}

// events reads one page of HistoryEvents as req.
func (e *eventsEnv) events(t *testing.T, req store.Request, afterXID uint64, afterEvent int64, limit int) []eventRow {
	t.Helper()
	st := e.tbl.HistoryEvents(afterXID, afterEvent, limit)
	var out []eventRow
	err := e.st.InRequest(context.Background(), req, []store.Statement{{SQL: st.SQL, Args: st.Args}}, func(_ int, rows pgx.Rows) error {
		for rows.Next() {
			var r eventRow
			var version int32
			var at time.Time
			var actor string
			var reason, rid *string
			var image map[string]any
			if err := rows.Scan(&r.xid, &r.eventID, &r.op, &r.record, &version, &at, &actor, &reason, &rid, &image); err != nil {
				return err
			}
			r.title, _ = image["title"].(string)
			out = append(out, r)
		}
		return rows.Err()
	})
	require.NoError(t, err)
	return out
}

// insert writes a note in tx and returns its id.
func (e *eventsEnv) insert(t *testing.T, tx pgx.Tx, title string) string {
	t.Helper()
	id := uuid.NewString()
	_, err := tx.Exec(context.Background(), `INSERT INTO acme__lab.desk__notes (id, title) VALUES ($1, $2)`, id, title)
	require.NoError(t, err)
	return id
}

// TestHistoryEventsCommitOrder: an event is held back while any older transaction is
// still open, and once all have ended the events come in (xid, event_id) order, whatever
// the order of their event ids or commits.
func TestHistoryEventsCommitOrder(t *testing.T) {
	t.Parallel()
	e := newEventsEnv(t)
	ctx := context.Background()

	t1, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t1.Rollback(ctx) }()
	first := e.insert(t, t1, "first") // the lower xid and the lower event id

	t2, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t2.Rollback(ctx) }()
	second := e.insert(t, t2, "second")
	require.NoError(t, t2.Commit(ctx))

	// t2 committed, but t1 (older) is open: nothing may be handed out yet.
	require.Empty(t, e.events(t, notesAdmin, 0, 0, 100))

	require.NoError(t, t1.Commit(ctx))
	var got []eventRow
	require.Eventually(t, func() bool {
		got = e.events(t, notesAdmin, 0, 0, 100)
		return len(got) == 2
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, first, got[0].record)
	require.Equal(t, "first", got[0].title)
	require.Equal(t, "INSERT", got[0].op)
	require.Equal(t, second, got[1].record)
	require.Less(t, got[0].xid, got[1].xid)

	// Paging from each position gives exactly what follows it.
	require.Equal(t, got[1:], e.events(t, notesAdmin, got[0].xid, got[0].eventID, 100))
	require.Empty(t, e.events(t, notesAdmin, got[1].xid, got[1].eventID, 100))
	require.Equal(t, got[:1], e.events(t, notesAdmin, 0, 0, 1))

	// Without the history verb, RLS hides every event.
	reader := store.Request{Actor: store.Actor{ID: "user:r", Kind: "subject", Roles: []string{"reader"}, Attributes: map[string]any{}}}
	require.Empty(t, e.events(t, reader, 0, 0, 100))
}

// TestHistoryEventsHorizon: the horizon is the oldest open transaction, so reading from it
// includes that transaction's events once it commits.
func TestHistoryEventsHorizon(t *testing.T) {
	t.Parallel()
	e := newEventsEnv(t)
	ctx := context.Background()
	tx, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	var xid uint64
	require.NoError(t, tx.QueryRow(ctx, "SELECT pg_current_xact_id()").Scan(&xid))

	h := sqlbuild.HistoryHorizon()
	var horizon uint64
	require.NoError(t, e.st.InRequest(ctx, notesAdmin, []store.Statement{{SQL: h.SQL}}, func(_ int, rows pgx.Rows) error {
		for rows.Next() {
			if err := rows.Scan(&horizon); err != nil {
				return err
			}
		}
		return rows.Err()
	}))
	require.LessOrEqual(t, horizon, xid)
	id := e.insert(t, tx, "late")
	require.NoError(t, tx.Commit(ctx))
	require.Eventually(t, func() bool {
		got := e.events(t, notesAdmin, horizon, 0, 100)
		return len(got) == 1 && got[0].record == id
	}, 10*time.Second, 10*time.Millisecond)
}

// TestHistoryEventsPlan: the page is an ordered walk of each partition's (xid, event_id)
// index merged together, not a scan and sort of the whole history.
func TestHistoryEventsPlan(t *testing.T) {
	t.Parallel()
	e := newEventsEnv(t)
	ctx := context.Background()
	// 24,000 events spread over the default partition (older months) and three monthly ones,
	// and over the xids of transactions that have ended (those below this one's).
	_, err := e.super.Exec(ctx, `INSERT INTO acme__lab.desk__notes__history (event_id, xid, at, record_id, op, version, actor, image)
		SELECT nextval('velocity.event_seq'), (3 + i % (pg_current_xact_id()::text::bigint - 10))::text::xid8,
		       date_trunc('month', now()) + ((i % 4) - 1) * interval '32 days' + interval '1 day',
		       gen_random_uuid(), 'INSERT', 1, 'test', jsonb_build_object('title', 'n' || i)
		  FROM generate_series(1, 24000) AS i`)
	require.NoError(t, err)
	_, err = e.super.Exec(ctx, `ANALYZE acme__lab.desk__notes__history`)
	require.NoError(t, err)

	var parts int
	require.NoError(t, e.super.QueryRow(ctx, `SELECT count(*) FROM pg_inherits WHERE inhparent = 'acme__lab.desk__notes__history'::regclass`).Scan(&parts))
	require.GreaterOrEqual(t, parts, 4)

	var xid uint64
	var mid int64
	require.NoError(t, e.super.QueryRow(ctx, `SELECT xid, event_id FROM acme__lab.desk__notes__history
		ORDER BY xid, event_id OFFSET 12000 LIMIT 1`).Scan(&xid, &mid))
	for _, after := range [][2]int64{{0, 0}, {int64(xid), mid}} {
		st := e.tbl.HistoryEvents(uint64(after[0]), after[1], 500)
		var plan []string
		err = e.st.InRequest(ctx, notesAdmin, []store.Statement{{SQL: "EXPLAIN " + st.SQL, Args: st.Args}}, func(_ int, rows pgx.Rows) error {
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					return err
				}
				plan = append(plan, line)
			}
			return rows.Err()
		})
		require.NoError(t, err)
		text := strings.Join(plan, "\n")
		require.Contains(t, text, "Merge Append", text)
		require.Equal(t, parts, strings.Count(text, "Index Scan using"), "every partition walks its index:\n%s", text)
		require.NotContains(t, text, "Seq Scan", text)
		require.NotContains(t, text, "->  Sort", text)
		require.Contains(t, text, "xid_event_id_idx", text)
	}

	// And the page is right: the 500 events after the middle one, in order.
	rows, err := e.super.Query(ctx, `SELECT xid, event_id FROM acme__lab.desk__notes__history
		WHERE (xid, event_id) > ($1, $2) ORDER BY xid, event_id LIMIT 500`, xid, mid)
	require.NoError(t, err)
	want, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]int64, error) {
		var x uint64
		var id int64
		err := r.Scan(&x, &id)
		return [2]int64{int64(x), id}, err
	})
	require.NoError(t, err)
	var got [][2]int64
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, r := range e.events(t, notesAdmin, xid, mid, 500) {
			got = append(got, [2]int64{int64(r.xid), r.eventID})
		}
		return len(got) == 500
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, want, got)
}
