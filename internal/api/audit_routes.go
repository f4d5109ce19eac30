package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/store"
)

type auditListIn struct {
	Since   string `query:"since" doc:"entries at or after this time (RFC 3339)"`
	Until   string `query:"until" doc:"entries before this time (RFC 3339)"`
	Actor   string `query:"actor" maxLength:"300"`
	Action  string `query:"action" maxLength:"100"`
	Outcome string `query:"outcome" enum:"allowed,denied,failed,"`
	Schema  string `query:"schema" maxLength:"200" doc:"schema key, org.app.domain.object"`
	Record  string `query:"record" maxLength:"200"`
	Request string `query:"request_id" maxLength:"128" doc:"the X-Request-ID of one request: its decision and its changes"`
	Limit   int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
	Cursor  string `query:"cursor" maxLength:"60"`
}

type auditListOut struct {
	Body struct {
		Items      []store.AuditItem `json:"items"`
		NextCursor string            `json:"next_cursor,omitempty"`
	}
}

type auditVerifyIn struct {
	Entry       int64  `query:"entry" doc:"also prove this entry's inclusion in its block"`
	DigestBlock int64  `query:"digest_block" doc:"block number of a digest exported earlier"`
	DigestHash  string `query:"digest_hash" maxLength:"64" doc:"its block_hash (hex); the log must still extend it"`
}

type auditVerifyBody struct {
	store.VerifyReport
	Proof *store.Proof `json:"proof,omitempty"`
}

type auditVerifyOut struct{ Body auditVerifyBody }

type auditDigestOut struct{ Body *store.Digest }

type auditSealOut struct{ Body store.SealResult }

var hexHash = regexp.MustCompile(`^[0-9a-f]{64}$`)

// optionalTime reads an RFC 3339 query parameter that may be absent (nil).
func optionalTime(v, loc string) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := parseTime(v, loc)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// registerAudit serves the audit log to platform administrators. The audit tables are the
// owner's; the API reads them on the owner pool after its own admin check, and never writes
// them but through velocity.audit_append.
func registerAudit(api huma.API, s *Server) {
	tags := []string{"admin"}
	huma.Register(api, huma.Operation{
		OperationID: "audit-list", Method: http.MethodGet, Path: "/admin/audit", Tags: tags,
		Summary: "List audit entries, newest first", Errors: []int{400, 401, 403},
	}, func(ctx context.Context, in *auditListIn) (*auditListOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		f := store.AuditFilter{Actor: in.Actor, Action: in.Action, Outcome: in.Outcome, Schema: in.Schema, Record: in.Record, RequestID: in.Request, Limit: in.Limit, Cursor: in.Cursor}
		var err error
		if f.Since, err = optionalTime(in.Since, "query.since"); err != nil {
			return nil, err
		}
		if f.Until, err = optionalTime(in.Until, "query.until"); err != nil {
			return nil, err
		}
		items, next, err := store.ListAudit(ctx, s.store.Owner, f)
		if errors.Is(err, store.ErrBadCursor) {
			return nil, withLocation(problem(http.StatusBadRequest, "invalid cursor"), "query.cursor", "use the next_cursor of a previous page")
		}
		if err != nil {
			return nil, err
		}
		out := &auditListOut{}
		out.Body.Items, out.Body.NextCursor = items, next
		if out.Body.Items == nil {
			out.Body.Items = []store.AuditItem{}
		}
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "audit-verify", Method: http.MethodGet, Path: "/admin/audit/verify", Tags: tags,
		Summary:     "Recompute the audit log's blocks and chain",
		Description: "200 whenever verification ran: ok says whether the log is intact, problem names the first block or entry that is not. With entry, also an inclusion proof; with digest_block and digest_hash, whether the log still extends that digest.",
		Errors:      []int{400, 401, 403, 404, 409},
	}, func(ctx context.Context, in *auditVerifyIn) (*auditVerifyOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		var digest *store.Digest
		if in.DigestBlock != 0 || in.DigestHash != "" {
			if in.DigestBlock <= 0 {
				return nil, withLocation(problem(http.StatusBadRequest, "invalid digest"), "query.digest_block", "give the digest's block number (1 or more) with digest_hash")
			}
			if !hexHash.MatchString(in.DigestHash) {
				return nil, withLocation(problem(http.StatusBadRequest, "invalid digest"), "query.digest_hash", "give the digest's block_hash: 64 lowercase hex digits")
			}
			digest = &store.Digest{Version: 1, Block: in.DigestBlock, BlockHash: in.DigestHash}
		}
		out := &auditVerifyOut{}
		if in.Entry != 0 {
			proof, err := store.AuditProof(ctx, s.store.Owner, in.Entry)
			switch {
			case errors.Is(err, store.ErrNotFound):
				return nil, withLocation(problem(http.StatusNotFound, fmt.Sprintf("no audit entry %d", in.Entry)), "query.entry", "no such entry")
			case errors.Is(err, store.ErrNotSealed):
				return nil, withLocation(problem(http.StatusConflict, fmt.Sprintf("audit entry %d is not sealed yet", in.Entry)), "query.entry", "try again after the next sealing run")
			case err != nil:
				return nil, err
			}
			out.Body.Proof = proof
		}
		rep, err := store.VerifyAudit(ctx, s.store.Owner, digest)
		if err != nil {
			return nil, err
		}
		out.Body.VerifyReport = rep
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "audit-digest", Method: http.MethodGet, Path: "/admin/audit/digest", Tags: tags,
		Summary: "The audit log's head, to keep outside the database", Errors: []int{401, 403, 404},
	}, func(ctx context.Context, _ *struct{}) (*auditDigestOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		d, err := store.AuditDigest(ctx, s.store.Owner)
		if err != nil {
			return nil, err
		}
		if d == nil {
			return nil, problem(http.StatusNotFound, "nothing is sealed yet")
		}
		return &auditDigestOut{Body: d}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "audit-seal", Method: http.MethodPost, Path: "/admin/audit/seal", Tags: tags,
		Summary: "Seal the audit entries that are safe to seal now (the worker does it every second)", Errors: []int{401, 403, 409},
	}, func(ctx context.Context, _ *struct{}) (*auditSealOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		res, err := store.SealAudit(ctx, s.store.Owner, store.SealOptions{})
		if errors.Is(err, store.ErrSealBusy) {
			return nil, problem(http.StatusConflict, "another sealer is running; its run seals the same entries")
		}
		if err != nil {
			return nil, err
		}
		return &auditSealOut{Body: res}, nil
	})
}

// registerMetrics serves Prometheus's text format. For now it has the audit log's sealing lag;
// the observability issue adds the rest.
func registerMetrics(mux *http.ServeMux, s *Server) {
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		unsealed, oldest, err := store.AuditLag(ctx, s.store.Owner)
		if err != nil {
			s.log.Error("metrics", "err", err)
			writeProblem(w, problem(http.StatusServiceUnavailable, "metrics are unavailable"))
			return
		}
		lag := 0.0
		if oldest != nil {
			lag = max(0, time.Since(*oldest).Seconds())
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprintf(w, "# HELP velocity_audit_sealing_lag_seconds How long the oldest unsealed audit entry has waited.\n"+
			"# TYPE velocity_audit_sealing_lag_seconds gauge\nvelocity_audit_sealing_lag_seconds %g\n"+
			"# HELP velocity_audit_unsealed_entries Audit entries not sealed into a block yet.\n"+
			"# TYPE velocity_audit_unsealed_entries gauge\nvelocity_audit_unsealed_entries %d\n", lag, unsealed)
	})
}
