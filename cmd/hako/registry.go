package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/image"
)

// hasTagOrDigest reports whether a typed reference names a tag or a digest
// ("busybox:1.36", "localhost:5000/app@sha256:..."), not only a repository.
func hasTagOrDigest(ref string) bool {
	if strings.Contains(ref, "@") {
		return true
	}
	return strings.LastIndex(ref, ":") > strings.LastIndex(ref, "/")
}

// registryStart is what pull and push do first: check the reference, open the
// engine, and choose where progress goes (nowhere with -q), saying "Using
// default tag: latest" as Docker does when the tag is implied.
func (c *cli) registryStart(ref string, quiet bool) (string, *engine.Engine, io.Writer, error) {
	norm, err := image.NormalizeRef(ref)
	if err != nil {
		return "", nil, nil, fail1(err)
	}
	eng, err := c.engine()
	if err != nil {
		return "", nil, nil, fail1(err)
	}
	var progress io.Writer = c.out
	if quiet {
		progress = io.Discard
	} else if !hasTagOrDigest(ref) {
		fmt.Fprintln(c.out, "Using default tag: latest")
	}
	return norm, eng, progress, nil
}

func (c *cli) pullCmd() *cobra.Command {
	var quiet, insecure, noTrust bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			norm, eng, progress, err := c.registryStart(ref, quiet)
			if err != nil {
				return err
			}
			opt := image.PullOptions{Platform: platform, Insecure: insecure, Progress: progress, Offline: engine.Offline()}
			if !quiet && isTerminal(c.out) {
				// On a terminal: a line per layer, redrawn, with bars.
				tp := newTermProgress(c.out)
				opt.Progress, opt.LayerBytes = tp, tp.LayerBytes
			}
			if _, err := eng.Images.Pull(cmd.Context(), ref, opt); err != nil {
				return fail1(err)
			}
			fmt.Fprintln(c.out, norm)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "Allow plain HTTP to the registry (hako only; always allowed for localhost)")
	cmd.Flags().BoolVar(&noTrust, "disable-content-trust", true, "Skip image verification")
	cmd.Flags().MarkHidden("insecure")
	return cmd
}

func (c *cli) pushCmd() *cobra.Command {
	var quiet, insecure, noTrust bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			norm, eng, progress, err := c.registryStart(ref, quiet)
			if err != nil {
				return err
			}
			if err := eng.Images.Push(cmd.Context(), ref, image.PushOptions{Insecure: insecure, Progress: progress}); err != nil {
				return fail1(err)
			}
			if quiet {
				fmt.Fprintln(c.out, norm)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "Allow plain HTTP to the registry (hako only; always allowed for localhost)")
	cmd.Flags().BoolVar(&noTrust, "disable-content-trust", true, "Skip image signing")
	cmd.Flags().MarkHidden("insecure")
	return cmd
}
