package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// schemaPlan is the API's answer to an apply, a dry run or a diff of one definition.
type schemaPlan struct {
	Key         string `json:"key"`
	Name        string `json:"name"`
	FromVersion int    `json:"from_version"`
	ToVersion   int    `json:"to_version"`
	Status      string `json:"status"` // applied, unchanged, dry_run or pending_approval
	Plan        string `json:"plan"`   // the SQL script of the steps
	Steps       []struct {
		Comment string `json:"comment"`
		SQL     string `json:"sql"`
	} `json:"steps"`
	Breaking         []string  `json:"breaking"`
	ApprovalRequired bool      `json:"approval_required"` // breaking changes wait for a second platform admin
	Warnings         []string  `json:"warnings"`
	ApprovalID       int64     `json:"approval_id"` // pending_approval: the request
	Approve          string    `json:"approve"`     // pending_approval: the command that approves it
	Approval         *approval `json:"approval"`    // velocity approve schema: the request it approved
}

// schemaSummary is one schema in the API's list.
type schemaSummary struct {
	Key       string `json:"key"`
	Name      string `json:"name"`
	Version   int    `json:"version"`
	UpdatedAt string `json:"updated_at"`
}

// schemaVersion is one schema with its current definition.
type schemaVersion struct {
	schemaSummary
	Definition json.RawMessage `json:"definition"`
}

func newSchemaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "schema", Short: "Apply, compare and inspect schema definitions"}
	cmd.AddCommand(newSchemaApplyCmd(g), newSchemaListCmd(g), newSchemaGetCmd(g), newSchemaDiffCmd(g), newSchemaApprovalsCmd(g))
	return cmd
}

func newSchemaApplyCmd(g *globals) *cobra.Command {
	var file string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR [--dry-run]",
		Short: "Apply schema definitions and print their plans",
		Long: "Apply the schema definitions in FILE, or in every *.yaml, *.yml and *.json file of DIR\n" +
			"(in lexical order, not recursive). A file may hold several YAML documents separated by\n" +
			"\"---\". Applying stops at the first definition the API refuses.\n\n" +
			"Breaking changes under policy.breakingChanges: requireApproval (the default) are not\n" +
			"applied: they wait for another platform admin to run `velocity approve schema NAME`.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("schema apply: -f FILE|DIR is required")}
			}
			docs, err := readDefinitions(file)
			if err != nil {
				return err
			}
			path := "/admin/schemas/apply"
			if dryRun {
				path += "?dry_run=true"
			}
			return g.sendPlans(cmd, "apply", path, docs)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "definition file, or directory of *.yaml, *.yml and *.json files")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the plans without applying them")
	return cmd
}

func newSchemaDiffCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "diff -f FILE",
		Short: "Print the plans that applying the definitions in FILE would run",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("schema diff: -f FILE is required")}
			}
			if info, err := os.Stat(file); err == nil && info.IsDir() {
				return usageError{fmt.Errorf("schema diff: -f takes a file, and %s is a directory", file)}
			}
			docs, err := readDefinitionFile(file)
			if err != nil {
				return err
			}
			if len(docs) == 0 {
				return fmt.Errorf("no schema definitions in %s", file)
			}
			return g.sendPlans(cmd, "diff", "/admin/schemas/diff", docs)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "definition file")
	return cmd
}

// sendPlans posts each definition to path, printing each plan as it comes back, and stops at
// the first one the API refuses. With -o json the answers so far are printed as one array.
func (g *globals) sendPlans(cmd *cobra.Command, verb, path string, docs []definitionDoc) error {
	results := []json.RawMessage{}
	var failed error
	for _, d := range docs {
		var p schemaPlan
		raw, err := g.call(cmd, http.MethodPost, path, d.body, &p)
		if err != nil {
			failed = fmt.Errorf("%s %s: %w", verb, d.source, err)
			break
		}
		if g.output != "json" {
			if len(results) > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
			}
			writePlan(cmd.OutOrStdout(), p)
		}
		results = append(results, raw)
	}
	if g.output == "json" && (failed == nil || len(results) > 0) {
		if err := g.print(cmd, results, nil); err != nil {
			return err
		}
	}
	return failed
}

