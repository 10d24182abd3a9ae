package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"hako.dev/hako/runtime/image/imagetest"
)

// bench holds what the rows share: the hako binary, a temp directory with
// everything created, and what must be undone at the end.
type bench struct {
	hako    string
	n       int
	verbose bool
	base    string   // temp dir; everything below it is ours
	prefix  string   // prefix of the container IDs we choose
	out     *os.File // captures the output of the measured commands
	notes   []string

	hakoRoot  string // HAKO_ROOT with busybox loaded; "" until set up
	hakoErr   error
	bundle    string // OCI bundle; "" until set up
	bundleErr error
	ociState  string // HAKO_OCI_STATE

	runtimeRoots map[string]string // crun/runc binary path -> its --root
	triedCgroup  bool              // the hugetlb fix was tried
	hugetlbMount string            // set when we mounted the hugetlb hierarchy

	monitorUp bool // benchmon exists in hakoRoot
	cleaned   bool

	nLoad   int       // measured runs of the load-200m and pull-local rows
	loadFS  string    // "tmpfs" or "ext4": the fresh file systems of those rows
	fsSeq   int       // numbers the fresh file systems
	fsNoted bool      // the note on them was made
	big     *bigImage // the generated ~200 MB image; nil until made
	bigErr  error
	reg     *registry // the running docker-registry, if any
}

func newBench(hako string, n int) (*bench, error) {
	base, err := os.MkdirTemp("", "hako-bench-")
	if err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(base, "output"))
	if err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	return &bench{
		hako: hako, n: n, base: base, out: out,
		prefix:       "hb" + strconv.Itoa(os.Getpid()),
		runtimeRoots: map[string]string{},
	}, nil
}

func (b *bench) note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	b.notes = append(b.notes, s)
}

// progress goes to stderr, so that stdout holds only the table (or JSON).
func (b *bench) progress(format string, args ...any) {
	if b.verbose {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
	}
}

// command runs argv to completion and returns its wall-clock time, measured
// from just before the fork to just after the wait. Output goes to a file
// (no copying goroutines in the way) and is returned when the command fails.
func (b *bench) command(ctx context.Context, env []string, argv ...string) (time.Duration, string, error) {
	if err := b.out.Truncate(0); err != nil {
		return 0, "", err
	}
	if _, err := b.out.Seek(0, io.SeekStart); err != nil {
		return 0, "", err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = b.out, b.out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, b.output(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(b.output()))
	}
	return d, "", nil
}

// output is what the last command printed (its first 4 KiB).
func (b *bench) output() string {
	buf := make([]byte, 4096)
	n, _ := b.out.ReadAt(buf, 0)
	return string(buf[:n])
}

// quiet runs a command outside any measurement, with a time limit, and
// returns its combined output.
func quiet(env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, oneLine(string(out)))
	}
	return string(out), nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		s = "(no output)"
	}
	return s
}

// loop runs iter for the warm-ups and then n measured times; i counts all
// runs so that each can use a unique container ID. It stops at the first
// failure, keeping the samples taken so far.
func (b *bench) loop(ctx context.Context, r *result, iter func(i int) (time.Duration, error)) {
	var samples []float64
	for i := 0; i < warmups+b.n; i++ {
		if ctx.Err() != nil {
			r.Error = "interrupted"
			break
		}
		d, err := iter(i)
		if err != nil {
			phase := "warm-up"
			if i >= warmups {
				phase = "run"
			}
			r.Error = fmt.Sprintf("%s %d: %v", phase, i+1, err)
			break
		}
		if i >= warmups {
			samples = append(samples, ms(d))
		}
	}
	r.Unit = "ms"
	r.stats(samples)
}

func (b *bench) hakoEnv() []string { return []string{"HAKO_ROOT=" + b.hakoRoot} }

// setupHako makes a state root and loads busybox:latest into it.
func (b *bench) setupHako() error {
	if b.hakoRoot != "" || b.hakoErr != nil {
		return b.hakoErr
	}
	b.hakoErr = func() error {
		root := filepath.Join(b.base, "hako-root")
		if err := os.Mkdir(root, 0o700); err != nil {
			return err
		}
		archive := filepath.Join(b.base, "busybox.tar")
		f, err := os.Create(archive)
		if err != nil {
			return err
		}
		err = imagetest.WriteBusybox(f, "busybox:latest")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write busybox image: %w", err)
		}
		b.hakoRoot = root
		if _, err := quiet(b.hakoEnv(), b.hako, "load", "-i", archive); err != nil {
			return err
		}
		return nil
	}()
	return b.hakoErr
}

