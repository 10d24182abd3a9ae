package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/image"
)

var imageHeaders = map[string]string{
	"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED",
	"CreatedAt": "CREATED AT", "Size": "SIZE", "Digest": "DIGEST", "Containers": "CONTAINERS",
}

const imagesDefaultFormat = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"

func shortImageID(id string, noTrunc bool) string {
	if noTrunc {
		return id
	}
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// splitRepoTag splits "localhost:5000/app:v1" into repository and tag.
func splitRepoTag(rt string) (string, string) {
	i := strings.LastIndex(rt, ":")
	if i < 0 || strings.Contains(rt[i:], "/") {
		return rt, "<none>"
	}
	return rt[:i], rt[i+1:]
}

func (c *cli) imagesCmd() *cobra.Command {
	var all, quiet, noTrunc bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dangling := ""
			var refFilters []string
			for _, f := range filters {
				k, v, _ := strings.Cut(f, "=")
				switch k {
				case "dangling":
					dangling = v
				case "reference":
					refFilters = append(refFilters, v)
				default:
					return &exitError{code: 1, msg: daemonError(fmt.Errorf("invalid filter '%s'", k))}
				}
			}
			if len(args) == 1 {
				refFilters = append(refFilters, args[0])
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			list, err := eng.Images.List()
			if err != nil {
				return fail1(err)
			}
			now := time.Now()
			var rows []map[string]any
			seen := map[string]bool{}
			for _, img := range list {
				tags := img.RepoTags
				if len(tags) == 0 {
					tags = []string{"<none>:<none>"}
				}
				if dangling == "true" && len(img.RepoTags) > 0 || dangling == "false" && len(img.RepoTags) == 0 {
					continue
				}
				for _, rt := range tags {
					repo, tag := splitRepoTag(rt)
					if rt == "<none>:<none>" {
						repo, tag = "<none>", "<none>"
					}
					if len(refFilters) > 0 && !matchRef(refFilters, repo, tag) {
						continue
					}
					id := shortImageID(img.ID, noTrunc)
					if quiet {
						if !seen[id] {
							seen[id] = true
							fmt.Fprintln(c.out, id)
						}
						continue
					}
					rows = append(rows, map[string]any{
						"Repository": repo, "Tag": tag, "ID": id, "Digest": "<none>",
						"CreatedSince": units.HumanDuration(now.Sub(img.Created)) + " ago",
						"CreatedAt":    img.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
						"Size":         units.HumanSizeWithPrecision(float64(img.Size), 3),
						"Containers":   "N/A",
					})
				}
			}
			if quiet {
				return nil
			}
			if format == "" {
				format = imagesDefaultFormat
			}
			if err := renderRows(c.out, format, imageHeaders, rows); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Show all images (default hides intermediate images)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided")
	return cmd
}

func matchRef(filters []string, repo, tag string) bool {
	for _, f := range filters {
		fr, ft, hasTag := strings.Cut(f, ":")
		if fr == repo && (!hasTag || ft == tag) {
			return true
		}
	}
	return false
}

func (c *cli) rmiCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			var m multiErr
			for _, a := range args {
				untagged, deleted, err := eng.RemoveImage(a, force)
				if err != nil {
					if errdefs.Is(err, errdefs.ErrNotFound) {
						ref := a
						if n, e := image.NormalizeRef(a); e == nil && !looksLikeID(a) {
							ref = image.FamiliarRef(n)
						}
						m.add(fmt.Errorf("No such image: %s", ref))
						continue
					}
					m.add(err)
					continue
				}
				for _, u := range untagged {
					fmt.Fprintln(c.out, "Untagged: "+u)
				}
				for _, d := range deleted {
					fmt.Fprintln(c.out, "Deleted: "+d)
				}
			}
			return m.result()
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force removal of the image")
	cmd.Flags().Bool("no-prune", false, "Do not delete untagged parents")
	return cmd
}

func looksLikeID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func (c *cli) tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			if err := eng.Images.Tag(args[0], args[1]); err != nil {
				if errdefs.Is(err, errdefs.ErrNotFound) {
					return fail1(err)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "Error parsing reference") {
					msg = "Error parsing reference: \"" + args[1] + "\" is not a valid repository/tag: " + msg
				}
				return &exitError{code: 1, msg: msg}
			}
			return nil
		},
	}
}

func (c *cli) loadCmd() *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive or STDIN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = c.in
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return &exitError{code: 1, msg: "open " + input + ": no such file or directory"}
				}
				defer f.Close()
				r = f
			} else if isTerminal(c.in) {
				return &exitError{code: 1, msg: "requested load from stdin, but stdin is empty"}
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			lines, err := eng.Images.Load(r)
			if err != nil {
				return fail1(err)
			}
			for _, l := range lines {
				fmt.Fprintln(c.out, l)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "Read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress the load output")
	return cmd
}

func (c *cli) importCmd() *cobra.Command {
	var changes []string
	var message string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = c.in
			if args[0] != "-" {
				if strings.Contains(args[0], "://") {
					return &exitError{code: 1, msg: "importing from a URL is not supported by hako"}
				}
				f, err := os.Open(args[0])
				if err != nil {
					return &exitError{code: 1, msg: "open " + args[0] + ": no such file or directory"}
				}
				defer f.Close()
				r = f
			}
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			id, err := eng.Images.Import(r, ref, changes, message)
			if err != nil {
				return fail1(err)
			}
			fmt.Fprintln(c.out, id)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	cmd.Flags().StringVarP(&message, "message", "m", "", "Set commit message for imported image")
	return cmd
}
