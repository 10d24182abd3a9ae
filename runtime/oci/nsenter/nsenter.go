// Package nsenter, imported for its side effect, lets the hako binary start
// inside a running container's namespaces: see nsenter.c. Only main packages
// that re-exec themselves for `exec` import it.
package nsenter

// #cgo CFLAGS: -Wall -O2
import "C"