func (b *bench) hakoRun(ctx context.Context) *result {
	r := &result{Name: "hako-run", Command: "hako run --rm busybox true"}
	if err := b.setupHako(); err != nil {
		r.Error = err.Error()
		return r
	}
	b.loop(ctx, r, func(int) (time.Duration, error) {
		d, _, err := b.command(ctx, b.hakoEnv(), b.hako, "run", "--rm", "busybox", "true")
		return d, err
	})
	// --rm must leave nothing behind.
	if out, err := quiet(b.hakoEnv(), b.hako, "ps", "-a", "-q"); err != nil {
		b.note("hako ps -a -q after hako-run: %v", err)
	} else if ids := strings.Fields(out); len(ids) > 0 {
		b.note("hako run --rm left %d container(s) behind (%s); removing them", len(ids), strings.Join(ids, " "))
		b.hakoRemove(ids...)
	}
	return r
}

func (b *bench) hakoRemove(ids ...string) {
	if _, err := quiet(b.hakoEnv(), append([]string{b.hako, "rm", "-f"}, ids...)...); err != nil {
		b.note("cleanup: %v", err)
	}
}

// ociRuntime measures `crun run` or `runc run` on the bundle.
func (b *bench) ociRuntime(ctx context.Context, name string) *result {
	r := &result{Name: name + "-run", Command: name + " run --bundle B ID"}
	bin, err := exec.LookPath(name)
	if err != nil {
		r.Skipped = "not installed"
		return r
	}
	bundle, err := b.setupBundle()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	root := filepath.Join(b.base, name+"-state")
	if err := os.Mkdir(root, 0o700); err != nil {
		r.Error = err.Error()
		return r
	}
	b.runtimeRoots[bin] = root
	defer b.runtimeLeftovers(bin, root)
	b.loop(ctx, r, func(i int) (time.Duration, error) {
		id := fmt.Sprintf("%s-%s-%d", b.prefix, name, i)
		d, out, err := b.command(ctx, nil, bin, "--root", root, "run", "--bundle", bundle, id)
		if err != nil {
			quiet(nil, bin, "--root", root, "delete", "-f", id)
			if name == "crun" && b.cgroupFix(out) {
				id += "-retry"
				d, _, err = b.command(ctx, nil, bin, "--root", root, "run", "--bundle", bundle, id)
				if err != nil {
					quiet(nil, bin, "--root", root, "delete", "-f", id)
				}
			}
		}
		return d, err
	})
	return r
}

// cgroupFix handles crun 1.8 refusing the hybrid cgroup layout while the v2
// hierarchy still holds a controller (hugetlb): mounting that controller as
// v1 takes it off v2. It reports whether it did so (once per run).
func (b *bench) cgroupFix(out string) bool {
	const dir = "/sys/fs/cgroup/hugetlb"
	if b.triedCgroup || !strings.Contains(strings.ToLower(out), "cgroup") {
		return false
	}
	b.triedCgroup = true
	if _, err := os.Lstat(dir); err == nil || !errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.note("crun failed with a cgroup error (%s); could not create %s: %v", oneLine(out), dir, err)
		return false
	}
	if err := mountCgroup("hugetlb", dir); err != nil {
		os.Remove(dir)
		b.note("crun failed with a cgroup error (%s); mount -t cgroup -o hugetlb cgroup %s: %v", oneLine(out), dir, err)
		return false
	}
	b.hugetlbMount = dir
	b.note("crun failed with %q; mounted the hugetlb controller as cgroup v1 on %s and retried (unmounted again at exit)", oneLine(out), dir)
	return true
}

// runtimeLeftovers deletes whatever containers a runtime still lists.
func (b *bench) runtimeLeftovers(bin, root string) {
	out, err := quiet(nil, bin, "--root", root, "list", "-q")
	if err != nil {
		b.note("cleanup: %v", err)
		return
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return
	}
	b.note("%s left %d container(s) behind; deleting them", filepath.Base(bin), len(ids))
	for _, id := range ids {
		if _, err := quiet(nil, bin, "--root", root, "delete", "-f", id); err != nil {
			b.note("cleanup: %v", err)
		}
	}
}

func (b *bench) hakoOCIEnv() []string { return []string{"HAKO_OCI_STATE=" + b.ociState} }

func (b *bench) hakoOCIRun(ctx context.Context) *result {
	r := &result{Name: "hako-oci-run", Command: "hako oci run --bundle B ID"}
	bundle, err := b.setupBundle()
	if err != nil {
		r.Error = err.Error()
		return r
	}
	b.ociState = filepath.Join(b.base, "hako-oci-state")
	if err := os.Mkdir(b.ociState, 0o700); err != nil {
		r.Error = err.Error()
		return r
	}
	defer b.hakoOCILeftovers()
	b.loop(ctx, r, func(i int) (time.Duration, error) {
		id := fmt.Sprintf("%s-hakooci-%d", b.prefix, i)
		d, _, err := b.command(ctx, b.hakoOCIEnv(), b.hako, "oci", "run", "--bundle", bundle, id)
		return d, err
	})
	return r
}

