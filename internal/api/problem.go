package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/sqlbuild"
	"github.com/velocitydev/velocity/internal/store"
)

// Problem is every error response: RFC 9457 problem+json, plus the access-control layer
// that decided a denial.
type Problem struct {
	Type     string              `json:"type,omitempty"`
	Title    string              `json:"title"`
	Status   int                 `json:"status"`
	Detail   string              `json:"detail,omitempty"`
	Instance string              `json:"instance,omitempty"`
	Layer    int                 `json:"layer,omitempty"`
	Errors   []*huma.ErrorDetail `json:"errors,omitempty"`
}

func (p *Problem) Error() string { return p.Detail }

// GetStatus implements huma.StatusError.
func (p *Problem) GetStatus() int { return p.Status }

// ContentType implements huma.ContentTypeFilter.
func (p *Problem) ContentType(string) string { return "application/problem+json" }

func init() {
	// Every error Huma makes itself (bad parameters, oversize bodies) takes the same shape.
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		p := &Problem{Status: status, Title: http.StatusText(status), Detail: msg}
		if status >= http.StatusInternalServerError {
			// The causes of a server error stay in the log: they may hold SQL or internals.
			slog.Error("request failed", "status", status, "detail", msg, "errors", errors.Join(errs...))
			if status == http.StatusInternalServerError {
				p.Detail = "internal error; the server log has the cause"
			}
			return p
		}
		for _, err := range errs {
			if err == nil {
				continue
			}
			var d *huma.ErrorDetail
			if errors.As(err, &d) {
				p.Errors = append(p.Errors, d)
			} else {
				p.Errors = append(p.Errors, &huma.ErrorDetail{Message: err.Error()})
			}
		}
		// Huma reports parameter validation as 422; in Velocity a bad parameter is bad input.
		if status == http.StatusUnprocessableEntity && len(p.Errors) > 0 && allParams(p.Errors) {
			p.Status, p.Title = http.StatusBadRequest, http.StatusText(http.StatusBadRequest)
		}
		return p
	}
}

func allParams(errs []*huma.ErrorDetail) bool {
	for _, e := range errs {
		if !(strings.HasPrefix(e.Location, "query.") || strings.HasPrefix(e.Location, "path.") || strings.HasPrefix(e.Location, "header.")) {
			return false
		}
	}
	return true
}

func problem(status int, detail string, details ...*huma.ErrorDetail) *Problem {
	return &Problem{Status: status, Title: http.StatusText(status), Detail: detail, Errors: details}
}

// denied is a 403 that names the layer that decided it.
func denied(layer int, detail string) *Problem {
	p := problem(http.StatusForbidden, detail)
	p.Layer = layer
	return p
}

// invalid turns builder errors into a problem with one entry per field.
func invalid(status int, detail string, errs sqlbuild.Errors) *Problem {
	p := problem(status, detail)
	for _, e := range errs {
		p.Errors = append(p.Errors, &huma.ErrorDetail{Location: e.Location, Message: e.Message})
	}
	return p
}

// storeProblem maps a store error to a response without leaking SQL: the sentinel decides
// the status, and only a column or constraint name already known to the client is shown.
func storeProblem(err error, what string) error {
	var dbErr *store.DBError
	if errors.As(err, &dbErr) {
		loc := ""
		if dbErr.Column != "" {
			loc = "body." + dbErr.Column
		}
		switch {
		case errors.Is(err, store.ErrConflict) && dbErr.Code != "23505":
			return problem(http.StatusConflict, what+": it conflicted with a concurrent change; retry")
		case errors.Is(err, store.ErrConflict):
			return withLocation(problem(http.StatusConflict, what+": a record with this value already exists"), constraintField(dbErr.Constraint), "already taken")
		case errors.Is(err, store.ErrPermission) && dbErr.Hint == "velocity:layer5":
			// The field-write trigger names the field it refused (layer 5).
			return withLocation(denied(authz.LayerFields, what+": your roles may not write "+dbErr.Column), loc, "no write access to this field")
		case errors.Is(err, store.ErrPermission) && strings.Contains(dbErr.Message, `"velocity_row_filter"`):
			// A restrictive policy's WITH CHECK names itself: the row would leave the
			// caller's rows (layer 4).
			return denied(authz.LayerRowFilter, what+": the record would be outside the rows your row filter allows")
		case errors.Is(err, store.ErrPermission):
			return denied(authz.LayerRLS, what+": denied by row-level security")
		case errors.Is(err, store.ErrInvalid):
			p := problem(http.StatusUnprocessableEntity, what+": a value is not valid for its field")
			field := loc
			if field == "" {
				field = constraintField(dbErr.Constraint)
			}
			return withLocation(p, field, "invalid value")
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return problem(http.StatusNotFound, what+": not found")
	}
	if errors.Is(err, store.ErrUnavailable) {
		return problem(http.StatusServiceUnavailable, what+": the database did not answer in time; retry")
	}
	return err // a bare error is a 500 with nothing leaked
}

// constraintField recovers "body.<field>" from a planner constraint name
// ({table}__{field}__{suffix}).
func constraintField(name string) string {
	parts := strings.Split(name, "__")
	if len(parts) < 4 {
		return ""
	}
	return "body." + parts[len(parts)-2]
}

func withLocation(p *Problem, loc, msg string) *Problem {
	if loc != "" {
		p.Errors = append(p.Errors, &huma.ErrorDetail{Location: loc, Message: msg})
	}
	return p
}
