package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	envInit = "_HAKO_INIT"
	envExec = "_HAKO_EXEC"
	// the socket to the host is always fd 3 in the child.
	sockFD = 3
)

// Main runs the container side when this process was started by Start or Exec,
// and never returns then. Otherwise it returns false at once. main() calls it
// before anything else.
func Main() bool {
	switch {
	case os.Getenv(envInit) == "1":
		runChild(initContainer)
	case os.Getenv(envExec) == "1":
		runChild(execInContainer)
	}
	return false
}

func runChild(fn func(channel, []byte) error) {
	// Capabilities, the bounding set and keepcaps belong to a thread: do all of
	// it, and the final execve, on this one.
	runtime.LockOSThread()
	sock := os.NewFile(sockFD, "hako-sock")
	c := channel{sock}
	buf := make([]byte, 1<<20)
	n, err := sock.Read(buf)
	if err != nil {
		c.fail(fmt.Errorf("read config: %w", err))
	}
	if err := fn(c, buf[:n]); err != nil {
		c.fail(err)
	}
	c.fail(errors.New("init returned without exec"))
}

// kindError marks an error the host maps to an exit code.
type kindError struct {
	kind string
	err  error
}

func (e *kindError) Error() string { return e.err.Error() }

func (c channel) fail(err error) {
	r := reply{Type: "error", Error: err.Error()}
	var ke *kindError
	if errors.As(err, &ke) {
		r.Kind = ke.kind
	}
	c.send(r, -1)
	code := 125
	switch r.Kind {
	case "notfound":
		code = 127
	case "noinvoke":
		code = 126
	}
	os.Exit(code)
}

func initContainer(c channel, msg []byte) error {
	var cfg InitConfig
	if err := json.Unmarshal(msg, &cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	spec := cfg.Spec
	if spec == nil || spec.Process == nil || spec.Root == nil {
		return errors.New("config: spec without process or root")
	}
	var err error
	if cfg.DeathSignal {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("prctl pdeathsig: %w", err)
		}
	}
	// A network namespace to share (`--network container:NAME`) is joined on
	// this thread, which execs the command.
	if p := namespacePath(spec, specs.NetworkNamespace); p != "" {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open network namespace %s: %w", p, err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join network namespace %s: %w", p, err)
		}
	}
	// Once in its cgroup, a new cgroup namespace makes that cgroup look like
	// the root from inside.
	cgroupNS := func() error {
		if hasNamespace(spec, specs.CgroupNamespace) {
			if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
				return fmt.Errorf("unshare cgroup namespace: %w", err)
			}
		}
		return nil
	}
	if !cfg.LateCgroup {
		if err := cgroupNS(); err != nil {
			return err
		}
	}
	// The fifo lives on the host: hold it by an O_PATH descriptor before the
	// host's paths disappear with pivot_root, and reopen it through /proc.
	fifo := -1
	if cfg.Fifo != "" {
		if fifo, err = unix.Open(cfg.Fifo, unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
			return fmt.Errorf("open exec fifo: %w", err)
		}
	}
	slave, err := setupRootfs(c, &cfg)
	if err != nil {
		return err
	}
	if hasNamespace(spec, specs.UTSNamespace) && spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if hasNamespace(spec, specs.NetworkNamespace) && namespacePath(spec, specs.NetworkNamespace) == "" {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	// A session of its own (EPERM: it already leads one).
	if cfg.LateCgroup {
		if err := c.waitGo(); err != nil {
			return err
		}
		if err := cgroupNS(); err != nil {
			return err
		}
	}
	if _, err := unix.Setsid(); err != nil && err != unix.EPERM {
		return fmt.Errorf("setsid: %w", err)
	}
	if slave != nil {
		if err := useTerminal(slave); err != nil {
			return err
		}
	}
	if err := setRlimits(spec.Process.Rlimits); err != nil {
		return err
	}
	user := cfg.User
	prepared, err := prepareProcess(spec.Process, user)
	if err != nil {
		return err
	}
	if fifo >= 0 {
		if err := c.send(reply{Type: "ready"}, -1); err != nil {
			return err
		}
		f, err := os.OpenFile(procFD(fifo), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open exec fifo: %w", err)
		}
		f.Write([]byte{0})
		f.Close()
		unix.Close(fifo)
	}
	return prepared.exec(spec.Process, spec.Process.NoNewPrivileges)
}

