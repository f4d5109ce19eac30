package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// dbLoginGrant is the body of POST /admin/db-logins. Password is never printed. Granting the
// same role to the same login again replaces the binding's scope.
type dbLoginGrant struct {
	Role     string            `json:"role"`
	Login    string            `json:"login"`
	Password string            `json:"password,omitempty"`
	Scope    map[string]string `json:"scope,omitempty"`
}

// dbLogin is the API's answer to a grant to a database login.
type dbLogin struct {
	ID    string         `json:"id"`
	Role  string         `json:"role"`
	Login string         `json:"login"`
	Scope map[string]any `json:"scope"`
}

// roleBindingGrant is the body of POST /admin/role-bindings. Granting the same (kind,
// subject, role) again replaces the binding's expiry and scope.
type roleBindingGrant struct {
	Role        string            `json:"role"`
	SubjectKind string            `json:"subject_kind"`
	Subject     string            `json:"subject"`
	ExpiresAt   string            `json:"expires_at,omitempty"`
	Scope       map[string]string `json:"scope,omitempty"`
}

// roleBinding is one binding as the API answers it, with the fields the tables show; -o json
// shows them all.
type roleBinding struct {
	ID          string         `json:"id"`
	Role        string         `json:"role"`
	SubjectKind string         `json:"subject_kind"`
	Subject     string         `json:"subject"`
	Scope       map[string]any `json:"scope"`
	ExpiresAt   *string        `json:"expires_at"`
}

// actor is who a role is granted to: the API's subject_kind and subject.
type actor struct {
	kind    string
	subject string
}

// actorForms maps the prefix of an ACTOR argument to the API's subject_kind.
var actorForms = []struct{ prefix, kind string }{
	{"subject:", "subject"},
	{"group:", "group"},
	{"api-key:", "api_key"},
}

const actorUsage = "ACTOR must be subject:NAME (a JWT subject), group:NAME (a token group) or api-key:UUID (an API key's id)"

// parseActor reads an ACTOR argument. An API key is named by its id, in canonical form.
func parseActor(s string) (actor, error) {
	for _, f := range actorForms {
		name, ok := strings.CutPrefix(s, f.prefix)
		if !ok {
			continue
		}
		if name == "" {
			return actor{}, fmt.Errorf("%q names no one; %s", s, actorUsage)
		}
		if f.kind == "api_key" {
			id, err := uuid.Parse(name)
			if err != nil || len(name) != len(id.String()) {
				return actor{}, fmt.Errorf("%q: %q is not a UUID; %s", s, name, actorUsage)
			}
			name = id.String()
		}
		return actor{kind: f.kind, subject: name}, nil
	}
	return actor{}, fmt.Errorf("%q: %s", s, actorUsage)
}

// String is the actor as the user writes it.
func (a actor) String() string {
	for _, f := range actorForms {
		if f.kind == a.kind {
			return f.prefix + a.subject
		}
	}
	return a.kind + ":" + a.subject
}

// scopeKey is what a --scope key may be.
var scopeKey = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// parseScope reads repeated --scope k=v flags into a map; nil when there are none.
func parseScope(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	scope := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case !ok || v == "":
			return nil, fmt.Errorf("--scope %q must be k=v with a value", p)
		case !scopeKey.MatchString(k):
			return nil, fmt.Errorf("--scope %q: key %q must match %s", p, k, scopeKey)
		}
		if _, dup := scope[k]; dup {
			return nil, fmt.Errorf("--scope key %q is given twice", k)
		}
		scope[k] = v
	}
	return scope, nil
}

// parseExpires reads --expires: an RFC 3339 time after now, sent on in RFC 3339.
func parseExpires(s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return "", fmt.Errorf("--expires %q is not an RFC 3339 time such as 2026-12-31T23:59:59Z", s)
	}
	if !t.After(now) {
		return "", fmt.Errorf("--expires %s is not in the future", s)
	}
	return t.Format(time.RFC3339Nano), nil
}

// scopeText shows a scope as sorted k=v pairs, comma separated, or "-" when it is empty.
func scopeText(scope map[string]any) string {
	if len(scope) == 0 {
		return "-"
	}
	pairs := make([]string, 0, len(scope))
	for k, v := range scope {
		pairs = append(pairs, fmt.Sprintf("%s=%v", k, v))
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ",")
}

