package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// historyEvent is one change of a record as the API shows it. Record is the row image shaped
// by the current definition: fields added since are null, and so are history.redact fields,
// which history keeps only as a keyed hash.
type historyEvent struct {
	EventID   int64           `json:"event_id"`
	At        time.Time       `json:"at"`
	Op        string          `json:"op"`
	Version   int64           `json:"version"`
	Actor     string          `json:"actor"`
	Reason    *string         `json:"reason"`
	RequestID *string         `json:"request_id"`
	Record    json.RawMessage `json:"record"`
}

func (e *historyEvent) scanArgs() []any {
	return []any{&e.EventID, &e.At, &e.Op, &e.Version, &e.Actor, &e.Reason, &e.RequestID, &e.Record}
}

// gone reports whether the record did not exist after this event.
func (e *historyEvent) gone() bool { return e.Op == "DELETE" || e.Op == "PURGE" }

// pastState is a record at one time: its event, and for diff and restore its raw image
// (redacted fields as keyed hashes; never sent to a client) and which keys of it are redacted.
type pastState struct {
	found    bool
	event    historyEvent
	raw      map[string]json.RawMessage
	redacted []string
}

func readPast(dst *pastState, raw bool) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			args := dst.event.scanArgs()
			var image []byte
			if raw {
				args = append(args, &image, &dst.redacted)
			}
			if err := rows.Scan(args...); err != nil {
				return err
			}
			dst.found = true
			if raw {
				if err := json.Unmarshal(image, &dst.raw); err != nil {
					return err
				}
			}
		}
		return rows.Err()
	}
}

// sensitive reports whether field holds no readable value in s: it is redacted now, or its
// value was stored as a keyed hash.
func (r *records) sensitive(field string, states ...pastState) bool {
	if slices.Contains(r.t.Spec.History.Redact, field) {
		return true
	}
	for _, s := range states {
		if slices.Contains(s.redacted, field) {
			return true
		}
	}
	return false
}

type historyIn struct {
	ID     string `path:"id" doc:"record id (uuid)"`
	Since  string `query:"since" doc:"RFC 3339: only events at or after this time"`
	Until  string `query:"until" doc:"RFC 3339: only events at or before this time"`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor string `query:"cursor" maxLength:"512"`
}

// historyPage is the body of GET P/{id}/history.
type historyPage struct {
	Items      []historyEvent `json:"items"`
	NextCursor *string        `json:"next_cursor"`
}

// jsonOut is a body this package encodes itself, described in OpenAPI by a component of the
// object rather than by a Go type.
type jsonOut struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

func encodeJSON(v any) (*jsonOut, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &jsonOut{ContentType: "application/json", Body: b}, nil
}

type diffIn struct {
	ID   string `path:"id" doc:"record id (uuid)"`
	From string `query:"from" required:"true" doc:"RFC 3339 time of the older state"`
	To   string `query:"to" doc:"RFC 3339 time of the newer state; now when absent"`
}

// diffSide is the state of the record at one end of a diff.
type diffSide struct {
	At      time.Time `json:"at"`
	Exists  bool      `json:"exists"`
	Version *int64    `json:"version"`
	Op      *string   `json:"op" doc:"the event that made this state, if any"`
}

type fieldChange struct {
	Field    string          `json:"field"`
	From     json.RawMessage `json:"from,omitempty"`
	To       json.RawMessage `json:"to,omitempty"`
	Redacted bool            `json:"redacted,omitempty" doc:"the field is in history.redact: it changed, its values are not kept"`
}

// diffBody is the body of GET P/{id}/diff.
type diffBody struct {
	From    diffSide      `json:"from"`
	To      diffSide      `json:"to"`
	Changes []fieldChange `json:"changes"`
}

type restoreIn struct {
	ID           string `path:"id" doc:"record id (uuid)"`
	ReasonHeader string `header:"X-Velocity-Reason" maxLength:"1000"`
	RawBody      []byte
}

