// Package errdefs defines the few kinds of error the runtime returns, so that the
// CLI can map them to Docker's messages and exit codes without parsing strings.
//
// Errors are wrapped with the operation and the object, and callers test the kind
// with errors.Is:
//
//	return fmt.Errorf("container %q: %w", name, errdefs.ErrNotFound)
package errdefs

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: no such container, image, volume or network.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a name is taken, an object is in use, or its state forbids the request.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a malformed argument (a size, a reference, a policy, a path).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotRunning: the request needs a running container.
	ErrNotRunning = errors.New("not running")
	// ErrUnsupported: hako does not implement this (yet); the message says what.
	ErrUnsupported = errors.New("unsupported")
	// ErrCannotInvoke: the container's command exists but cannot be executed (exit 126).
	ErrCannotInvoke = errors.New("cannot invoke")
	// ErrCommandNotFound: the container's command does not exist (exit 127).
	ErrCommandNotFound = errors.New("command not found")
)

// Is reports whether err is of the given kind. It is errors.Is, named for reading.
func Is(err, kind error) bool { return errors.Is(err, kind) }

// kindError carries a kind without adding the kind's words to the message, so
// that the CLI can print Docker's exact sentence.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// Errorf formats a message (with %w allowed for a cause) and marks it as kind.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Errorf(format, args...).Error(), kind: kind}
}
