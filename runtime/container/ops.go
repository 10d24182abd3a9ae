package container

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/cgroup"
	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/oci"
)

// StartMonitor starts the container's monitor. Without waitAttach it returns
// once the container's process runs (or failed to start); with it, once the
// monitor listens for the client whose attachment starts the container.
func (s *Store) StartMonitor(id string, waitAttach bool) (pid int, err error) {
	// The monitor of the last run may still be finishing (its cgroup, its
	// socket): two monitors never share a container.
	for i := 0; i < 1000; i++ {
		c, err := s.Load(id)
		if err != nil {
			return 0, err
		}
		if c.Monitor == nil || !c.Monitor.Alive() || c.State.Running || c.State.Restarting {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		w.Close()
		return 0, err
	}
	defer devnull.Close()
	args := []string{"hako-monitor", s.root.Dir, id}
	if waitAttach {
		args = append(args, "attach")
	}
	cmd := &exec.Cmd{
		Path:        MonitorBinary(),
		Args:        args,
		Env:         []string{EnvMonitor + "=1", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Stdin:       devnull,
		Stdout:      devnull,
		Stderr:      devnull,
		ExtraFiles:  []*os.File{w},
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start monitor: %w", err)
	}
	// Reap it if it dies while we still run; it is detached otherwise.
	go cmd.Wait()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m syncMsg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		switch m.Event {
		case "listening":
			if waitAttach {
				return 0, nil
			}
		case "started":
			return m.Pid, nil
		case "error":
			return 0, startError{Error: m.Error, Kind: m.Kind}.err()
		}
	}
	return 0, fmt.Errorf("monitor of %s exited before the container started", id[:12])
}

// MonitorBinary is the program that runs as a container's monitor: $HAKO_MONITOR,
// else hako-monitor beside the running binary (`make` installs them together),
// else this very binary (it knows the role from the environment; a test
// binary stands in for hako that way).
func MonitorBinary() string {
	if p := os.Getenv("HAKO_MONITOR"); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "hako-monitor")
		if unix.Access(p, unix.X_OK) == nil {
			return p
		}
	}
	return "/proc/self/exe"
}

