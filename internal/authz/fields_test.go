package authz

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/velocitydev/velocity/internal/schemadef"
)

func TestFieldRulesPerRole(t *testing.T) {
	s := schemadef.Spec{
		Fields: []schemadef.Field{{Name: "email"}, {Name: "note"}, {Name: "card"}, {Name: "total"}},
		Access: schemadef.Access{Fields: map[string]schemadef.FieldAccess{
			"email": {Read: []string{"admin", "editor"}, Write: []string{"admin"}, Mask: schemadef.MaskPartial},
			"note":  {Read: []string{"admin"}},
			"card":  {Read: []string{"admin"}, Mask: schemadef.MaskFull},
			"total": {Write: []string{"editor"}},
		}},
	}
	cases := []struct {
		roles      []string
		hidden     []string
		masked     map[string]string
		unwritable []string
	}{
		{[]string{"admin"}, nil, nil, []string{"total"}},
		{[]string{"editor"}, []string{"note"}, map[string]string{"card": "full"}, []string{"email"}},
		{[]string{"viewer"}, []string{"note"}, map[string]string{"email": "partial", "card": "full"}, []string{"email", "total"}},
		{nil, []string{"note"}, map[string]string{"email": "partial", "card": "full"}, []string{"email", "total"}},
		{[]string{"viewer", "admin"}, nil, nil, []string{"total"}},
	}
	for _, c := range cases {
		require.Equal(t, c.hidden, Hidden(s, c.roles), "%v", c.roles)
		require.Equal(t, c.masked, Masked(s, c.roles), "%v", c.roles)
		require.Equal(t, c.unwritable, Unwritable(s, c.roles, []string{"email", "note", "total", "unknown"}), "%v", c.roles)
	}
	require.Nil(t, Hidden(schemadef.Spec{Fields: s.Fields}, nil), "no field rules: nothing hidden")
}
