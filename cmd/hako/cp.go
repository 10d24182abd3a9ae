package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/container"
)

// splitCpArg reads CONTAINER:PATH; a path that starts with / or . is local.
func splitCpArg(arg string) (ctr, p string) {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	c, p, ok := strings.Cut(arg, ":")
	if !ok {
		return "", arg
	}
	return c, p
}

func (c *cli) cpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  hako cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcC, srcP := splitCpArg(args[0])
			dstC, dstP := splitCpArg(args[1])
			switch {
			case srcC != "" && dstC != "":
				return &exitError{code: 1, msg: "copying between containers is not supported"}
			case srcC == "" && dstC == "":
				return &exitError{code: 1, msg: "must specify at least one container source"}
			}
			if srcC != "" {
				eng, ctr, err := c.findContainer(srcC)
				if err != nil {
					return err
				}
				if dstP == "-" {
					if err := eng.Containers.CopyOut(ctr, srcP, c.out); err != nil {
						return fail1(err)
					}
					return nil
				}
				pr, pw := io.Pipe()
				go func() {
					// Large writes through the pipe: fewer hand-offs between
					// the goroutine that reads and the one that writes.
					bw := bufio.NewWriterSize(pw, 1<<20)
					err := eng.Containers.CopyOut(ctr, srcP, bw)
					if err == nil {
						err = bw.Flush()
					}
					pw.CloseWithError(err)
				}()
				err = extractHost(pr, dstP)
				pr.Close()
				if err != nil {
					return fail1(err)
				}
				return nil
			}
			eng, ctr, err := c.findContainer(dstC)
			if err != nil {
				return err
			}
			if srcP == "-" {
				if err := eng.Containers.CopyIn(ctr, c.in, dstP, true); err != nil {
					return fail1(err)
				}
				return nil
			}
			if _, err := os.Lstat(srcP); err != nil {
				return &exitError{code: 1, msg: fmt.Sprintf("lstat %s: no such file or directory", srcP)}
			}
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(container.HostTar(srcP, pw)) }()
			err = eng.Containers.CopyIn(ctr, pr, dstP, false)
			pr.Close()
			if err != nil {
				return fail1(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolP("archive", "a", false, "Archive mode (copy all uid/gid information)")
	cmd.Flags().BoolP("follow-link", "L", false, "Always follow symbol link in SRC_PATH")
	return cmd
}

// extractHost writes a tar from a container to dst on the host: into dst if
// it is a directory, else as dst. Writes go through an os.Root of the target
// directory, so the archive's own links cannot send a file elsewhere.
func extractHost(r io.Reader, dst string) error {
	dir, rename := dst, ""
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		dir, rename = filepath.Dir(dst), filepath.Base(dst)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return container.ExtractTar(root, r, ".", rename, false, "copy to "+dst)
}
