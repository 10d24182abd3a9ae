package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (c *cli) exportCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f, ok := c.out.(*os.File); ok && output == "" && isTerminal(f) {
				return &exitError{code: 1, msg: "cowardly refusing to save to a terminal. Use the -o flag or redirect"}
			}
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			if output == "" {
				if err := eng.Containers.Export(ctr.ID, c.out); err != nil {
					return fail1(err)
				}
				return nil
			}
			// Write next to the target and rename, so a failed export leaves
			// no half-written file.
			tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".tmp-")
			if err != nil {
				return &exitError{code: 1, msg: "failed to export container: " + err.Error()}
			}
			defer os.Remove(tmp.Name())
			if err := eng.Containers.Export(ctr.ID, tmp); err != nil {
				tmp.Close()
				return fail1(err)
			}
			if err := tmp.Chmod(0o644); err == nil {
				err = tmp.Close()
			} else {
				tmp.Close()
			}
			if err := os.Rename(tmp.Name(), output); err != nil {
				return &exitError{code: 1, msg: "failed to export container: " + err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}
