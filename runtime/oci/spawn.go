package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Stdio is what the container's process gets as fds 0, 1 and 2 when it has no
// terminal. A nil entry is /dev/null.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
}

// Process is a started container init or exec'd process.
type Process struct {
	Pid int
	// Console is the master side of the process's terminal, if it has one.
	Console *os.File
	cmd     *exec.Cmd
}

// Wait waits for the process and returns its exit code as a shell reports it
// (128+N for a signal).
func (p *Process) Wait() (int, error) {
	err := p.cmd.Wait()
	if p.cmd.ProcessState == nil {
		return -1, err
	}
	return ExitCode(p.cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
}

// ExitCode converts a wait status to the code a shell shows.
func ExitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Options tune Start.
type Options struct {
	// CgroupDir, on cgroup v2, is the cgroup the init is cloned into
	// (clone3's CLONE_INTO_CGROUP: no migration at all).
	CgroupDir string
	// JoinCgroup, otherwise, moves the init into its cgroups (cgroup v1). It
	// runs while the init prepares the root filesystem, since a migration
	// waits for an RCU grace period (milliseconds); the init waits for it to
	// finish before it makes its cgroup namespace and execs the command.
	JoinCgroup func(pid int) error
	// Prepare, if set, also runs while the init prepares its root, after
	// JoinCgroup: the host gives the new network namespace its interfaces.
	Prepare func(pid int) error
	// Setsid starts the init in a session of its own, detached from the caller's
	// terminal (for `hako oci create`, whose caller exits).
	Setsid bool
}

func cloneFlags(spec *specs.Spec) (uintptr, error) {
	var flags uintptr
	if spec.Linux == nil {
		return 0, nil
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Path != "" && ns.Type == specs.NetworkNamespace {
			continue // the init joins it (setns) before anything else
		}
		if ns.Path != "" {
			return 0, fmt.Errorf("joining the %s namespace at %s is not supported", ns.Type, ns.Path)
		}
		switch ns.Type {
		case specs.PIDNamespace:
			flags |= unix.CLONE_NEWPID
		case specs.MountNamespace:
			flags |= unix.CLONE_NEWNS
		case specs.UTSNamespace:
			flags |= unix.CLONE_NEWUTS
		case specs.IPCNamespace:
			flags |= unix.CLONE_NEWIPC
		case specs.NetworkNamespace:
			flags |= unix.CLONE_NEWNET
		case specs.CgroupNamespace:
			// made by the init itself, once it is in its cgroup
		case specs.UserNamespace:
			return 0, errors.New("user namespaces are not supported")
		}
	}
	return flags, nil
}

// Start creates the container's namespaces and its init, which prepares the
// root filesystem and execs the spec's process. It returns once the process
// runs (or, with cfg.Fifo, once it waits on the fifo), or with the init's error.
func Start(cfg *InitConfig, stdio Stdio, opt Options) (*Process, error) {
	flags, err := cloneFlags(cfg.Spec)
	if err != nil {
		return nil, err
	}
	c := *cfg
	join := opt.JoinCgroup
	if opt.Prepare != nil {
		join = func(pid int) error {
			if opt.JoinCgroup != nil {
				if err := opt.JoinCgroup(pid); err != nil {
					return err
				}
			}
			return opt.Prepare(pid)
		}
	}
	c.LateCgroup = join != nil
	msg, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	cmd, host, cleanup, err := prepareChild([]string{envInit + "=1"}, stdio)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: opt.Setsid}
	if opt.CgroupDir != "" {
		fd, err := unix.Open(opt.CgroupDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open cgroup: %w", err)
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	return startChild(cmd, host, msg, join)
}

// Exec starts a process inside the running container whose init is pid,
// joining its namespaces and the cgroups whose cgroup.procs files are given.
func Exec(pid int, cgroupProcs []string, cfg *ExecConfig, stdio Stdio, setsid bool) (*Process, error) {
	msg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	env := []string{envExec + "=1", "_HAKO_NSENTER=" + strconv.Itoa(pid)}
	if len(cgroupProcs) > 0 {
		env = append(env, "_HAKO_CGROUP_PROCS="+strings.Join(cgroupProcs, ":"))
	}
	cmd, host, cleanup, err := prepareChild(env, stdio)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: setsid}
	return startChild(cmd, host, msg, nil)
}

func prepareChild(env []string, stdio Stdio) (*exec.Cmd, *os.File, func(), error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	host := os.NewFile(uintptr(fds[0]), "hako-init-host")
	child := os.NewFile(uintptr(fds[1]), "hako-init-child")
	exe, closeExe, err := protectedSelf()
	if err != nil {
		host.Close()
		child.Close()
		return nil, nil, nil, err
	}
	cmd := &exec.Cmd{
		Path:       exe,
		Args:       []string{"hako-init"},
		Env:        env,
		Stdin:      stdio.Stdin,
		Stdout:     stdio.Stdout,
		Stderr:     stdio.Stderr,
		ExtraFiles: []*os.File{child},
	}
	return cmd, host, func() { child.Close(); closeExe() }, nil
}

func startChild(cmd *exec.Cmd, host *os.File, msg []byte, join func(int) error) (*Process, error) {
	defer host.Close()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start init: %w", err)
	}
	p := &Process{Pid: cmd.Process.Pid, cmd: cmd}
	fail := func(err error) (*Process, error) {
		cmd.Process.Kill()
		cmd.Wait()
		if p.Console != nil {
			p.Console.Close()
		}
		return nil, err
	}
	// Close our copy of the child's end, or EOF would never come.
	cmd.ExtraFiles[0].Close()
	if _, err := host.Write(msg); err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	if join != nil {
		if err := join(p.Pid); err != nil {
			// The init may have failed first (its root, its mounts), which is
			// why the host's part could not be done: its error says more.
			cmd.Process.Kill()
			for {
				r, _, eof, rerr := recvReply(host)
				if rerr != nil || eof {
					break
				}
				if r.Type == "error" {
					err = r.err()
					break
				}
			}
			return fail(err)
		}
		// A failed write means the init is gone: its reply says why.
		host.Write([]byte(`{"type":"go"}`))
	}
	for {
		r, fd, eof, err := recvReply(host)
		if err != nil {
			return fail(err)
		}
		if eof {
			return p, nil
		}
		switch r.Type {
		case "console":
			if fd < 0 {
				return fail(errors.New("init sent a terminal without its descriptor"))
			}
			p.Console = os.NewFile(uintptr(fd), "pty-master")
		case "ready":
			return p, nil
		case "error":
			e := r.err()
			cmd.Wait()
			if p.Console != nil {
				p.Console.Close()
			}
			return nil, e
		}
	}
}

// protectedSelf returns a path that executes this very binary from a private,
// read-only bind mount, detached from every directory: the container's process
// cannot open it for writing even through /proc/PID/exe, because the file it
// refers to lives on a read-only mount (the CVE-2019-5736 class). If bind
// mounting is impossible it falls back to a sealed in-memory copy.
func protectedSelf() (string, func(), error) {
	p, done, err := readOnlyView("/proc/self/exe")
	if err != nil {
		return memfdSelf()
	}
	return p, done, nil
}

// readOnlyView returns a /proc/self/fd path of file reached through a private,
// read-only, detached bind mount.
func readOnlyView(file string) (string, func(), error) {
	tmp, err := os.CreateTemp("", ".hako-exe-")
	if err != nil {
		return "", nil, err
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	if err := unix.Mount(file, name, "", unix.MS_BIND, ""); err != nil {
		return "", nil, err
	}
	err = unix.Mount("", name, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
	var fd int
	if err == nil {
		fd, err = unix.Open(name, unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	unix.Unmount(name, unix.MNT_DETACH)
	if err != nil {
		return "", nil, err
	}
	defer unix.Close(fd)
	return highFD(fd)
}

// highFD copies fd above the numbers exec.Cmd dups its ExtraFiles onto, so that
// the /proc/self/fd path still names the binary when the child execs it.
func highFD(fd int) (string, func(), error) {
	hi, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 100)
	if err != nil {
		return "", nil, fmt.Errorf("dup: %w", err)
	}
	return procFD(hi), func() { unix.Close(hi) }, nil
}

func memfdSelf() (string, func(), error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("hako", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return "", nil, fmt.Errorf("memfd: %w", err)
	}
	dst := os.NewFile(uintptr(fd), "hako-memfd")
	if _, err := dst.ReadFrom(src); err != nil {
		dst.Close()
		return "", nil, fmt.Errorf("copy binary: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		dst.Close()
		return "", nil, fmt.Errorf("seal binary: %w", err)
	}
	p, cl, err := highFD(fd)
	dst.Close()
	return p, cl, err
}
