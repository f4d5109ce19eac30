package cli

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/velocitydev/velocity/internal/store"
)

func newMigrateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or render the platform migrations"}
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Apply the platform migrations (as the owner role, from VELOCITY_DATABASE_URL)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := g.databaseURL()
			if err != nil {
				return err
			}
			conn, err := pgx.Connect(cmd.Context(), url)
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			defer conn.Close(cmd.Context())
			if err := store.Migrate(cmd.Context(), conn); err != nil {
				return err
			}
			return g.print(cmd, map[string]string{"status": "migrated"}, func() [][]string { return [][]string{{"STATUS"}, {"migrated"}} })
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:    "render",
		Short:  "Print the migrations with their templates expanded (sqlc's schema input)",
		Args:   cobra.NoArgs,
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := store.RenderMigrations()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), s)
			return err
		},
	})
	return cmd
}
