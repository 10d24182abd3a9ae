package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
)

// inspectEachCmd is `<kind> inspect`: each reference found by find, printed
// through --format or as Docker's JSON array; a missing one is reported as
// "No such <kind>" and makes the exit status 1, after the others are printed.
func (c *cli) inspectEachCmd(kind, arg, plural string, find func(*engine.Engine, string) (any, error)) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   fmt.Sprintf("inspect [OPTIONS] %s [%s...]", arg, arg),
		Short: "Display detailed information on one or more " + plural,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			var found []any
			var m multiErr
			for _, a := range args {
				v, err := find(eng, a)
				if err != nil {
					m.errs = append(m.errs, "Error: No such "+kind+": "+a)
					continue
				}
				found = append(found, v)
			}
			if err := c.printInspected(format, found); err != nil {
				return err
			}
			return m.result()
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

// removeEachCmd is `<kind> rm`: each reference removed and printed, the
// failures reported together (exit status 1) after the others are done.
func (c *cli) removeEachCmd(arg, plural, forceHelp string, remove func(*engine.Engine, string) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:     fmt.Sprintf("rm [OPTIONS] %s [%s...]", arg, arg),
		Aliases: []string{"remove"},
		Short:   "Remove one or more " + plural,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			var m multiErr
			for _, a := range args {
				if err := remove(eng, a); err != nil {
					m.add(err)
					continue
				}
				fmt.Fprintln(c.out, a)
			}
			return m.result()
		},
	}
	cmd.Flags().BoolP("force", "f", false, forceHelp)
	return cmd
}

// printInspected prints what an `inspect` found: each through the --format
// template, or all as Docker's indented JSON array.
func (c *cli) printInspected(format string, found []any) error {
	if format != "" {
		for _, v := range found {
			if err := renderOne(c.out, format, v); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
		}
		return nil
	}
	if found == nil {
		found = []any{}
	}
	b, _ := json.MarshalIndent(found, "", "    ")
	fmt.Fprintln(c.out, string(b))
	return nil
}