// registerHistory adds the time-machine routes of one object (history, diff, restore) and
// returns their paths. GET P/{id}?at=T is served by the read route.
func registerHistory(api huma.API, r *records, refs *recordSchemas) []string {
	tag := []string{r.t.Spec.Key()}
	opID := strings.ReplaceAll(r.t.Spec.Key(), ".", "-")
	event, diff := registerHistorySchemas(api, r.t, refs)
	huma.Register(api, huma.Operation{
		OperationID: "history-" + opID, Method: http.MethodGet, Path: r.path + "/{id}/history", Tags: tag,
		Summary:   "Events of a " + r.t.Spec.Object + " record, newest first (needs read and history)",
		Responses: map[string]*huma.Response{"200": jsonResponse("A page of events.", event+".page")},
		Errors:    []int{400, 401, 403, 404},
	}, r.history)
	huma.Register(api, huma.Operation{
		OperationID: "diff-" + opID, Method: http.MethodGet, Path: r.path + "/{id}/diff", Tags: tag,
		Summary:   "Field-by-field changes of a " + r.t.Spec.Object + " record between two times (needs read and history)",
		Responses: map[string]*huma.Response{"200": jsonResponse("The changes.", diff)},
		Errors:    []int{400, 401, 403, 404},
	}, r.diff)
	huma.Register(api, huma.Operation{
		OperationID: "restore-" + opID, Method: http.MethodPost, Path: r.path + "/{id}/restore", Tags: tag,
		Summary: "Write a " + r.t.Spec.Object + " record back as it was at a time (needs restore; a RESTORE event, version + 1)",
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{
			Type: huma.TypeObject, AdditionalProperties: false, Required: []string{"at"},
			Properties: map[string]*huma.Schema{
				"at":     {Type: huma.TypeString, Format: "date-time", Description: "restore the record as it was at this time"},
				"reason": {Type: huma.TypeString, MaxLength: ptrInt(1000), Description: "why; or the X-Velocity-Reason header"},
			},
		}}}},
		SkipValidateBody: true, MaxBodyBytes: r.limit,
		Responses: map[string]*huma.Response{"200": jsonResponse("The restored record.", refs.record)},
		Errors:    []int{400, 401, 403, 404, 409, 413, 422, 428},
	}, r.restore)
	return []string{r.path + "/{id}/history", r.path + "/{id}/diff", r.path + "/{id}/restore"}
}

func ptrInt(n int) *int { return &n }

// registerHistorySchemas adds the components of events and diffs and returns their refs.
func registerHistorySchemas(api huma.API, t *sqlbuild.Table, refs *recordSchemas) (event, diff string) {
	name := typeName(t.Spec)
	reg := api.OpenAPI().Components.Schemas.Map()
	past := &huma.Schema{Type: huma.TypeObject, Properties: systemSchemas(), AdditionalProperties: false,
		Description: "A " + t.Spec.Object + " record as it was: fields added since, and history.redact fields, are null."}
	for _, f := range t.Spec.Fields {
		fs := fieldSchema(f)
		if fs.Type != "" {
			fs.Nullable = true
		}
		past.Properties[f.Name] = fs
	}
	str := &huma.Schema{Type: huma.TypeString, Nullable: true}
	reg[name+".past"] = past
	reg[name+".event"] = &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false,
		Required: []string{"event_id", "at", "op", "version", "actor", "reason", "request_id", "record"},
		Properties: map[string]*huma.Schema{
			"event_id":   {Type: huma.TypeInteger, Format: "int64"},
			"at":         {Type: huma.TypeString, Format: "date-time"},
			"op":         {Type: huma.TypeString, Enum: []any{"INSERT", "UPDATE", "DELETE", "RESTORE", "PURGE"}},
			"version":    {Type: huma.TypeInteger, Format: "int32"},
			"actor":      {Type: huma.TypeString},
			"reason":     str,
			"request_id": str,
			"record":     {Ref: "#/components/schemas/" + name + ".past"},
		}}
	reg[name+".event.page"] = &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false, Required: []string{"items", "next_cursor"},
		Properties: map[string]*huma.Schema{
			"items":       {Type: huma.TypeArray, Items: &huma.Schema{Ref: "#/components/schemas/" + name + ".event"}},
			"next_cursor": {Type: huma.TypeString, Nullable: true},
		}}
	side := &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false, Required: []string{"at", "exists", "version", "op"},
		Properties: map[string]*huma.Schema{
			"at":      {Type: huma.TypeString, Format: "date-time"},
			"exists":  {Type: huma.TypeBoolean},
			"version": {Type: huma.TypeInteger, Nullable: true},
			"op":      str,
		}}
	reg[name+".diff"] = &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false, Required: []string{"from", "to", "changes"},
		Properties: map[string]*huma.Schema{
			"from": side, "to": side,
			"changes": {Type: huma.TypeArray, Items: &huma.Schema{Type: huma.TypeObject, AdditionalProperties: false, Required: []string{"field"},
				Properties: map[string]*huma.Schema{
					"field":    {Type: huma.TypeString},
					"from":     {Description: "the older value; absent for a redacted field"},
					"to":       {Description: "the newer value; absent for a redacted field"},
					"redacted": {Type: huma.TypeBoolean},
				}}},
		}}
	refs.extra = append(refs.extra, name+".past", name+".event", name+".event.page", name+".diff")
	return "#/components/schemas/" + name + ".event", "#/components/schemas/" + name + ".diff"
}

