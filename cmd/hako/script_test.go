package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/cgroup"
	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/image/imagetest"
	"hako.dev/hako/runtime/oci"
)

func TestMain(m *testing.M) {
	// The test binary stands in for hako: it is re-executed as a container's
	// init, exec and monitor too.
	oci.Main()
	container.ExportMain()
	if os.Getenv(container.EnvMonitor) == "1" {
		os.Exit(container.MonitorMain(os.Args[1:]))
	}
	testscript.Main(m, map[string]func(){
		"hako":   func() { os.Exit(execute("hako", os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
		"docker": func() { os.Exit(execute("docker", os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

var (
	fixtureOnce sync.Once
	fixtureDir  string
	fixtureErr  error
)

// busyboxTar builds the busybox:latest docker-archive once per test run.
func busyboxTar(t *testing.T) string {
	fixtureOnce.Do(func() {
		fixtureDir, fixtureErr = os.MkdirTemp("", "hako-fixture-")
		if fixtureErr != nil {
			return
		}
		f, err := os.Create(filepath.Join(fixtureDir, "busybox.tar"))
		if err != nil {
			fixtureErr = err
			return
		}
		defer f.Close()
		fixtureErr = imagetest.WriteBusybox(f, "busybox:latest")
	})
	if fixtureErr != nil {
		t.Fatalf("busybox fixture: %v", fixtureErr)
	}
	return filepath.Join(fixtureDir, "busybox.tar")
}

func TestScripts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the runtime needs root")
	}
	tar := busyboxTar(t)
	t.Cleanup(func() { os.RemoveAll(fixtureDir) })
	testscript.Run(t, testscript.Params{
		Dir:                 "../../testdata/script",
		WorkdirRoot:         t.TempDir(), // removed with the test (testscript keeps its own root)
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			root := filepath.Join(env.WorkDir, "state")
			env.Setenv("HAKO_ROOT", root)
			// Pull only from the tests' own registries on 127.0.0.1: no traffic
			// leaves the machine.
			env.Setenv("HAKO_OFFLINE", "1")
			env.Setenv("BUSYBOX_TAR", tar)
			env.Setenv("HAKO_OCI_STATE", filepath.Join(env.WorkDir, "oci-state"))
			env.Defer(func() { cleanupRoot(root); cleanupOCI(filepath.Join(env.WorkDir, "oci-state")) })
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "cgroup2":
				return cgroup.Mode() == "v2", nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitstatus":  cmdWaitStatus,
			"killmonitor": cmdKillMonitor,
			"cgroupfile":  cmdCgroupFile,
			"mkbundle":    cmdMkBundle,
			"sleep":       cmdSleep,
			"exits":       cmdExits,
			"ttyrun":      cmdTTYRun,
			"waitlog":     cmdWaitLog,
			"registry":    cmdRegistry,
			"freeport":    cmdFreePort,
			"waithttp":    cmdWaitHTTP,
			"lanhost":     cmdLANHost,
			"netof":       cmdNetOf,
			"netgone":     cmdNetGone,
		},
	})
}

// cleanupRoot removes every container a script left, killing what runs, so
// that no process, cgroup or mount outlives the test, even when it failed.
func cleanupRoot(root string) {
	eng, err := engine.Open(root)
	if err != nil {
		return
	}
	list, _ := eng.Containers.List()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range list {
		eng.Containers.Remove(ctx, c.ID, true)
	}
	// The root's bridges, leases and nftables rules.
	eng.Networks.Teardown()
	// Containers whose monitor died keep nothing running, but a cgroup may stay.
	ids, _ := eng.Containers.IDs()
	for _, id := range ids {
		if cg, err := cgroup.Load("hako", id); err == nil {
			cg.Kill(unix.SIGKILL)
			cg.Delete()
		}
	}
}

// cleanupOCI kills what `hako oci` containers a script left, and their cgroups.
func cleanupOCI(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		var st struct {
			Pid       int    `json:"pid"`
			StartTime uint64 `json:"hakoStartTime"`
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "state.json"))
		if err == nil && json.Unmarshal(b, &st) == nil && st.Pid > 0 {
			if t, err := container.ProcStartTime(st.Pid); err == nil && t == st.StartTime {
				unix.Kill(st.Pid, unix.SIGKILL)
			}
		}
		if cg, err := cgroup.Load("hako-oci", e.Name()); err == nil {
			cg.Kill(unix.SIGKILL)
			cg.Delete()
		}
	}
}

func withEngine(ts *testscript.TestScript) *engine.Engine {
	eng, err := engine.Open(ts.Getenv("HAKO_ROOT"))
	ts.Check(err)
	return eng
}

// waitstatus CONTAINER STATUS [SECONDS]: wait until inspect's .State.Status is STATUS.
func cmdWaitStatus(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: waitstatus CONTAINER STATUS [SECONDS]")
	}
	limit := 10 * time.Second
	if len(args) > 2 {
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		limit = time.Duration(n) * time.Second
	}
	eng := withEngine(ts)
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		if c, err := eng.Containers.Find(args[0]); err == nil {
			last = c.State.Status
			if last == args[1] {
				if neg {
					ts.Fatalf("container %s is %s", args[0], last)
				}
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !neg {
		ts.Fatalf("container %s is %q, not %q, after %s", args[0], last, args[1], limit)
	}
}

// killmonitor CONTAINER: SIGKILL the container's monitor (a crash).
func cmdKillMonitor(ts *testscript.TestScript, neg bool, args []string) {
	eng := withEngine(ts)
	c, err := eng.Containers.Find(args[0])
	ts.Check(err)
	if c.Monitor == nil {
		ts.Fatalf("%s has no monitor", args[0])
	}
	ts.Check(unix.Kill(c.Monitor.Pid, unix.SIGKILL))
	for i := 0; i < 500; i++ {
		if !c.Monitor.Alive() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.Fatalf("monitor %d did not die", c.Monitor.Pid)
}

// cgroupfile CONTAINER FILE: print a file of the container's cgroup (the
// hierarchy that has it).
func cmdCgroupFile(ts *testscript.TestScript, neg bool, args []string) {
	eng := withEngine(ts)
	c, err := eng.Containers.Find(args[0])
	ts.Check(err)
	cg, err := cgroup.Load("hako", c.ID)
	ts.Check(err)
	for _, p := range cg.ProcsFiles() {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(p), args[1]))
		if err == nil {
			fmt.Fprint(ts.Stdout(), string(b))
			return
		}
	}
	ts.Fatalf("no cgroup file %s for %s", args[1], args[0])
}

// mkbundle DIR ARGS...: an OCI bundle whose rootfs is the host's static
// busybox, running ARGS.
func cmdMkBundle(ts *testscript.TestScript, neg bool, args []string) {
	dir := ts.MkAbs(args[0])
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp"} {
		ts.Check(os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		bb = "/usr/bin/busybox"
	}
	data, err := os.ReadFile(bb)
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755))
	for _, a := range []string{"sh", "echo", "sleep", "cat", "hostname", "true"} {
		ts.Check(os.Symlink("busybox", filepath.Join(root, "bin", a)))
	}
	spec := specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "bundle",
		Process: &specs.Process{
			Args: args[1:], Env: []string{"PATH=/bin"}, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: oci.DefaultCapabilities, Effective: oci.DefaultCapabilities, Permitted: oci.DefaultCapabilities,
			},
		},
		Mounts: oci.DefaultMounts(),
		Linux: &specs.Linux{
			Namespaces: oci.DefaultNamespaces(), MaskedPaths: oci.MaskedPaths, ReadonlyPaths: oci.ReadonlyPaths,
		},
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
}

// sleep DURATION (Go syntax, e.g. 300ms).
func cmdSleep(ts *testscript.TestScript, neg bool, args []string) {
	d, err := time.ParseDuration(strings.Join(args, ""))
	ts.Check(err)
	time.Sleep(d)
}

// exits N CMD ARGS...: run a program and check its exit code; its output is
// kept for the stdout and stderr commands that follow.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE COMMAND [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// ttyrun [-exit N] INPUT CMD ARGS...: run CMD with a new pseudo-terminal as
// its stdin and controlling terminal, as a learner's shell would, and type
// INPUT into it once CMD has put the terminal in raw mode. A line "@@wait
// TEXT" in INPUT waits until CMD's stdout shows TEXT. CMD's stdout and stderr
// are kept for the stdout and stderr commands; its exit code must be N (0).
func cmdTTYRun(ts *testscript.TestScript, neg bool, args []string) {
	want := 0
	if len(args) > 2 && args[0] == "-exit" {
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		want, args = n, args[2:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: ttyrun [-exit N] INPUT COMMAND [ARGS...]")
	}
	input := ts.ReadFile(args[0])
	master, slave, err := openPTY()
	ts.Check(err)
	defer master.Close()
	path, err := exec.LookPath(args[1])
	if err != nil {
		// the test binary's commands live on the script's PATH
		for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
			if _, e := os.Stat(filepath.Join(dir, args[1])); e == nil {
				path, err = filepath.Join(dir, args[1]), nil
				break
			}
		}
	}
	ts.Check(err)
	cmd := exec.Command(path, args[2:]...)
	cmd.Dir = ts.Getenv("WORK")
	for _, kv := range []string{"HAKO_ROOT", "PATH", "HAKO_OCI_STATE", "HOME"} {
		cmd.Env = append(cmd.Env, kv+"="+ts.Getenv(kv))
	}
	var out, errb syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	ts.Check(cmd.Start())
	slave.Close()
	go io.Copy(io.Discard, master) // the terminal's own echo
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	// wait for raw mode (no ICANON) on the terminal
	for time.Now().Before(deadline) {
		t, err := unix.IoctlGetTermios(int(master.Fd()), unix.TCGETS)
		if err == nil && t.Lflag&unix.ICANON == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, line := range strings.SplitAfter(input, "\n") {
		if text, ok := strings.CutPrefix(line, "@@wait "); ok {
			text = strings.TrimSpace(text)
			for !strings.Contains(out.String(), text) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		master.Write([]byte(line))
	}
	var werr error
	select {
	case werr = <-done:
	case <-time.After(time.Until(deadline)):
		cmd.Process.Kill()
		werr = <-done
		ts.Logf("[stdout]\n%s", out.String())
		ts.Fatalf("%s did not finish in time", args[1])
	}
	fmt.Fprint(ts.Stdout(), out.String())
	fmt.Fprint(ts.Stderr(), errb.String())
	got := 0
	if werr != nil {
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			ts.Fatalf("%v", werr)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d\n[stdout]\n%s\n[stderr]\n%s", args[1], got, want, out.String(), errb.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	return m, s, nil
}

// waitlog CONTAINER REGEXP [COUNT]: wait (10 s at most) until the container's
// log has COUNT (1) lines matching REGEXP.
func cmdWaitLog(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: waitlog CONTAINER REGEXP [COUNT]")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	want := 1
	if len(args) > 2 {
		want, err = strconv.Atoi(args[2])
		ts.Check(err)
	}
	eng := withEngine(ts)
	c, err := eng.Containers.Find(args[0])
	ts.Check(err)
	var got int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var out strings.Builder
		ts.Check(eng.Containers.Logs(context.Background(), c.ID, container.LogOptions{Tail: -1}, &out, &out))
		if got = len(re.FindAllString(out.String(), -1)); got >= want {
			return
		}
	}
	ts.Fatalf("%s: %d log lines match %q, want %d", args[0], got, args[1], want)
}

// registry [-htpasswd USER PASS]: start Debian's docker-registry (the
// reference distribution registry) on a free 127.0.0.1 port with its data under
// $WORK, wait until it answers, and set $REGISTRY to its host:port. With
// -htpasswd it requires that user (bcrypt htpasswd file made by Debian's
// apache2-utils, realm hako). It is stopped, by PID, when the script ends.
func cmdRegistry(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! registry")
	}
	var htUser, htPass string
	switch {
	case len(args) == 0:
	case len(args) == 3 && args[0] == "-htpasswd":
		htUser, htPass = args[1], args[2]
	default:
		ts.Fatalf("usage: registry [-htpasswd USER PASS]")
	}
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		ts.Fatalf("docker-registry is not installed (Debian package docker-registry)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	addr := ln.Addr().String()
	ln.Close()
	dir := ts.MkAbs("registry")
	ts.Check(os.MkdirAll(dir, 0o755))
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if htUser != "" {
		htpasswd, err := exec.LookPath("htpasswd")
		if err != nil {
			ts.Fatalf("htpasswd is not installed (Debian package apache2-utils)")
		}
		out, err := exec.Command(htpasswd, "-Bbn", htUser, htPass).Output()
		ts.Check(err)
		pwPath := filepath.Join(dir, "htpasswd")
		ts.Check(os.WriteFile(pwPath, out, 0o644))
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: hako\n    path: %s\n", pwPath)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	ts.Check(os.WriteFile(cfgPath, []byte(cfg), 0o644))
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	ts.Check(err)
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	ts.Defer(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("docker-registry did not answer on %s: %v", addr, err)
		}
	}
	ts.Setenv("REGISTRY", addr)
}

// freeport VAR: set VAR to a free TCP port on 127.0.0.1.
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	ts.Setenv(args[0], port)
}

// waithttp URL: wait (10 s at most) until URL answers at all.
func cmdWaitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(args[0]); err == nil {
			resp.Body.Close()
			return
		}
	}
	ts.Fatalf("%s does not answer", args[0])
}
