package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/velocitydev/velocity/gen/dbsqlc"
	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/rules"
	"github.com/velocitydev/velocity/internal/schemadef"
)

// ApplyStatus says what an apply did.
type ApplyStatus string

// Apply outcomes.
const (
	StatusApplied   ApplyStatus = "applied"
	StatusUnchanged ApplyStatus = "unchanged"
	StatusDryRun    ApplyStatus = "dry_run"
	// StatusPendingApproval: the plan is breaking and policy.breakingChanges is
	// requireApproval, so nothing was applied; a request waits for another platform admin.
	StatusPendingApproval ApplyStatus = "pending_approval"
)

// ApplyResult is the outcome of applying (or dry-running) one definition.
type ApplyResult struct {
	Name   string       `json:"name"`
	Status ApplyStatus  `json:"status"`
	Plan   planner.Plan `json:"plan"`
	// ApprovalRequired says the plan has breaking changes that the definition's
	// policy.breakingChanges does not allow without approval (a dry run says so too).
	ApprovalRequired bool `json:"approval_required"`
	// Approval is the request that waits, with StatusPendingApproval.
	Approval *SchemaApproval `json:"approval,omitempty"`
}

// BreakingError lists the breaking changes that refused an apply.
type BreakingError struct{ Reasons []string }

func (e *BreakingError) Error() string {
	return fmt.Sprintf("%d breaking change(s) need policy.breakingChanges: allow: %v", len(e.Reasons), e.Reasons)
}
func (e *BreakingError) Unwrap() error { return ErrBreaking }

// ApplyOptions tune ApplySchemaWith.
type ApplyOptions struct {
	// DryRun plans without changing anything.
	DryRun bool
	// Request is who applies: its actor id is recorded as applied_by (and as requested_by of
	// an approval request), its reason and request id go to the audit entries.
	Request Request
	// RequestApproval records a breaking plan that policy.breakingChanges does not allow as a
	// pending approval (StatusPendingApproval) instead of refusing it with *BreakingError.
	RequestApproval bool
}

// ApplySchema plans def against the applied version and, unless dryRun, runs the plan and
// records the version in one owner transaction. Applies of one schema are serialized; the
// same version applied again is a no-op; a lower version, or the same version with other
// content, is refused; breaking changes need policy.breakingChanges: allow. appliedBy names
// the actor for the version record.
func (s *Store) ApplySchema(ctx context.Context, def schemadef.Definition, dryRun bool, appliedBy string) (ApplyResult, error) {
	return s.ApplySchemaWith(ctx, def, ApplyOptions{DryRun: dryRun, Request: Request{Actor: Actor{ID: appliedBy}}})
}

// ApplySchemaWith is ApplySchema with the caller's request and, with opts.RequestApproval,
// breaking changes under policy.breakingChanges: requireApproval recorded for approval.
func (s *Store) ApplySchemaWith(ctx context.Context, def schemadef.Definition, opts ApplyOptions) (ApplyResult, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var res ApplyResult
	// Access rules are compiled here, whoever applies: a rule that cannot be enforced (a CEL
	// error, a limit broken, a row filter outside the SQL subset) is refused, never planned.
	if errs := rules.Validate(def.Spec); len(errs) > 0 {
		return res, fmt.Errorf("apply schema %s: %w", def.Metadata.Name, &schemadef.ValidationError{Errors: errs})
	}
	err := pgx.BeginFunc(ctx, s.Owner, func(tx pgx.Tx) error {
		if err := s.beginApply(ctx, tx, opts.Request); err != nil {
			return err
		}
		var err error
		res, err = s.applyInTx(ctx, tx, def, applyMode{
			dryRun: opts.DryRun, appliedBy: opts.Request.Actor.ID, requestApproval: opts.RequestApproval,
		})
		return err
	})
	if err != nil {
		return res, fmt.Errorf("apply schema %s: %w", def.Metadata.Name, Interpret(err))
	}
	return res, nil
}

// beginApply starts an owner transaction that applies: it takes the apply lock and names
// the request's reason and request id for the audit entries.
func (s *Store) beginApply(ctx context.Context, tx pgx.Tx, req Request) error {
	if err := s.q.SchemaApplyLock(ctx, tx); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	return s.q.SchemaApplyContext(ctx, tx, dbsqlc.SchemaApplyContextParams{Reason: req.Reason, RequestID: req.RequestID})
}

// applyMode is how applyInTx treats one definition.
type applyMode struct {
	dryRun          bool
	appliedBy       string
	requestApproval bool // a breaking plan the policy does not allow becomes a request
	approved        bool // a second admin approved this definition: breaking changes apply
}

