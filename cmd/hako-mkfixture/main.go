// Command hako-mkfixture writes an offline image (a docker-archive, as
// `docker save` writes it) that tests and `make images` load into hako:
// busybox, or an httpd:2.4 stand-in made of busybox's httpd.
//
//	hako-mkfixture -o busybox.tar [-t busybox:latest]
//	hako-mkfixture -image httpd -o httpd.tar [-t httpd:2.4]
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"hako.dev/hako/runtime/image/imagetest"
)

func main() {
	fs := flag.NewFlagSet("hako-mkfixture", flag.ContinueOnError)
	out := fs.String("o", "", "write the archive to `file` (required)")
	tag := fs.String("t", "", "tag the image as `ref` (default busybox:latest or httpd:2.4; \"-\" for untagged)")
	kind := fs.String("image", "busybox", "which image: busybox or httpd")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: hako-mkfixture [-image busybox|httpd] -o FILE [-t REF]")
		os.Exit(2)
	}
	writers := map[string]func(io.Writer, string) error{"busybox": imagetest.WriteBusybox, "httpd": imagetest.WriteHTTPD}
	defaults := map[string]string{"busybox": "busybox:latest", "httpd": "httpd:2.4"}
	w, ok := writers[*kind]
	if !ok {
		fmt.Fprintf(os.Stderr, "hako-mkfixture: unknown image %q (busybox or httpd)\n", *kind)
		os.Exit(2)
	}
	switch *tag {
	case "":
		*tag = defaults[*kind]
	case "-":
		*tag = ""
	}
	if err := write(*out, *tag, w); err != nil {
		fmt.Fprintln(os.Stderr, "hako-mkfixture:", err)
		os.Exit(1)
	}
}

// write creates the archive beside out and renames it into place, so an
// interrupted run never leaves a truncated fixture.
func write(out, tag string, writeImage func(io.Writer, string) error) error {
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	err = writeImage(f, tag)
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
