package main

import (
	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
)

// systemCmd is `system`: hako's own `reset` (Docker has no state roots to
// give back).
func (c *cli) systemCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage hako"}
	var force bool
	reset := &cobra.Command{
		Use:   "reset [OPTIONS]",
		Short: "Remove every container and give back the host's network resources of this state root (hako only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force && !c.confirm("WARNING! This will remove all containers, running or not, and the bridges and rules of all networks of "+engine.RootFromEnv(c.rootDir)+".") {
				return nil
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			if err := eng.Reset(cmd.Context()); err != nil {
				return fail1(err)
			}
			return nil
		},
	}
	reset.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.AddCommand(reset)
	return cmd
}
