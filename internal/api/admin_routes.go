package api

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/velocitydev/velocity/internal/authz"
	"github.com/velocitydev/velocity/internal/planner"
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

// requireAdmin is layer 1 for /admin routes. The admin SQL functions check again.
func requireAdmin(ctx context.Context) error {
	actor, _ := ctx.Value(actorKey).(store.Actor)
	if !actor.HasRole(authz.AdminRole) {
		return denied(authz.LayerRBAC, "the "+authz.AdminRole+" role is required")
	}
	return nil
}

type applyIn struct {
	DryRun  bool   `query:"dry_run" doc:"plan only; nothing is changed"`
	Reason  string `header:"X-Velocity-Reason" maxLength:"1000"`
	RawBody []byte
}

type applyBody struct {
	Key              string         `json:"key"`
	Name             string         `json:"name"`
	FromVersion      int            `json:"from_version"`
	ToVersion        int            `json:"to_version"`
	Status           string         `json:"status" enum:"applied,unchanged,dry_run,pending_approval"`
	Plan             string         `json:"plan" doc:"the SQL script of the plan"`
	Steps            []planner.Step `json:"steps"`
	Breaking         []string       `json:"breaking"`
	ApprovalRequired bool           `json:"approval_required" doc:"the breaking changes wait for another platform admin's approval (policy.breakingChanges: requireApproval)"`
	Warnings         []string       `json:"warnings" doc:"parts of the definition this release accepts but does not act on yet"`
	// Set on 202 pending_approval: the version that waits, its request and how to approve it.
	Version    int    `json:"version,omitempty" doc:"pending_approval: the version that waits for approval"`
	ApprovalID int64  `json:"approval_id,omitempty" doc:"pending_approval: the request's id"`
	Approve    string `json:"approve,omitempty" doc:"pending_approval: the command another platform admin runs to approve"`
	// Set by POST /admin/schemas/{name}/approve: the request that was approved and applied.
	Approval *store.SchemaApproval `json:"approval,omitempty" doc:"approve: the request, now approved"`
}

// applyOut is 200, or 202 when breaking changes wait for approval.
type applyOut struct {
	Status int
	Body   applyBody
}

