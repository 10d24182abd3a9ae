package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/image"
)

// imageError prints a not-found image as Docker does ("No such image:
// busybox:latest" for a name, the ID as typed for an ID).
func imageError(ref string, err error) error {
	if errdefs.Is(err, errdefs.ErrNotFound) {
		if n, e := image.NormalizeRef(ref); e == nil && !looksLikeID(ref) {
			ref = image.FamiliarRef(n)
		}
		return fail1(fmt.Errorf("No such image: %s", ref))
	}
	return fail1(err)
}

func (c *cli) saveCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				if f, ok := c.out.(*os.File); ok && isTerminal(f) {
					return &exitError{code: 1, msg: "cowardly refusing to save to a terminal. Use the -o flag or redirect"}
				}
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			if output == "" {
				if err := eng.Images.Save(c.out, args); err != nil {
					return saveError(err)
				}
				return nil
			}
			// Write next to the target and rename, so a failed save leaves no
			// half-written file.
			tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".tmp-")
			if err != nil {
				return &exitError{code: 1, msg: "failed to save image: " + err.Error()}
			}
			defer os.Remove(tmp.Name())
			if err := eng.Images.Save(tmp, args); err != nil {
				tmp.Close()
				return saveError(err)
			}
			if err := tmp.Chmod(0o644); err == nil {
				err = tmp.Close()
			} else {
				tmp.Close()
			}
			if err := os.Rename(tmp.Name(), output); err != nil {
				return &exitError{code: 1, msg: "failed to save image: " + err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// saveError names the missing image as Docker does.
func saveError(err error) error {
	if errdefs.Is(err, errdefs.ErrNotFound) {
		if ref, ok := strings.CutPrefix(err.Error(), "No such image: "); ok {
			return imageError(ref, err)
		}
	}
	return fail1(err)
}

var historyHeaders = map[string]string{
	"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
	"CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
}

const historyDefaultFormat = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"

// ellipsis shortens s to max characters, the last one "…".
func ellipsis(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

func (c *cli) historyCmd() *cobra.Command {
	var human, noTrunc, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			img, err := eng.Images.Get(args[0])
			if err != nil {
				return imageError(args[0], err)
			}
			now := time.Now()
			var rows []map[string]any
			for _, h := range eng.Images.History(img) {
				id := h.ID
				if id != "<missing>" {
					id = shortImageID(id, noTrunc)
				}
				if quiet {
					fmt.Fprintln(c.out, id)
					continue
				}
				createdBy := strings.ReplaceAll(h.CreatedBy, "\t", " ")
				if !noTrunc {
					createdBy = ellipsis(createdBy, 45)
				}
				since, at := "N/A", "N/A"
				if !h.Created.IsZero() {
					since = units.HumanDuration(now.Sub(h.Created)) + " ago"
					at = h.Created.Local().Format(time.RFC3339)
				}
				size := units.HumanSizeWithPrecision(float64(h.Size), 3)
				if !human {
					since = at
					size = fmt.Sprint(h.Size)
				}
				rows = append(rows, map[string]any{
					"ID": id, "CreatedSince": since, "CreatedAt": at,
					"CreatedBy": createdBy, "Size": size, "Comment": h.Comment,
				})
			}
			if quiet {
				return nil
			}
			if format == "" {
				format = historyDefaultFormat
			}
			if err := renderRows(c.out, format, historyHeaders, rows); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&human, "human", "H", true, "Print sizes and dates in human readable format")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

func (c *cli) imagePruneCmd() *cobra.Command {
	var all, force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(filters) > 0 {
				return &exitError{code: 1, msg: "image prune --filter is not supported by hako yet"}
			}
			if !force {
				warning := "WARNING! This will remove all dangling images."
				if all {
					warning = "WARNING! This will remove all images without at least one container associated to them."
				}
				if !c.confirm(warning) {
					return nil
				}
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			cs, err := eng.Containers.List()
			if err != nil {
				return fail1(err)
			}
			used := map[string]bool{}
			for _, ctr := range cs {
				used[ctr.Image] = true
			}
			tags := map[string][]string{}
			if list, err := eng.Images.List(); err == nil {
				for _, img := range list {
					tags[img.ID] = img.RepoTags
				}
			}
			deleted, reclaimed, err := eng.Images.Prune(all, func(id string) bool { return used[id] })
			if err != nil {
				return fail1(err)
			}
			if len(deleted) > 0 {
				var sb strings.Builder
				sb.WriteString("Deleted Images:\n")
				for _, d := range deleted {
					for _, t := range tags[d] {
						sb.WriteString("untagged: " + t + "\n")
					}
					sb.WriteString("deleted: " + d + "\n")
				}
				fmt.Fprintln(c.out, sb.String())
			}
			fmt.Fprintln(c.out, "Total reclaimed space:", units.HumanSize(float64(reclaimed)))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "Provide filter values (not supported by hako yet)")
	return cmd
}

// confirm asks Docker's question after a prune's warning; only y or yes go on.
func (c *cli) confirm(warning string) bool {
	fmt.Fprint(c.out, warning+"\nAre you sure you want to continue? [y/N] ")
	answer, _ := bufio.NewReader(c.in).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(answer))
	return a == "y" || a == "yes"
}