// applyInTx plans def against the applied version and applies it in tx, which holds the
// apply lock.
func (s *Store) applyInTx(ctx context.Context, tx pgx.Tx, def schemadef.Definition, mode applyMode) (ApplyResult, error) {
	key := def.Spec.Key()
	res := ApplyResult{Name: def.Metadata.Name}
	if owner, err := s.q.SchemaNameOwner(ctx, tx, def.Metadata.Name); err == nil && owner != key {
		return res, fmt.Errorf("%w: %q names %s", ErrNameTaken, def.Metadata.Name, owner)
	} else if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return res, err
	}
	var current *schemadef.Definition
	row, err := s.q.SchemaGetForApply(ctx, tx, key)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return res, fmt.Errorf("read applied version: %w", err)
	default:
		current = &schemadef.Definition{}
		if err := json.Unmarshal(row.Definition, current); err != nil {
			return res, fmt.Errorf("decode applied version: %w", err)
		}
	}
	if current != nil {
		switch {
		case def.Spec.Version < current.Spec.Version:
			return res, fmt.Errorf("%w: %d < %d", ErrVersionLower, def.Spec.Version, current.Spec.Version)
		case def.Spec.Version == current.Spec.Version:
			if sameDefinition(*current, def) {
				res.Status = StatusUnchanged
				res.Plan = planner.Plan{Key: key, FromVersion: current.Spec.Version, ToVersion: def.Spec.Version}
				return res, nil
			}
			return res, fmt.Errorf("%w: version %d; increase spec.version", ErrVersionConflict, def.Spec.Version)
		}
	}
	res.Plan = planner.Build(current, def)
	res.ApprovalRequired = len(res.Plan.Breaking) > 0 && def.Spec.Policy.BreakingChanges != schemadef.BreakingAllow && !mode.approved
	body, err := json.Marshal(def)
	if err != nil {
		return res, err
	}
	switch {
	case mode.dryRun:
		// A dry run shows breaking changes in the plan instead of refusing.
		res.Status = StatusDryRun
		return res, nil
	case res.ApprovalRequired && mode.requestApproval:
		a, err := s.q.SchemaApprovalRequest(ctx, tx, dbsqlc.SchemaApprovalRequestParams{
			Name: def.Metadata.Name, Key: key, FromVersion: int32(res.Plan.FromVersion), ToVersion: int32(res.Plan.ToVersion),
			Definition: body, Plan: res.Plan.SQL(), Breaking: emptyIfNil(res.Plan.Breaking), RequestedBy: mode.appliedBy,
		})
		if err != nil {
			return res, fmt.Errorf("request approval: %w", err)
		}
		approval, err := approvalFromRow(a)
		if err != nil {
			return res, err
		}
		res.Status, res.Approval = StatusPendingApproval, &approval
		return res, nil
	case res.ApprovalRequired:
		return res, &BreakingError{Reasons: res.Plan.Breaking}
	}
	for i, step := range res.Plan.Steps {
		if _, err := tx.Exec(ctx, step.SQL); err != nil {
			return res, fmt.Errorf("plan step %d (%s): %w", i+1, step.Comment, err)
		}
	}
	_, err = s.q.SchemaVersionRecord(ctx, tx, dbsqlc.SchemaVersionRecordParams{
		Key: key, Name: def.Metadata.Name, Org: def.Spec.Org, App: def.Spec.App, Domain: def.Spec.Domain,
		Object: def.Spec.Object, Version: int32(def.Spec.Version), Definition: body, Plan: res.Plan.SQL(),
		Breaking: emptyIfNil(res.Plan.Breaking), AppliedBy: mode.appliedBy,
	})
	if err != nil {
		return res, fmt.Errorf("record version: %w", err)
	}
	res.Status = StatusApplied
	return res, nil
}

// sameDefinition compares a with b as JSON values, not as text: the registry keeps the
// applied definition as jsonb, which reorders the keys of objects inside raw values (a json
// field's default) and may rewrite numbers (1e3 as 1000).
func sameDefinition(a, b schemadef.Definition) bool {
	return reflect.DeepEqual(canonicalJSON(a), canonicalJSON(b))
}

// canonicalJSON decodes v's JSON into generic values with every number as its exact value.
func canonicalJSON(v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return err.Error()
	}
	var walk func(any) any
	walk = func(x any) any {
		switch x := x.(type) {
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			for i, e := range x {
				x[i] = walk(e)
			}
		case json.Number:
			if r, ok := new(big.Rat).SetString(x.String()); ok {
				return r.RatString()
			}
		}
		return x
	}
	return walk(out)
}

func emptyIfNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SchemaInfo is one entry of the registry.
type SchemaInfo struct {
	Key        string               `json:"key"`
	Name       string               `json:"name"`
	Version    int                  `json:"version"`
	Definition schemadef.Definition `json:"definition"`
	UpdatedAt  time.Time            `json:"updated_at"`
}

// Schemas returns every applied definition, ordered by key. It runs on the API pool, which
// may read the registry.
func (s *Store) Schemas(ctx context.Context) ([]SchemaInfo, error) {
	rows, err := s.q.SchemaList(ctx, s.API)
	if err != nil {
		return nil, fmt.Errorf("list schemas: %w", Interpret(err))
	}
	out := make([]SchemaInfo, 0, len(rows))
	for _, r := range rows {
		info := SchemaInfo{Key: r.Key, Name: r.Name, Version: int(r.CurrentVersion), UpdatedAt: r.UpdatedAt.Time}
		if err := json.Unmarshal(r.Definition, &info.Definition); err != nil {
			return nil, fmt.Errorf("decode schema %s: %w", r.Key, err)
		}
		out = append(out, info)
	}
	return out, nil
}

// SchemaVersion is one applied version of a schema.
type SchemaVersion struct {
	Version   int       `json:"version"`
	Plan      string    `json:"plan"`
	PlanHash  string    `json:"plan_hash"`
	Breaking  []string  `json:"breaking"`
	AppliedBy string    `json:"applied_by"`
	AppliedAt time.Time `json:"applied_at"`
}

// SchemaVersions returns the applied versions of the schema with key, newest first.
func (s *Store) SchemaVersions(ctx context.Context, key string) ([]SchemaVersion, error) {
	rows, err := s.q.SchemaVersionList(ctx, s.API, key)
	if err != nil {
		return nil, fmt.Errorf("list schema versions: %w", Interpret(err))
	}
	out := make([]SchemaVersion, 0, len(rows))
	for _, r := range rows {
		out = append(out, SchemaVersion{Version: int(r.Version), Plan: r.Plan, PlanHash: r.PlanHash,
			Breaking: emptyIfNil(r.Breaking), AppliedBy: r.AppliedBy, AppliedAt: r.AppliedAt.Time})
	}
	return out, nil
}
