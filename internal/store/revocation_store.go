package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Revocation kinds.
const (
	RevokeJTI     = "jti"
	RevokeSubject = "subject"
	RevokeAPIKey  = "api_key"
)

// StoredRevocation is a revocation as Postgres keeps it.
type StoredRevocation struct {
	Kind      string     `json:"kind"`
	Value     string     `json:"value"`
	ExpiresAt *time.Time `json:"expires_at"`
	Reason    *string    `json:"reason"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
}

// RevokeCredential records a revocation durably (and marks a revoked API key revoked). Bad
// input is ErrInvalid naming the column.
func (s *Store) RevokeCredential(ctx context.Context, req Request, kind, value string, expires *time.Time, reason *string) (StoredRevocation, error) {
	var out StoredRevocation
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT kind, value, expires_at, reason, created_at, created_by
			FROM velocity.credential_revoke($1, $2, $3, $4)`, kind, value, expires, reason).
			Scan(&out.Kind, &out.Value, &out.ExpiresAt, &out.Reason, &out.CreatedAt, &out.CreatedBy)
	})
	if err != nil {
		return StoredRevocation{}, fmt.Errorf("revoke %s %s: %w", kind, value, err)
	}
	return out, nil
}

// ActiveRevocations lists the revocations not yet expired, on the API pool.
func (s *Store) ActiveRevocations(ctx context.Context) ([]StoredRevocation, error) {
	rows, err := s.API.Query(ctx, `SELECT kind, value, expires_at FROM velocity.revocations_active()`)
	if err != nil {
		return nil, fmt.Errorf("active revocations: %w", Interpret(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredRevocation, error) {
		var r StoredRevocation
		return r, row.Scan(&r.Kind, &r.Value, &r.ExpiresAt)
	})
	if err != nil {
		return nil, fmt.Errorf("active revocations: %w", Interpret(err))
	}
	return out, nil
}
