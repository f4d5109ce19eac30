// Package authz owns the access-control layers that run in Go before SQL: layer 1 (RBAC
// verbs) now, the CEL, field and masking layers later. Postgres enforces them again.
package authz

import (
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

// Layer numbers, as reported in denials.
const (
	LayerRBAC = 1
	LayerRLS  = 7
)

// AdminRole is the platform administrator's role (ADR-008).
const AdminRole = schemadef.PlatformAdminRole

// Can reports whether actor may use verb on a schema with access (layer 1): some role of
// the actor lists the verb.
func Can(access schemadef.Access, actor store.Actor, verb string) bool {
	for _, role := range actor.Roles {
		for _, v := range access.Roles[role] {
			if v == verb {
				return true
			}
		}
	}
	return false
}
