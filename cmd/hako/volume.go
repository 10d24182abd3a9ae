package main

import (
	"os"
	"path/filepath"

	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	units "github.com/docker/go-units"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
)

var volumeHeaders = map[string]string{"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Scope": "SCOPE"}

func (c *cli) volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes"}

	var labels []string
	create := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			} else {
				name = randomHex(32)
			}
			lm := map[string]string{}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				lm[k] = v
			}
			v, _, err := eng.Volumes.Create(name, lm)
			if err != nil {
				return fail1(err)
			}
			fmt.Fprintln(c.out, v.Name)
			return nil
		},
	}
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "Set metadata for a volume")
	create.Flags().StringP("driver", "d", "local", "Specify volume driver name")

	var quiet bool
	var format string
	var filters []string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			dangling := ""
			for _, f := range filters {
				k, v, _ := strings.Cut(f, "=")
				if k != "dangling" {
					return &exitError{code: 1, msg: daemonError(fmt.Errorf("invalid filter '%s'", k))}
				}
				dangling = v
			}
			vols, err := eng.Volumes.List()
			if err != nil {
				return fail1(err)
			}
			var rows []map[string]any
			for _, v := range vols {
				if dangling != "" {
					users, _ := eng.VolumeUsers(v.Name)
					if (dangling == "true") != (len(users) == 0) {
						continue
					}
				}
				if quiet {
					fmt.Fprintln(c.out, v.Name)
					continue
				}
				var ls []string
				for k, val := range v.Labels {
					ls = append(ls, k+"="+val)
				}
				rows = append(rows, map[string]any{"Driver": v.Driver, "Name": v.Name, "Mountpoint": v.Mountpoint, "Labels": strings.Join(ls, ","), "Scope": v.Scope})
			}
			if quiet {
				return nil
			}
			if format == "" {
				format = "table {{.Driver}}\t{{.Name}}"
			}
			if err := renderRows(c.out, format, volumeHeaders, rows); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display volume names")
	ls.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	ls.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Provide filter values (e.g. 'dangling=true')")

	inspect := c.inspectEachCmd("volume", "VOLUME", "volumes", func(eng *engine.Engine, ref string) (any, error) {
		return eng.Volumes.Get(ref)
	})
	rm := c.removeEachCmd("VOLUME", "volumes", "Force the removal of one or more volumes", func(eng *engine.Engine, ref string) error {
		return eng.RemoveVolume(ref)
	})

	var force, all bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused local volumes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				if !c.confirm("WARNING! This will remove anonymous local volumes not used by at least one container.") {
					return nil
				}
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			// As Docker: without --all only anonymous volumes go, and every
			// hako volume has a name, so only --all removes anything.
			var deleted []string
			var reclaimed int64
			if all {
				vols, err := eng.Volumes.List()
				if err != nil {
					return fail1(err)
				}
				for _, v := range vols {
					if users, err := eng.VolumeUsers(v.Name); err != nil || len(users) > 0 {
						continue
					}
					size := dirSize(v.Mountpoint)
					if err := eng.RemoveVolume(v.Name); err == nil {
						reclaimed += size
						deleted = append(deleted, v.Name)
					}
				}
			}
			if len(deleted) > 0 {
				fmt.Fprintln(c.out, "Deleted Volumes:")
				for _, d := range deleted {
					fmt.Fprintln(c.out, d)
				}
				fmt.Fprintln(c.out)
			}
			fmt.Fprintln(c.out, "Total reclaimed space: "+units.HumanSizeWithPrecision(float64(reclaimed), 3))
			return nil
		},
	}
	prune.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	prune.Flags().BoolVarP(&all, "all", "a", false, "Remove all unused volumes, not just anonymous ones")
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}

// randomHex is a name for a volume created without one (Docker's 64 hex).
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// dirSize adds up the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
