package oci

import (
	"bytes"
	"errors"
	"golang.org/x/sys/unix"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"hako.dev/hako/runtime/errdefs"
	_ "hako.dev/hako/runtime/oci/nsenter"
)

func TestMain(m *testing.M) {
	Main()

	os.Exit(m.Run())
}

func busyboxPath(t testing.TB) string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("busybox-static is not installed")
	return ""
}

// makeRootfs builds a tiny root filesystem from the host's static busybox.
func makeRootfs(t *testing.T) string {
	t.Helper()
	return makeRootfsB(t)
}

func makeRootfsB(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	bb := busyboxPath(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "cat", "echo", "hostname", "ls", "id", "grep", "sleep", "true", "touch", "mknod", "readlink"} {
		os.Symlink("busybox", filepath.Join(root, "bin", a))
	}
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\napp:x:1000:\n"), 0o644)
	return root
}

func testSpec(root string, args ...string) *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: root},
		Hostname: "box",
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: DefaultCapabilities, Effective: DefaultCapabilities, Permitted: DefaultCapabilities,
			},
		},
		Mounts: DefaultMounts(),
		Linux: &specs.Linux{
			Namespaces:    DefaultNamespaces(),
			MaskedPaths:   MaskedPaths,
			ReadonlyPaths: ReadonlyPaths,
		},
	}
}

func run(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(&InitConfig{Spec: testSpec(root, args...), Rootfs: root}, Stdio{Stdout: w, Stderr: w}, Options{})
	w.Close()
	if err != nil {
		r.Close()
		t.Fatalf("start: %v", err)
	}
	var out bytes.Buffer
	out.ReadFrom(r)
	r.Close()
	code, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

func TestIsolation(t *testing.T) {
	root := makeRootfs(t)
	script := `echo pid=$$; hostname; grep CapEff /proc/self/status; grep CapInh /proc/self/status; ` +
		`cat /proc/kcore | wc -c 2>/dev/null; touch /sys/x 2>&1 | grep -q Read-only && echo sysro; ` +
		`mknod /dev/sdx b 8 0 && cat /dev/sdx 2>&1 | grep -q 'not permitted\|denied' && echo nodev; ` +
		`ls /proc/self/fd | tr '\n' ' '; echo; exit 3`
	os.Symlink("busybox", filepath.Join(root, "bin", "wc"))
	os.Symlink("busybox", filepath.Join(root, "bin", "tr"))
	out, code := run(t, root, "sh", "-c", script)
	if code != 3 {
		t.Errorf("exit code %d, want 3; output:\n%s", code, out)
	}
	for _, want := range []string{"pid=1\n", "box\n", "CapEff:\t00000000a80425fb", "CapInh:\t0000000000000000", "\n0\n", "sysro", "nodev", "0 1 2 3 \n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestCommandNotFound(t *testing.T) {
	root := makeRootfs(t)
	_, err := Start(&InitConfig{Spec: testSpec(root, "nosuch"), Rootfs: root}, Stdio{}, Options{})
	if !errors.Is(err, errdefs.ErrCommandNotFound) {
		t.Fatalf("err = %v, want command not found", err)
	}
	os.WriteFile(filepath.Join(root, "bin/noexec"), []byte("#!/bin/sh\n"), 0o644)
	_, err = Start(&InitConfig{Spec: testSpec(root, "/bin/noexec"), Rootfs: root}, Stdio{}, Options{})
	if !errors.Is(err, errdefs.ErrCannotInvoke) {
		t.Fatalf("err = %v, want cannot invoke", err)
	}
}

func TestExecJoinsContainer(t *testing.T) {
	root := makeRootfs(t)
	p, err := Start(&InitConfig{Spec: testSpec(root, "sleep", "30"), Rootfs: root}, Stdio{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.cmd.Process.Kill(); p.Wait() }()
	r, w, _ := os.Pipe()
	spec := testSpec(root, "sh", "-c", "hostname; id -u; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc/self/fd | tr '\\n' ' '")
	os.Symlink("busybox", filepath.Join(root, "bin", "tr"))
	ep, err := Exec(p.Pid, nil, &ExecConfig{Process: spec.Process, User: "app"}, Stdio{Stdout: w, Stderr: w}, false)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.ReadFrom(r)
	code, _ := ep.Wait()
	if code != 0 {
		t.Fatalf("exec exit %d: %s", code, out.String())
	}
	for _, want := range []string{"box\n", "1000\n", "sleep 30", "0 1 2 3 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("exec output lacks %q:\n%s", want, out.String())
		}
	}
	_ = exec.Command
}

// The binary a container's init runs from cannot be opened for writing, not
// even through /proc/PID/exe once its processes have exited (the
// CVE-2019-5736 class): the view it is run from is a read-only mount.
func TestReadOnlyViewRefusesWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	// A copy of a binary that nothing runs: writable as a plain file...
	bin := filepath.Join(t.TempDir(), "prog")
	data, err := os.ReadFile(busyboxPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	// ...but not through the view.
	view, done, err := readOnlyView(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	cmd := exec.Command(view)
	cmd.Args = []string{"true"} // busybox picks the applet by argv[0]
	if err := cmd.Run(); err != nil {
		t.Fatalf("run through the view: %v", err)
	}
	f, err := os.OpenFile(view, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("open the view for writing: %v, want EROFS", err)
	}
	// The same open on the plain path works: the test can tell.
	f, err = os.OpenFile(bin, os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("plain open: %v", err)
	}
	f.Close()
	// And the container's init really runs from such a view.
	if _, _, err := protectedSelf(); err != nil {
		t.Fatal(err)
	}
}
