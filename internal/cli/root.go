// Package cli holds the velocity command tree: one file per command, each output either as a
// table or as JSON, with exit code 0 on success, 1 on failure and 2 on a usage error.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Environment variables the CLI reads after its flags.
const (
	EnvAPIURL      = "VELOCITY_API_URL"
	EnvAPIKey      = "VELOCITY_API_KEY"
	EnvDatabaseURL = "VELOCITY_DATABASE_URL"
	EnvConfig      = "VELOCITY_CONFIG"
)

// Config is the CLI config file, ~/.config/velocity/config.yaml.
type Config struct {
	APIURL      string `json:"api_url,omitempty"`
	APIKey      string `json:"api_key,omitempty"`
	DatabaseURL string `json:"database_url,omitempty"`
}

// ConfigPath is where the CLI config lives: $VELOCITY_CONFIG, else the user config dir.
func ConfigPath() string { return configPath(os.Getenv) }

func configPath(getenv func(string) string) string {
	if p := getenv(EnvConfig); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = filepath.Join(os.Getenv("HOME"), ".config")
	}
	return filepath.Join(dir, "velocity", "config.yaml")
}

// LoadConfig reads the config file; a missing file is an empty config.
func LoadConfig(path string) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// SaveConfig writes the config file with owner-only permissions: it holds a secret.
func SaveConfig(path string, c Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// globals are the flags every command shares.
type globals struct {
	apiURL          string
	apiKey          string
	databaseURLFlag string
	output          string
	stdout          io.Writer
	stderr          io.Writer
	config          *Config
	// getenv is os.Getenv outside tests; tests pass their own so that they can run in
	// parallel, untouched by the environment and config file of the machine they run on.
	getenv func(string) string
}

func (g *globals) loadConfig() Config {
	if g.config == nil {
		c, err := LoadConfig(configPath(g.getenv))
		if err != nil {
			fmt.Fprintln(g.stderr, "warning:", err)
		}
		g.config = &c
	}
	return *g.config
}

// setting resolves one setting: flag, then environment, then config file.
func (g *globals) setting(flag, env string, fromConfig func(Config) string) string {
	if flag != "" {
		return flag
	}
	if v := g.getenv(env); v != "" {
		return v
	}
	return fromConfig(g.loadConfig())
}

func (g *globals) client() (*Client, error) {
	url := g.setting(g.apiURL, EnvAPIURL, func(c Config) string { return c.APIURL })
	if url == "" {
		return nil, usageError{fmt.Errorf("no API URL: pass --api-url, set %s, or run `velocity dev` once", EnvAPIURL)}
	}
	key := g.setting(g.apiKey, EnvAPIKey, func(c Config) string { return c.APIKey })
	return NewClient(strings.TrimRight(url, "/"), key), nil
}

func (g *globals) databaseURL() (string, error) {
	url := g.setting(g.databaseURLFlag, EnvDatabaseURL, func(c Config) string { return c.DatabaseURL })
	if url == "" {
		return "", usageError{fmt.Errorf("no database URL: pass --database-url or set %s", EnvDatabaseURL)}
	}
	return url, nil
}

// print writes v as JSON, or as the table rows returns (the first row is the header).
func (g *globals) print(cmd *cobra.Command, v any, rows func() [][]string) error {
	out := cmd.OutOrStdout()
	if g.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, r := range rows() {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// usageError marks an error as the user's misuse of the command line (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usageArgs makes cobra's positional-argument checks usage errors, naming the command.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer) *cobra.Command {
	return newRoot(stdout, stderr, os.Getenv)
}

func newRoot(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr, getenv: getenv}
	root := &cobra.Command{
		Use:           "velocity",
		Short:         "Velocity: schema-driven backend on Postgres",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o must be table or json, not %q", g.output)}
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.apiURL, "api-url", "", "API base URL (env "+EnvAPIURL+")")
	pf.StringVar(&g.apiKey, "api-key", "", "API key (env "+EnvAPIKey+")")
	pf.StringVar(&g.databaseURLFlag, "database-url", "", "Postgres URL of the owner role (env "+EnvDatabaseURL+")")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")

	root.AddCommand(
		newMigrateCmd(g),
		newSchemaCmd(g),
		newHistoryCmd(g),
		newRestoreCmd(g),
		newAPIKeyCmd(g),
		newGrantCmd(g),
		newRevokeCmd(g),
		newRoleCmd(g),
		newDevCmd(g),
		newServeCmd(g),
		newWorkerCmd(g),
		newAuditCmd(g),
		newAuthCmd(g),
		newApproveCmd(g),
	)
	for _, c := range root.Commands() {
		rejectUnknownSubcommands(c)
	}
	return root
}

// rejectUnknownSubcommands makes a group command (one that only holds subcommands) refuse an
// unknown subcommand as a usage error; cobra would print the group's help and succeed.
func rejectUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		rejectUnknownSubcommands(sub)
	}
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = usageArgs(func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q", args[0])
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", s[0])
		}
		return errors.New(msg)
	})
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	c.DisableFlagsInUseLine = true
}

// Execute runs the CLI and returns its exit code.
func Execute(args []string, stdout, stderr io.Writer) int {
	return execute(args, stdout, stderr, os.Getenv)
}

func execute(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRoot(stdout, stderr, getenv)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "error:", err)
	var u usageError
	if errors.As(err, &u) || isCobraUsage(err) {
		return ExitUsage
	}
	return ExitError
}

// isCobraUsage recognises cobra's own argument errors, which it does not type.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "required flag", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