func newGrantCmd(g *globals) *cobra.Command {
	var to, login, passwordFile, expires string
	var scope []string
	cmd := &cobra.Command{
		Use:   "grant ROLE (--to ACTOR [--expires T] | --to-db-login LOGIN [--password-file F]) [--scope k=v]...",
		Short: "Grant a role to an actor, or to a Postgres login for BI tools",
		Long: "Grant a role to an actor, or to a Postgres login for BI tools that read under the same rules.\n\n" +
			actorUsage + ".\n\n" +
			"--expires is an RFC 3339 time in the future (only with --to); --scope k=v, repeatable, adds a\n" +
			"scope attribute for row filters, to an actor or a login alike. Granting the same role to the\n" +
			"same actor or login again replaces its expiry and scope: give every --scope again to keep it.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := args[0]
			switch {
			case to != "" && login != "":
				return usageError{errors.New("grant: give --to ACTOR or --to-db-login LOGIN, not both")}
			case login != "":
				if expires != "" {
					return usageError{errors.New("grant: --expires goes with --to ACTOR, not --to-db-login")}
				}
				return grantDBLogin(g, cmd, role, login, passwordFile, scope)
			case to == "":
				return usageError{errors.New("grant: --to ACTOR or --to-db-login LOGIN is required")}
			case passwordFile != "":
				return usageError{errors.New("grant: --password-file goes with --to-db-login, not --to")}
			}
			req, err := newRoleBindingGrant(role, to, expires, scope, time.Now())
			if err != nil {
				return usageError{fmt.Errorf("grant: %w", err)}
			}
			var b roleBinding
			raw, err := g.call(cmd, http.MethodPost, "/admin/role-bindings", req, &b)
			if err != nil {
				return fmt.Errorf("grant %s to %s: %w", role, to, err)
			}
			return g.print(cmd, raw, func() [][]string {
				return [][]string{
					{"ID", "ROLE", "ACTOR", "EXPIRES", "SCOPE"},
					{b.ID, b.Role, actor{b.SubjectKind, b.Subject}.String(), orText(b.ExpiresAt, "never"), scopeText(b.Scope)},
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "actor to grant the role to: subject:NAME, group:NAME or api-key:UUID")
	f.StringVar(&expires, "expires", "", "RFC 3339 time the binding ends (default: never; only with --to)")
	f.StringArrayVar(&scope, "scope", nil, "k=v attribute for row filters (repeatable; with --to or --to-db-login)")
	f.StringVar(&login, "to-db-login", "", "Postgres login to grant the role to, created if missing")
	f.StringVar(&passwordFile, "password-file", "", "file holding the login's password (default: the login gets none; only with --to-db-login)")
	return cmd
}

// newRoleBindingGrant checks the arguments of grant --to, so that a bad one sends nothing.
func newRoleBindingGrant(role, to, expires string, scope []string, now time.Time) (roleBindingGrant, error) {
	a, err := parseActor(to)
	if err != nil {
		return roleBindingGrant{}, fmt.Errorf("--to %w", err)
	}
	req := roleBindingGrant{Role: role, SubjectKind: a.kind, Subject: a.subject}
	if req.ExpiresAt, err = parseExpires(expires, now); err != nil {
		return roleBindingGrant{}, err
	}
	if req.Scope, err = parseScope(scope); err != nil {
		return roleBindingGrant{}, err
	}
	return req, nil
}

func grantDBLogin(g *globals, cmd *cobra.Command, role, login, passwordFile string, scope []string) error {
	req := dbLoginGrant{Role: role, Login: login}
	var err error
	if req.Scope, err = parseScope(scope); err != nil {
		return usageError{fmt.Errorf("grant: %w", err)}
	}
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
		return [][]string{{"ID", "ROLE", "LOGIN", "SCOPE"}, {d.ID, d.Role, d.Login, scopeText(d.Scope)}}
	})
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
	var from, login string
	cmd := &cobra.Command{
		Use:   "revoke ROLE (--from ACTOR | --from-db-login LOGIN)",
		Short: "Revoke a role from an actor or from a Postgres login",
		Long:  "Revoke a role from an actor or from a Postgres login.\n\n" + actorUsage + ".",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			role := args[0]
			switch {
			case from != "" && login != "":
				return usageError{errors.New("revoke: give --from ACTOR or --from-db-login LOGIN, not both")}
			case login != "":
				return revokeDBLogin(g, cmd, role, login)
			case from == "":
				return usageError{errors.New("revoke: --from ACTOR or --from-db-login LOGIN is required")}
			}
			a, err := parseActor(from)
			if err != nil {
				return usageError{fmt.Errorf("revoke: --from %w", err)}
			}
			path := "/admin/role-bindings?role=" + url.QueryEscape(role) +
				"&subject_kind=" + url.QueryEscape(a.kind) + "&subject=" + url.QueryEscape(a.subject)
			if _, err := g.call(cmd, http.MethodDelete, path, nil, nil); err != nil {
				return fmt.Errorf("revoke %s from %s: %w", role, a, err)
			}
			return g.print(cmd, map[string]string{"role": role, "actor": a.String(), "status": "revoked"}, func() [][]string {
				return [][]string{{"ROLE", "ACTOR", "STATUS"}, {role, a.String(), "revoked"}}
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "actor to revoke the role from: subject:NAME, group:NAME or api-key:UUID")
	cmd.Flags().StringVar(&login, "from-db-login", "", "Postgres login to revoke the role from")
	return cmd
}

func revokeDBLogin(g *globals, cmd *cobra.Command, role, login string) error {
	if _, err := g.call(cmd, http.MethodDelete, pathf("/admin/db-logins/%s/roles/%s", login, role), nil, nil); err != nil {
		return fmt.Errorf("revoke %s from db login %s: %w", role, login, err)
	}
	return g.print(cmd, map[string]string{"role": role, "login": login, "status": "revoked"}, func() [][]string {
		return [][]string{{"ROLE", "LOGIN", "STATUS"}, {role, login, "revoked"}}
	})
}

func newRoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Inspect role bindings"}
	cmd.AddCommand(newListCmd(g, listSpec[roleBinding]{
		short:  "List role bindings",
		what:   "role bindings",
		path:   "/admin/role-bindings",
		header: []string{"ROLE", "KIND", "SUBJECT", "EXPIRES", "SCOPE"},
		row: func(b roleBinding) []string {
			return []string{b.Role, b.SubjectKind, b.Subject, orText(b.ExpiresAt, "never"), scopeText(b.Scope)}
		},
	}))
	return cmd
}
