package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/api"
	"github.com/velocitydev/velocity/internal/store"
)

// fastEvents: fast streams, and pages small enough that every test reads several.
var fastEvents = api.EventPace{Poll: 20 * time.Millisecond, Heartbeat: 300 * time.Millisecond, Page: 3}

// sseMessage is one message of a stream: a comment, or fields up to a blank line.
type sseMessage struct {
	comment         string
	id, event, data string
}

// gotEvent is the data of one history event as a client decodes it, plus its id: line.
type gotEvent struct {
	ID        string         `json:"-"`
	EventID   string         `json:"event_id"`
	Op        string         `json:"op"`
	RecordID  string         `json:"record_id"`
	Version   int            `json:"version"`
	At        time.Time      `json:"at"`
	Actor     string         `json:"actor"`
	Reason    *string        `json:"reason"`
	RequestID *string        `json:"request_id"`
	Record    map[string]any `json:"record"`
}

// eventStream is an open GET P/events; a goroutine parses it into msgs, closed at its end.
type eventStream struct {
	t      *testing.T
	start  string // the position of the opening id-only message
	cancel context.CancelFunc
	msgs   chan sseMessage
}

// openEvents connects to the orders event stream and reads its opening message.
func (e *env) openEvents(base, key, query string, headers ...string) *eventStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+ordersPath+"/events"+query, nil)
	require.NoError(e.t, err)
	req.Header.Set("X-API-Key", key)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	require.Equal(e.t, http.StatusOK, res.StatusCode)
	require.Equal(e.t, "text/event-stream", res.Header.Get("Content-Type"))
	s := &eventStream{t: e.t, cancel: cancel, msgs: make(chan sseMessage, 1000)}
	e.t.Cleanup(s.close)
	go func() {
		defer close(s.msgs)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		var m sseMessage
		var fields bool
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if fields {
					s.msgs <- m
				}
				m, fields = sseMessage{}, false
			case strings.HasPrefix(line, ":"):
				s.msgs <- sseMessage{comment: strings.TrimSpace(line[1:])}
			default:
				name, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				fields = true
				switch name {
				case "id":
					m.id = value
				case "event":
					m.event = value
				case "data":
					m.data += value
				}
			}
		}
	}()
	first := s.next(5 * time.Second)
	require.NotEmpty(e.t, first.id, "the stream opens with its position")
	require.Empty(e.t, first.data)
	s.start = first.id
	return s
}

func (s *eventStream) close() { s.cancel() }

// next returns the next message; the stream must not end first.
func (s *eventStream) next(timeout time.Duration) sseMessage {
	s.t.Helper()
	select {
	case m, ok := <-s.msgs:
		require.True(s.t, ok, "the stream ended")
		return m
	case <-time.After(timeout):
		s.t.Fatalf("no message within %s", timeout)
	}
	return sseMessage{}
}

// event returns the next history event, skipping comments.
func (s *eventStream) event() gotEvent {
	s.t.Helper()
	for {
		m := s.next(10 * time.Second)
		if m.comment != "" {
			continue
		}
		require.Equal(s.t, "history", m.event, "%+v", m)
		var ev gotEvent
		require.NoError(s.t, json.Unmarshal([]byte(m.data), &ev), m.data)
		require.Equal(s.t, m.id, ev.EventID, "id: is the event's cursor")
		ev.ID = m.id
		return ev
	}
}

// quiet checks that no event arrives for d.
func (s *eventStream) quiet(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-s.msgs:
			require.True(s.t, ok, "the stream ended")
			require.NotEmpty(s.t, m.comment, "unexpected event %+v", m)
		case <-deadline:
			return
		}
	}
}

// ended waits for the server to end the stream.
func (s *eventStream) ended(timeout time.Duration) {
	s.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				return
			}
			require.NotEmpty(s.t, m.comment, "unexpected event %+v", m)
		case <-deadline:
			s.t.Fatalf("the stream did not end within %s", timeout)
		}
	}
}

// records reads n events and returns the record ids, in order.
func (s *eventStream) records(n int) ([]string, []gotEvent) {
	s.t.Helper()
	ids := []string{}
	var evs []gotEvent
	for i := 0; i < n; i++ {
		ev := s.event()
		ids, evs = append(ids, ev.RecordID), append(evs, ev)
	}
	return ids, evs
}

func (e *env) createOrder(email string) string {
	e.t.Helper()
	r := e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": email})
	require.Equal(e.t, http.StatusCreated, r.status, "%s", r.body)
	return r.json(e.t)["id"].(string)
}

// superInsert writes an order in tx, as a psql session would, and returns its id.
func superInsert(t *testing.T, tx pgx.Tx, email string) string {
	t.Helper()
	var id string
	require.NoError(t, tx.QueryRow(context.Background(),
		`INSERT INTO acme__shop.sales__orders (customer_email) VALUES ($1) RETURNING id::text`, email).Scan(&id))
	return id
}

