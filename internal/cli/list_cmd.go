package cli

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

// listSpec describes a command that lists what GET path answers as {"items": [...]}.
type listSpec[T any] struct {
	short  string
	what   string // for errors: "list <what>: ..."
	path   string
	header []string
	row    func(T) []string
}

// newListCmd builds a `list` command: a table of spec.header and one row per item, or with
// -o json the answer as the server sent it.
func newListCmd[T any](g *globals, spec listSpec[T]) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: spec.short,
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list struct {
				Items []T `json:"items"`
			}
			raw, err := g.call(cmd, http.MethodGet, spec.path, nil, &list)
			if err != nil {
				return fmt.Errorf("list %s: %w", spec.what, err)
			}
			return g.print(cmd, raw, func() [][]string {
				rows := [][]string{spec.header}
				for _, item := range list.Items {
					rows = append(rows, spec.row(item))
				}
				return rows
			})
		},
	}
}
