package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/jackc/pgx/v5"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/snapshot"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

type snapshotIn struct {
	At     string `query:"at" format:"date-time" doc:"the time of the snapshot (RFC 3339); default now"`
	Format string `query:"format" enum:"ndjson,parquet" default:"ndjson" doc:"ndjson (application/x-ndjson) or parquet (application/vnd.apache.parquet)"`
}

const snapshotDescription = `Streams every record as it was at ` + "`at`" + `: the latest history event of each
record at or before that time, leaving out records deleted by then or created after it, each
shaped by the current definition (fields added since are null, history.redact fields are null).
Needs the "read" and "history" verbs.

- ` + "`format=ndjson`" + ` (default): one JSON record per line.
- ` + "`format=parquet`" + `: one Parquet file, typed columns (docs/snapshot.md has the mapping), Snappy
  compressed, row groups of up to 65536 records.

The body is streamed as it is read from Postgres; nothing holds all records. An error found
before the first byte is an application/problem+json response. An error after streaming began
aborts the connection, so the response ends without its final chunk (and a Parquet file
without its footer): a cut snapshot never looks whole.`

// registerSnapshot adds GET P/snapshot and returns its path.
func registerSnapshot(api huma.API, r *records) []string {
	path := r.path + "/snapshot"
	ref := "#/components/schemas/" + typeName(r.t.Spec)
	huma.Register(api, huma.Operation{
		OperationID: "snapshot-" + strings.ReplaceAll(r.t.Spec.Key(), ".", "-"), Method: http.MethodGet, Path: path,
		Tags:        []string{r.t.Spec.Key()},
		Summary:     "Stream every " + r.t.Spec.Object + " record as of a time (NDJSON or Parquet)",
		Description: snapshotDescription,
		Responses: map[string]*huma.Response{"200": {
			Description: "The records as of `at`, streamed.",
			Headers: map[string]*huma.Param{
				"Content-Disposition": {Description: "attachment, named after the object and format", Schema: &huma.Schema{Type: huma.TypeString}},
			},
			Content: map[string]*huma.MediaType{
				snapshot.NDJSON.ContentType(): {Schema: &huma.Schema{
					Type:        huma.TypeString,
					Description: "newline-delimited JSON: one " + ref + " object per line",
				}},
				snapshot.Parquet.ContentType(): {Schema: &huma.Schema{
					Type: huma.TypeString, Format: "binary",
					Description: "an Apache Parquet file, one column per field",
				}},
			},
		}},
		Errors: []int{400, 401, 403, 429, 503},
	}, r.snapshot)
	return []string{path}
}

func (r *records) snapshot(ctx context.Context, in *snapshotIn) (*huma.StreamResponse, error) {
	if err := r.allowPast(ctx); err != nil {
		return nil, err
	}
	var at any // nil is now
	if in.At != "" {
		t, err := time.Parse(time.RFC3339Nano, in.At)
		if err != nil {
			return nil, withLocation(problem(http.StatusBadRequest, "invalid at"), "query.at", "expected an RFC 3339 time, such as 2026-01-31T12:00:00Z")
		}
		at = t
	}
	format := snapshot.Format(in.Format)
	switch format {
	case "":
		format = snapshot.NDJSON
	case snapshot.NDJSON, snapshot.Parquet:
	default:
		return nil, withLocation(problem(http.StatusBadRequest, "invalid format"), "query.format", "expected ndjson or parquet")
	}
	req := requestOf(ctx, "")
	select {
	case r.s.snapshots <- struct{}{}:
	default:
		return nil, problem(http.StatusTooManyRequests, fmt.Sprintf("%d snapshots are already running on this server; retry later", cap(r.s.snapshots)))
	}
	return &huma.StreamResponse{Body: func(hctx huma.Context) {
		defer func() { <-r.s.snapshots }()
		r.streamSnapshot(hctx, req, at, in.At, format)
	}}, nil
}

