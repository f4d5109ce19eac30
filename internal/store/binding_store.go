package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Subject kinds of role bindings that GrantRole takes; database logins go through GrantDBLogin.
const (
	SubjectKindSubject = "subject"
	SubjectKindGroup   = "group"
	SubjectKindAPIKey  = "api_key"
)

// GrantRole binds an actor (a JWT subject, a token group or an API key) to role, until expires
// (nil: no expiry) and with scope attributes. Granting an existing binding again updates its
// expiry and scope. Bad input is ErrInvalid naming the column.
func (s *Store) GrantRole(ctx context.Context, req Request, role, kind, subject string, expires *time.Time, scope map[string]any) (RoleBinding, error) {
	if scope == nil {
		scope = map[string]any{}
	}
	rawScope, err := json.Marshal(scope)
	if err != nil {
		return RoleBinding{}, fmt.Errorf("grant %s: scope: %w", role, err)
	}
	var out RoleBinding
	err = s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		var raw []byte
		if err := tx.QueryRow(ctx, `SELECT id, role, subject_kind, subject, scope, expires_at, created_at, created_by
			FROM velocity.role_binding_grant($1, $2, $3, $4, $5)`, role, kind, subject, expires, string(rawScope)).
			Scan(&out.ID, &out.Role, &out.SubjectKind, &out.Subject, &raw, &out.ExpiresAt, &out.CreatedAt, &out.CreatedBy); err != nil {
			return err
		}
		return json.Unmarshal(raw, &out.Scope)
	})
	if err != nil {
		return RoleBinding{}, fmt.Errorf("grant %s to %s %s: %w", role, kind, subject, err)
	}
	return out, nil
}

// RevokeRole removes a binding made with GrantRole; ErrNotFound when there was none.
func (s *Store) RevokeRole(ctx context.Context, req Request, role, kind, subject string) error {
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT velocity.role_binding_revoke($1, $2, $3)`, role, kind, subject).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke %s from %s %s: %w", role, kind, subject, err)
	}
	return nil
}

// BoundRole is one unexpired binding of an actor.
type BoundRole struct {
	Role  string
	Scope map[string]any
}

// ActorBindings returns the unexpired bindings of the (kind, subject) pairs of one actor, on
// the API pool.
func (s *Store) ActorBindings(ctx context.Context, kinds, subjects []string) ([]BoundRole, error) {
	rows, err := s.API.Query(ctx, `SELECT role, scope FROM velocity.actor_bindings($1, $2)`, kinds, subjects)
	if err != nil {
		return nil, fmt.Errorf("actor bindings: %w", Interpret(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (BoundRole, error) {
		var b BoundRole
		var raw []byte
		if err := row.Scan(&b.Role, &raw); err != nil {
			return b, err
		}
		return b, json.Unmarshal(raw, &b.Scope)
	})
	if err != nil {
		return nil, fmt.Errorf("actor bindings: %w", Interpret(err))
	}
	return out, nil
}