// hakoOCILeftovers deletes the containers `hako oci run` left in its state dir.
func (b *bench) hakoOCILeftovers() {
	if b.ociState == "" {
		return
	}
	ents, err := os.ReadDir(b.ociState)
	if err != nil {
		return
	}
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	if len(ids) == 0 {
		return
	}
	b.note("hako oci run left %d container(s) in its state dir (%s); deleting them", len(ids), strings.Join(ids, " "))
	for _, id := range ids {
		if _, err := quiet(b.hakoOCIEnv(), b.hako, "oci", "delete", "-f", id); err != nil {
			b.note("cleanup: %v", err)
		}
	}
}

func (b *bench) hakoVersion(ctx context.Context) *result {
	r := &result{Name: "hako-version", Command: "hako --version"}
	b.loop(ctx, r, func(int) (time.Duration, error) {
		d, _, err := b.command(ctx, nil, b.hako, "--version")
		return d, err
	})
	return r
}

const monitorName = "benchmon"

// monitorRSS starts a detached container and samples its monitor's VmRSS
// every 50 ms (3 warm-up samples, then n).
func (b *bench) monitorRSS(ctx context.Context) *result {
	r := &result{Name: "monitor-rss", Command: "monitor of hako run -d busybox sleep 60", Unit: "MiB"}
	if err := b.setupHako(); err != nil {
		r.Error = err.Error()
		return r
	}
	b.monitorUp = true // from here on, cleanup removes it (also if run fails half-way)
	defer b.removeMonitorContainer()
	if _, _, err := b.command(ctx, b.hakoEnv(), b.hako, "run", "-d", "--name", monitorName, "busybox", "sleep", "60"); err != nil {
		r.Error = err.Error()
		return r
	}
	fields := strings.Fields(b.output())
	if len(fields) == 0 {
		r.Error = "hako run -d printed no container ID"
		return r
	}
	id := fields[len(fields)-1]
	pid, err := findMonitor(b.hakoRoot, id, 3*time.Second)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	var samples []float64
	for i := 0; i < warmups+b.n; i++ {
		if ctx.Err() != nil {
			r.Error = "interrupted"
			break
		}
		kib, err := procStatusKiB(pid, "VmRSS")
		if err != nil {
			r.Error = fmt.Sprintf("monitor %d: %v (did it exit?)", pid, err)
			break
		}
		if i >= warmups {
			samples = append(samples, float64(kib)/1024)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stats(samples)
	if hwm, err := procStatusKiB(pid, "VmHWM"); err == nil {
		b.note("monitor PID %d of container %.12s: peak RSS (VmHWM) %.2f MiB", pid, id, float64(hwm)/1024)
	}
	return r
}

func (b *bench) removeMonitorContainer() {
	if !b.monitorUp {
		return
	}
	b.monitorUp = false
	if out, err := quiet(b.hakoEnv(), b.hako, "rm", "-f", monitorName); err != nil && !strings.Contains(strings.ToLower(out), "no such container") {
		b.note("cleanup: %v", err)
	}
}

// cleanup undoes everything, once; run calls it before printing and defers it.
func (b *bench) cleanup() {
	if b.cleaned {
		return
	}
	b.cleaned = true
	b.stopRegistry()
	if b.hakoRoot != "" {
		b.removeMonitorContainer()
		if out, err := quiet(b.hakoEnv(), b.hako, "ps", "-a", "-q"); err == nil {
			if ids := strings.Fields(out); len(ids) > 0 {
				b.note("cleanup: removing %d leftover container(s): %s", len(ids), strings.Join(ids, " "))
				b.hakoRemove(ids...)
			}
		}
	}
	b.teardownNetworks()
	for bin, root := range b.runtimeRoots {
		if _, err := os.Stat(root); err == nil {
			b.runtimeLeftovers(bin, root)
		}
	}
	b.hakoOCILeftovers()
	b.killMonitors()
	b.removeCgroups()
	b.out.Close()
	if b.unmountUnder(b.base) {
		if err := os.RemoveAll(b.base); err != nil {
			b.note("cleanup: %v", err)
		}
	} else {
		b.note("cleanup: left %s in place: mounts under it could not be unmounted", b.base)
	}
	if b.hugetlbMount != "" {
		if err := unmount(b.hugetlbMount); err != nil {
			b.note("cleanup: umount %s: %v (left mounted)", b.hugetlbMount, err)
		} else if err := os.Remove(b.hugetlbMount); err != nil {
			b.note("cleanup: %v", err)
		}
	}
}