func execInContainer(c channel, msg []byte) error {
	var cfg ExecConfig
	if err := json.Unmarshal(msg, &cfg); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	if cfg.Process == nil {
		return errors.New("config: no process")
	}
	// setns(2) into the mount namespace left the root and working directory at
	// the namespace's root; stay inside it.
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	if cfg.Process.Terminal {
		slave, err := newConsole(c, "/dev/pts/ptmx", "")
		if err != nil {
			return err
		}
		if err := useTerminal(slave); err != nil {
			return err
		}
	}
	prepared, err := prepareProcess(cfg.Process, cfg.User)
	if err != nil {
		return err
	}
	return prepared.exec(cfg.Process, cfg.NoNewPrivileges || cfg.Process.NoNewPrivileges)
}

func hasNamespace(spec *specs.Spec, t specs.LinuxNamespaceType) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

func namespacePath(spec *specs.Spec, t specs.LinuxNamespaceType) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == t {
			return ns.Path
		}
	}
	return ""
}

// loopbackUp brings up "lo" in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: up: %w", err)
	}
	return nil
}

// useTerminal makes the pty slave the controlling terminal and stdio.
func useTerminal(slave *os.File) error {
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(int(slave.Fd()), i, 0); err != nil {
			return fmt.Errorf("dup terminal: %w", err)
		}
	}
	return slave.Close()
}

var rlimitNames = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func setRlimits(rl []specs.POSIXRlimit) error {
	for _, r := range rl {
		n, ok := rlimitNames[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", r.Type)
		}
		lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		err := unix.Setrlimit(n, &lim)
		if err == unix.EPERM {
			// Without CAP_SYS_RESOURCE a hard limit cannot rise: keep the
			// values within the one we have.
			var cur unix.Rlimit
			if unix.Getrlimit(n, &cur) == nil {
				lim.Max = min(lim.Max, cur.Max)
				lim.Cur = min(lim.Cur, lim.Max)
				err = unix.Setrlimit(n, &lim)
			}
		}
		if err != nil {
			return fmt.Errorf("setrlimit %s: %w", r.Type, err)
		}
	}
	return nil
}

// prepared is a process ready for execve: its path resolved, its identity known.
type prepared struct {
	path   string
	uid    uint32
	gid    uint32
	groups []uint32
	env    []string
}

// prepareProcess resolves the user and the command inside the container's root
// and changes to the working directory (created if missing, as Docker does).
func prepareProcess(p *specs.Process, user string) (*prepared, error) {
	if len(p.Args) == 0 {
		return nil, &kindError{"notfound", errors.New("no command specified")}
	}
	pr := &prepared{uid: p.User.UID, gid: p.User.GID, groups: p.User.AdditionalGids, env: p.Env}
	home := "/"
	if user != "" {
		u, err := lookupUser(user)
		if err != nil {
			return nil, &kindError{"invalid", err}
		}
		pr.uid, pr.gid, pr.groups, home = u.uid, u.gid, u.groups, u.home
	} else if u, err := lookupUser(strconv.Itoa(int(pr.uid))); err == nil {
		home = u.home
		if len(pr.groups) == 0 {
			pr.groups = u.groups
		}
	}
	if !hasEnv(pr.env, "HOME") {
		pr.env = append(pr.env, "HOME="+home)
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		return nil, fmt.Errorf("create working directory %s: %w", cwd, err)
	}
	if err := unix.Chdir(cwd); err != nil {
		return nil, fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", cwd, err)
	}
	path, err := lookPath(p.Args[0], pr.env)
	if err != nil {
		return nil, err
	}
	pr.path = path
	return pr, nil
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// lookPath finds the command as execve would with the container's PATH, and
// says why not in Docker's words.
func lookPath(name string, env []string) (string, error) {
	check := func(p string) error {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return unix.EACCES
		}
		return unix.Access(p, unix.X_OK)
	}
	if strings.Contains(name, "/") {
		if err := check(name); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", &kindError{"notfound", fmt.Errorf("exec: %q: stat %s: no such file or directory", name, name)}
			}
			return "", &kindError{"noinvoke", fmt.Errorf("exec: %q: permission denied", name)}
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			path = e[5:]
		}
	}
	denied := false
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			denied = true
		}
	}
	if denied {
		return "", &kindError{"noinvoke", fmt.Errorf("exec: %q: permission denied", name)}
	}
	return "", &kindError{"notfound", fmt.Errorf("exec: %q: executable file not found in $PATH", name)}
}

