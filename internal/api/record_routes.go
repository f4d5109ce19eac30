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
}

// registerRecords adds the routes and schemas of one object and says which they are.
func registerRecords(api huma.API, s *Server, t *sqlbuild.Table) objectDoc {
	r := &records{s: s, t: t, path: t.Spec.Path(), limit: s.cfg.MaxBodyBytes}
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

func (r *records) create(ctx context.Context, in *writeIn) (*recordOut, error) {
	if err := r.allow(ctx, "create"); err != nil {
		return nil, err
	}
	if err := r.needReason("create", in.Reason, "header.X-Velocity-Reason"); err != nil {
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
	return recordResponse(r.path+"/"+id, rec), nil
}

func stmt(s sqlbuild.Statement) store.Statement { return store.Statement{SQL: s.SQL, Args: s.Args} }

func (r *records) get(ctx context.Context, in *getIn) (*recordOut, error) {
	if err := r.allow(ctx, "read"); err != nil {
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
	return recordResponse("", rec), nil
}

func (r *records) patch(ctx context.Context, in *patchIn) (*recordOut, error) {
	if err := r.allow(ctx, "update"); err != nil {
		return nil, err
	}
	if err := r.needReason("update", in.Reason, "header.X-Velocity-Reason"); err != nil {
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
	var updated bool
	var rec record
	err = r.s.store.InRequest(ctx, requestOf(ctx, in.Reason), []store.Statement{
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
		return nil, storeProblem(err, "update")
	}
	switch {
	case rec.json == nil:
		return nil, problem(http.StatusNotFound, "no "+r.t.Spec.Object+" record "+id)
	case !updated && ifVersion > 0:
		p := problem(http.StatusPreconditionFailed, "the record changed: it is at version "+strconv.FormatInt(rec.version, 10)+", not "+strconv.FormatInt(ifVersion, 10))
		return nil, withLocation(p, "header.If-Match", "stale version")
	case !updated:
		return nil, denied(authz.LayerRLS, "update denied by row-level security")
	}
	return recordResponse("", rec), nil
}

func (r *records) delete(ctx context.Context, in *deleteIn) (*deleteOut, error) {
	if err := r.allow(ctx, "delete"); err != nil {
		return nil, err
	}
	if err := r.needReason("delete", in.Reason, "header.X-Velocity-Reason"); err != nil {
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
	var deleted, exists bool
	err = r.s.store.InRequest(ctx, requestOf(ctx, in.Reason), []store.Statement{
		stmt(r.t.Delete(id, ifVersion)), stmt(r.t.Version(id)),
	}, func(i int, rows pgx.Rows) error {
		for rows.Next() {
			if i == 0 {
				deleted = true
			} else {
				exists = true
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, storeProblem(err, "delete")
	}
	switch {
	case deleted:
		return &deleteOut{}, nil
	case exists && ifVersion > 0:
		return nil, withLocation(problem(http.StatusPreconditionFailed, "the record changed since version "+strconv.FormatInt(ifVersion, 10)), "header.If-Match", "stale version")
	case exists:
		return nil, denied(authz.LayerRLS, "delete denied by row-level security")
	}
	return nil, problem(http.StatusNotFound, "no "+r.t.Spec.Object+" record "+id)
}

func (r *records) list(ctx context.Context, in *listIn) (*listOut, error) {
	if err := r.allow(ctx, "read"); err != nil {
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
	if err := r.allow(ctx, "read"); err != nil {
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
