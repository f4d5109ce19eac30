package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// recordOut carries JSON that Postgres made (row_to_json); as []byte it is written as is,
// not decoded and encoded again.
type recordOut struct {
	ContentType string `header:"Content-Type"`
	Location    string `header:"Location"`
	ETag        string `header:"ETag"`
	Body        []byte
}

func recordResponse(location string, rec record) *recordOut {
	return &recordOut{ContentType: "application/json", Location: location, ETag: etag(rec.version), Body: rec.json}
}

// respond is recordResponse without the fields the caller may not read (layer 5).
func (r *records) respond(ctx context.Context, location string, rec record) (*recordOut, error) {
	body, err := withoutFields(rec.json, r.hidden(ctx))
	if err != nil {
		return nil, err
	}
	rec.json = body
	return recordResponse(location, rec), nil
}

type writeIn struct {
	Reason  string `header:"X-Velocity-Reason" maxLength:"1000" doc:"why this change is made; set as velocity.reason for the transaction, for history and audit to record"`
	RawBody []byte
}

type getIn struct {
	ID string `path:"id" doc:"record id (uuid)"`
	At string `query:"at" doc:"RFC 3339 time: the record as it was then (needs the read and history verbs)"`
}

type patchIn struct {
	ID      string `path:"id" doc:"record id (uuid)"`
	IfMatch string `header:"If-Match" doc:"the version the change is based on; a stale one gets 412"`
	Reason  string `header:"X-Velocity-Reason" maxLength:"1000" doc:"why this change is made; set as velocity.reason for the transaction, for history and audit to record"`
	RawBody []byte
}

type deleteIn struct {
	ID      string `path:"id" doc:"record id (uuid)"`
	IfMatch string `header:"If-Match" doc:"the version the delete is based on; a stale one gets 412"`
	Reason  string `header:"X-Velocity-Reason" maxLength:"1000"`
}