// exec drops privileges as the spec says and replaces this process with the
// container's command. Only an error returns.
func (pr *prepared) exec(p *specs.Process, noNewPrivs bool) error {
	caps := p.Capabilities
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	// The bounding set first: dropping needs CAP_SETPCAP, which may go next.
	for name, n := range capNumbers {
		if !contains(caps.Bounding, name) {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, n, 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("drop %s from the bounding set: %w", name, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl keepcaps: %w", err)
	}
	// Go applies these to every thread of the process (it signals each one),
	// which costs milliseconds: skip the calls that would change nothing, as
	// for a root container whose groups are already right.
	groups := make([]int, len(pr.groups))
	for i, g := range pr.groups {
		groups[i] = int(g)
	}
	if cur, err := unix.Getgroups(); err != nil || !sameInts(cur, groups) {
		if err := unix.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if rg, eg, sg := unix.Getresgid(); rg != int(pr.gid) || eg != int(pr.gid) || sg != int(pr.gid) {
		if err := unix.Setresgid(int(pr.gid), int(pr.gid), int(pr.gid)); err != nil {
			return fmt.Errorf("setgid %d: %w", pr.gid, err)
		}
	}
	if ru, eu, su := unix.Getresuid(); ru != int(pr.uid) || eu != int(pr.uid) || su != int(pr.uid) {
		if err := unix.Setresuid(int(pr.uid), int(pr.uid), int(pr.uid)); err != nil {
			return fmt.Errorf("setuid %d: %w", pr.uid, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl keepcaps: %w", err)
	}
	if err := setCaps(caps); err != nil {
		return err
	}
	if noNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl no_new_privs: %w", err)
		}
	}
	if err := closeExtraFDs(); err != nil {
		return err
	}
	err := unix.Exec(pr.path, p.Args, pr.env)
	switch {
	case errors.Is(err, unix.ENOENT):
		return &kindError{"notfound", fmt.Errorf("exec: %q: no such file or directory", p.Args[0])}
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM):
		return &kindError{"noinvoke", fmt.Errorf("exec: %q: %v", p.Args[0], err)}
	}
	return fmt.Errorf("exec %s: %w", p.Args[0], err)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func setCaps(caps *specs.LinuxCapabilities) error {
	var eff, perm, inh [2]uint32
	set := func(dst *[2]uint32, names []string) {
		for _, n := range names {
			if b, ok := capNumbers[n]; ok {
				dst[b/32] |= 1 << (b % 32)
			}
		}
	}
	set(&eff, caps.Effective)
	set(&perm, caps.Permitted)
	set(&inh, caps.Inheritable)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: eff[0], Permitted: perm[0], Inheritable: inh[0]},
		{Effective: eff[1], Permitted: perm[1], Inheritable: inh[1]},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	// Ambient capabilities: clear, then raise the ones asked for.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && err != unix.EINVAL {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	// An ambient capability must also be permitted and inheritable; like
	// runc, skip the ones a spec asks for without them.
	for _, n := range caps.Ambient {
		if !contains(caps.Inheritable, n) || !contains(caps.Permitted, n) {
			continue
		}
		if b, ok := capNumbers[n]; ok {
			if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, b, 0, 0); err != nil {
				return fmt.Errorf("raise ambient %s: %w", n, err)
			}
		}
	}
	return nil
}

// closeExtraFDs marks every descriptor above stderr close-on-exec, so nothing
// of the host's leaks into the container (the CVE-2024-21626 class).
func closeExtraFDs() error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// waitGo waits for the host's word that this process is in its cgroups.
func (c channel) waitGo() error {
	buf := make([]byte, 256)
	n, err := c.f.Read(buf)
	if err != nil {
		return fmt.Errorf("wait for the cgroup: %w", err)
	}
	var r reply
	if err := json.Unmarshal(buf[:n], &r); err != nil || r.Type != "go" {
		return fmt.Errorf("wait for the cgroup: unexpected message %q", buf[:n])
	}
	return nil
}

// sameInts reports whether a and b hold the same numbers, in any order.
func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[int]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x] == 0 {
			return false
		}
		seen[x]--
	}
	return true
}
