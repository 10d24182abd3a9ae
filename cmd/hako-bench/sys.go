package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/image/imagetest"
)

// setupBundle makes an OCI bundle of the busybox image's root filesystem
// whose process is `true`.
func (b *bench) setupBundle() (string, error) {
	if b.bundle != "" || b.bundleErr != nil {
		return b.bundle, b.bundleErr
	}
	dir := filepath.Join(b.base, "bundle")
	b.bundleErr = func() error {
		layer, err := imagetest.BusyboxLayer()
		if err != nil {
			return fmt.Errorf("busybox layer: %w", err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			return err
		}
		if err := untar(bytes.NewReader(layer), filepath.Join(dir, "rootfs")); err != nil {
			return fmt.Errorf("unpack busybox layer: %w", err)
		}
		return writeConfig(dir)
	}()
	if b.bundleErr == nil {
		b.bundle = dir
	}
	return b.bundle, b.bundleErr
}

// untar unpacks an uncompressed layer into dir; os.Root keeps every entry
// inside it.
func untar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	type dirMode struct {
		name string
		mode fs.FileMode
	}
	var dirs []dirMode
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
		if name == "." {
			continue
		}
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return err
			}
		}
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{name, mode})
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			if err := root.Chmod(name, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := root.Link(path.Clean(strings.TrimPrefix(hdr.Linkname, "/")), name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported tar entry type %q", hdr.Name, hdr.Typeflag)
		}
	}
	// Directory modes last, so that a read-only directory can still be filled.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(dirs[i].name, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig writes dir/config.json: the default spec of `crun spec` (or
// `runc spec`) with the process made `true`, no terminal and a writable
// rootfs; a minimal spec of our own when neither runtime is installed.
func writeConfig(dir string) error {
	file := filepath.Join(dir, "config.json")
	var spec map[string]any
	for _, rt := range []string{"crun", "runc"} {
		bin, err := exec.LookPath(rt)
		if err != nil {
			continue
		}
		os.Remove(file)
		cmd := exec.Command(bin, "spec")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s spec: %w: %s", rt, err, oneLine(string(out)))
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &spec); err != nil {
			return fmt.Errorf("%s spec: %w", rt, err)
		}
		break
	}
	if spec == nil {
		spec = minimalSpec()
	}
	process, _ := spec["process"].(map[string]any)
	if process == nil {
		process = map[string]any{}
		spec["process"] = process
	}
	process["args"] = []string{"true"}
	process["terminal"] = false
	root, _ := spec["root"].(map[string]any)
	if root == nil {
		root = map[string]any{}
		spec["root"] = root
	}
	root["path"] = "rootfs"
	root["readonly"] = false
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

// minimalSpec is used only when neither crun nor runc is there to generate one.
func minimalSpec() map[string]any {
	ns := func(types ...string) []map[string]any {
		var out []map[string]any
		for _, t := range types {
			out = append(out, map[string]any{"type": t})
		}
		return out
	}
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"user": map[string]any{"uid": 0, "gid": 0},
			"env":  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"cwd":  "/", "noNewPrivileges": true,
		},
		"hostname": "bench",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		"linux": map[string]any{"namespaces": ns("pid", "network", "ipc", "uts", "mount")},
	}
}

// findMonitor waits for the monitor of container id in state root root: the
// process started with _HAKO_MONITOR=1 whose argv is hako-monitor ROOT ID.
func findMonitor(root, id string, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		pids := monitors(root, id)
		if len(pids) == 1 {
			return pids[0], nil
		}
		if len(pids) > 1 {
			return 0, fmt.Errorf("%d monitors for container %.12s: %v", len(pids), id, pids)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no process with _HAKO_MONITOR=1 and argv [hako-monitor %s %.12s...] after %v", root, id, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// monitors lists the monitors of state root root; of container id only
// when id is not empty.
func monitors(root, id string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !hasField(env, "_HAKO_MONITOR=1") {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if !contains(argv, root) {
			continue
		}
		if id != "" && !strings.Contains(string(cmdline), id) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

func hasField(nulSeparated []byte, field string) bool {
	for _, f := range bytes.Split(nulSeparated, []byte{0}) {
		if string(f) == field {
			return true
		}
	}
	return false
}

// procStatusKiB reads a "Key:   123 kB" line of /proc/PID/status.
func procStatusKiB(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", key, sc.Text())
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// killMonitors ends monitors of our own state root that outlived their
// containers' removal; they were started by our commands.
func (b *bench) killMonitors() {
	if b.hakoRoot == "" {
		return
	}
	for _, pid := range monitors(b.hakoRoot, "") {
		b.note("cleanup: monitor PID %d of our state root still ran after hako rm -f; killed it", pid)
		unix.Kill(pid, unix.SIGKILL)
	}
}

// removeCgroups removes cgroups left behind for container IDs we chose
// (crun, runc and hako oci name them after the ID).
func (b *bench) removeCgroups() {
	// /sys/fs/cgroup/<hierarchy>/<parent>/<parent>/ID at most, in the hybrid
	// layout; shallower on a pure v2 machine.
	const top, maxDepth = "/sys/fs/cgroup", 5
	var found []string
	filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == top {
			return nil
		}
		if strings.HasPrefix(d.Name(), b.prefix+"-") {
			found = append(found, p)
			return fs.SkipDir
		}
		if strings.Count(p[len(top):], "/") >= maxDepth {
			return fs.SkipDir
		}
		return nil
	})
	if len(found) == 0 {
		return
	}
	b.note("cleanup: %d cgroup(s) named after our containers were left, e.g. %s; removing them", len(found), found[0])
	for _, p := range found {
		// Deepest first: a cgroup can be removed only when it has no children.
		var sub []string
		filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				sub = append(sub, q)
			}
			return nil
		})
		for i := len(sub) - 1; i >= 0; i-- {
			if err := unix.Rmdir(sub[i]); err != nil {
				b.note("cleanup: rmdir %s: %v", sub[i], err)
			}
		}
	}
}

func mountCgroup(controller, dir string) error {
	return unix.Mount("cgroup", dir, "cgroup", 0, controller)
}

func unmount(dir string) error { return unix.Unmount(dir, 0) }

// unmountUnder detaches mounts left below dir (by commands that failed half
// way) and reports whether none remain, so that dir can be removed safely.
func (b *bench) unmountUnder(dir string) bool {
	points, err := mountsUnder(dir)
	if err != nil {
		b.note("cleanup: %v", err)
		return false
	}
	if len(points) == 0 {
		return true
	}
	b.note("cleanup: %d mount(s) were left under %s, e.g. %s; unmounting them", len(points), dir, points[0])
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			b.note("cleanup: umount %s: %v", p, err)
		}
	}
	points, err = mountsUnder(dir)
	return err == nil && len(points) == 0
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMountinfo(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}
