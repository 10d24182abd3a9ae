package cgroup

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// allocEnv makes the test binary, re-executed, the process that blows the memory
// limit: it waits for a byte on stdin (so the test can put it in the group
// first), then allocates and touches 200 MiB.
const allocEnv = "HAKO_CGROUP_TEST_ALLOC"

func TestMain(m *testing.M) {
	if os.Getenv(allocEnv) == "1" {
		allocate()
		return
	}
	os.Exit(m.Run())
}

func allocate() {
	var b [1]byte
	if _, err := os.Stdin.Read(b[:]); err != nil {
		os.Exit(3)
	}
	mem := make([]byte, 200<<20)
	for i := 0; i < len(mem); i += 4096 {
		mem[i] = 1
	}
	os.Stdout.WriteString(strconv.Itoa(int(mem[len(mem)-4096])) + "\n")
	os.Exit(0)
}

const testParent = "hako-test"

// realGroup creates a uniquely named group on this machine and removes it, and
// the shared parent when empty, at the end of the test.
func realGroup(t *testing.T, l Limits) *Manager {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if Mode() == "none" {
		t.Skip("no cgroup file system mounted")
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	m, err := New(testParent, hex.EncodeToString(b), l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Delete(); err != nil {
			t.Error(err)
		}
		for _, h := range m.hier {
			// Another test run may still use the parent: EBUSY is fine.
			if err := unix.Rmdir(filepath.Dir(h.dir)); err != nil && err != unix.ENOENT && err != unix.EBUSY {
				t.Error(err)
			}
		}
	})
	return m
}

// start runs cmd and kills it, and only it, if the test ends early.
func start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // may have exited already; Wait reports the rest
			_ = cmd.Wait()
		}
	})
}

func TestRealLimits(t *testing.T) {
	l := Limits{Memory: 64 << 20, PidsLimit: 20, CPUQuota: 150000, CPUShares: 512}
	m := realGroup(t, l)
	t.Logf("mode %s, group %s", Mode(), m.Path())

	want := map[string]string{}
	if m.v2 {
		want["memory.max"] = "67108864"
		want["pids.max"] = "20"
		want["cpu.max"] = "150000 100000"
		want["cpu.weight"] = "20"
	} else {
		want["memory.limit_in_bytes"] = "67108864"
		want["pids.max"] = "20"
		want["cpu.cfs_quota_us"] = "150000"
		want["cpu.cfs_period_us"] = "100000"
		want["cpu.shares"] = "512"
	}
	for file, v := range want {
		dir := m.dirOf(strings.SplitN(file, ".", 2)[0])
		wantFile(t, filepath.Join(dir, file), v)
	}

	cmd := exec.Command("sleep", "30")
	start(t, cmd)
	pid := cmd.Process.Pid
	if err := m.Add(pid); err != nil {
		t.Fatal(err)
	}
	files := m.ProcsFiles()
	if !m.v2 && len(files) < 3 {
		t.Errorf("v1: only %d hierarchies: %v", len(files), files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(string(b)), strconv.Itoa(pid)) {
			t.Errorf("pid %d not in %s: %q", pid, f, b)
		}
	}
	if pids, err := m.Pids(); err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("Pids() = %v, %v; want [%d]", pids, err, pid)
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryLimit != 64<<20 || st.PidsCurrent != 1 || st.PidsLimit != 20 {
		t.Errorf("stats %+v", st)
	}

	// A later command loads the same group.
	loaded, err := Load(testParent, filepath.Base(m.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded.ProcsFiles(), files) {
		t.Errorf("Load: procs files %v, want %v", loaded.ProcsFiles(), files)
	}

	if m.canFreeze() {
		if err := loaded.Freeze(); err != nil {
			t.Fatal(err)
		}
		if err := loaded.Thaw(); err != nil {
			t.Fatal(err)
		}
	}

	if err := loaded.Kill(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("sleep after Kill: %v", err)
	}
	if err := loaded.Delete(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Dir(f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there: %v", filepath.Dir(f), err)
		}
	}
	if err := m.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestRealOOMKill(t *testing.T) {
	// MemorySwap equal to Memory: no swap to escape to.
	m := realGroup(t, Limits{Memory: 32 << 20, MemorySwap: 32 << 20})
	err := runAlloc(t, m)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("allocating 200 MiB under a 32 MiB limit: %v, want killed by SIGKILL", err)
	}
	// The kernel counts the kill as the group's OOM kill.
	file := "memory.oom_control" // v1
	if m.v2 {
		file = "memory.events"
	}
	if n, err := readKey(m.dirOf("memory"), file, "oom_kill"); err != nil || n == 0 {
		t.Errorf("%s oom_kill = %d, %v; want >= 1", file, n, err)
	}

	// The same helper in a group without a memory limit completes: the limit,
	// not the helper, did the killing.
	free := realGroup(t, Limits{})
	if err := runAlloc(t, free); err != nil {
		t.Errorf("allocating 200 MiB without a limit: %v", err)
	}
}

// runAlloc starts the allocating helper blocked on stdin, puts it in m, lets it
// allocate and waits for it.
func runAlloc(t *testing.T, m *Manager) error {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), allocEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	start(t, cmd)
	if err := m.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go")); err != nil {
		t.Fatal(err)
	}
	return cmd.Wait()
}

// TestRealUnified drives the v2 code against a real cgroup2 tree: the whole
// tree on a v2 machine, the controller-less unified tree on a hybrid one.
// Without limits no controller is needed, so this covers creation, joining,
// cgroup.kill, cgroup.freeze and removal as the kernel does them.
func TestRealUnified(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	lay, err := hostLayout()
	if err != nil || lay.unified == "" {
		t.Skip("no cgroup2 mount")
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	m, err := newWith(layout{unified: lay.unified}, testParent, hex.EncodeToString(b), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Delete(); err != nil {
			t.Error(err)
		}
		if err := unix.Rmdir(filepath.Dir(m.Path())); err != nil && err != unix.ENOENT && err != unix.EBUSY {
			t.Error(err)
		}
	})
	cmd := exec.Command("sleep", "30")
	start(t, cmd)
	if err := m.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, err := m.Pids(); err != nil || !slices.Equal(pids, []int{cmd.Process.Pid}) {
		t.Errorf("Pids() = %v, %v", pids, err)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(m.Path(), "cgroup.freeze"), "1")
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("sleep after Kill: %v", err)
	}
	if err := m.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(m.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", m.Path(), err)
	}
}