// parseTime reads an RFC 3339 query value; loc names it in the 400.
func parseTime(v, loc string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, withLocation(problem(http.StatusBadRequest, "invalid time"), loc, "expected an RFC 3339 time, e.g. 2026-11-28T12:00:00Z")
	}
	return t, nil
}

// allowPast checks layers 1 and 2 for reading the past: read and history.
func (r *records) allowPast(ctx context.Context) error {
	if err := r.allow(ctx, "read"); err != nil {
		return err
	}
	if err := r.allow(ctx, "history"); err != nil {
		return err
	}
	if err := r.abac(ctx, "read", "", nil, nil); err != nil {
		return err
	}
	return r.abac(ctx, "history", "", nil, nil)
}

func (r *records) notAt(id string, at time.Time, st pastState) *Problem {
	when := at.UTC().Format(time.RFC3339Nano)
	if st.found && st.event.gone() {
		return problem(http.StatusNotFound, "the "+r.t.Spec.Object+" record "+id+" had been deleted at "+when+
			" (deleted at "+st.event.At.UTC().Format(time.RFC3339Nano)+", version "+strconv.FormatInt(st.event.Version, 10)+")")
	}
	return problem(http.StatusNotFound, "the "+r.t.Spec.Object+" record "+id+" did not exist at "+when+", or you may not read its history")
}

// getAt serves GET P/{id}?at=T: the latest event at or before T. The caller has checked
// allowPast.
func (r *records) getAt(ctx context.Context, id, atText string) (*recordOut, error) {
	at, err := parseTime(atText, "query.at")
	if err != nil {
		return nil, err
	}
	var st pastState
	err = r.s.store.InRequest(ctx, requestOf(ctx, ""), []store.Statement{stmt(r.tableFor(ctx).HistoryAt(id, at))},
		func(_ int, rows pgx.Rows) error { return readPast(&st, false)(rows) })
	if err != nil {
		return nil, storeProblem(err, "read history")
	}
	if !st.found || st.event.gone() {
		return nil, r.notAt(id, at, st)
	}
	return &recordOut{ContentType: "application/json", ETag: etag(st.event.Version), Body: st.event.Record}, nil
}

// historyCursor is the keyset position of a history page, bound to the record and the
// time window it was made for.
type historyCursor struct {
	At    time.Time `json:"a"`
	Event int64     `json:"e"`
	Sig   string    `json:"s"`
}