type listIn struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"50"`
	Cursor string `query:"cursor" maxLength:"4096"`
	raw    url.Values
}

// Resolve keeps the raw query so field filters (?status=paid) can be read.
func (l *listIn) Resolve(ctx huma.Context) []error {
	u := ctx.URL()
	l.raw = u.Query()
	return nil
}

// listOut is {"items": [...], "next_cursor": ...}, assembled from Postgres's JSON rows.
type listOut struct {
	ContentType string `header:"Content-Type"`
	Body        []byte
}

type queryIn struct {
	RawBody []byte
}

type deleteOut struct{}

// records serves the routes of one object.
type records struct {
	s     *Server
	t     *sqlbuild.Table
	path  string
	limit int64
	rules compiledRules // layer 2, compiled once per schema version

	narrowMu sync.Mutex
	narrow   map[string]*sqlbuild.Table // the table without the fields hidden from some roles
}

// registerRecords adds the routes and schemas of one object and says which they are.
func registerRecords(api huma.API, s *Server, t *sqlbuild.Table) objectDoc {
	r := &records{s: s, t: t, path: t.Spec.Path(), limit: s.cfg.MaxBodyBytes, rules: s.rules.get(t.Spec)}
	refs := registerSchemas(api, t)
	tag := []string{t.Spec.Key()}
	opID := strings.ReplaceAll(t.Spec.Key(), ".", "-")
	errs := []int{400, 401, 403, 404, 413, 422}

	huma.Register(api, huma.Operation{
		OperationID: "create-" + opID, Method: http.MethodPost, Path: r.path, Tags: tag,
		Summary: "Create a " + t.Spec.Object + " record", DefaultStatus: http.StatusCreated,
		RequestBody: jsonBody(refs.create, true), SkipValidateBody: true, MaxBodyBytes: r.limit,
		Responses: map[string]*huma.Response{"201": jsonResponse("The created record.", refs.record)}, Errors: append(errs, 409, 428),
	}, r.create)
	huma.Register(api, huma.Operation{
		OperationID: "list-" + opID, Method: http.MethodGet, Path: r.path, Tags: tag,
		Summary:   "List " + t.Spec.Object + " records (keyset pages; ?<field>=<value> filters on filterable fields)",
		Responses: map[string]*huma.Response{"200": jsonResponse("A page of records.", refs.list)}, Errors: []int{400, 401, 403},
	}, r.list)
	huma.Register(api, huma.Operation{
		OperationID: "query-" + opID, Method: http.MethodPost, Path: r.path + "/query", Tags: tag,
		Summary:     "Query " + t.Spec.Object + " records with where, orderBy, limit and cursor",
		RequestBody: jsonBody(refs.query, true), SkipValidateBody: true, MaxBodyBytes: r.limit,
		Responses: map[string]*huma.Response{"200": jsonResponse("A page of records.", refs.list)}, Errors: []int{400, 401, 403, 413},
	}, r.query)
	huma.Register(api, huma.Operation{
		OperationID: "get-" + opID, Method: http.MethodGet, Path: r.path + "/{id}", Tags: tag,
		Summary:   "Read a " + t.Spec.Object + " record",
		Responses: map[string]*huma.Response{"200": jsonResponse("The record; ETag is its version.", refs.record)}, Errors: []int{400, 401, 403, 404},
	}, r.get)
	huma.Register(api, huma.Operation{
		OperationID: "patch-" + opID, Method: http.MethodPatch, Path: r.path + "/{id}", Tags: tag,
		Summary: "Change a " + t.Spec.Object + " record (JSON merge patch)",
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/merge-patch+json": {Schema: &huma.Schema{Ref: refs.patch}},
			"application/json":             {Schema: &huma.Schema{Ref: refs.patch}},
		}},
		SkipValidateBody: true, MaxBodyBytes: r.limit,
		Responses: map[string]*huma.Response{"200": jsonResponse("The changed record.", refs.record)}, Errors: append(errs, 409, 412, 428),
	}, r.patch)
	huma.Register(api, huma.Operation{
		OperationID: "delete-" + opID, Method: http.MethodDelete, Path: r.path + "/{id}", Tags: tag,
		Summary: "Delete a " + t.Spec.Object + " record", DefaultStatus: http.StatusNoContent,
		Errors: []int{400, 401, 403, 404, 412, 428},
	}, r.delete)
	paths := []string{r.path, r.path + "/query", r.path + "/{id}"}
	paths = append(paths, registerHistory(api, r, &refs)...)
	paths = append(paths, registerSnapshot(api, r)...)
	paths = append(paths, registerEvents(api, r)...)
	// Every operation of the object names its schema, for the audit entry of each request.
	for _, p := range paths {
		if item := api.OpenAPI().Paths[p]; item != nil {
			for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
				if op != nil {
					if op.Metadata == nil {
						op.Metadata = map[string]any{}
					}
					op.Metadata["schema"] = t.Spec.Key()
				}
			}
		}
	}
	return objectDoc{
		access:  t.Spec.Access,
		key:     t.Spec.Key(),
		paths:   paths,
		schemas: refs.names(),
	}
}

// allow is layer 1: a fast, clear 403 before any SQL (Postgres policies enforce it again).
func (r *records) allow(ctx context.Context, verb string) error {
	actor, _ := ctx.Value(actorKey).(store.Actor)
	if !authz.Can(r.t.Spec.Access, actor, verb) {
		return denied(authz.LayerRBAC, "none of your roles may "+verb+" "+r.t.Spec.Key())
	}
	return nil
}

// gate runs the layers of a verb that need no record: 1 (RBAC) and 2 (ABAC rules over the
// actor and the request; rules of list-style verbs may not read the record).
func (r *records) gate(ctx context.Context, verb string) error {
	if err := r.allow(ctx, verb); err != nil {
		return err
	}
	return r.abac(ctx, verb, "", nil, nil)
}

// decodeObject parses a JSON object body; anything else is a 400 located at body.
func decodeObject(raw []byte) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, withLocation(problem(http.StatusBadRequest, "request body is required"), "body", "expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, withLocation(problem(http.StatusBadRequest, "malformed JSON body"), "body", "expected a JSON object")
	}
	if dec.More() {
		return nil, withLocation(problem(http.StatusBadRequest, "malformed JSON body"), "body", "unexpected data after the JSON object")
	}
	return obj, nil
}

func checkID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", withLocation(problem(http.StatusBadRequest, "invalid record id"), "path.id", "expected a UUID")
	}
	return u.String(), nil
}

// parseIfMatch accepts 3, "3" and W/"3"; * (any current version, RFC 9110) is the same as
// no precondition here, since a missing record is a 404 either way.
func parseIfMatch(h string) (int64, error) {
	if h == "" || strings.TrimSpace(h) == "*" {
		return 0, nil
	}
	v := strings.TrimPrefix(strings.TrimSpace(h), "W/")
	v = strings.Trim(v, `"`)
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 {
		return 0, withLocation(problem(http.StatusBadRequest, "invalid If-Match"), "header.If-Match", "expected a record version")
	}
	return n, nil
}

