package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/container"
)

var psHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
	"Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
}

const psDefaultFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

// statusText is the STATUS column: "Up 5 seconds", "Exited (0) 2 minutes ago".
func statusText(c *container.Container, now time.Time) string {
	switch {
	case c.State.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", c.State.ExitCode, units.HumanDuration(now.Sub(c.State.FinishedAt)))
	case c.State.Running:
		return "Up " + units.HumanDuration(now.Sub(c.State.StartedAt))
	case c.State.Status == "created" || c.State.StartedAt.IsZero():
		return "Created"
	default:
		return fmt.Sprintf("Exited (%d) %s ago", c.State.ExitCode, units.HumanDuration(now.Sub(c.State.FinishedAt)))
	}
}

func quoteCommand(c *container.Container, trunc bool) string {
	cmd := strings.Join(c.Args(), " ")
	if trunc && utf8Len(cmd) > 20 {
		r := []rune(cmd)
		cmd = string(r[:19]) + "…"
	}
	return strconv.Quote(cmd)
}

func utf8Len(s string) int { return len([]rune(s)) }

func psRow(c *container.Container, noTrunc bool, now time.Time) map[string]any {
	id := c.ID
	if !noTrunc {
		id = c.ShortID()
	}
	var labels []string
	for k, v := range c.Config.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	return map[string]any{
		"ID":         id,
		"Image":      c.ImageRef,
		"Command":    quoteCommand(c, !noTrunc),
		"CreatedAt":  c.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
		"RunningFor": units.HumanDuration(now.Sub(c.Created)) + " ago",
		"Ports":      container.FormatPorts(c.Ports),
		"State":      c.State.Status,
		"Status":     statusText(c, now),
		"Size":       "0B",
		"Names":      c.Name,
		"Labels":     strings.Join(labels, ","),
		"Mounts":     "",
		"Networks":   strings.Join(c.NetworkNames(), ","),
	}
}

// psFilter is one --filter key=value.
type psFilter struct{ key, value string }

func matchFilters(c *container.Container, filters []psFilter) bool {
	byKey := map[string][]string{}
	for _, f := range filters {
		byKey[f.key] = append(byKey[f.key], f.value)
	}
	// Values of one key are alternatives; different keys must all match.
	for key, values := range byKey {
		ok := false
		for _, v := range values {
			switch key {
			case "name":
				ok = ok || strings.Contains(c.Name, strings.TrimPrefix(v, "/"))
			case "id":
				ok = ok || strings.HasPrefix(c.ID, v)
			case "status":
				ok = ok || c.State.Status == v
			case "exited":
				ok = ok || (!c.State.Running && !c.State.StartedAt.IsZero() && strconv.Itoa(c.State.ExitCode) == v)
			case "ancestor":
				ok = ok || c.ImageRef == v || strings.HasPrefix(c.Image, "sha256:"+v) || c.Image == v
			case "label":
				k, val, has := strings.Cut(v, "=")
				got, exists := c.Config.Labels[k]
				ok = ok || (exists && (!has || got == val))
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (c *cli) psCmd() *cobra.Command {
	var all, quiet, noTrunc, latest bool
	var last int
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var fs []psFilter
			for _, f := range filters {
				k, v, ok := strings.Cut(f, "=")
				switch k {
				case "name", "id", "status", "exited", "ancestor", "label":
				default:
					return &exitError{code: 1, msg: daemonError(fmt.Errorf("invalid filter '%s'", k))}
				}
				if !ok {
					return &exitError{code: 1, msg: "bad format of filter (expected name=value)"}
				}
				if k == "status" {
					switch v {
					case "created", "restarting", "running", "removing", "paused", "exited", "dead":
					default:
						return &exitError{code: 1, msg: daemonError(fmt.Errorf("invalid filter 'status=%s'", v))}
					}
				}
				fs = append(fs, psFilter{k, v})
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			list, err := eng.Containers.List()
			if err != nil {
				return fail1(err)
			}
			if latest {
				last = 1
			}
			now := time.Now()
			var rows []map[string]any
			for _, ctr := range list {
				if !all && last <= 0 && len(fs) == 0 && !ctr.State.Running && !ctr.State.Restarting {
					continue
				}
				if len(fs) > 0 && !all && last <= 0 && !ctr.State.Running && !ctr.State.Restarting && !hasStatusOrExited(fs) {
					continue
				}
				if !matchFilters(ctr, fs) {
					continue
				}
				rows = append(rows, psRow(ctr, noTrunc, now))
				if last > 0 && len(rows) == last {
					break
				}
			}
			if quiet {
				for _, r := range rows {
					fmt.Fprintln(c.out, r["ID"])
				}
				return nil
			}
			if format == "" {
				format = psDefaultFormat
			}
			if err := renderRows(c.out, format, psHeaders, rows); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display container IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	cmd.Flags().BoolVarP(&latest, "latest", "l", false, "Show the latest created container (includes all states)")
	cmd.Flags().IntVarP(&last, "last", "n", -1, "Show n last created containers (includes all states)")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided")
	cmd.Flags().BoolP("size", "s", false, "Display total file sizes")
	return cmd
}

func hasStatusOrExited(fs []psFilter) bool {
	for _, f := range fs {
		if f.key == "status" || f.key == "exited" {
			return true
		}
	}
	return false
}
