package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
)

func (c *cli) diffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			changes, err := eng.Containers.Diff(ctr)
			if err != nil {
				return fail1(err)
			}
			for _, ch := range changes {
				fmt.Fprintf(c.out, "%s %s\n", ch.Kind, ch.Path)
			}
			return nil
		},
	}
}

func (c *cli) commitCmd() *cobra.Command {
	var o engine.CommitOptions
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				o.Ref = args[1]
			}
			id, err := eng.Commit(ctr, o)
			if err != nil {
				return fail1(err)
			}
			fmt.Fprintln(c.out, id)
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.Author, "author", "a", "", `Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	cmd.Flags().StringVarP(&o.Message, "message", "m", "", "Commit message")
	cmd.Flags().StringArrayVarP(&o.Changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	cmd.Flags().BoolP("pause", "p", true, "Pause container during commit (hako does not pause)")
	return cmd
}
