// Command hako-mkfixture writes the offline busybox image (a docker-archive,
// as `docker save` writes it) that tests and `make images` load into hako.
//
//	hako-mkfixture -o busybox.tar [-t busybox:latest]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"hako.dev/hako/runtime/image/imagetest"
)

func main() {
	fs := flag.NewFlagSet("hako-mkfixture", flag.ContinueOnError)
	out := fs.String("o", "", "write the archive to `file` (required)")
	tag := fs.String("t", "busybox:latest", "tag the image as `ref` (\"\" for untagged)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: hako-mkfixture -o FILE [-t busybox:latest]")
		os.Exit(2)
	}
	if err := write(*out, *tag); err != nil {
		fmt.Fprintln(os.Stderr, "hako-mkfixture:", err)
		os.Exit(1)
	}
}

// write creates the archive beside out and renames it into place, so an
// interrupted run never leaves a truncated fixture.
func write(out, tag string) error {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = imagetest.WriteBusybox(f, tag)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