// streamSnapshot runs the snapshot query and encodes rows as Postgres sends them. The
// request's statement_timeout and the connection's deadlines are raised to
// sqlbuild.SnapshotTimeout for this response only.
func (r *records) streamSnapshot(hctx huma.Context, req store.Request, at any, atText string, format snapshot.Format) {
	_, w := humago.Unwrap(hctx)
	ctx, cancel := context.WithCancel(hctx.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for ordinary requests. Past the read timeout
	// net/http would cancel the request's context (and so the query), past the write timeout
	// fail the writes.
	deadline := time.Now().Add(sqlbuild.SnapshotTimeout + time.Minute)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)

	out := &snapshotResponse{w: w, rc: rc, contentType: format.ContentType(),
		filename: r.t.Spec.Key() + "." + string(format)}
	// Without the fields hidden from the caller: not a key of NDJSON, not a Parquet column.
	t := r.tableFor(hctx.Context())
	query := t.SnapshotJSON(at)
	if format == snapshot.Parquet {
		query = t.SnapshotColumns(at)
	}
	var enc snapshot.Encoder
	open := func() (err error) {
		if enc == nil {
			enc, err = r.newSnapshotEncoder(t.Spec, format, out, atText)
		}
		return err
	}
	err := r.s.store.InRequest(ctx, req, []store.Statement{stmt(sqlbuild.SnapshotSettings(sqlbuild.SnapshotTimeout)), stmt(query)},
		func(i int, rows pgx.Rows) error {
			if i == 0 {
				return nil
			}
			for rows.Next() {
				// The encoder starts with the first record, so that an error of the query
				// itself is still a problem response.
				if err := open(); err != nil {
					return err
				}
				if err := enc.Write(rows.RawValues()); err != nil {
					cancel() // stop Postgres sending the rest, rather than drain it
					return err
				}
			}
			return rows.Err()
		})
	if err == nil {
		err = open() // no records: an empty file, or no lines
	}
	if err == nil {
		err = enc.Close()
	}
	if err == nil {
		err = out.start() // no records: nothing was flushed yet
	}
	if err == nil {
		return
	}
	rid, _ := hctx.Context().Value(requestIDKey).(string)
	if !out.started {
		var p *Problem
		if !errors.As(storeProblem(err, "snapshot"), &p) {
			r.s.log.Error("snapshot failed", "object", r.t.Spec.Key(), "err", err, "request_id", rid)
			p = problem(http.StatusInternalServerError, "internal error; the server log has the cause")
		}
		writeProblem(w, p)
		return
	}
	// The status and part of the body are sent; only a broken connection tells the client.
	r.s.log.Warn("snapshot aborted", "object", r.t.Spec.Key(), "err", err, "request_id", rid)
	panic(http.ErrAbortHandler)
}

func (r *records) newSnapshotEncoder(spec schemadef.Spec, format snapshot.Format, out *snapshotResponse, at string) (snapshot.Encoder, error) {
	if format != snapshot.Parquet {
		return snapshot.NewNDJSON(out), nil
	}
	md := map[string]string{
		"velocity.object":         r.t.Spec.Key(),
		"velocity.schema_version": strconv.Itoa(r.t.Spec.Version),
	}
	if at != "" {
		md["velocity.at"] = at
	}
	return snapshot.NewParquet(out, snapshot.Columns(spec), snapshot.ParquetConfig{Metadata: md})
}

// snapshotPending is how much of the body is held back before the status is sent: the start
// of a Parquet file (its magic number) waits for the first row group, and the first lines of
// NDJSON for a buffer's worth, so that an error in the first records is still a problem.
const snapshotPending = 64 << 10

// snapshotResponse sends the status and headers with the first bytes of the body that leave
// the server, so that until then an error can be answered with a problem instead.
type snapshotResponse struct {
	w           http.ResponseWriter
	rc          *http.ResponseController
	contentType string
	filename    string
	pending     []byte
	started     bool
}

// start sends the status, the headers and the pending bytes.
func (s *snapshotResponse) start() error {
	if s.started {
		return nil
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", s.contentType)
	h.Set("Content-Disposition", `attachment; filename="`+s.filename+`"`)
	h.Set("Cache-Control", "no-store")
	s.w.WriteHeader(http.StatusOK)
	_, err := s.w.Write(s.pending)
	s.pending = nil
	return err
}

func (s *snapshotResponse) Write(p []byte) (int, error) {
	if !s.started && len(s.pending)+len(p) <= snapshotPending {
		s.pending = append(s.pending, p...)
		return len(p), nil
	}
	if err := s.start(); err != nil {
		return 0, err
	}
	return s.w.Write(p)
}

// Flush sends what is buffered to the client: encoders flush once a row group or their
// buffer is full, and when they close.
func (s *snapshotResponse) Flush() error {
	if err := s.start(); err != nil {
		return err
	}
	return s.rc.Flush()
}
