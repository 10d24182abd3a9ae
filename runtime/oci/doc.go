// Package oci turns an OCI runtime spec into a running, isolated process, the
// way runc and crun do, with the kernel's own primitives:
//
//   - Namespaces give the process its own view of the system: a PID namespace
//     (it is PID 1 and sees only its descendants), a mount namespace (its own
//     mount table), UTS (its own hostname), IPC, network (only a loopback until a
//     network attaches a veth) and cgroup (it sees its own cgroup as the root).
//     clone(2) creates them together with the process.
//   - pivot_root(2) makes the container's root filesystem (an overlay of the
//     image's layers) the process's "/", and the host's root is unmounted from
//     its view, so no path leads back to it.
//   - /proc, /dev, /sys and /dev/pts are mounted fresh inside; the parts of /proc
//     and /sys that reveal or change the host are masked or made read-only, as
//     Docker does.
//   - Capabilities split root's powers; the process keeps Docker's default 14
//     and loses the rest from its bounding set, so not even a setuid binary can
//     get them back. no_new_privs forbids gaining privileges through execve.
//
// The host side (Start, Exec) re-executes the hako binary as the container's
// init, from a read-only view of the binary so that nothing in the container can
// write to it (the CVE-2019-5736 class). The two sides talk over one socket: the
// host sends one JSON message (the InitConfig), the init answers with the
// terminal's master fd if it made one, and with an error message if it fails.
// When the init execs the container's command the socket closes (close-on-exec),
// which tells the host that the command started.
//
// Joining an existing container for `exec` needs setns(2) into its mount
// namespace before the Go runtime starts threads: package nsenter does that in
// C; the Go part here finishes the job (user, capabilities, terminal, exec).
package oci