// historyOrder is the oracle: every committed event's record id, in (xid, event_id) order.
func (e *env) historyOrder() []string {
	e.t.Helper()
	rows, err := e.super.Query(context.Background(),
		`SELECT record_id::text FROM acme__shop.sales__orders__history ORDER BY xid, event_id`)
	require.NoError(e.t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(e.t, err)
	return ids
}

func TestEventsLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	s := e.openEvents(e.http.URL, e.admin, "")

	r := e.do("POST", ordersPath, e.admin, map[string]any{"customer_email": "ann@example.com", "total": "9.50"}, "X-Request-ID", "req-create")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	id := r.json(t)["id"].(string)
	r = e.do("PATCH", ordersPath+"/"+id, e.admin, map[string]any{"status": "paid"}, "X-Velocity-Reason", "paid by card")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = e.do("DELETE", ordersPath+"/"+id, e.admin, nil)
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)

	ins, upd, del := s.event(), s.event(), s.event()
	require.Equal(t, []string{"INSERT", "UPDATE", "DELETE"}, []string{ins.Op, upd.Op, del.Op})
	for _, ev := range []gotEvent{ins, upd, del} {
		require.Equal(t, id, ev.RecordID)
		require.Contains(t, ev.Actor, "apikey:")
		require.Equal(t, id, ev.Record["id"])
		require.False(t, ev.At.IsZero())
	}
	require.Equal(t, []int{1, 2, 2}, []int{ins.Version, upd.Version, del.Version})
	require.Equal(t, "req-create", *ins.RequestID)
	require.Nil(t, ins.Reason)
	require.Equal(t, "paid by card", *upd.Reason)
	require.Equal(t, "pending", ins.Record["status"])
	require.EqualValues(t, 9.5, ins.Record["total"])
	require.Equal(t, "paid", upd.Record["status"])
	require.Equal(t, "paid", del.Record["status"], "a DELETE carries the record as it was")
	require.Nil(t, ins.Record["quantity"], "a record has every field of the definition")

	// Idle, the stream sends keepalive comments and nothing else.
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-s.msgs:
			require.Empty(t, m.data, "unexpected event %+v", m)
			if m.comment == "keepalive" {
				return
			}
		case <-deadline:
			t.Fatal("no keepalive while idle")
		}
	}
}

// TestEventsResume: a client that reconnects with the last id it got receives exactly the
// events it missed, across pages, with none twice.
func TestEventsResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	var want []string
	for i := 0; i < 5; i++ {
		want = append(want, e.createOrder(fmt.Sprintf("c%d@example.com", i)))
	}

	s := e.openEvents(e.http.URL, e.admin, "?since=0")
	require.Equal(t, "0-0", s.start)
	got, evs := s.records(2)
	require.Equal(t, want[:2], got)
	s.close()

	for i := 5; i < 8; i++ {
		want = append(want, e.createOrder(fmt.Sprintf("c%d@example.com", i)))
	}
	require.Equal(t, want, e.historyOrder())

	// Last-Event-ID wins over since (EventSource keeps the URL it was opened with).
	s = e.openEvents(e.http.URL, e.admin, "?since=0", "Last-Event-ID", evs[1].ID)
	require.Equal(t, evs[1].ID, s.start)
	got, rest := s.records(6)
	require.Equal(t, want[2:], got)
	s.quiet(200 * time.Millisecond)

	// since alone resumes the same way, from any event.
	s = e.openEvents(e.http.URL, e.admin, "?since="+url.QueryEscape(rest[3].ID))
	got, _ = s.records(1)
	require.Equal(t, want[6:7], got)
	s.close()
	s = e.openEvents(e.http.URL, e.admin, "?since="+rest[5].ID)
	s.quiet(200 * time.Millisecond)
	id := e.createOrder("late@example.com")
	got, _ = s.records(1)
	require.Equal(t, []string{id}, got)
}

