package cli

import (
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
)

func newApproveCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "approve", Short: "Approve changes that wait for a second platform admin"}
	cmd.AddCommand(newApproveSchemaCmd(g))
	return cmd
}

func newApproveSchemaCmd(g *globals) *cobra.Command {
	var reason string
	var reject bool
	cmd := &cobra.Command{
		Use:   "schema NAME [--reason TEXT] [--reject]",
		Short: "Approve (and apply) the breaking change of schema NAME that waits for approval, or reject it",
		Long: "A breaking apply under policy.breakingChanges: requireApproval waits until another platform\n" +
			"admin approves it: this applies the definition that was sent, in the same transaction as the\n" +
			"approval, and prints its plan. The requester cannot approve their own change. When another\n" +
			"version was applied in between, the request is superseded (409): apply the definition again.\n" +
			"--reject refuses the change instead; nothing is applied.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var body any
			if reason != "" {
				body = map[string]string{"reason": reason}
			}
			if reject {
				var a approval
				raw, err := g.call(cmd, http.MethodPost, pathf("/admin/schemas/%s/reject", name), body, &a)
				if err != nil {
					return fmt.Errorf("reject schema %s: %w", name, err)
				}
				if g.output == "json" {
					return g.print(cmd, raw, nil)
				}
				writeDecision(cmd.OutOrStdout(), a)
				return nil
			}
			var p schemaPlan
			raw, err := g.call(cmd, http.MethodPost, pathf("/admin/schemas/%s/approve", name), body, &p)
			if err != nil {
				return fmt.Errorf("approve schema %s: %w", name, err)
			}
			if g.output == "json" {
				return g.print(cmd, raw, nil)
			}
			writePlan(cmd.OutOrStdout(), p)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why; kept with the decision and in its audit entry")
	cmd.Flags().BoolVar(&reject, "reject", false, "reject the change instead of approving it")
	return cmd
}

// writeDecision writes one line about a decided request.
func writeDecision(w io.Writer, a approval) {
	fmt.Fprintf(w, "# %s (%s): %d -> %d %s: request %d of %s, by %s", a.Name, a.Key, a.FromVersion, a.ToVersion, a.Status, a.ID, a.RequestedBy, a.DecidedBy)
	if a.Reason != "" {
		fmt.Fprintf(w, ": %s", a.Reason)
	}
	fmt.Fprintln(w)
}
