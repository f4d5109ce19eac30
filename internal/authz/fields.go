package authz

import (
	"slices"

	"github.com/velocitydev/velocity/internal/schemadef"
)

// anyRole reports whether roles and allowed share a role.
func anyRole(roles, allowed []string) bool {
	for _, r := range roles {
		if slices.Contains(allowed, r) {
			return true
		}
	}
	return false
}

// Hidden lists, in definition order, the fields the roles may not read and that have no mask
// (layer 5): the read views return them as NULL, and every response leaves them out. Nil when
// the roles see every field, which is the common case and costs nothing.
func Hidden(s schemadef.Spec, roles []string) []string {
	if len(s.Access.Fields) == 0 {
		return nil
	}
	var out []string
	for _, f := range s.Fields {
		fa, ok := s.Access.Fields[f.Name]
		if !ok || len(fa.Read) == 0 || fa.Mask != "" || anyRole(roles, fa.Read) {
			continue
		}
		out = append(out, f.Name)
	}
	return out
}

// Masked lists the fields the roles see masked (layer 6), with their masks.
func Masked(s schemadef.Spec, roles []string) map[string]string {
	var out map[string]string
	for name, fa := range s.Access.Fields {
		if fa.Mask == "" || len(fa.Read) == 0 || anyRole(roles, fa.Read) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = fa.Mask
	}
	return out
}

// Unwritable returns, in the order given, the fields of names that the roles may not write
// (layer 5): those whose rule lists write roles, none of which the actor holds.
func Unwritable(s schemadef.Spec, roles []string, names []string) []string {
	if len(s.Access.Fields) == 0 {
		return nil
	}
	var out []string
	for _, name := range names {
		fa, ok := s.Access.Fields[name]
		if ok && len(fa.Write) > 0 && !anyRole(roles, fa.Write) {
			out = append(out, name)
		}
	}
	return out
}