// Signal sends sig to the container's init. A stop or kill also keeps the
// restart policy from starting it again.
func (s *Store) Signal(id string, sig unix.Signal, userStop bool) (*Container, error) {
	unlock, err := s.LockContainer(id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	if !c.State.Running && !c.State.Restarting {
		return c, errdefs.Errorf(errdefs.ErrNotRunning, "container %s is not running", c.ID)
	}
	if userStop && !c.StopRequested {
		c.StopRequested = true
		if err := s.Save(c); err != nil {
			return nil, err
		}
	}
	if c.State.Restarting && c.Monitor != nil {
		unix.Kill(c.Monitor.Pid, unix.SIGTERM) // wake it from its backoff
		return c, nil
	}
	if c.State.Pid > 0 {
		if err := unix.Kill(c.State.Pid, sig); err != nil && err != unix.ESRCH {
			return c, fmt.Errorf("kill %s: %w", c.ID[:12], err)
		}
	}
	return c, nil
}

// WaitStopped waits until the container is not running (or ctx ends).
func (s *Store) WaitStopped(ctx context.Context, id string) (*Container, error) {
	for {
		c, err := s.Load(id)
		if err != nil {
			return nil, err
		}
		if !c.State.Running && !c.State.Restarting {
			return c, nil
		}
		pid := c.State.Pid
		if pid > 0 {
			if err := waitPid(ctx, pid); err != nil {
				return c, err
			}
		}
		select {
		case <-ctx.Done():
			return c, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitPid blocks until a process (not our child) exits, via a pidfd.
func waitPid(ctx context.Context, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil // already gone
	}
	defer unix.Close(fd)
	for {
		ms := 100
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err != nil && err != unix.EINTR {
			return nil
		}
		if n > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Stop asks the container to stop with its stop signal, and kills it after
// timeout.
func (s *Store) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := s.Load(id)
	if err != nil {
		return err
	}
	sig := unix.SIGTERM
	if c.Config.StopSignal != "" {
		if n, err := ParseSignal(c.Config.StopSignal); err == nil {
			sig = n
		}
	}
	if _, err := s.Signal(id, sig, true); err != nil {
		if errors.Is(err, errdefs.ErrNotRunning) {
			return nil // Docker: stopping a stopped container succeeds
		}
		return err
	}
	if timeout >= 0 {
		tctx, cancel := context.WithTimeout(ctx, timeout)
		_, err = s.WaitStopped(tctx, id)
		cancel()
		if err == nil {
			return nil
		}
	}
	if _, err := s.Signal(id, unix.SIGKILL, true); err != nil && !errors.Is(err, errdefs.ErrNotRunning) {
		return err
	}
	_, err = s.WaitStopped(ctx, id)
	return err
}

// Remove deletes a container; a running one only with force (killed at once).
func (s *Store) Remove(ctx context.Context, id string, force bool) error {
	c, err := s.Load(id)
	if err != nil {
		return err
	}
	if c.State.Running || c.State.Restarting {
		if !force {
			return errdefs.Errorf(errdefs.ErrConflict, "cannot remove container \"/%s\": container is running: stop the container before removing or force remove", c.Name)
		}
		_, err := s.Signal(id, unix.SIGKILL, true)
		if err == nil || errors.Is(err, errdefs.ErrNotRunning) {
			_, err = s.WaitStopped(ctx, id)
		}
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil // a --rm container removed itself meanwhile: it is gone, as asked
		}
		if err != nil {
			return err
		}
	}
	unlock, err := s.LockContainer(id)
	if err != nil {
		return err
	}
	defer unlock()
	// A monitor still finishing up (after the exit it recorded) must be gone
	// before the directory goes.
	if c, err := s.Load(id); err == nil && c.Monitor != nil && c.Monitor.Alive() {
		waitPid(ctx, c.Monitor.Pid)
	}
	if cg, err := cgroup.Load("hako", id); err == nil {
		cg.Kill(unix.SIGKILL)
		cg.Delete()
	}
	return s.Delete(id)
}

// Rename changes a container's name.
func (s *Store) Rename(id, name string) error {
	name = strings.TrimPrefix(name, "/")
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := s.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if other, err := s.NameTaken(name); err != nil {
		return err
	} else if other != nil {
		if other.ID == id {
			return errdefs.Errorf(errdefs.ErrInvalid, "Renaming a container with the same name as its current name")
		}
		return errdefs.Errorf(errdefs.ErrConflict, "Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name", name, other.ID)
	}
	cu, err := s.LockContainer(id)
	if err != nil {
		return err
	}
	defer cu()
	c, err := s.Load(id)
	if err != nil {
		return err
	}
	c.Name = name
	return s.Save(c)
}

// ExecOptions are `docker exec` settings.
type ExecOptions struct {
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	Tty        bool
	Privileged bool
	Detach     bool
}

// Exec starts a process in a running container. The caller waits for it (or
// not, when detached).
func (s *Store) Exec(id string, opt ExecOptions, stdio oci.Stdio) (*oci.Process, error) {
	c, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	if !c.State.Running || c.State.Pid <= 0 {
		return nil, errdefs.Errorf(errdefs.ErrConflict, "container %s is not running", c.ID)
	}
	env := c.ProcessEnv()
	for _, e := range opt.Env {
		k, _, _ := strings.Cut(e, "=")
		env = setEnv(env, k, e)
	}
	if opt.Tty && !hasKey(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	caps := c.Capabilities()
	if opt.Privileged {
		caps = oci.AllCapabilities()
	}
	cwd := opt.WorkingDir
	if cwd == "" {
		cwd = c.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	user := opt.User
	if user == "" {
		user = c.Config.User
	}
	if user == "" {
		user = "0"
	}
	proc := s.Spec(c).Process
	proc.Args, proc.Env, proc.Cwd, proc.Terminal = opt.Cmd, env, cwd, opt.Tty
	proc.Capabilities.Bounding, proc.Capabilities.Effective, proc.Capabilities.Permitted = caps, caps, caps
	var procs []string
	if cg, err := cgroup.Load("hako", c.ID); err == nil {
		procs = cg.ProcsFiles()
	}
	return oci.Exec(c.State.Pid, procs, &oci.ExecConfig{Process: proc, User: user}, stdio, opt.Detach)
}

func setEnv(env []string, key, kv string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, key+"=") {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// TopProcess is one line of `docker top`.
type TopProcess struct {
	UID, PID, PPID, C, STIME, TTY, TIME, CMD string
}

// Top lists the processes in the container's PID namespace, as `ps -ef` would.
func (s *Store) Top(id string) ([]TopProcess, error) {
	c, err := s.Load(id)
	if err != nil {
		return nil, err
	}
	if !c.State.Running {
		return nil, errdefs.Errorf(errdefs.ErrConflict, "container %s is not running", c.ID)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.State.Pid))
	if err != nil {
		return nil, err
	}
	ents, _ := os.ReadDir("/proc")
	var out []TopProcess
	ticks := uint64(100)
	bootTime := bootTime()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || l != ns {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		st := string(stat)
		i := strings.LastIndexByte(st, ')')
		f := strings.Fields(st[i+1:])
		if len(f) < 20 {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if cmdline == "" {
			cmdline = "[" + st[strings.IndexByte(st, '(')+1:i] + "]"
		}
		uid := "?"
		if fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			uid = strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid))
			if uid == "0" {
				uid = "root"
			}
		}
		utime, _ := strconv.ParseUint(f[11], 10, 64)
		stime, _ := strconv.ParseUint(f[12], 10, 64)
		start, _ := strconv.ParseUint(f[19], 10, 64)
		cpu := (utime + stime) / ticks
		started := bootTime.Add(time.Duration(start/ticks) * time.Second)
		stimeStr := started.Format("15:04")
		if time.Since(started) > 24*time.Hour {
			stimeStr = started.Format("Jan02")
		}
		out = append(out, TopProcess{
			UID: uid, PID: strconv.Itoa(pid), PPID: f[1], C: "0", STIME: stimeStr, TTY: "?",
			TIME: fmt.Sprintf("%02d:%02d:%02d", cpu/3600, cpu/60%60, cpu%60), CMD: cmdline,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(out[i].PID)
		b, _ := strconv.Atoi(out[j].PID)
		return a < b
	})
	return out, nil
}

func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "btime ") {
				if n, err := strconv.ParseInt(strings.TrimSpace(l[6:]), 10, 64); err == nil {
					return time.Unix(n, 0)
				}
			}
		}
	}
	return time.Now()
}