func etag(version int64) string {
	return `"` + strconv.FormatInt(version, 10) + `"`
}

// record is one record as read back: its JSON and its version.
type record struct {
	json    []byte
	version int64
}

// readRecord collects the single row of a Get, if any.
func readRecord(dst *record) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			if err := rows.Scan(&dst.json, &dst.version); err != nil {
				return err
			}
		}
		return rows.Err()
	}
}

// The layers run in their order on every request (docs/access-control.md): 1 RBAC, 2 ABAC,
// 3 policy, 5 field writes here in Go; 4 (row filter), 5 and 6 (the read view) and 7 (RLS) in
// Postgres. The first denial ends the request.
func (r *records) create(ctx context.Context, in *writeIn) (*recordOut, error) {
	if err := r.allow(ctx, "create"); err != nil {
		return nil, err
	}
	body, err := decodeObject(in.RawBody)
	if err != nil {
		return nil, err
	}
	vals, errs := r.t.CheckRecord(body, sqlbuild.ForCreate)
	if len(errs) > 0 {
		return nil, invalid(http.StatusUnprocessableEntity, "the record is not valid for "+r.t.Spec.Key(), errs)
	}
	if len(r.t.Spec.Access.ABAC) > 0 {
		// A create has no stored record: record and proposed are both the new one.
		proposed, err := merged(nil, body)
		if err != nil {
			return nil, err
		}
		if err := r.abac(ctx, "create", in.Reason, proposed, proposed); err != nil {
			return nil, err
		}
	}
	if err := r.beforeWrite(ctx, "create", in.Reason, body, func() (map[string]any, error) { return merged(nil, body) }); err != nil {
		return nil, err
	}
	id := ""
	if v := vals["id"]; v != nil {
		id = *v
	} else {
		u, err := uuid.NewV7()
		if err != nil {
			return nil, err
		}
		id = u.String()
	}
	var rec record
	err = r.s.store.InRequest(ctx, requestOf(ctx, in.Reason), []store.Statement{
		stmt(r.t.Insert(id, vals)), stmt(r.t.Get(id)),
	}, func(i int, rows pgx.Rows) error {
		if i == 1 {
			return readRecord(&rec)(rows)
		}
		return nil
	})
	if err != nil {
		return nil, storeProblem(err, "create")
	}
	if rec.json == nil {
		// Written, but the caller's read rules hide it.
		return &recordOut{ContentType: "application/json", Location: r.path + "/" + id, Body: []byte(`{"id":"` + id + `"}`)}, nil
	}
	return r.respond(ctx, r.path+"/"+id, rec)
}

func stmt(s sqlbuild.Statement) store.Statement { return store.Statement{SQL: s.SQL, Args: s.Args} }

func (r *records) get(ctx context.Context, in *getIn) (*recordOut, error) {
	// ?at reads the past: getAt checks read and history itself, each layer once.
	if in.At == "" {
		if err := r.gate(ctx, "read"); err != nil {
			return nil, err
		}
	} else if err := r.allowPast(ctx); err != nil {
		return nil, err
	}
	id, err := checkID(in.ID)
	if err != nil {
		return nil, err
	}
	if in.At != "" {
		return r.getAt(ctx, id, in.At)
	}
	var rec record
	err = r.s.store.InRequest(ctx, requestOf(ctx, ""), []store.Statement{stmt(r.t.Get(id))},
		func(_ int, rows pgx.Rows) error { return readRecord(&rec)(rows) })
	if err != nil {
		return nil, storeProblem(err, "read")
	}
	if rec.json == nil {
		return nil, problem(http.StatusNotFound, "no "+r.t.Spec.Object+" record "+id)
	}
	return r.respond(ctx, "", rec)
}

