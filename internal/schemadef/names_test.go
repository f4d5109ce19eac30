package schemadef

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNamesOf(t *testing.T) {
	t.Parallel()
	got := NamesOf(ordersDefinition().Spec)
	want := Names{
		Schema:         "acme__shop",
		Table:          "sales__orders",
		History:        "sales__orders__history",
		HistoryDefault: "sales__orders__history_default",
		HistoryWriter:  "sales__orders__history_write",
		View:           "sales__orders__read",
		HistoryView:    "sales__orders__history_read",
		FieldWriter:    "sales__orders__field_write",
	}
	require.Equal(t, want, got, "NamesOf(orders) got %+v, want %+v", got, want)
	require.Equal(t, []string{"sales__orders", "sales__orders__history", "sales__orders__history_default",
		"sales__orders__history_write", "sales__orders__read", "sales__orders__history_read", "sales__orders__field_write"},
		got.TableObjects())
}

// The length check of Validate covers the longest derived name, HistoryDefault: every other
// name a definition maps to must be no longer, so a definition that validates has every name
// within Postgres's limit.
func TestNamesLongestIsHistoryDefault(t *testing.T) {
	t.Parallel()
	for _, object := range []string{"o", strings.Repeat("o", 20), strings.Repeat("o", 31)} {
		n := NamesOf(Spec{Org: "acme", App: "shop", Domain: "sales", Object: object})
		for _, name := range n.TableObjects() {
			require.LessOrEqual(t, len(name), len(n.HistoryDefault), "Names(%q): %q is longer than %q", object, name, n.HistoryDefault)
		}
		// Monthly partitions are as long as the default one.
		require.Len(t, n.History+"_2026_11", len(n.HistoryDefault))
	}

	// At the limit: a definition whose HistoryDefault is 63 bytes validates, and all its names fit;
	// one byte more and it does not.
	d := ordersDefinition()
	d.Spec.Domain = strings.Repeat("d", 31)
	d.Spec.Object = strings.Repeat("o", MaxIdentifierLength-len("__history_default")-len(d.Spec.Domain)-len("__"))
	// (Index names of long fields may still be too long; only the table's own names count here.)
	require.NotContains(t, fmt.Sprint(d.Validate()), "derived Postgres name")
	for _, name := range NamesOf(d.Spec).TableObjects() {
		require.LessOrEqual(t, len(name), MaxIdentifierLength, name)
	}
	d.Spec.Object += "o"
	require.Contains(t, fmt.Sprint(d.Validate()), `derived Postgres name "`+NamesOf(d.Spec).HistoryDefault+`" is 64 bytes`)
}
