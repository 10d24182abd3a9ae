// Command hako is a Docker classroom in one binary: a Docker-compatible CLI on
// hako's own daemonless runtime. Invoked through a link named "docker" it is
// the Docker CLI, so a course's commands run verbatim.
//
// This package is the composition root: each command parses its flags, makes
// one call into runtime/engine (or the stores it opens), and prints. The hidden
// entry points for re-executed processes (a container's init and exec, a
// container's monitor) are dispatched before any command is built.
package main

import (
	"os"
	"path/filepath"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/oci"
	_ "hako.dev/hako/runtime/oci/nsenter"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	oci.Main() // a container's init or exec: never returns
	container.ExportMain()
	if os.Getenv(container.EnvMonitor) == "1" {
		os.Exit(container.MonitorMain(os.Args[1:]))
	}
	prog := filepath.Base(os.Args[0])
	if prog != "docker" {
		prog = "hako"
	}
	os.Exit(execute(prog, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