func (r *records) patch(ctx context.Context, in *patchIn) (*recordOut, error) {
	if err := r.allow(ctx, "update"); err != nil {
		return nil, err
	}
	id, err := checkID(in.ID)
	if err != nil {
		return nil, err
	}
	ifVersion, err := parseIfMatch(in.IfMatch)
	if err != nil {
		return nil, err
	}
	body, err := decodeObject(in.RawBody)
	if err != nil {
		return nil, err
	}
	vals, errs := r.t.CheckRecord(body, sqlbuild.ForPatch)
	if len(errs) > 0 {
		return nil, invalid(http.StatusUnprocessableEntity, "the patch is not valid for "+r.t.Spec.Key(), errs)
	}
	if !r.needsRecord("update") {
		if err := r.abac(ctx, "update", in.Reason, nil, nil); err != nil {
			return nil, err
		}
		proposed := func() (map[string]any, error) {
			current, err := r.readRaw(ctx, id)
			if err != nil {
				return nil, err
			}
			cur, err := decodeRecord(current.json)
			if err != nil {
				return nil, err
			}
			return merged(cur, body)
		}
		if err := r.beforeWrite(ctx, "update", in.Reason, body, proposed); err != nil {
			return nil, err
		}
		out, _, err := r.update(ctx, id, vals, ifVersion, in.Reason)
		return out, err
	}
	// Layer 2 decides on the stored record: read it, decide, then change it only at the
	// version decided on. A concurrent change in between is retried, so the rules always
	// judged the version that is changed.
	for attempt := 0; ; attempt++ {
		current, err := r.readRaw(ctx, id)
		if err != nil {
			return nil, err
		}
		if ifVersion > 0 && current.version != ifVersion {
			p := problem(http.StatusPreconditionFailed, "the record changed: it is at version "+strconv.FormatInt(current.version, 10)+", not "+strconv.FormatInt(ifVersion, 10))
			return nil, withLocation(p, "header.If-Match", "stale version")
		}
		cur, err := decodeRecord(current.json)
		if err != nil {
			return nil, err
		}
		proposed, err := merged(cur, body)
		if err != nil {
			return nil, err
		}
		if err := r.abac(ctx, "update", in.Reason, cur, proposed); err != nil {
			return nil, err
		}
		if err := r.beforeWrite(ctx, "update", in.Reason, body, func() (map[string]any, error) { return proposed, nil }); err != nil {
			return nil, err
		}
		out, raced, err := r.update(ctx, id, vals, current.version, in.Reason)
		if !raced || ifVersion > 0 || attempt == 2 {
			if raced {
				return nil, problem(http.StatusConflict, "update: the record kept changing while its rules were checked; retry")
			}
			return out, err
		}
	}
}

// beforeWrite runs layers 3 and 5 of a write: the reason policy, then the field write rules.
// proposed gives the record as the write would leave it, asked only to tell whether layer 4
// refuses the write before layer 5 does.
func (r *records) beforeWrite(ctx context.Context, verb, reason string, body map[string]json.RawMessage, proposed func() (map[string]any, error)) error {
	if err := r.needReason(verb, reason, "header.X-Velocity-Reason"); err != nil {
		return err
	}
	err := r.writable(ctx, body)
	if err == nil || r.t.Spec.Access.RowFilter == "" {
		return err
	}
	rec, perr := proposed()
	if perr != nil {
		return perr
	}
	return r.rowFilterFirst(ctx, rec, err)
}

// readRaw reads the stored record for layer 2, under row-level security; 404 when the caller
// cannot see it.
func (r *records) readRaw(ctx context.Context, id string) (record, error) {
	var rec record
	err := r.s.store.InRequest(ctx, requestOf(ctx, ""), []store.Statement{stmt(r.t.GetRaw(id))},
		func(_ int, rows pgx.Rows) error { return readRecord(&rec)(rows) })
	if err != nil {
		return rec, storeProblem(err, "read")
	}
	if rec.json == nil {
		return rec, problem(http.StatusNotFound, "no "+r.t.Spec.Object+" record "+id)
	}
	return rec, nil
}

