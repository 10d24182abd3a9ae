package main

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/image"
)

var searchHeaders = map[string]string{
	"Name": "NAME", "Description": "DESCRIPTION", "StarCount": "STARS",
	"IsOfficial": "OFFICIAL", "IsAutomated": "AUTOMATED",
}

const searchDefaultFormat = "table {{.Name}}\t{{.Description}}\t{{.StarCount}}\t{{.IsOfficial}}"

func (c *cli) searchCmd() *cobra.Command {
	var limit int
	var filters []string
	var noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "search [OPTIONS] TERM",
		Short: "Search Docker Hub for images (or a registry's catalog: REGISTRY/TERM)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := image.ParseSearchFilters(filters)
			if err != nil {
				return fail1(err)
			}
			res, err := image.Search(cmd.Context(), args[0], image.SearchOptions{
				Limit: limit, Filter: f, Offline: engine.Offline(),
			})
			if err != nil {
				return fail1(err)
			}
			rows := make([]map[string]any, 0, len(res))
			for _, r := range res {
				desc := strings.ReplaceAll(strings.ReplaceAll(r.Description, "\n", " "), "\r", " ")
				if !noTrunc {
					desc = ellipsis(desc, 45)
				}
				rows = append(rows, map[string]any{
					"Name": r.Name, "Description": desc, "StarCount": strconv.Itoa(r.StarCount),
					"IsOfficial": okMark(r.IsOfficial), "IsAutomated": okMark(r.IsAutomated),
				})
			}
			if format == "" {
				format = searchDefaultFormat
			}
			if err := renderRows(c.out, format, searchHeaders, rows); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "Max number of search results")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	cmd.Flags().StringVar(&format, "format", "", "Pretty-print search using a Go template")
	return cmd
}

// okMark is how Docker's search table shows a true flag.
func okMark(b bool) string {
	if b {
		return "[OK]"
	}
	return ""
}
