package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/rootfs"
)

// InitConfig is the one message the host sends to a container's init.
type InitConfig struct {
	Spec *specs.Spec `json:"spec"`
	// Rootfs is the host path of the root directory (Spec.Root.Path, absolute).
	Rootfs string `json:"rootfs"`
	// Overlay, if set, is mounted on Rootfs inside the container's mount
	// namespace, so it disappears with the container whatever happens.
	Overlay *rootfs.Mount `json:"overlay,omitempty"`
	// User, if set, is resolved inside the container ("name", "uid", "name:group",
	// "uid:gid") and overrides Spec.Process.User.
	User string `json:"user,omitempty"`
	// Fifo, if set, makes the init wait, after setup and just before exec, until
	// someone opens the fifo for reading (`hako oci start`).
	Fifo string `json:"fifo,omitempty"`
	// DeathSignal kills the container when the process that started it dies.
	DeathSignal bool `json:"deathSignal,omitempty"`
	// LateCgroup: the host moves the init into its cgroups while it sets up,
	// and says "go" when done (set by Start).
	LateCgroup bool `json:"lateCgroup,omitempty"`
}

// ExecConfig is the message for a process joining a running container.
type ExecConfig struct {
	Process         *specs.Process `json:"process"`
	User            string         `json:"user,omitempty"`
	NoNewPrivileges bool           `json:"noNewPrivileges,omitempty"`
}

// reply is what the init sends back before it execs.
type reply struct {
	Type  string `json:"type"` // "console" (fd attached), "ready", "error"
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"` // see KindName
}

// ProcessError is a failure of the container's process to start.
type ProcessError struct {
	Msg  string
	Kind error // errdefs.ErrCommandNotFound, errdefs.ErrCannotInvoke, errdefs.ErrInvalid, or nil
}

func (e *ProcessError) Error() string { return e.Msg }
func (e *ProcessError) Unwrap() error { return e.Kind }

func (r reply) err() error { return NewProcessError(r.Error, r.Kind) }

// KindName names the kind of a start failure for a message between
// processes: "notfound" (exit 127), "noinvoke" (126), "invalid" (125, e.g. an
// unknown user), or "".
func KindName(err error) string {
	switch {
	case errors.Is(err, errdefs.ErrCommandNotFound):
		return "notfound"
	case errors.Is(err, errdefs.ErrCannotInvoke):
		return "noinvoke"
	case errors.Is(err, errdefs.ErrInvalid):
		return "invalid"
	}
	return ""
}

// NewProcessError rebuilds a start failure from its message and KindName.
func NewProcessError(msg, kind string) error {
	var k error
	switch kind {
	case "notfound":
		k = errdefs.ErrCommandNotFound
	case "noinvoke":
		k = errdefs.ErrCannotInvoke
	case "invalid":
		k = errdefs.ErrInvalid
	}
	return &ProcessError{Msg: msg, Kind: k}
}

// channel is the init's end of the socket to the host.
type channel struct{ f *os.File }

func (c channel) send(r reply, fd int) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	return unix.Sendmsg(int(c.f.Fd()), b, oob, nil, 0)
}

// recvReply reads one message (and a passed fd) from the host's end.
func recvReply(sock *os.File) (r reply, fd int, eof bool, err error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	fd = -1
	for {
		n, oobn, _, _, e := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if e == unix.EINTR {
			continue
		}
		if e != nil {
			return r, -1, false, e
		}
		if n == 0 && oobn == 0 {
			return r, -1, true, nil
		}
		if oobn > 0 {
			msgs, e := unix.ParseSocketControlMessage(oob[:oobn])
			if e == nil && len(msgs) > 0 {
				if fds, e := unix.ParseUnixRights(&msgs[0]); e == nil && len(fds) > 0 {
					fd = fds[0]
				}
			}
		}
		if e := json.Unmarshal(buf[:n], &r); e != nil {
			return r, fd, false, fmt.Errorf("init: bad message: %w", e)
		}
		return r, fd, false, nil
	}
}