// update changes record id and reads it back. raced reports that ifVersion was given and
// the record is at another one (the caller's 412, or layer 2's retry).
func (r *records) update(ctx context.Context, id string, vals sqlbuild.Values, ifVersion int64, reason string) (*recordOut, bool, error) {
	var updated bool
	var rec record
	err := r.s.store.InRequest(ctx, requestOf(ctx, reason), []store.Statement{
		stmt(r.t.Update(id, vals, ifVersion)), stmt(r.t.Get(id)),
	}, func(i int, rows pgx.Rows) error {
		if i == 0 {
			for rows.Next() {
				updated = true
			}
			return rows.Err()
		}
		return readRecord(&rec)(rows)
	})
	if err != nil {
		return nil, false, storeProblem(err, "update")
	}
	switch {
	case rec.json == nil:
		return nil, false, problem(http.StatusNotFound, "no "+r.t.Spec.Object+" record "+id)
	case !updated && ifVersion > 0 && rec.version != ifVersion:
		p := problem(http.StatusPreconditionFailed, "the record changed: it is at version "+strconv.FormatInt(rec.version, 10)+", not "+strconv.FormatInt(ifVersion, 10))
		return nil, true, withLocation(p, "header.If-Match", "stale version")
	case !updated:
		return nil, false, denied(authz.LayerRLS, "update denied by row-level security")
	}
	out, err := r.respond(ctx, "", rec)
	return out, false, err
}

func (r *records) delete(ctx context.Context, in *deleteIn) (*deleteOut, error) {
	if err := r.allow(ctx, "delete"); err != nil {
		return nil, err
	}
	id, err := checkID(in.ID)
	if err != nil {
		return nil, err
	}
	ifVersion, err := parseIfMatch(in.IfMatch)
	if err != nil {
		return nil, err
	}
	if !r.needsRecord("delete") {
		if err := r.abac(ctx, "delete", in.Reason, nil, nil); err != nil {
			return nil, err
		}
		if err := r.needReason("delete", in.Reason, "header.X-Velocity-Reason"); err != nil {
			return nil, err
		}
		_, err := r.remove(ctx, id, ifVersion, in.Reason)
		return &deleteOut{}, err
	}
	for attempt := 0; ; attempt++ {
		current, err := r.readRaw(ctx, id)
		if err != nil {
			return nil, err
		}
		if ifVersion > 0 && current.version != ifVersion {
			return nil, withLocation(problem(http.StatusPreconditionFailed, "the record changed since version "+strconv.FormatInt(ifVersion, 10)), "header.If-Match", "stale version")
		}
		cur, err := decodeRecord(current.json)
		if err != nil {
			return nil, err
		}
		if err := r.abac(ctx, "delete", in.Reason, cur, nil); err != nil {
			return nil, err
		}
		if err := r.needReason("delete", in.Reason, "header.X-Velocity-Reason"); err != nil {
			return nil, err
		}
		raced, err := r.remove(ctx, id, current.version, in.Reason)
		if !raced || ifVersion > 0 || attempt == 2 {
			if raced {
				return nil, problem(http.StatusConflict, "delete: the record kept changing while its rules were checked; retry")
			}
			return &deleteOut{}, err
		}
	}
}