type schemaItem struct {
	Key       string    `json:"key"`
	Name      string    `json:"name"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

type schemaListOut struct {
	Body struct {
		Items []schemaItem `json:"items"`
	}
}

type schemaGetOut struct {
	Body struct {
		schemaItem
		Definition schemadef.Definition `json:"definition"`
	}
}

type schemaVersionsOut struct {
	Body struct {
		Items []store.SchemaVersion `json:"items"`
	}
}

type nameIn struct {
	Name string `path:"name" maxLength:"63"`
}

type apiKeyCreateIn struct {
	Body struct {
		Name     string   `json:"name" minLength:"1" maxLength:"200"`
		Roles    []string `json:"roles" minItems:"1" maxItems:"50"`
		TTL      string   `json:"ttl,omitempty" doc:"Go duration, e.g. 720h; empty: no expiry"`
		AllowIPs []string `json:"allow_ips,omitempty" maxItems:"100" doc:"CIDRs the key may be used from"`
	}
}

type apiKeyCreateOut struct{ Body store.NewAPIKey }

type apiKeyListOut struct {
	Body struct {
		Items []store.APIKey `json:"items"`
	}
}

type apiKeyIDIn struct {
	ID string `path:"id"`
}

type dbLoginIn struct {
	Body struct {
		Role     string         `json:"role" minLength:"1" maxLength:"41"`
		Login    string         `json:"login" minLength:"1" maxLength:"63"`
		Password *string        `json:"password,omitempty" minLength:"8" maxLength:"1000"`
		Scope    map[string]any `json:"scope,omitempty" doc:"attributes the binding gives the actor, for row filters (region: eu)"`
	}
}

type dbLoginOut struct {
	Body struct {
		ID    uuid.UUID      `json:"id"`
		Role  string         `json:"role"`
		Login string         `json:"login"`
		Scope map[string]any `json:"scope" doc:"the binding's scope attributes; a grant replaces them"`
	}
}

type dbLoginRevokeIn struct {
	Login string `path:"login" maxLength:"63"`
	Role  string `path:"role" maxLength:"41"`
}

type bindingGrantIn struct {
	Body struct {
		Role        string         `json:"role" maxLength:"41" doc:"a Velocity role"`
		SubjectKind string         `json:"subject_kind" enum:"subject,group,api_key" doc:"subject: a JWT's mapped id; group: a value of a token's groups attribute; api_key: a key's id"`
		Subject     string         `json:"subject" maxLength:"300"`
		ExpiresAt   *time.Time     `json:"expires_at,omitempty" doc:"when the binding stops counting; none: never"`
		Scope       map[string]any `json:"scope,omitempty" doc:"attributes the binding gives the actor, for row filters (region: eu)"`
	}
}

type bindingOut struct{ Body store.RoleBinding }

type bindingRevokeIn struct {
	Role        string `query:"role" required:"true" maxLength:"41"`
	SubjectKind string `query:"subject_kind" required:"true" enum:"subject,group,api_key"`
	Subject     string `query:"subject" required:"true" maxLength:"300"`
}

type bindingListOut struct {
	Body struct {
		Items []store.RoleBinding `json:"items"`
	}
}

func registerAdmin(api huma.API, s *Server) {
	tags := []string{"admin"}
	huma.Register(api, huma.Operation{
		OperationID: "schema-apply", Method: http.MethodPost, Path: "/admin/schemas/apply", Tags: tags,
		Summary: "Apply a SchemaDefinition (JSON), or plan it with dry_run",
		Description: "Applies in one transaction and records the version. Re-applying the same version is a no-op. " +
			"Breaking changes apply under policy.breakingChanges: allow; under requireApproval (the default) nothing is applied: " +
			"the answer is 202 pending_approval and another platform admin approves with POST /admin/schemas/{name}/approve.",
		Errors: []int{400, 401, 403, 409, 413, 422}, MaxBodyBytes: s.cfg.MaxBodyBytes,
		Responses:   pendingApprovalResponse(),
		RequestBody: definitionBody(), SkipValidateBody: true,
	}, func(ctx context.Context, in *applyIn) (*applyOut, error) {
		return s.apply(ctx, in.RawBody, in.DryRun, in.Reason)
	})
	huma.Register(api, huma.Operation{
		OperationID: "schema-diff", Method: http.MethodPost, Path: "/admin/schemas/diff", Tags: tags,
		Summary: "Plan a SchemaDefinition against the applied version without applying it",
		Errors:  []int{400, 401, 403, 409, 413, 422}, MaxBodyBytes: s.cfg.MaxBodyBytes,
		RequestBody: definitionBody(), SkipValidateBody: true,
	}, func(ctx context.Context, in *applyIn) (*applyOut, error) {
		return s.apply(ctx, in.RawBody, true, in.Reason)
	})
	huma.Register(api, huma.Operation{
		OperationID: "schema-list", Method: http.MethodGet, Path: "/admin/schemas", Tags: tags, Summary: "List applied schemas",
		Errors: []int{401, 403},
	}, func(ctx context.Context, _ *struct{}) (*schemaListOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		infos, err := s.store.Schemas(ctx)
		if err != nil {
			return nil, err
		}
		out := &schemaListOut{}
		out.Body.Items = make([]schemaItem, 0, len(infos))
		for _, i := range infos {
			out.Body.Items = append(out.Body.Items, schemaItem{Key: i.Key, Name: i.Name, Version: i.Version, UpdatedAt: i.UpdatedAt})
		}
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "schema-get", Method: http.MethodGet, Path: "/admin/schemas/{name}", Tags: tags, Summary: "Get an applied schema",
		Errors: []int{401, 403, 404},
	}, func(ctx context.Context, in *nameIn) (*schemaGetOut, error) {
		info, err := s.schemaByName(ctx, in.Name)
		if err != nil {
			return nil, err
		}
		out := &schemaGetOut{}
		out.Body.schemaItem = schemaItem{Key: info.Key, Name: info.Name, Version: info.Version, UpdatedAt: info.UpdatedAt}
		out.Body.Definition = info.Definition
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "schema-versions", Method: http.MethodGet, Path: "/admin/schemas/{name}/versions", Tags: tags,
		Summary: "List the applied versions of a schema with their plans", Errors: []int{401, 403, 404},
	}, func(ctx context.Context, in *nameIn) (*schemaVersionsOut, error) {
		info, err := s.schemaByName(ctx, in.Name)
		if err != nil {
			return nil, err
		}
		versions, err := s.store.SchemaVersions(ctx, info.Key)
		if err != nil {
			return nil, err
		}
		out := &schemaVersionsOut{}
		out.Body.Items = versions
		return out, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "api-key-create", Method: http.MethodPost, Path: "/admin/api-keys", Tags: tags,
		Summary: "Create an API key; the key is shown only in this response", DefaultStatus: http.StatusCreated,
		Errors: []int{400, 401, 403, 422},
	}, func(ctx context.Context, in *apiKeyCreateIn) (*apiKeyCreateOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		var ttl time.Duration
		if in.Body.TTL != "" {
			d, err := time.ParseDuration(in.Body.TTL)
			if err != nil || d <= 0 {
				return nil, withLocation(problem(http.StatusUnprocessableEntity, "invalid ttl"), "body.ttl", "expected a positive duration such as 720h")
			}
			ttl = d
		}
		var prefixes []netip.Prefix
		for i, c := range in.Body.AllowIPs {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				a, aerr := netip.ParseAddr(c)
				if aerr != nil {
					return nil, withLocation(problem(http.StatusUnprocessableEntity, "invalid allow_ips"), "body.allow_ips["+strconv.Itoa(i)+"]", "expected a CIDR such as 10.0.0.0/8")
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			prefixes = append(prefixes, p.Masked())
		}
		key, err := s.store.CreateAPIKey(ctx, requestOf(ctx, ""), in.Body.Name, in.Body.Roles, ttl, prefixes)
		if err != nil {
			return nil, adminProblem(err, "create api key")
		}
		return &apiKeyCreateOut{Body: key}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "api-key-list", Method: http.MethodGet, Path: "/admin/api-keys", Tags: tags,
		Summary: "List API keys (never their secrets)", Errors: []int{401, 403},
	}, func(ctx context.Context, _ *struct{}) (*apiKeyListOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		keys, err := s.store.ListAPIKeys(ctx, requestOf(ctx, ""))
		if err != nil {
			return nil, adminProblem(err, "list api keys")
		}
		out := &apiKeyListOut{}
		out.Body.Items = keys
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "api-key-revoke", Method: http.MethodDelete, Path: "/admin/api-keys/{id}", Tags: tags,
		Summary: "Revoke an API key", DefaultStatus: http.StatusNoContent, Errors: []int{400, 401, 403, 404},
	}, func(ctx context.Context, in *apiKeyIDIn) (*struct{}, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		id, err := uuid.Parse(in.ID)
		if err != nil {
			return nil, withLocation(problem(http.StatusBadRequest, "invalid key id"), "path.id", "expected a UUID")
		}
		if err := s.store.RevokeAPIKey(ctx, requestOf(ctx, ""), id); err != nil {
			return nil, adminProblem(err, "revoke api key")
		}
		s.apiKeys.Forget()
		return nil, nil
	})

	huma.Register(api, huma.Operation{
		OperationID: "db-login-grant", Method: http.MethodPost, Path: "/admin/db-logins", Tags: tags,
		Summary:       "Bind a Postgres login (created when missing) to a role, for BI tools, with optional scope attributes",
		DefaultStatus: http.StatusCreated, Errors: []int{400, 401, 403, 422},
	}, func(ctx context.Context, in *dbLoginIn) (*dbLoginOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		id, err := s.store.GrantDBLogin(ctx, requestOf(ctx, ""), in.Body.Role, in.Body.Login, in.Body.Password, in.Body.Scope)
		if errors.Is(err, store.ErrPasswordCharset) {
			return nil, withLocation(problem(http.StatusUnprocessableEntity, "invalid password"), "body.password", err.Error())
		}
		if err != nil {
			return nil, adminProblem(err, "grant")
		}
		out := &dbLoginOut{}
		out.Body.ID, out.Body.Role, out.Body.Login, out.Body.Scope = id, in.Body.Role, in.Body.Login, in.Body.Scope
		if out.Body.Scope == nil {
			out.Body.Scope = map[string]any{}
		}
		return out, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "db-login-revoke", Method: http.MethodDelete, Path: "/admin/db-logins/{login}/roles/{role}", Tags: tags,
		Summary: "Remove a Postgres login's binding to a role", DefaultStatus: http.StatusNoContent, Errors: []int{401, 403, 404},
	}, func(ctx context.Context, in *dbLoginRevokeIn) (*struct{}, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		if err := s.store.RevokeDBLogin(ctx, requestOf(ctx, ""), in.Role, in.Login); err != nil {
			return nil, adminProblem(err, "revoke")
		}
		return nil, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "role-binding-grant", Method: http.MethodPost, Path: "/admin/role-bindings", Tags: tags,
		Summary:       "Bind a JWT subject, a token group or an API key to a role, with an optional expiry and scope attributes",
		DefaultStatus: http.StatusCreated, Errors: []int{400, 401, 403, 422},
	}, func(ctx context.Context, in *bindingGrantIn) (*bindingOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		b, err := s.store.GrantRole(ctx, requestOf(ctx, ""), in.Body.Role, in.Body.SubjectKind, in.Body.Subject, in.Body.ExpiresAt, in.Body.Scope)
		if err != nil {
			return nil, adminProblem(err, "grant")
		}
		return &bindingOut{Body: b}, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "role-binding-revoke", Method: http.MethodDelete, Path: "/admin/role-bindings", Tags: tags,
		Summary: "Remove a binding made with POST /admin/role-bindings", DefaultStatus: http.StatusNoContent, Errors: []int{400, 401, 403, 404, 422},
	}, func(ctx context.Context, in *bindingRevokeIn) (*struct{}, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		if err := s.store.RevokeRole(ctx, requestOf(ctx, ""), in.Role, in.SubjectKind, in.Subject); err != nil {
			return nil, adminProblem(err, "revoke")
		}
		return nil, nil
	})
	huma.Register(api, huma.Operation{
		OperationID: "role-binding-list", Method: http.MethodGet, Path: "/admin/role-bindings", Tags: tags,
		Summary: "List role bindings", Errors: []int{401, 403},
	}, func(ctx context.Context, _ *struct{}) (*bindingListOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		items, err := s.store.RoleBindings(ctx, requestOf(ctx, ""))
		if err != nil {
			return nil, adminProblem(err, "list role bindings")
		}
		out := &bindingListOut{}
		out.Body.Items = items
		return out, nil
	})
	registerApprovals(api, s)
}

func (s *Server) schemaByName(ctx context.Context, name string) (store.SchemaInfo, error) {
	if err := requireAdmin(ctx); err != nil {
		return store.SchemaInfo{}, err
	}
	infos, err := s.store.Schemas(ctx)
	if err != nil {
		return store.SchemaInfo{}, err
	}
	for _, i := range infos {
		if i.Name == name {
			return i, nil
		}
	}
	return store.SchemaInfo{}, problem(http.StatusNotFound, "no schema named "+name)
}

// apply parses, validates and applies (or plans) one definition, then reloads this
// replica's routes at once; other replicas follow the NOTIFY. Breaking changes that the
// definition's policy does not allow are recorded for approval (202) instead.
func (s *Server) apply(ctx context.Context, raw []byte, dryRun bool, reason string) (*applyOut, error) {
	if err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	def, err := schemadef.Parse(raw)
	if err != nil {
		return nil, definitionProblem(err)
	}
	def.Normalize()
	if err := def.Validate(); err != nil {
		return nil, definitionProblem(err)
	}
	ignored := def.Unenforced()
	res, err := s.store.ApplySchemaWith(ctx, def, store.ApplyOptions{DryRun: dryRun, Request: requestOf(ctx, reason), RequestApproval: true})
	if err != nil {
		return nil, applyProblem(err)
	}
	if res.Status == store.StatusApplied {
		if err := s.Reload(ctx); err != nil {
			return nil, err
		}
	}
	out := &applyOut{Status: http.StatusOK, Body: applyBodyOf(res, warnings(ignored))}
	if a := res.Approval; res.Status == store.StatusPendingApproval && a != nil {
		out.Status = http.StatusAccepted
		out.Body.Version, out.Body.ApprovalID, out.Body.Approve = a.ToVersion, a.ID, approveCommand(a.Name)
	}
	return out, nil
}

// applyProblem maps the errors of applying a definition, directly or by approval.
func applyProblem(err error) error {
	var be *store.BreakingError
	var ve *schemadef.ValidationError
	switch {
	case errors.As(err, &ve):
		// The store compiles the access rules before planning: a CEL error, a broken limit or
		// a row filter outside the SQL subset is a 422 naming the rule.
		return definitionProblem(ve)
	case errors.As(err, &be):
		p := problem(http.StatusConflict, "breaking changes refused: set spec.policy.breakingChanges to allow, or keep the old definition")
		for _, r := range be.Reasons {
			p.Errors = append(p.Errors, &huma.ErrorDetail{Location: "body.spec", Message: r})
		}
		return p
	case errors.Is(err, store.ErrVersionLower), errors.Is(err, store.ErrVersionConflict):
		return withLocation(problem(http.StatusConflict, err.Error()), "body.spec.version", "must be higher than the applied version to change the schema")
	case errors.Is(err, store.ErrNameTaken):
		return withLocation(problem(http.StatusConflict, err.Error()), "body.metadata.name", "taken by another schema")
	case errors.Is(err, store.ErrUnavailable):
		return problem(http.StatusServiceUnavailable, "the apply waited too long for a lock held by running requests or another apply; retry")
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrConflict):
		// A plan step failed on existing data (e.g. a new unique constraint over duplicates).
		return problem(http.StatusConflict, "the plan cannot be applied to the existing data: "+planFailure(err))
	}
	return err
}

// applyBodyOf is the answer for what an apply, a dry run or an approval did.
func applyBodyOf(res store.ApplyResult, warnings []string) applyBody {
	return applyBody{
		Key: res.Plan.Key, Name: res.Name, FromVersion: res.Plan.FromVersion, ToVersion: res.Plan.ToVersion,
		Status: string(res.Status), Plan: res.Plan.SQL(), Steps: nonNilSteps(res.Plan.Steps), Breaking: nonNil(res.Plan.Breaking),
		ApprovalRequired: res.ApprovalRequired, Warnings: warnings,
	}
}

func planFailure(err error) string {
	var dbErr *store.DBError
	if errors.As(err, &dbErr) {
		return dbErr.Message
	}
	return "a constraint does not hold"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilSteps(s []planner.Step) []planner.Step {
	if s == nil {
		return []planner.Step{}
	}
	return s
}

// maxDefinitionErrors bounds the problems listed for one definition.
const maxDefinitionErrors = 100

// definitionProblem reports a bad SchemaDefinition with one entry per problem, located in
// the body.
func definitionProblem(err error) error {
	var ve *schemadef.ValidationError
	if errors.As(err, &ve) {
		p := problem(http.StatusUnprocessableEntity, "invalid SchemaDefinition")
		for i, fe := range ve.Errors {
			if i == maxDefinitionErrors {
				p.Errors = append(p.Errors, &huma.ErrorDetail{Location: "body", Message: "more problems follow; fix these first"})
				break
			}
			p.Errors = append(p.Errors, &huma.ErrorDetail{Location: "body." + fe.Path, Message: fe.Message})
		}
		return p
	}
	return withLocation(problem(http.StatusBadRequest, "malformed SchemaDefinition"), "body", err.Error())
}

// adminProblem maps the admin functions' errors: their messages are written for users and
// name the parameter; everything else is a 500.
func adminProblem(err error, what string) error {
	var dbErr *store.DBError
	if errors.As(err, &dbErr) {
		switch {
		case errors.Is(err, store.ErrPermission):
			return denied(authz.LayerRBAC, what+": "+dbErr.Message)
		case errors.Is(err, store.ErrInvalid):
			loc := "body"
			if dbErr.Column != "" {
				loc = "body." + dbErr.Column
			}
			return withLocation(problem(http.StatusUnprocessableEntity, what+": "+dbErr.Message), loc, dbErr.Message)
		case errors.Is(err, store.ErrConflict):
			return problem(http.StatusConflict, what+": already exists")
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return problem(http.StatusNotFound, what+": not found")
	}
	return err
}

// definitionBody documents the SchemaDefinition body; it is validated by schemadef, whose
// errors name the field path.
func definitionBody() *huma.RequestBody {
	return &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
		"application/json": {Schema: &huma.Schema{Type: huma.TypeObject, Description: "A SchemaDefinition (see SPEC.md), as JSON.",
			Required: []string{"apiVersion", "kind", "metadata", "spec"},
			Properties: map[string]*huma.Schema{
				"apiVersion": {Type: huma.TypeString, Enum: []any{schemadef.APIVersion}},
				"kind":       {Type: huma.TypeString, Enum: []any{schemadef.Kind}},
				"metadata":   {Type: huma.TypeObject, AdditionalProperties: true},
				"spec":       {Type: huma.TypeObject, AdditionalProperties: true},
			}}},
	}}
}

func warnings(fes []schemadef.FieldError) []string {
	out := make([]string, 0, len(fes))
	for _, fe := range fes {
		out = append(out, fe.Path+": "+fe.Message)
	}
	return out
}
