package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/store"
)

// approveCommand is what the answer to a pending apply tells the user to run.
func approveCommand(name string) string { return "velocity approve schema " + name }

type approvalListIn struct {
	Status string `query:"status" enum:"pending,approved,rejected,superseded" doc:"only requests with this status; all when empty"`
}

type approvalListOut struct {
	Body struct {
		Items []store.SchemaApproval `json:"items"`
	}
}

type approvalDecisionIn struct {
	Name   string `path:"name" maxLength:"63"`
	Reason string `header:"X-Velocity-Reason" maxLength:"1000" doc:"the reason, when the body has none"`
	Body   *struct {
		Reason string `json:"reason,omitempty" maxLength:"1000" doc:"why; kept with the decision and in its audit entry"`
	}
}

// reason is the body's reason, else the header's.
func (in *approvalDecisionIn) reason() string {
	if in.Body != nil && in.Body.Reason != "" {
		return in.Body.Reason
	}
	return in.Reason
}

type approveOut struct{ Body applyBody }

type rejectOut struct{ Body store.SchemaApproval }

func registerApprovals(api huma.API, s *Server) {
	tags := []string{"admin"}
	huma.Register(api, huma.Operation{
		OperationID: "schema-approval-list", Method: http.MethodGet, Path: "/admin/schemas/approvals", Tags: tags,
		Summary: "List breaking changes waiting for (or decided by) a second platform admin, newest first",
		Errors:  []int{400, 401, 403},
	}, func(ctx context.Context, in *approvalListIn) (*approvalListOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		items, err := s.store.SchemaApprovals(ctx, requestOf(ctx, ""), store.ApprovalStatus(in.Status))
		if err != nil {
			return nil, adminProblem(err, "list schema approvals")
		}
		out := &approvalListOut{}
		out.Body.Items = items
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "schema-approve", Method: http.MethodPost, Path: "/admin/schemas/{name}/approve", Tags: tags,
		Summary: "Approve the breaking change of a schema that waits for approval, and apply it",
		Description: "The approver must not be the requester (four eyes). The approval and the apply commit together; " +
			"when another version was applied after the request, the request is superseded and the answer is 409.",
		Errors: []int{400, 401, 403, 404, 409, 422},
	}, func(ctx context.Context, in *approvalDecisionIn) (*approveOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		approval, res, err := s.store.ApproveSchema(ctx, in.Name, requestOf(ctx, in.reason()))
		if err != nil {
			return nil, approvalProblem(err)
		}
		if err := s.Reload(ctx); err != nil {
			return nil, err
		}
		out := &approveOut{Body: applyBodyOf(res, []string{})}
		out.Body.Approval = &approval
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "schema-reject", Method: http.MethodPost, Path: "/admin/schemas/{name}/reject", Tags: tags,
		Summary: "Reject the breaking change of a schema that waits for approval; nothing is applied",
		Errors:  []int{400, 401, 403, 404},
	}, func(ctx context.Context, in *approvalDecisionIn) (*rejectOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		approval, err := s.store.RejectSchema(ctx, in.Name, requestOf(ctx, in.reason()))
		if err != nil {
			return nil, approvalProblem(err)
		}
		return &rejectOut{Body: approval}, nil
	})
}

// approvalProblem maps the refusals of an approval or rejection, naming the schema in the
// path; the apply's own errors map as they do for an apply.
func approvalProblem(err error) error {
	var ae *store.ApprovalError
	if errors.As(err, &ae) {
		switch {
		case errors.Is(err, store.ErrNoPendingApproval):
			return withLocation(problem(http.StatusNotFound, ae.Message), "path.name", "no change of this schema waits for approval")
		case errors.Is(err, store.ErrSelfApproval):
			return withLocation(denied(authz.LayerPolicy, ae.Message), "path.name", "policy.breakingChanges: requireApproval needs a second platform admin")
		case errors.Is(err, store.ErrStaleApproval):
			return withLocation(problem(http.StatusConflict, "stale: re-apply: "+ae.Message), "path.name", "the request no longer matches the applied schema")
		}
	}
	var dbErr *store.DBError
	if errors.As(err, &dbErr) && errors.Is(err, store.ErrPermission) {
		return denied(authz.LayerRBAC, dbErr.Message)
	}
	return applyProblem(err)
}

// pendingApprovalResponse documents the 202 of an apply whose breaking changes wait.
func pendingApprovalResponse() map[string]*huma.Response {
	return map[string]*huma.Response{"202": {
		Description: "Accepted: breaking changes wait for another platform admin's approval (status pending_approval); nothing was applied",
		Content:     map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Ref: "#/components/schemas/ApplyBody"}}},
	}}
}