// remove deletes record id; raced reports that ifVersion was given and the record is at
// another one.
func (r *records) remove(ctx context.Context, id string, ifVersion int64, reason string) (bool, error) {
	var deleted, exists bool
	var version int64
	err := r.s.store.InRequest(ctx, requestOf(ctx, reason), []store.Statement{
		stmt(r.t.Delete(id, ifVersion)), stmt(r.t.Version(id)),
	}, func(i int, rows pgx.Rows) error {
		for rows.Next() {
			if i == 0 {
				deleted = true
				continue
			}
			exists = true
			if err := rows.Scan(&version); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return false, storeProblem(err, "delete")
	}
	switch {
	case deleted:
		return false, nil
	case exists && ifVersion > 0 && version != ifVersion:
		return true, withLocation(problem(http.StatusPreconditionFailed, "the record changed since version "+strconv.FormatInt(ifVersion, 10)), "header.If-Match", "stale version")
	case exists:
		return false, denied(authz.LayerRLS, "delete denied by row-level security")
	}
	return false, problem(http.StatusNotFound, "no "+r.t.Spec.Object+" record "+id)
}

func (r *records) list(ctx context.Context, in *listIn) (*listOut, error) {
	if err := r.gate(ctx, "read"); err != nil {
		return nil, err
	}
	// Every other query parameter is an equality filter on a field.
	where := map[string]any{}
	var errs sqlbuild.Errors
	keys := make([]string, 0, len(in.raw))
	for k := range in.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "limit" || k == "cursor" {
			continue
		}
		f, ok := r.t.Field(k)
		if !ok {
			errs = append(errs, sqlbuild.FieldError{Location: "query." + k, Message: "unknown parameter or field"})
			continue
		}
		if !f.Filterable {
			errs = append(errs, sqlbuild.FieldError{Location: "query." + k, Message: "field " + k + " is not filterable"})
			continue
		}
		if len(in.raw[k]) != 1 {
			errs = append(errs, sqlbuild.FieldError{Location: "query." + k, Message: "give one value"})
			continue
		}
		where[k] = map[string]json.RawMessage{"eq": queryValue(f, in.raw[k][0])}
	}
	if len(errs) > sqlbuild.MaxErrors {
		errs = append(errs[:sqlbuild.MaxErrors], sqlbuild.FieldError{Location: "query", Message: "more problems follow; fix these first"})
	}
	if len(errs) > 0 {
		return nil, invalid(http.StatusBadRequest, "bad list parameters", errs)
	}
	q := sqlbuild.QueryInput{Limit: &in.Limit, Cursor: in.Cursor}
	if len(where) > 0 {
		q.Where, _ = json.Marshal(where)
	}
	out, err := r.page(ctx, q, "query")
	var p *Problem
	if errors.As(err, &p) {
		// The filters were built as query.where.<field>.eq; name the parameter instead.
		for _, e := range p.Errors {
			if rest, ok := strings.CutPrefix(e.Location, "query.where."); ok {
				e.Location = "query." + strings.TrimSuffix(rest, ".eq")
			}
		}
	}
	return out, err
}

// queryValue reads a query-string value as the JSON the field expects: numbers and booleans
// as literals, everything else as a string.
func queryValue(f schemadef.Field, v string) json.RawMessage {
	switch f.Type {
	case schemadef.TypeInteger, schemadef.TypeNumber, schemadef.TypeDecimal, schemadef.TypeBoolean:
		if json.Valid([]byte(v)) {
			return json.RawMessage(v)
		}
	}
	b, _ := json.Marshal(v)
	return b
}

func (r *records) query(ctx context.Context, in *queryIn) (*listOut, error) {
	if err := r.gate(ctx, "read"); err != nil {
		return nil, err
	}
	if _, err := decodeObject(in.RawBody); err != nil {
		return nil, err
	}
	var q sqlbuild.QueryInput
	dec := json.NewDecoder(bytes.NewReader(in.RawBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return nil, withLocation(problem(http.StatusBadRequest, "bad query"), "body", queryDecodeMessage(err))
	}
	return r.page(ctx, q, "body")
}

// queryDecodeMessage says what was wrong with a query body without echoing Go types.
func queryDecodeMessage(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return msg[i:] + " (use where, orderBy, limit, cursor)"
	}
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return "wrong type at " + ute.Field
	}
	return "expected {\"where\": {...}, \"orderBy\": [...], \"limit\": n, \"cursor\": \"...\"}"
}

func (r *records) page(ctx context.Context, q sqlbuild.QueryInput, loc string) (*listOut, error) {
	if err := r.readable(ctx, q, loc); err != nil {
		return nil, err
	}
	pg, errs := r.t.BuildQuery(q, loc)
	if len(errs) > 0 {
		return nil, invalid(http.StatusBadRequest, "bad query for "+r.t.Spec.Key(), errs)
	}
	items := make([]json.RawMessage, 0, pg.Limit+1)
	err := r.s.store.InRequest(ctx, requestOf(ctx, ""), []store.Statement{stmt(pg.Statement)},
		func(_ int, rows pgx.Rows) error {
			for rows.Next() {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					return err
				}
				items = append(items, b)
			}
			return rows.Err()
		})
	if err != nil {
		return nil, storeProblem(err, "query")
	}
	next := []byte("null")
	if len(items) > pg.Limit {
		items = items[:pg.Limit]
		c, err := pg.NextCursor(items[len(items)-1])
		if err != nil {
			return nil, err
		}
		next, _ = json.Marshal(c)
	}
	if hidden := r.hidden(ctx); len(hidden) > 0 {
		for i, it := range items {
			if items[i], err = withoutFields(it, hidden); err != nil {
				return nil, err
			}
		}
	}
	size := 32 + len(next)
	for _, it := range items {
		size += len(it) + 1
	}
	body := make([]byte, 0, size)
	body = append(body, `{"items":[`...)
	for i, it := range items {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it...)
	}
	body = append(body, `],"next_cursor":`...)
	body = append(body, next...)
	body = append(body, '}')
	return &listOut{ContentType: "application/json", Body: body}, nil
}
