package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/jackc/pgx/v5"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// EventPace paces GET P/events streams.
type EventPace struct {
	// Poll is the wait between polls once a stream has caught up.
	Poll time.Duration
	// Heartbeat is how long a stream may go without a write before it sends a comment, so
	// proxies do not drop an idle connection.
	Heartbeat time.Duration
	// Page is the most events one poll reads.
	Page int
}

// DefaultEventPace paces event streams unless Config.Events says otherwise.
var DefaultEventPace = EventPace{Poll: 250 * time.Millisecond, Heartbeat: 15 * time.Second, Page: 500}

// eventWriteTimeout bounds one write to a stream's client. The server's WriteTimeout counts
// from the start of the request and would cut every stream; each write gets this instead.
const eventWriteTimeout = 15 * time.Second

// eventCursor is a position in the commit-safe order of history events, (xid, event_id).
// Clients see it as an opaque "<xid>-<event_id>".
type eventCursor struct {
	xid   uint64
	event int64
}

func (c eventCursor) String() string {
	return strconv.FormatUint(c.xid, 10) + "-" + strconv.FormatInt(c.event, 10)
}

// parseEventCursor reads "<xid>-<event_id>" (canonical decimals only) or "0", the start of
// history.
func parseEventCursor(s string) (eventCursor, bool) {
	if s == "0" {
		return eventCursor{}, true
	}
	x, e, ok := strings.Cut(s, "-")
	if !ok || !canonicalDecimal(x) || !canonicalDecimal(e) {
		return eventCursor{}, false
	}
	xid, err := strconv.ParseUint(x, 10, 64)
	if err != nil {
		return eventCursor{}, false
	}
	event, err := strconv.ParseInt(e, 10, 64)
	if err != nil {
		return eventCursor{}, false
	}
	return eventCursor{xid: xid, event: event}, true
}