func historySig(id, since, until string) string {
	h := sha256.Sum256([]byte(id + "\x00" + since + "\x00" + until))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

func (r *records) history(ctx context.Context, in *historyIn) (*jsonOut, error) {
	if err := r.allowPast(ctx); err != nil {
		return nil, err
	}
	id, err := checkID(in.ID)
	if err != nil {
		return nil, err
	}
	var since, until, afterAt any
	var afterEvent *int64
	if in.Since != "" {
		if since, err = parseTime(in.Since, "query.since"); err != nil {
			return nil, err
		}
	}
	if in.Until != "" {
		if until, err = parseTime(in.Until, "query.until"); err != nil {
			return nil, err
		}
	}
	sig := historySig(id, in.Since, in.Until)
	if in.Cursor != "" {
		var c historyCursor
		raw, derr := base64.RawURLEncoding.DecodeString(in.Cursor)
		if derr != nil || json.Unmarshal(raw, &c) != nil || c.Sig != sig {
			return nil, withLocation(problem(http.StatusBadRequest, "invalid cursor"), "query.cursor", "not a cursor of this record's history with these since/until")
		}
		afterAt, afterEvent = c.At, &c.Event
	}
	var items []historyEvent
	err = r.s.store.InRequest(ctx, requestOf(ctx, ""), []store.Statement{stmt(r.tableFor(ctx).HistoryPage(id, since, until, afterAt, afterEvent, in.Limit))},
		func(_ int, rows pgx.Rows) error {
			for rows.Next() {
				var e historyEvent
				if err := rows.Scan(e.scanArgs()...); err != nil {
					return err
				}
				items = append(items, e)
			}
			return rows.Err()
		})
	if err != nil {
		return nil, storeProblem(err, "read history")
	}
	if len(items) == 0 && in.Cursor == "" && since == nil && until == nil {
		return nil, problem(http.StatusNotFound, "no history of "+r.t.Spec.Object+" record "+id+", or you may not read it")
	}
	page := historyPage{Items: []historyEvent{}}
	if len(items) > in.Limit {
		last := items[in.Limit-1]
		raw, _ := json.Marshal(historyCursor{At: last.At, Event: last.EventID, Sig: sig})
		next := base64.RawURLEncoding.EncodeToString(raw)
		page.NextCursor = &next
		items = items[:in.Limit]
	}
	page.Items = append(page.Items, items...)
	return encodeJSON(page)
}

func (r *records) diff(ctx context.Context, in *diffIn) (*jsonOut, error) {
	if err := r.allowPast(ctx); err != nil {
		return nil, err
	}
	id, err := checkID(in.ID)
	if err != nil {
		return nil, err
	}
	from, err := parseTime(in.From, "query.from")
	if err != nil {
		return nil, err
	}
	to := time.Now()
	if in.To != "" {
		if to, err = parseTime(in.To, "query.to"); err != nil {
			return nil, err
		}
	}
	if to.Before(from) {
		return nil, withLocation(problem(http.StatusBadRequest, "to is before from"), "query.to", "must not be before from")
	}
	var a, b pastState
	err = r.s.store.InRequest(ctx, requestOf(ctx, ""), []store.Statement{stmt(r.tableFor(ctx).HistoryRawAt(id, from)), stmt(r.tableFor(ctx).HistoryRawAt(id, to))},
		func(i int, rows pgx.Rows) error {
			if i == 0 {
				return readPast(&a, true)(rows)
			}
			return readPast(&b, true)(rows)
		})
	if err != nil {
		return nil, storeProblem(err, "read history")
	}
	exists := func(s pastState) bool { return s.found && !s.event.gone() }
	if !exists(a) && !exists(b) {
		return nil, problem(http.StatusNotFound, "the "+r.t.Spec.Object+" record "+id+" existed at neither time, or you may not read its history")
	}
	out := diffBody{From: side(from, a), To: side(to, b)}
	if out.Changes, err = r.changes(a, b, r.hidden(ctx)); err != nil {
		return nil, err
	}
	return encodeJSON(out)
}

func side(at time.Time, s pastState) diffSide {
	d := diffSide{At: at}
	if s.found {
		d.Exists = !s.event.gone()
		d.Version, d.Op = &s.event.Version, &s.event.Op
	}
	return d
}

// changes compares two states field by field in definition order; a side where the record
// did not exist has every field null. Redacted fields compare by their stored form (the keyed
// hash); a field redacted on one side only shows as changed.
// Fields the caller may not read (hidden) are left out (layer 5).
func (r *records) changes(a, b pastState, hidden []string) ([]fieldChange, error) {
	values := func(s pastState) (map[string]json.RawMessage, error) {
		m := map[string]json.RawMessage{}
		if !s.found || s.event.gone() {
			return m, nil
		}
		return m, json.Unmarshal(s.event.Record, &m)
	}
	av, err := values(a)
	if err != nil {
		return nil, err
	}
	bv, err := values(b)
	if err != nil {
		return nil, err
	}
	null := json.RawMessage("null")
	or := func(v json.RawMessage) json.RawMessage {
		if len(v) == 0 {
			return null
		}
		return v
	}
	out := []fieldChange{}
	for _, f := range r.t.Spec.Fields {
		if slices.Contains(hidden, f.Name) {
			continue
		}
		if r.sensitive(f.Name, a, b) {
			var ah, bh json.RawMessage
			if a.found && !a.event.gone() {
				ah = a.raw[f.Name]
			}
			if b.found && !b.event.gone() {
				bh = b.raw[f.Name]
			}
			if !bytes.Equal(or(ah), or(bh)) {
				out = append(out, fieldChange{Field: f.Name, Redacted: true})
			}
			continue
		}
		x, y := or(av[f.Name]), or(bv[f.Name])
		if !jsonEqual(x, y) {
			out = append(out, fieldChange{Field: f.Name, From: x, To: y})
		}
	}
	return out, nil
}

// jsonEqual compares two JSON values by meaning (jsonb sorts keys; numbers may differ in form).
func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// needReason is policy.requireReason (layer 3): 428 when verb needs a reason and none was given.
func (r *records) needReason(verb, reason, loc string) error {
	if strings.TrimSpace(reason) == "" && slices.Contains(r.t.Spec.Policy.RequireReason, verb) {
		p := withLocation(problem(http.StatusPreconditionRequired, verb+" on "+r.t.Spec.Key()+" requires a reason"), loc, "give a reason (X-Velocity-Reason header)")
		p.Layer = authz.LayerPolicy
		return p
	}
	return nil
}

// restore writes the image of the latest event at or before at back through the normal write
// path: an UPDATE of the live record, or an INSERT that recreates a deleted one with the next
// version. History is never edited; the write itself adds a RESTORE event.
func (r *records) restore(ctx context.Context, in *restoreIn) (*recordOut, error) {
	if err := r.allow(ctx, "restore"); err != nil {
		return nil, err
	}
	id, err := checkID(in.ID)
	if err != nil {
		return nil, err
	}
	body, err := decodeObject(in.RawBody)
	if err != nil {
		return nil, err
	}
	var req struct {
		At     string `json:"at"`
		Reason string `json:"reason"`
	}
	for k, v := range body {
		switch k {
		case "at", "reason":
			var s string
			if json.Unmarshal(v, &s) != nil {
				return nil, withLocation(problem(http.StatusBadRequest, "invalid restore request"), "body."+k, "expected a string")
			}
			if k == "at" {
				req.At = s
			} else {
				req.Reason = s
			}
		default:
			return nil, withLocation(problem(http.StatusBadRequest, "invalid restore request"), "body."+k, "unknown field")
		}
	}
	if req.At == "" {
		return nil, withLocation(problem(http.StatusBadRequest, "invalid restore request"), "body.at", "is required")
	}
	at, err := time.Parse(time.RFC3339Nano, req.At)
	if err != nil {
		return nil, withLocation(problem(http.StatusBadRequest, "invalid restore request"), "body.at", "expected an RFC 3339 time")
	}
	if len(req.Reason) > 1000 {
		return nil, withLocation(problem(http.StatusBadRequest, "invalid restore request"), "body.reason", "at most 1000 characters")
	}
	reason := req.Reason
	if reason == "" {
		reason = in.ReasonHeader
	}
	if err := r.allowPast(ctx); err != nil {
		return nil, err
	}
	if !r.needsRecord("restore") {
		if err := r.abac(ctx, "restore", reason, nil, nil); err != nil {
			return nil, err
		}
		if err := r.needReason("restore", reason, "body.reason"); err != nil {
			return nil, err
		}
	}

	// What to restore, and what the record is now.
	var past pastState
	var current record
	var last int64
	request := requestOf(ctx, reason)
	err = r.s.store.InRequest(ctx, request, []store.Statement{stmt(r.t.HistoryRawAt(id, at)), stmt(r.t.GetRaw(id)), stmt(r.t.LastVersion(id))},
		func(i int, rows pgx.Rows) error {
			switch i {
			case 0:
				return readPast(&past, true)(rows)
			case 1:
				return readRecord(&current)(rows)
			}
			for rows.Next() {
				if err := rows.Scan(&last); err != nil {
					return err
				}
			}
			return rows.Err()
		})
	if err != nil {
		return nil, storeProblem(err, "restore")
	}
	if !past.found || past.event.gone() {
		return nil, r.notAt(id, at, past)
	}
	if r.needsRecord("restore") {
		// Layer 2 sees the record as it is (or, when it is deleted, as it will be again)
		// and the image that the restore writes back.
		proposed, err := merged(nil, past.raw)
		if err != nil {
			return nil, err
		}
		cur := proposed
		if current.json != nil {
			if cur, err = decodeRecord(current.json); err != nil {
				return nil, err
			}
		}
		if err := r.abac(ctx, "restore", reason, cur, proposed); err != nil {
			return nil, err
		}
		if err := r.needReason("restore", reason, "body.reason"); err != nil {
			return nil, err
		}
	}

	// The fields to write back: those the image has (not added since) and holds a value of
	// (not redacted). A required field that cannot come back stops a recreate.
	var fields []string
	var lost sqlbuild.Errors
	for _, f := range r.t.Spec.Fields {
		_, inImage := past.raw[f.Name]
		switch {
		case inImage && !r.sensitive(f.Name, past):
			fields = append(fields, f.Name)
		case current.json == nil && f.Required && len(f.Default) == 0 && inImage:
			lost = append(lost, sqlbuild.FieldError{Location: "body.at", Message: "field " + f.Name + " cannot be recreated: history keeps only a keyed hash of it"})
		case current.json == nil && f.Required && len(f.Default) == 0:
			lost = append(lost, sqlbuild.FieldError{Location: "body.at", Message: "field " + f.Name + " is required now and did not exist then"})
		}
	}
	if len(lost) > 0 {
		return nil, invalid(http.StatusUnprocessableEntity, "restore: the deleted record cannot be recreated as it was at "+at.UTC().Format(time.RFC3339Nano), lost)
	}
	write := r.t.RestoreInsert(id, past.event.At, past.event.EventID, last+1, fields)
	if current.json != nil {
		write = r.t.RestoreUpdate(id, past.event.At, past.event.EventID, current.version, fields)
	}
	var wrote bool
	var rec record
	err = r.s.store.InRequest(ctx, request, []store.Statement{stmt(sqlbuild.SetRestore()), stmt(write), stmt(r.t.Get(id))},
		func(i int, rows pgx.Rows) error {
			if i == 2 {
				return readRecord(&rec)(rows)
			}
			for rows.Next() {
				wrote = i == 1
			}
			return rows.Err()
		})
	if errors.Is(err, store.ErrInvalid) {
		// A value of then that the field no longer accepts (its type or constraints changed).
		return nil, withLocation(problem(http.StatusUnprocessableEntity, "restore: a value as of "+at.UTC().Format(time.RFC3339Nano)+
			" is not valid for its field now; its type or constraints changed since"), "body.at", "choose another time, or change the record instead")
	}
	if err != nil {
		return nil, storeProblem(err, "restore")
	}
	if current.json != nil && !wrote {
		return nil, problem(http.StatusConflict, "restore: the record changed while it was being restored; retry")
	}
	if rec.json == nil {
		return &recordOut{ContentType: "application/json", Body: []byte(`{"id":"` + id + `"}`)}, nil
	}
	return r.respond(ctx, "", rec)
}
