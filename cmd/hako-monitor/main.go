// Command hako-monitor keeps one container alive: it is started by hako,
// detached, for each container that runs (see package container), and it is
// also re-executed as the container's init (package oci).
//
// It is a separate, small, static binary because every running container pays
// for its resident memory, and every `run` for its start-up: it links only the
// runtime's low-level packages, not the CLI's.
package main

import (
	"os"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/oci"
)

func main() {
	oci.Main() // the container's init: never returns
	os.Exit(container.MonitorMain(os.Args[1:]))
}
