package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

func (c *cli) portCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			want := ""
			if len(args) == 2 {
				want = args[1]
				if !strings.Contains(want, "/") {
					want += "/tcp"
				}
			}
			var lines []string
			for cport, bs := range ctr.Ports {
				if want != "" && cport != want {
					continue
				}
				for _, b := range bs {
					if want != "" {
						lines = append(lines, b.HostIP+":"+b.HostPort)
					} else {
						lines = append(lines, fmt.Sprintf("%s -> %s:%s", cport, b.HostIP, b.HostPort))
					}
				}
			}
			if want != "" && len(lines) == 0 {
				return fail1(fmt.Errorf("No public port '%s' published for %s", want, args[0]))
			}
			sort.Strings(lines)
			for _, l := range lines {
				fmt.Fprintln(c.out, l)
			}
			return nil
		},
	}
}
