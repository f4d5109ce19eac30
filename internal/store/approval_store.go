package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/velocitydev/velocity/gen/dbsqlc"
	"github.com/velocitydev/velocity/internal/schemadef"
)

// Errors of the approval flow (policy.breakingChanges: requireApproval).
var (
	// ErrNoPendingApproval: no change of the named schema waits for approval.
	ErrNoPendingApproval = errors.New("nothing waits for approval")
	// ErrSelfApproval: the approver requested the change; another admin must approve it.
	ErrSelfApproval = errors.New("the requester cannot approve their own change")
	// ErrStaleApproval: another version was applied after the request, which is now
	// superseded; the definition has to be applied (and approved) again.
	ErrStaleApproval = errors.New("stale: re-apply")
)

// ApprovalError is a refusal of the approval flow: Kind is one of the errors above, Message
// says why in words that name the schema or the requester.
type ApprovalError struct {
	Kind    error
	Message string
}

func (e *ApprovalError) Error() string { return e.Kind.Error() + ": " + e.Message }
func (e *ApprovalError) Unwrap() error { return e.Kind }

// ApprovalStatus is where a request for approval stands.
type ApprovalStatus string

// Approval statuses.
const (
	ApprovalPending    ApprovalStatus = "pending"
	ApprovalApproved   ApprovalStatus = "approved"
	ApprovalRejected   ApprovalStatus = "rejected"
	ApprovalSuperseded ApprovalStatus = "superseded"
)

// SchemaApproval is a breaking change that waits for, or got, a second platform admin's
// decision: the definition and the plan as they were when it was requested.
type SchemaApproval struct {
	ID          int64                `json:"id"`
	Name        string               `json:"name"`
	Key         string               `json:"key"`
	FromVersion int                  `json:"from_version"`
	ToVersion   int                  `json:"to_version"`
	Definition  schemadef.Definition `json:"definition"`
	Plan        string               `json:"plan"`
	Breaking    []string             `json:"breaking"`
	RequestedBy string               `json:"requested_by"`
	RequestedAt time.Time            `json:"requested_at"`
	Status      ApprovalStatus       `json:"status" enum:"pending,approved,rejected,superseded"`
	DecidedBy   string               `json:"decided_by,omitempty"`
	DecidedAt   *time.Time           `json:"decided_at,omitempty"`
	Reason      string               `json:"reason,omitempty"`
}

func approvalFromRow(r dbsqlc.VelocitySchemaApproval) (SchemaApproval, error) {
	a := SchemaApproval{
		ID: r.ID, Name: r.Name, Key: r.SchemaKey, FromVersion: int(r.FromVersion), ToVersion: int(r.ToVersion),
		Plan: r.Plan, Breaking: emptyIfNil(r.Breaking), RequestedBy: r.RequestedBy, RequestedAt: r.RequestedAt.Time,
		Status: ApprovalStatus(r.Status), DecidedBy: r.DecidedBy.String, DecidedAt: timePtr(r.DecidedAt), Reason: r.Reason.String,
	}
	if err := json.Unmarshal(r.Definition, &a.Definition); err != nil {
		return a, fmt.Errorf("decode approval %d: %w", r.ID, err)
	}
	return a, nil
}

// ApproveSchema approves the change of schema name that waits for approval and applies its
// definition, breaking changes included, in the same owner transaction: a failure leaves
// the request pending and nothing applied. The approver (req's actor) must not be the
// requester (ErrSelfApproval); nothing pending is ErrNoPendingApproval. When another
// version was applied after the request, the request is marked superseded and the error is
// ErrStaleApproval. It returns the decided request and what the apply did.
func (s *Store) ApproveSchema(ctx context.Context, name string, req Request) (SchemaApproval, ApplyResult, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var approval SchemaApproval
	var res ApplyResult
	err := pgx.BeginFunc(ctx, s.Owner, func(tx pgx.Tx) error {
		if err := s.beginApply(ctx, tx, req); err != nil {
			return err
		}
		row, err := s.q.SchemaApprovalApprove(ctx, tx, dbsqlc.SchemaApprovalApproveParams{
			Name: name, Reason: optionalText(req.Reason), ApprovedBy: req.Actor.ID,
		})
		if err != nil {
			return approvalError(err)
		}
		if approval, err = approvalFromRow(row); err != nil {
			return err
		}
		if approval.Status == ApprovalSuperseded {
			return nil // commit the supersession; nothing is applied
		}
		res, err = s.applyInTx(ctx, tx, approval.Definition, applyMode{appliedBy: req.Actor.ID, approved: true})
		if err != nil {
			return err
		}
		// The planner sees the same two definitions as at the request, so the breaking changes
		// are the ones approved, unless Velocity itself changed in between: then roll back and
		// let a new apply request them again.
		if res.Status != StatusApplied || !slices.Equal(emptyIfNil(res.Plan.Breaking), approval.Breaking) {
			return &ApprovalError{Kind: ErrStaleApproval, Message: "the breaking changes are no longer the ones requested"}
		}
		return nil
	})
	if err != nil {
		return approval, res, fmt.Errorf("approve schema %s: %w", name, Interpret(err))
	}
	if approval.Status == ApprovalSuperseded {
		return approval, res, fmt.Errorf("approve schema %s: %w", name, &ApprovalError{Kind: ErrStaleApproval, Message: approval.Reason})
	}
	return approval, res, nil
}

// RejectSchema rejects the change of schema name that waits for approval, as req's actor;
// nothing is applied. ErrNoPendingApproval when nothing waits.
func (s *Store) RejectSchema(ctx context.Context, name string, req Request) (SchemaApproval, error) {
	var approval SchemaApproval
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		row, err := s.q.SchemaApprovalReject(ctx, tx, dbsqlc.SchemaApprovalRejectParams{Name: name, Reason: optionalText(req.Reason)})
		if err != nil {
			return approvalError(err)
		}
		approval, err = approvalFromRow(row)
		return err
	})
	if err != nil {
		return approval, fmt.Errorf("reject schema %s: %w", name, err)
	}
	return approval, nil
}

// SchemaApprovals lists the requests for approval with status (all when empty), newest
// first.
func (s *Store) SchemaApprovals(ctx context.Context, req Request, status ApprovalStatus) ([]SchemaApproval, error) {
	var out []SchemaApproval
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		rows, err := s.q.SchemaApprovalList(ctx, tx, optionalText(string(status)))
		if err != nil {
			return err
		}
		out = make([]SchemaApproval, 0, len(rows))
		for _, r := range rows {
			a, err := approvalFromRow(r)
			if err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list schema approvals: %w", err)
	}
	return out, nil
}

// approvalError maps the refusals of velocity.schema_approve and schema_reject
// (sql/functions/approvals.sql) onto *ApprovalError; others pass to Interpret.
func approvalError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "P0002": // no_data_found
			return &ApprovalError{Kind: ErrNoPendingApproval, Message: pgErr.Message}
		case pgErr.Code == "42501" && pgErr.ConstraintName == "schema_approvals_four_eyes":
			return &ApprovalError{Kind: ErrSelfApproval, Message: pgErr.Message}
		}
	}
	return err
}

func optionalText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }
