// Package store owns Velocity's connections to Postgres: the pools, the per-request
// transaction that carries the verified actor, the schema registry, and the translation of
// generated sqlc types and Postgres errors into domain values.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/velocitydev/velocity/gen/dbsqlc"
)

// AuthenticatorRole is the API's login role (NOINHERIT, no rights of its own).
const AuthenticatorRole = "velocity_authenticator"

// APIRole is the role the authenticator switches to; its rights are all the API has.
const APIRole = "velocity_api"

// Actor is a verified identity: who acts, with which Velocity roles and attributes.
type Actor struct {
	ID         string         `json:"id"`
	Kind       string         `json:"kind"`
	Roles      []string       `json:"roles"`
	Attributes map[string]any `json:"attributes"`
	// TokenID is the jti of the token the actor authenticated with, for revocation checks;
	// it never reaches Postgres.
	TokenID string `json:"-"`
}

// HasRole reports whether the actor holds role.
func (a Actor) HasRole(role string) bool {
	for _, r := range a.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Store holds the pools. API is connected as the authenticator and acts as velocity_api;
// Owner is connected as velocity_owner and is used only to apply schema plans.
type Store struct {
	API   *pgxpool.Pool
	Owner *pgxpool.Pool
	q     *dbsqlc.Queries
}

// Open connects both pools. apiDSN must log in as velocity_authenticator, ownerDSN as
// velocity_owner. maxConns bounds the API pool (0 = pgx's default).
func Open(ctx context.Context, apiDSN, ownerDSN string, maxConns int32) (*Store, error) {
	apiCfg, err := poolConfig(apiDSN, "api", maxConns)
	if err != nil {
		return nil, err
	}
	// A request never holds a connection for long: an expensive query or a client that went
	// away must not tie up the pool. The URL may set other values.
	for k, v := range map[string]string{"statement_timeout": "30s", "idle_in_transaction_session_timeout": "60s"} {
		if _, set := apiCfg.ConnConfig.RuntimeParams[k]; !set {
			apiCfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	// The authenticator can do nothing itself. Switching once per connection (not per request)
	// keeps the switch out of the hot path and lets statements be prepared with the API's
	// rights; session_user stays the authenticator, which is what current_actor() trusts.
	apiCfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE "+APIRole)
		return err
	}
	api, err := pgxpool.NewWithConfig(ctx, apiCfg)
	if err != nil {
		return nil, fmt.Errorf("open api pool: %w", err)
	}
	ownerCfg, err := poolConfig(ownerDSN, "owner", 4)
	if err != nil {
		api.Close()
		return nil, err
	}
	owner, err := pgxpool.NewWithConfig(ctx, ownerCfg)
	if err != nil {
		api.Close()
		return nil, fmt.Errorf("open owner pool: %w", err)
	}
	s := &Store{API: api, Owner: owner, q: dbsqlc.New()}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// poolConfig parses the URL of the pool named name ("api", "owner", "worker"), with at most
// maxConns connections (0 = pgx's default), times in UTC and the process named to Postgres.
func poolConfig(dsn, name string, maxConns int32) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%s database url: %w", name, err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	cfg.ConnConfig.RuntimeParams["application_name"] = "velocity-" + name
	return cfg, nil
}

// Ping checks both pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.API.Ping(ctx); err != nil {
		return fmt.Errorf("ping api pool: %w", err)
	}
	if err := s.Owner.Ping(ctx); err != nil {
		return fmt.Errorf("ping owner pool: %w", err)
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() {
	s.API.Close()
	s.Owner.Close()
}

// Request is what a request transaction knows about its caller.
type Request struct {
	Actor     Actor
	Reason    string
	RequestID string
}

// identitySQL sets the verified actor for one transaction. velocity.actor_id and
// velocity.actor_roles repeat parts of velocity.actor so the functions on every statement's
// path read a plain setting instead of parsing JSON (sql/functions/actor.sql).
const identitySQL = "SELECT set_config('velocity.actor', $1, true), set_config('velocity.actor_id', $2, true), " +
	"set_config('velocity.actor_roles', $3, true), set_config('velocity.reason', $4, true), set_config('velocity.request_id', $5, true)"

// identityArgs are the parameters of identitySQL for req.
func identityArgs(req Request) ([]any, error) {
	actor, err := json.Marshal(req.Actor)
	if err != nil {
		return nil, fmt.Errorf("encode actor: %w", err)
	}
	return []any{string(actor), req.Actor.ID, textArray(req.Actor.Roles), req.Reason, req.RequestID}, nil
}

var arrayEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// textArray writes a Postgres text[] literal, every element quoted.
func textArray(items []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(arrayEscaper.Replace(s))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// Statement is one SQL statement with its arguments.
type Statement struct {
	SQL  string
	Args []any
}

// InRequest runs stmts as one transaction for req: the identity settings and the statements
// travel in a single pipelined round trip and commit together at its end (an implicit
// transaction: one Sync for the whole batch). read is called with each statement's rows in
// turn; it must consume them.
func (s *Store) InRequest(ctx context.Context, req Request, stmts []Statement, read func(i int, rows pgx.Rows) error) error {
	args, err := identityArgs(req)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(identitySQL, args...)
	for _, st := range stmts {
		b.Queue(st.SQL, st.Args...)
	}
	br := s.API.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return Interpret(err)
	}
	for i := range stmts {
		rows, err := br.Query()
		if err != nil {
			_ = br.Close()
			return Interpret(err)
		}
		if err := read(i, rows); err != nil {
			rows.Close()
			_ = br.Close()
			return Interpret(err)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			_ = br.Close()
			return Interpret(err)
		}
	}
	return Interpret(br.Close())
}

// Sentinel errors. Interpret maps Postgres errors onto them so callers test with errors.Is.
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrPermission      = errors.New("permission denied")
	ErrInvalid         = errors.New("invalid value")
	ErrVersionLower    = errors.New("version is lower than the applied version")
	ErrVersionConflict = errors.New("version already applied with different content")
	ErrBreaking        = errors.New("breaking change refused")
	ErrNameTaken       = errors.New("schema name is taken by another schema")
	ErrUnavailable     = errors.New("timed out waiting for the database")
)

// DBError carries a mapped Postgres error: the sentinel it maps to, and the column or
// constraint it names, for messages that name a field without leaking SQL.
type DBError struct {
	Kind       error
	Code       string
	Column     string
	Constraint string
	Message    string
	// Hint is the error's HINT; velocity's own refusals mark their layer there
	// ("velocity:layer5").
	Hint string
	err  error
}

func (e *DBError) Error() string { return e.Kind.Error() + ": " + e.Message }
func (e *DBError) Unwrap() []error {
	return []error{e.Kind, e.err}
}

// Interpret translates pgx.ErrNoRows and Postgres errors into the sentinels above; other
// errors pass through unchanged.
func Interpret(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	e := &DBError{Code: pgErr.Code, Column: pgErr.ColumnName, Constraint: pgErr.ConstraintName, Message: pgErr.Message, Hint: pgErr.Hint, err: err}
	switch {
	case pgErr.Code == "23505": // unique_violation
		e.Kind = ErrConflict
	case pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock: retry
		e.Kind = ErrConflict
	case pgErr.Code == "42501": // insufficient_privilege, including RLS WITH CHECK failures
		e.Kind = ErrPermission
	case strings.HasPrefix(pgErr.Code, "22"), // data exception: bad text, range, datetime, ...
		pgErr.Code == "23502", pgErr.Code == "23514", pgErr.Code == "23503": // not null, check, FK
		e.Kind = ErrInvalid
	case pgErr.Code == "55P03", pgErr.Code == "57014": // lock_timeout, statement_timeout
		e.Kind = ErrUnavailable
	default:
		return err
	}
	return e
}

// withTimeout bounds admin operations that have no caller deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Minute)
}
