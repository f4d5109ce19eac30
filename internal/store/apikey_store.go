package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/velocitydev/velocity/gen/dbsqlc"
)

// APIKeyPrefix starts every API key.
const APIKeyPrefix = "vk_"

// APIKey is what may be shown about a key: never its secret or hash.
type APIKey struct {
	ID        uuid.UUID      `json:"id"`
	Name      string         `json:"name"`
	Hint      string         `json:"hint"`
	Roles     []string       `json:"roles"`
	AllowIPs  []netip.Prefix `json:"allow_ips"`
	ExpiresAt *time.Time     `json:"expires_at"`
	CreatedAt time.Time      `json:"created_at"`
	CreatedBy string         `json:"created_by"`
	RevokedAt *time.Time     `json:"revoked_at"`
}

// NewAPIKey is a key as created: the secret is returned this once.
type NewAPIKey struct {
	APIKey
	Secret string `json:"key"`
}

// HashAPIKey is how a key is stored and looked up.
func HashAPIKey(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// asAdmin runs fn in a transaction that carries req's identity, for the admin functions,
// which check the actor's roles themselves.
func (s *Store) asAdmin(ctx context.Context, req Request, fn func(tx pgx.Tx) error) error {
	args, err := identityArgs(req)
	if err != nil {
		return err
	}
	return Interpret(pgx.BeginFunc(ctx, s.API, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, identitySQL, args...); err != nil {
			return err
		}
		return fn(tx)
	}))
}

// CreateAPIKey makes a new key. The secret is generated here and only its hash is sent to
// the database.
func (s *Store) CreateAPIKey(ctx context.Context, req Request, name string, roles []string, ttl time.Duration, allowIPs []netip.Prefix) (NewAPIKey, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return NewAPIKey{}, err
	}
	secret := APIKeyPrefix + base64.RawURLEncoding.EncodeToString(raw)
	params := dbsqlc.ApiKeyRegisterParams{
		Name: name, Roles: roles, AllowIps: allowIPs, KeyHash: HashAPIKey(secret), Hint: secret[len(secret)-4:],
	}
	if allowIPs == nil {
		params.AllowIps = []netip.Prefix{}
	}
	if ttl != 0 {
		// A negative ttl goes to the database's check and is refused: it must never read
		// as "no expiry".
		params.Ttl = pgtype.Interval{Microseconds: ttl.Microseconds(), Valid: true}
	}
	var out NewAPIKey
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		row, err := s.q.ApiKeyRegister(ctx, tx, params)
		if err != nil {
			return err
		}
		out = NewAPIKey{APIKey: apiKeyFromInfo(row), Secret: secret}
		return nil
	})
	if err != nil {
		return NewAPIKey{}, fmt.Errorf("create api key: %w", err)
	}
	return out, nil
}

func apiKeyFromInfo(r dbsqlc.VelocityApiKeyInfo) APIKey {
	return APIKey{
		ID: r.ID, Name: r.Name, Hint: r.Hint, Roles: emptyIfNil(r.Roles), AllowIPs: r.AllowIps,
		ExpiresAt: timePtr(r.ExpiresAt), CreatedAt: r.CreatedAt.Time, CreatedBy: r.CreatedBy,
		RevokedAt: timePtr(r.RevokedAt),
	}
}

func timePtr(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time
	return &v
}

