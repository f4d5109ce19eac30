package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
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
	Status      string `json:"status"` // applied, unchanged or dry_run
	Plan        string `json:"plan"`   // the SQL script of the steps
	Steps       []struct {
		Comment string `json:"comment"`
		SQL     string `json:"sql"`
	} `json:"steps"`
	Breaking []string `json:"breaking"`
	Warnings []string `json:"warnings"`
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
	cmd.AddCommand(newSchemaApplyCmd(g), newSchemaListCmd(g), newSchemaGetCmd(g), newSchemaDiffCmd(g))
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
			"\"---\". Applying stops at the first definition the API refuses.",
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

// writePlan writes a header line, the breaking changes, and the SQL of the plan.
func writePlan(w io.Writer, p schemaPlan) {
	fmt.Fprintf(w, "# %s (%s): %d -> %d %s\n", p.Name, p.Key, p.FromVersion, p.ToVersion, p.Status)
	for _, b := range p.Breaking {
		fmt.Fprintf(w, "# breaking: %s\n", b)
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
