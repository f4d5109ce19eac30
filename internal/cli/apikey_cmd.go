package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// apiKeyCreateRequest is the body of POST /admin/api-keys.
type apiKeyCreateRequest struct {
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	TTL      string   `json:"ttl,omitempty"`
	AllowIPs []string `json:"allow_ips"`
}

// apiKeyCreated is the API's answer to a create: the only time it returns the key itself.
type apiKeyCreated struct {
	ID        string   `json:"id"`
	Key       string   `json:"key"`
	Name      string   `json:"name"`
	Roles     []string `json:"roles"`
	ExpiresAt *string  `json:"expires_at"`
}

// apiKey is one key in the API's list, with the fields the table shows; -o json shows them
// all. Hint is the end of the key.
type apiKey struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Hint      string   `json:"hint"`
	Roles     []string `json:"roles"`
	ExpiresAt *string  `json:"expires_at"`
	RevokedAt *string  `json:"revoked_at"`
}

func newAPIKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "api-key", Short: "Create, list and revoke API keys"}
	cmd.AddCommand(newAPIKeyCreateCmd(g), newAPIKeyListCmd(g), newAPIKeyRevokeCmd(g))
	return cmd
}

func newAPIKeyCreateCmd(g *globals) *cobra.Command {
	var req apiKeyCreateRequest
	cmd := &cobra.Command{
		Use:   "create --name N --role R [--ttl 720h] [--allow-ip CIDR]...",
		Short: "Create an API key and print it (it is shown only once)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := req.validate(); err != nil {
				return usageError{fmt.Errorf("api-key create: %w", err)}
			}
			if req.AllowIPs == nil {
				req.AllowIPs = []string{}
			}
			var k apiKeyCreated
			raw, err := g.call(cmd, http.MethodPost, "/admin/api-keys", req, &k)
			if err != nil {
				return fmt.Errorf("create api key %s: %w", req.Name, err)
			}
			err = g.print(cmd, raw, func() [][]string {
				return [][]string{
					{"ID", "NAME", "ROLES", "EXPIRES"},
					{k.ID, k.Name, strings.Join(k.Roles, ","), orText(k.ExpiresAt, "never")},
				}
			})
			if err != nil || g.output == "json" {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "\nKey (shown only once; store it now):\n%s\n", k.Key)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "name of the key (required)")
	f.StringSliceVar(&req.Roles, "role", nil, "role the key acts with (required; repeatable)")
	f.StringVar(&req.TTL, "ttl", "", "lifetime of the key, such as 720h (default: no expiry)")
	f.StringSliceVar(&req.AllowIPs, "allow-ip", nil, "address or CIDR the key may be used from (repeatable; default: any)")
	return cmd
}

func (r apiKeyCreateRequest) validate() error {
	if r.Name == "" {
		return errors.New("--name is required")
	}
	if len(r.Roles) == 0 {
		return errors.New("at least one --role is required")
	}
	if r.TTL != "" {
		d, err := time.ParseDuration(r.TTL)
		if err != nil {
			return fmt.Errorf("--ttl: %w", err)
		}
		if d <= 0 {
			return fmt.Errorf("--ttl must be positive, not %s", r.TTL)
		}
	}
	for _, ip := range r.AllowIPs {
		if _, err := netip.ParsePrefix(ip); err != nil {
			if _, err := netip.ParseAddr(ip); err != nil {
				return fmt.Errorf("--allow-ip %q is neither an address nor a CIDR", ip)
			}
		}
	}
	return nil
}

func newAPIKeyListCmd(g *globals) *cobra.Command {
	return newListCmd(g, listSpec[apiKey]{
		short:  "List API keys (without the keys themselves)",
		what:   "api keys",
		path:   "/admin/api-keys",
		header: []string{"ID", "NAME", "ROLES", "HINT", "EXPIRES", "REVOKED"},
		row: func(k apiKey) []string {
			hint := "-"
			if k.Hint != "" {
				hint = "…" + k.Hint
			}
			return []string{k.ID, k.Name, strings.Join(k.Roles, ","), hint, orText(k.ExpiresAt, "never"), orText(k.RevokedAt, "-")}
		},
	})
}

func newAPIKeyRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if _, err := g.call(cmd, http.MethodDelete, pathf("/admin/api-keys/%s", id), nil, nil); err != nil {
				return fmt.Errorf("revoke api key %s: %w", id, err)
			}
			return g.print(cmd, map[string]string{"id": id, "status": "revoked"}, func() [][]string {
				return [][]string{{"ID", "STATUS"}, {id, "revoked"}}
			})
		},
	}
}

// orText is *s, or alt when s is nil or empty (a JSON null, say).
func orText(s *string, alt string) string {
	if s == nil || *s == "" {
		return alt
	}
	return *s
}
