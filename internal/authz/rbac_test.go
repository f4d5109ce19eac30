package authz

import (
	"testing"

	"github.com/velocitydev/velocity/internal/schemadef"
	"github.com/velocitydev/velocity/internal/store"
)

func TestCan(t *testing.T) {
	t.Parallel()
	access := schemadef.Access{Roles: map[string][]string{
		"viewer": {"read", "search"},
		"editor": {"read", "create", "update"},
	}}
	cases := []struct {
		roles []string
		verb  string
		want  bool
	}{
		{[]string{"viewer"}, "read", true},
		{[]string{"viewer"}, "create", false},
		{[]string{"viewer", "editor"}, "update", true},
		{[]string{"editor"}, "delete", false},
		{[]string{"admin"}, "read", false}, // admin has no implicit rights on records
		{nil, "read", false},
		{[]string{"Viewer"}, "read", false},
	}
	for _, c := range cases {
		if got := Can(access, store.Actor{Roles: c.roles}, c.verb); got != c.want {
			t.Errorf("Can(%v, %q) got %v, want %v", c.roles, c.verb, got, c.want)
		}
	}
}