// ListAPIKeys lists every key, revoked ones included.
func (s *Store) ListAPIKeys(ctx context.Context, req Request) ([]APIKey, error) {
	var out []APIKey
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		rows, err := s.q.ApiKeyList(ctx, tx)
		if err != nil {
			return err
		}
		out = make([]APIKey, 0, len(rows))
		for _, r := range rows {
			out = append(out, apiKeyFromInfo(r))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes a key; ErrNotFound when there is no such unrevoked key.
func (s *Store) RevokeAPIKey(ctx context.Context, req Request, id uuid.UUID) error {
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		ok, err := s.q.ApiKeyRevoke(ctx, tx, id)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke api key %s: %w", id, err)
	}
	return nil
}

// VerifiedKey is an unrevoked key found by its hash.
type VerifiedKey struct {
	ID        uuid.UUID
	Name      string
	Roles     []string
	AllowIPs  []netip.Prefix
	ExpiresAt *time.Time
}

// VerifyAPIKey looks a presented secret up by its hash; ErrNotFound when unknown or revoked.
func (s *Store) VerifyAPIKey(ctx context.Context, secret string) (VerifiedKey, error) {
	r, err := s.q.ApiKeyVerify(ctx, s.API, HashAPIKey(secret))
	if err != nil {
		return VerifiedKey{}, Interpret(err)
	}
	return VerifiedKey{ID: r.ID, Name: r.Name, Roles: r.Roles, AllowIPs: r.AllowIps, ExpiresAt: timePtr(r.ExpiresAt)}, nil
}

// RoleBinding binds an actor to a Velocity role.
type RoleBinding struct {
	ID          uuid.UUID      `json:"id"`
	Role        string         `json:"role"`
	SubjectKind string         `json:"subject_kind"`
	Subject     string         `json:"subject"`
	Scope       map[string]any `json:"scope"`
	ExpiresAt   *time.Time     `json:"expires_at"`
	CreatedAt   time.Time      `json:"created_at"`
	CreatedBy   string         `json:"created_by"`
}

// GrantDBLogin binds a Postgres login (created when missing) to role for BI tools, with scope
// attributes for row filters (nil: none): an object of names to strings, numbers, booleans or
// arrays of strings. Granting the same role to the login again replaces its scope. Bad input
// is ErrInvalid naming the column.
func (s *Store) GrantDBLogin(ctx context.Context, req Request, role, login string, password *string, scope map[string]any) (uuid.UUID, error) {
	if scope == nil {
		scope = map[string]any{}
	}
	rawScope, err := json.Marshal(scope)
	if err != nil {
		return uuid.Nil, fmt.Errorf("grant %s to db login %s: scope: %w", role, login, err)
	}
	params := dbsqlc.DbLoginGrantParams{Role: role, Login: login, Scope: rawScope}
	if password != nil {
		verifier, err := scramVerifier(*password)
		if err != nil {
			return uuid.Nil, fmt.Errorf("grant %s to db login %s: %w", role, login, err)
		}
		params.Password = pgtype.Text{String: verifier, Valid: true}
	}
	var id uuid.UUID
	err = s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		var err error
		id, err = s.q.DbLoginGrant(ctx, tx, params)
		return err
	})
	if err != nil {
		return uuid.Nil, fmt.Errorf("grant %s to db login %s: %w", role, login, err)
	}
	return id, nil
}

// RevokeDBLogin removes a login's binding to role; ErrNotFound when there was none.
func (s *Store) RevokeDBLogin(ctx context.Context, req Request, role, login string) error {
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		ok, err := s.q.DbLoginRevoke(ctx, tx, dbsqlc.DbLoginRevokeParams{Role: role, Login: login})
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke %s from db login %s: %w", role, login, err)
	}
	return nil
}

// RoleBindings lists every binding.
func (s *Store) RoleBindings(ctx context.Context, req Request) ([]RoleBinding, error) {
	var out []RoleBinding
	err := s.asAdmin(ctx, req, func(tx pgx.Tx) error {
		rows, err := s.q.RoleBindingList(ctx, tx)
		if err != nil {
			return err
		}
		out = make([]RoleBinding, 0, len(rows))
		for _, r := range rows {
			b := RoleBinding{ID: r.ID, Role: r.Role, SubjectKind: r.SubjectKind, Subject: r.Subject,
				ExpiresAt: timePtr(r.ExpiresAt), CreatedAt: r.CreatedAt.Time, CreatedBy: r.CreatedBy}
			if err := json.Unmarshal(r.Scope, &b.Scope); err != nil {
				return err
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list role bindings: %w", err)
	}
	return out, nil
}