// canonicalDecimal is a non-empty run of digits without a leading zero (bar "0" itself), so
// every position has exactly one spelling.
func canonicalDecimal(s string) bool {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type eventsIn struct {
	Since       string `query:"since" maxLength:"64" doc:"start after this event id (an id: of this stream); 0 is the start of history; without it the stream starts now"`
	LastEventID string `header:"Last-Event-ID" maxLength:"64" doc:"the last event id received, sent by EventSource on reconnect; it wins over since"`
}

// streamEvent is the data of one history event on the stream.
type streamEvent struct {
	EventID   string          `json:"event_id"`
	Op        string          `json:"op"`
	RecordID  string          `json:"record_id"`
	Version   int32           `json:"version"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	Reason    *string         `json:"reason"`
	RequestID *string         `json:"request_id"`
	Record    json.RawMessage `json:"record"`
}

// registerEvents adds GET P/events (Server-Sent Events of history events) and returns its path.
func registerEvents(api huma.API, r *records) []string {
	path := r.path + "/events"
	huma.Register(api, huma.Operation{
		OperationID: "events-" + strings.ReplaceAll(r.t.Spec.Key(), ".", "-"), Method: http.MethodGet, Path: path,
		Tags:    []string{r.t.Spec.Key()},
		Summary: "Stream " + r.t.Spec.Object + " history events (Server-Sent Events)",
		Description: "Every history event in commit-safe order, live as transactions end. Each event's `id:` is an opaque " +
			"cursor: reconnect with `Last-Event-ID` (or `?since=`) to resume with exactly the events after it. An event " +
			"is sent only once every older transaction on the Postgres server has ended, so a long-running transaction " +
			"delays the stream. The stream opens with an `id:`-only message holding its start position, and sends a " +
			"`: keepalive` comment when idle. Needs the read and history verbs.",
		Responses: map[string]*huma.Response{"200": {
			Description: "A stream of `event: history` messages.",
			Content:     map[string]*huma.MediaType{"text/event-stream": {Schema: eventStreamSchema("#/components/schemas/" + typeName(r.t.Spec))}},
		}},
		Errors: []int{400, 401, 403},
	}, r.events)
	return []string{path}
}

// eventStreamSchema describes the stream the way Huma's sse package does: one message of the
// array per event.
func eventStreamSchema(recordRef string) *huma.Schema {
	str := func(desc string) *huma.Schema { return &huma.Schema{Type: huma.TypeString, Description: desc} }
	data := &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false,
		Required: []string{"event_id", "op", "record_id", "version", "at", "actor", "reason", "request_id", "record"},
		Properties: map[string]*huma.Schema{
			"event_id":   str("the event's cursor, the same as its id:"),
			"op":         {Type: huma.TypeString, Enum: []any{"INSERT", "UPDATE", "DELETE", "RESTORE", "PURGE"}},
			"record_id":  {Type: huma.TypeString, Format: "uuid"},
			"version":    {Type: huma.TypeInteger, Format: "int32", Description: "the record's version the change made (its last version, for DELETE)"},
			"at":         {Type: huma.TypeString, Format: "date-time"},
			"actor":      str("who made the change"),
			"reason":     {Type: huma.TypeString, Nullable: true},
			"request_id": {Type: huma.TypeString, Nullable: true},
			"record": {Ref: recordRef, Description: "the record as the change left it (as it was, for DELETE), " +
				"in the current definition; redacted fields are null"},
		}}
	return &huma.Schema{
		Type:        huma.TypeArray,
		Title:       "Server-Sent Events",
		Description: "Each item is one message, written as UTF-8 text in the SSE format: `id: <cursor>`, `event: history`, `data: <JSON>`.",
		Items: &huma.Schema{Type: huma.TypeObject, Required: []string{"id", "event", "data"}, Properties: map[string]*huma.Schema{
			"id":    str("the event's cursor"),
			"event": {Type: huma.TypeString, Enum: []any{"history"}},
			"data":  data,
		}},
	}
}

// events checks the caller and the start position before the response begins, so that
// those errors are problem+json; then it streams.
func (r *records) events(ctx context.Context, in *eventsIn) (*huma.StreamResponse, error) {
	if err := r.allowPast(ctx); err != nil {
		return nil, err
	}
	var bad []*huma.ErrorDetail
	var start *eventCursor
	for _, p := range []struct{ loc, value string }{{"query.since", in.Since}, {"header.Last-Event-ID", in.LastEventID}} {
		if p.value == "" {
			continue
		}
		c, ok := parseEventCursor(p.value)
		if !ok {
			bad = append(bad, &huma.ErrorDetail{Location: p.loc, Message: "expected an event id from this stream, or 0", Value: p.value})
			continue
		}
		start = &c // Last-Event-ID comes second, so it wins
	}
	if len(bad) > 0 {
		return nil, problem(http.StatusBadRequest, "invalid event cursor", bad...)
	}
	req := requestOf(ctx, "")
	if start == nil {
		// Now: every event of a transaction that has not ended yet, or starts later.
		h := sqlbuild.HistoryHorizon()
		start = &eventCursor{}
		err := r.s.store.InRequest(ctx, req, []store.Statement{stmt(h)}, func(_ int, rows pgx.Rows) error {
			for rows.Next() {
				if err := rows.Scan(&start.xid); err != nil {
					return err
				}
			}
			return rows.Err()
		})
		if err != nil {
			return nil, storeProblem(err, "read events")
		}
	}
	pos, pace := *start, r.s.cfg.Events
	return &huma.StreamResponse{Body: func(hctx huma.Context) { r.stream(hctx, req, pos, pace) }}, nil
}

// stream writes events after pos until the client leaves, a write fails, or the caller's
// key stops allowing it. A database error ends the stream too: the client reconnects with
// Last-Event-ID and loses nothing.
func (r *records) stream(hctx huma.Context, req store.Request, pos eventCursor, pace EventPace) {
	ctx := hctx.Context()
	hr, w := humago.Unwrap(hctx)
	rc := http.NewResponseController(w)
	// The request has been read. Past the server's ReadTimeout, net/http's background read
	// of the idle connection would fail and cancel the request's context: lift it.
	_ = rc.SetReadDeadline(time.Time{})
	hctx.SetHeader("Content-Type", "text/event-stream")
	hctx.SetHeader("Cache-Control", "no-store")
	hctx.SetHeader("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	hctx.SetStatus(http.StatusOK)

	var buf []byte
	last := time.Now()
	flush := func() bool {
		if err := rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		if err != nil || rc.Flush() != nil {
			return false
		}
		last = time.Now()
		return true
	}
	// An id-only message: EventSource dispatches nothing but remembers the start, so even a
	// stream that ends before its first event resumes from where it began.
	buf = append(buf, "id: "+pos.String()+"\n\n"...)
	if !flush() {
		return
	}
	for {
		actor, ok := r.stillAllowed(ctx, hr)
		if !ok {
			return
		}
		req.Actor = actor
		n := 0
		err := r.s.store.InRequest(ctx, req, []store.Statement{stmt(r.tableFor(ctx).HistoryEvents(pos.xid, pos.event, pace.Page))},
			func(_ int, rows pgx.Rows) error {
				for rows.Next() {
					var c eventCursor
					var ev streamEvent
					if err := rows.Scan(&c.xid, &c.event, &ev.Op, &ev.RecordID, &ev.Version, &ev.At, &ev.Actor,
						&ev.Reason, &ev.RequestID, &ev.Record); err != nil {
						return err
					}
					ev.EventID = c.String()
					data, err := json.Marshal(ev)
					if err != nil {
						return err
					}
					buf = append(buf, "id: "+ev.EventID+"\nevent: history\ndata: "...)
					buf = append(buf, data...)
					buf = append(buf, "\n\n"...)
					pos = c
					n++
				}
				return rows.Err()
			})
		if err != nil {
			if ctx.Err() == nil {
				r.s.log.Warn("events stream ended by an error", "err", err, "request_id", req.RequestID, "object", r.t.Spec.Key())
			}
			return
		}
		if n > 0 && !flush() {
			return
		}
		if n == pace.Page {
			continue // more may be waiting
		}
		if time.Since(last) >= pace.Heartbeat {
			buf = append(buf, ": keepalive\n\n"...)
			if !flush() {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-r.s.closing:
			return
		case <-time.After(pace.Poll):
		}
	}
}

// stillAllowed authenticates the stream's request again before each poll, so a revoked or
// expired key, or roles that no longer hold read and history, end the stream (within the
// key cache's TTL) instead of running on rights granted at connect.
func (r *records) stillAllowed(ctx context.Context, hr *http.Request) (store.Actor, bool) {
	if ctx.Err() != nil {
		return store.Actor{}, false
	}
	actor, _, err := r.s.chain.Authenticate(ctx, hr)
	if err == nil {
		actor, err = r.s.bindings.apply(ctx, actor)
	}
	if err != nil {
		return store.Actor{}, false
	}
	access := r.t.Spec.Access
	return actor, authz.Can(access, actor, "read") && authz.Can(access, actor, "history")
}