// writePlan writes a header line, the breaking changes, what approval they need, and the
// SQL of the plan.
func writePlan(w io.Writer, p schemaPlan) {
	fmt.Fprintf(w, "# %s (%s): %d -> %d %s\n", p.Name, p.Key, p.FromVersion, p.ToVersion, p.Status)
	for _, b := range p.Breaking {
		fmt.Fprintf(w, "# breaking: %s\n", b)
	}
	switch {
	case p.Status == "pending_approval":
		approve := p.Approve
		if approve == "" {
			approve = "velocity approve schema " + p.Name
		}
		fmt.Fprintf(w, "# nothing applied: request %d waits for another platform admin to approve it with:\n#   %s\n", p.ApprovalID, approve)
	case p.ApprovalRequired:
		fmt.Fprintf(w, "# approval required: applying waits for another platform admin to run `velocity approve schema %s`\n", p.Name)
	}
	if a := p.Approval; a != nil {
		fmt.Fprintf(w, "# approved: request %d of %s, by %s", a.ID, a.RequestedBy, a.DecidedBy)
		if a.Reason != "" {
			fmt.Fprintf(w, ": %s", a.Reason)
		}
		fmt.Fprintln(w)
	}
	for _, warn := range p.Warnings {
		fmt.Fprintf(w, "# warning: %s\n", warn)
	}
	if p.Plan != "" {
		fmt.Fprint(w, p.Plan)
		if !strings.HasSuffix(p.Plan, "\n") {
			fmt.Fprintln(w)
		}
	}
}

func newSchemaListCmd(g *globals) *cobra.Command {
	return newListCmd(g, listSpec[schemaSummary]{
		short:  "List the applied schemas",
		what:   "schemas",
		path:   "/admin/schemas",
		header: []string{"NAME", "KEY", "VERSION", "UPDATED"},
		row: func(s schemaSummary) []string {
			return []string{s.Name, s.Key, strconv.Itoa(s.Version), s.UpdatedAt}
		},
	})
}

// approval is a breaking change that waits for, or got, a second platform admin's decision.
type approval struct {
	ID          int64    `json:"id"`
	Name        string   `json:"name"`
	Key         string   `json:"key"`
	FromVersion int      `json:"from_version"`
	ToVersion   int      `json:"to_version"`
	Breaking    []string `json:"breaking"`
	RequestedBy string   `json:"requested_by"`
	RequestedAt string   `json:"requested_at"`
	Status      string   `json:"status"`
	DecidedBy   string   `json:"decided_by"`
	Reason      string   `json:"reason"`
}

var approvalStatuses = []string{"pending", "approved", "rejected", "superseded"}

func newSchemaApprovalsCmd(g *globals) *cobra.Command {
	var status string
	cmd := &cobra.Command{
		Use:   "approvals [--status pending|approved|rejected|superseded]",
		Short: "List breaking changes that wait for (or got) another platform admin's approval",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/admin/schemas/approvals"
			if status != "" {
				if !slices.Contains(approvalStatuses, status) {
					return usageError{fmt.Errorf("schema approvals: --status must be one of %s, not %q", strings.Join(approvalStatuses, ", "), status)}
				}
				path += "?status=" + url.QueryEscape(status)
			}
			var list struct {
				Items []approval `json:"items"`
			}
			raw, err := g.call(cmd, http.MethodGet, path, nil, &list)
			if err != nil {
				return fmt.Errorf("list schema approvals: %w", err)
			}
			return g.print(cmd, raw, func() [][]string {
				rows := [][]string{{"ID", "NAME", "VERSIONS", "STATUS", "REQUESTED_BY", "REQUESTED_AT", "DECIDED_BY", "BREAKING"}}
				for _, a := range list.Items {
					rows = append(rows, []string{strconv.FormatInt(a.ID, 10), a.Name, fmt.Sprintf("%d->%d", a.FromVersion, a.ToVersion),
						a.Status, a.RequestedBy, a.RequestedAt, orDash(a.DecidedBy), strconv.Itoa(len(a.Breaking))})
				}
				return rows
			})
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only requests with this status (default: all)")
	return cmd
}

func newSchemaGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Print a schema's current definition (as YAML; -o json prints the whole record)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var s schemaVersion
			raw, err := g.call(cmd, http.MethodGet, pathf("/admin/schemas/%s", args[0]), nil, &s)
			if err != nil {
				return fmt.Errorf("get schema %s: %w", args[0], err)
			}
			if g.output == "json" {
				return g.print(cmd, raw, nil)
			}
			def, err := yaml.JSONToYAML(s.Definition)
			if err != nil {
				return fmt.Errorf("get schema %s: render definition: %w", args[0], err)
			}
			_, err = cmd.OutOrStdout().Write(def)
			return err
		},
	}
}
