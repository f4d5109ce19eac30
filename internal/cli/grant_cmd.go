package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// dbLoginGrant is the body of POST /admin/db-logins. Password is never printed.
type dbLoginGrant struct {
	Role     string `json:"role"`
	Login    string `json:"login"`
	Password string `json:"password,omitempty"`
}

// dbLogin is the API's answer to a grant to a database login.
type dbLogin struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	Login string `json:"login"`
}

// roleBinding is one binding in the API's list, with the fields the table shows; -o json
// shows them all.
type roleBinding struct {
	Role        string  `json:"role"`
	SubjectKind string  `json:"subject_kind"`
	Subject     string  `json:"subject"`
	ExpiresAt   *string `json:"expires_at"`
}

func newGrantCmd(g *globals) *cobra.Command {
	var login, passwordFile string
	cmd := &cobra.Command{
		Use:   "grant ROLE --to-db-login LOGIN [--password-file F]",
		Short: "Grant a role to a Postgres login, for BI tools that read under the same rules",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if login == "" {
				return usageError{errors.New("grant: --to-db-login LOGIN is required")}
			}
			req := dbLoginGrant{Role: args[0], Login: login}
			if passwordFile != "" {
				p, err := readPassword(passwordFile)
				if err != nil {
					return err
				}
				req.Password = p
			}
			var d dbLogin
			raw, err := g.call(cmd, http.MethodPost, "/admin/db-logins", req, &d)
			if err != nil {
				return fmt.Errorf("grant %s to db login %s: %w", req.Role, req.Login, err)
			}
			return g.print(cmd, raw, func() [][]string {
				return [][]string{{"ID", "ROLE", "LOGIN"}, {d.ID, d.Role, d.Login}}
			})
		},
	}
	cmd.Flags().StringVar(&login, "to-db-login", "", "Postgres login to grant the role to, created if missing (required)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the login's password (default: the login gets none)")
	return cmd
}

// readPassword reads a password file, without the newline that editors and echo leave at its end.
func readPassword(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	p := strings.TrimRight(string(data), "\r\n")
	if p == "" {
		return "", fmt.Errorf("password file %s is empty", path)
	}
	return p, nil
}

func newRevokeCmd(g *globals) *cobra.Command {
	var login string
	cmd := &cobra.Command{
		Use:   "revoke ROLE --from-db-login LOGIN",
		Short: "Revoke a role from a Postgres login",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if login == "" {
				return usageError{errors.New("revoke: --from-db-login LOGIN is required")}
			}
			role := args[0]
			if _, err := g.call(cmd, http.MethodDelete, pathf("/admin/db-logins/%s/roles/%s", login, role), nil, nil); err != nil {
				return fmt.Errorf("revoke %s from db login %s: %w", role, login, err)
			}
			return g.print(cmd, map[string]string{"role": role, "login": login, "status": "revoked"}, func() [][]string {
				return [][]string{{"ROLE", "LOGIN", "STATUS"}, {role, login, "revoked"}}
			})
		},
	}
	cmd.Flags().StringVar(&login, "from-db-login", "", "Postgres login to revoke the role from (required)")
	return cmd
}

func newRoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Inspect role bindings"}
	cmd.AddCommand(newListCmd(g, listSpec[roleBinding]{
		short:  "List role bindings",
		what:   "role bindings",
		path:   "/admin/role-bindings",
		header: []string{"ROLE", "KIND", "SUBJECT", "EXPIRES"},
		row: func(b roleBinding) []string {
			return []string{b.Role, b.SubjectKind, b.Subject, orText(b.ExpiresAt, "never")}
		},
	}))
	return cmd
}