// TestEventsOutOfOrderCommits: transactions that commit out of the order of their xids or
// event ids neither skip an event nor send one twice, live or on reconnect.
func TestEventsOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	ctx := context.Background()
	s := e.openEvents(e.http.URL, e.admin, "")

	// T1 writes first (lower xid and event id) but commits after T2.
	t1, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t1.Rollback(ctx) }()
	a := superInsert(t, t1, "a@example.com")
	t2, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t2.Rollback(ctx) }()
	b := superInsert(t, t2, "b@example.com")
	require.NoError(t, t2.Commit(ctx))
	s.quiet(300 * time.Millisecond) // T2 has committed, but T1 is open: B must wait
	require.NoError(t, t1.Commit(ctx))
	got, evs := s.records(2)
	require.Equal(t, []string{a, b}, got)

	// T3 takes its xid first; T4 writes and commits; then T3 writes, taking a higher event
	// id than T4's, and commits. Order is by xid: C before D, though D's event id is lower.
	t3, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t3.Rollback(ctx) }()
	_, err = t3.Exec(ctx, "SELECT pg_current_xact_id()")
	require.NoError(t, err)
	t4, err := e.super.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t4.Rollback(ctx) }()
	d := superInsert(t, t4, "d@example.com")
	require.NoError(t, t4.Commit(ctx))
	c := superInsert(t, t3, "c@example.com")
	s.quiet(300 * time.Millisecond)
	require.NoError(t, t3.Commit(ctx))
	got, more := s.records(2)
	require.Equal(t, []string{c, d}, got)
	evs = append(evs, more...)
	var cEvent, dEvent int64
	require.NoError(t, e.super.QueryRow(ctx, `SELECT
		(SELECT event_id FROM acme__shop.sales__orders__history WHERE record_id = $1),
		(SELECT event_id FROM acme__shop.sales__orders__history WHERE record_id = $2)`, c, d).Scan(&cEvent, &dEvent))
	require.Greater(t, cEvent, dEvent, "C came first although its event id is higher")

	// A transaction that rolls back sends nothing, and holds back only while it is open.
	t5, err := e.super.Begin(ctx)
	require.NoError(t, err)
	superInsert(t, t5, "gone@example.com")
	f := e.createOrder("f@example.com")
	s.quiet(300 * time.Millisecond)
	require.NoError(t, t5.Rollback(ctx))
	got, last := s.records(1)
	require.Equal(t, []string{f}, got)
	evs = append(evs, last...)
	s.quiet(200 * time.Millisecond)
	s.close()

	// Reconnecting from any id gives exactly what followed it.
	all := []string{a, b, c, d, f}
	require.Equal(t, all, e.historyOrder())
	for i, ev := range evs {
		r := e.openEvents(e.http.URL, e.admin, "", "Last-Event-ID", ev.ID)
		got, _ := r.records(len(all) - i - 1)
		require.Equal(t, all[i+1:], got, "after %s", ev.ID)
		r.quiet(100 * time.Millisecond)
		r.close()
	}
	r := e.openEvents(e.http.URL, e.admin, "?since=0")
	got, _ = r.records(len(all))
	require.Equal(t, all, got)
}

func TestEventsAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	for _, role := range []string{"viewer", "editor"} {
		p := requireProblem(t, e.do("GET", ordersPath+"/events", e.key(role), nil), http.StatusForbidden)
		require.EqualValues(t, 1, p["layer"], role)
		require.Contains(t, p["detail"], "history")
	}
	requireProblem(t, e.do("GET", ordersPath+"/events", "", nil), http.StatusUnauthorized)

	// A key revoked while its stream is open ends the stream.
	boot := store.Request{Actor: store.Actor{ID: "test", Kind: "system", Roles: []string{"platform_admin", "admin"}, Attributes: map[string]any{}}}
	k, err := e.st.CreateAPIKey(context.Background(), boot, "streamer", []string{"admin"}, 0, nil)
	require.NoError(t, err)
	s := e.openEvents(e.http.URL, k.Secret, "?since=0")
	s.quiet(100 * time.Millisecond)
	require.Equal(t, http.StatusNoContent, e.do("DELETE", "/admin/api-keys/"+k.ID.String(), e.admin, nil).status)
	s.ended(5 * time.Second)
}

func TestEventsBadCursor(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	for _, bad := range []string{"abc", "1", "1-", "-1", "1-2-3", "01-2", "1-02", "+1-2", "1-+2", "1--2", " 1-2", "1-2 ",
		"18446744073709551616-1", "1-9223372036854775808", "00", strings.Repeat("9", 65)} {
		r := e.do("GET", ordersPath+"/events?since="+url.QueryEscape(bad), e.admin, nil)
		p := requireProblem(t, r, http.StatusBadRequest)
		require.Equal(t, []string{"query.since"}, locations(p), "since=%q", bad)

		if strings.TrimSpace(bad) != bad {
			continue // HTTP trims header values
		}
		r = e.do("GET", ordersPath+"/events?since=0", e.admin, nil, "Last-Event-ID", bad)
		p = requireProblem(t, r, http.StatusBadRequest)
		require.Equal(t, []string{"header.Last-Event-ID"}, locations(p), "Last-Event-ID %q", bad)
	}
	r := e.do("GET", ordersPath+"/events?since=x", e.admin, nil, "Last-Event-ID", "y")
	p := requireProblem(t, r, http.StatusBadRequest)
	require.Equal(t, []string{"query.since", "header.Last-Event-ID"}, locations(p))
}

// TestEventsOutliveServerTimeouts: a stream lives past the server's read and write
// timeouts, which bound ordinary requests.
func TestEventsOutliveServerTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	hs := api.NewHTTPServer("", e.server)
	hs.ReadTimeout, hs.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	s := e.openEvents("http://"+ln.Addr().String(), e.admin, "")
	s.quiet(time.Second)
	id := e.createOrder("late@example.com")
	got, _ := s.records(1)
	require.Equal(t, []string{id}, got)
}

// A graceful shutdown ends open streams instead of waiting for their clients.
func TestEventsEndOnShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, api.Config{Events: fastEvents})
	e.apply("testdata/orders.yaml")
	hs := api.NewHTTPServer("", e.server)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	req, err := http.NewRequest("GET", "http://"+ln.Addr().String()+ordersPath+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", e.admin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	first := make([]byte, 4)
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	require.Equal(t, "id: ", string(first))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, hs.Shutdown(ctx))
	require.Less(t, time.Since(start), 5*time.Second, "shutdown waited for the stream")
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err, "the stream ends cleanly")
}
