package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/velocitydev/velocity/internal/auth"
	"github.com/velocitydev/velocity/internal/store"
)

// durableRevocations gives the revocation checker the store's revocations.
type durableRevocations struct{ st *store.Store }

func (d durableRevocations) ActiveRevocations(ctx context.Context) ([]auth.Revocation, error) {
	rows, err := d.st.ActiveRevocations(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]auth.Revocation, len(rows))
	for i, r := range rows {
		out[i] = auth.Revocation{Credential: auth.Credential{Kind: r.Kind, Value: r.Value}, ExpiresAt: r.ExpiresAt}
	}
	return out, nil
}

// NewDurableRevocations is the Postgres side of auth.NewRevocations for a server on st.
func NewDurableRevocations(st *store.Store) auth.DurableRevocations { return durableRevocations{st} }

// credentialsOf lists what actor was authenticated by that can be revoked: its id as a
// subject, its API key, and its token's jti.
func credentialsOf(actor store.Actor) []auth.Credential {
	creds := []auth.Credential{{Kind: store.RevokeSubject, Value: actor.ID}}
	if actor.Kind == "api_key" {
		creds = append(creds, auth.Credential{Kind: store.RevokeAPIKey, Value: strings.TrimPrefix(actor.ID, "apikey:")})
	}
	if actor.TokenID != "" {
		creds = append(creds, auth.Credential{Kind: store.RevokeJTI, Value: actor.TokenID})
	}
	return creds
}

type revokeIn struct {
	Body struct {
		Kind      string     `json:"kind" enum:"jti,subject,api_key" doc:"jti: a token's id; subject: an actor id such as jwt:ada or apikey:<id>; api_key: a key's id"`
		Value     string     `json:"value" maxLength:"300"`
		ExpiresAt *time.Time `json:"expires_at,omitempty" doc:"when the revocation may be forgotten, such as the token's exp; none: never"`
		Reason    *string    `json:"reason,omitempty" maxLength:"1000"`
	}
}

type revokeOut struct {
	Body struct {
		store.StoredRevocation
		// Propagated says whether Redis carried it to the other replicas at once; when it did
		// not, they pick it up from Postgres when they reconnect to Redis.
		Propagated bool `json:"propagated"`
	}
}

func registerRevocations(api huma.API, s *Server) {
	huma.Register(api, huma.Operation{
		OperationID: "credential-revoke", Method: http.MethodPost, Path: "/admin/revocations", Tags: []string{"admin"},
		Summary:       "Revoke a token (jti), a subject or an API key on every replica",
		Description:   "Stored in Postgres, then published through Redis: every API replica refuses the credential within a second.",
		DefaultStatus: http.StatusCreated, Errors: []int{400, 401, 403, 422},
	}, func(ctx context.Context, in *revokeIn) (*revokeOut, error) {
		if err := requireAdmin(ctx); err != nil {
			return nil, err
		}
		rev, err := s.store.RevokeCredential(ctx, requestOf(ctx, ""), in.Body.Kind, in.Body.Value, in.Body.ExpiresAt, in.Body.Reason)
		if err != nil {
			return nil, adminProblem(err, "revoke")
		}
		if in.Body.Kind == store.RevokeAPIKey {
			s.apiKeys.Forget()
		}
		out := &revokeOut{}
		out.Body.StoredRevocation = rev
		if r := s.cfg.Revocations; r != nil {
			err := r.Publish(ctx, auth.Revocation{Credential: auth.Credential{Kind: rev.Kind, Value: rev.Value}, ExpiresAt: rev.ExpiresAt})
			if err != nil {
				s.log.Error("revocation: publish failed; replicas pick it up from Postgres when Redis is back", "kind", rev.Kind, "err", err)
			}
			out.Body.Propagated = err == nil
		}
		return out, nil
	})
}