var signals = map[string]unix.Signal{
	"HUP": unix.SIGHUP, "INT": unix.SIGINT, "QUIT": unix.SIGQUIT, "ILL": unix.SIGILL, "TRAP": unix.SIGTRAP,
	"ABRT": unix.SIGABRT, "BUS": unix.SIGBUS, "FPE": unix.SIGFPE, "KILL": unix.SIGKILL, "USR1": unix.SIGUSR1,
	"SEGV": unix.SIGSEGV, "USR2": unix.SIGUSR2, "PIPE": unix.SIGPIPE, "ALRM": unix.SIGALRM, "TERM": unix.SIGTERM,
	"STKFLT": unix.SIGSTKFLT, "CHLD": unix.SIGCHLD, "CONT": unix.SIGCONT, "STOP": unix.SIGSTOP, "TSTP": unix.SIGTSTP,
	"TTIN": unix.SIGTTIN, "TTOU": unix.SIGTTOU, "URG": unix.SIGURG, "XCPU": unix.SIGXCPU, "XFSZ": unix.SIGXFSZ,
	"VTALRM": unix.SIGVTALRM, "PROF": unix.SIGPROF, "WINCH": unix.SIGWINCH, "IO": unix.SIGIO, "PWR": unix.SIGPWR,
	"SYS": unix.SIGSYS,
}

// ParseSignal reads "SIGTERM", "TERM", "term" or "15".
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.Errorf(errdefs.ErrInvalid, "invalid signal: %s", s)
		}
		return unix.Signal(n), nil
	}
	if sig, ok := signals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]; ok {
		return sig, nil
	}
	return 0, errdefs.Errorf(errdefs.ErrInvalid, "invalid signal: %s", s)
}
