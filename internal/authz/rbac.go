// Package authz owns the access-control layers that run in Go before SQL: layer 1 (RBAC
// verbs), layer 2 (ABAC, through internal/rules), layer 3 (policy) and the Go side of layer 5
// (field rules). Postgres enforces layers 1, 4, 5, 6 and 7 again, for every path.
package authz

import (
	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

// Layer numbers, as reported in denials, in the order every request passes them.
const (
	LayerRBAC      = 1 // verbs per role
	LayerABAC      = 2 // CEL rules per verb
	LayerPolicy    = 3 // policy.requireReason
	LayerRowFilter = 4 // access.rowFilter, as a restrictive RLS policy
	LayerFields    = 5 // access.fields read and write roles
	LayerMask      = 6 // access.fields masks, in the read views
	LayerRLS       = 7 // forced row-level security
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
