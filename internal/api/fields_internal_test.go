package api

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWithoutFieldsKeepsOrderAndValues(t *testing.T) {
	obj := []byte(`{"id":"x","note":"n \"quoted\" {","total":12.50,"nested":{"note":1},"card":null,"z":[1,{"a":2}]}`)
	got, err := withoutFields(obj, []string{"note", "card"})
	require.NoError(t, err)
	require.Equal(t, `{"id":"x","total":12.50,"nested":{"note":1},"z":[1,{"a":2}]}`, string(got))
	same, err := withoutFields(obj, nil)
	require.NoError(t, err)
	require.Equal(t, string(obj), string(same))
	all, err := withoutFields([]byte(`{"note":1}`), []string{"note"})
	require.NoError(t, err)
	require.Equal(t, `{}`, string(all))
	_, err = withoutFields([]byte(`[1]`), []string{"note"})
	require.Error(t, err)
}

func TestWhereFieldsFindsNestedNames(t *testing.T) {
	where := json.RawMessage(`{"and":[{"status":{"eq":"paid"}},{"or":[{"email":{"contains":"a"}},{"not":{"card":{"isNull":true}}}]}],"total":{"gt":1}}`)
	got := whereFields(where, "body.where")
	require.Equal(t, []whereField{
		{"status", "body.where.and[0].status"},
		{"email", "body.where.and[1].or[0].email"},
		{"card", "body.where.and[1].or[1].not.card"},
		{"total", "body.where.total"},
	}, got)
	require.Nil(t, whereFields(json.RawMessage(`"nonsense"`), "body.where"))
}
