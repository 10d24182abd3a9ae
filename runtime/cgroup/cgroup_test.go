package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hako.dev/hako/runtime/errdefs"
)

// The mount table of a systemd hybrid machine (this package's development box).
const hybridMountinfo = `22 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

// A pure v2 machine, with the tree also bind-mounted (a subtree) into a
// container's root file system.
const v2Mountinfo = `25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
90 25 0:26 /system.slice /var/lib/x/rootfs/sys/fs/cgroup rw,relatime master:4 - cgroup2 cgroup2 rw
`

// An old v1 machine with cpu and cpuacct on one hierarchy and an escaped space.
const v1Mountinfo = `18 1 8:1 / / rw - ext4 /dev/sda1 rw
20 18 0:17 / /sys/fs/cgroup rw - tmpfs tmpfs rw
21 20 0:18 / /sys/fs/cgroup/cpu,cpuacct rw shared:7 - cgroup cgroup rw,cpu,cpuacct
22 20 0:19 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
23 20 0:20 / /sys/fs/cgroup/my\040pids rw - cgroup cgroup rw,pids,clone_children
`

func layoutOf(t *testing.T, mountinfo string) layout {
	t.Helper()
	ms, err := parseMountinfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	return detectLayout(ms)
}

func TestDetectLayout(t *testing.T) {
	h := layoutOf(t, hybridMountinfo)
	if h.mode() != "hybrid" || h.unified != "/sys/fs/cgroup/unified" || h.v1["memory"] != "/sys/fs/cgroup/memory" {
		t.Errorf("hybrid: got %+v mode %s", h, h.mode())
	}
	if _, ok := h.v1["name=systemd"]; ok {
		t.Error("hybrid: a named hierarchy was taken for a controller")
	}

	v2 := layoutOf(t, v2Mountinfo)
	if v2.mode() != "v2" || v2.unified != "/sys/fs/cgroup" {
		t.Errorf("v2: got %+v mode %s", v2, v2.mode())
	}

	v1 := layoutOf(t, v1Mountinfo)
	if v1.mode() != "v1" || v1.v1["cpu"] != "/sys/fs/cgroup/cpu,cpuacct" || v1.v1["cpuacct"] != "/sys/fs/cgroup/cpu,cpuacct" ||
		v1.v1["pids"] != "/sys/fs/cgroup/my pids" {
		t.Errorf("v1: got %+v mode %s", v1, v1.mode())
	}
	m, err := managerFor(v1, "hako", "abc")
	if err != nil {
		t.Fatal(err)
	}
	// cpu and cpuacct share one directory, so there are three, not four.
	if got := m.ProcsFiles(); len(got) != 3 {
		t.Errorf("v1 procs files: %v", got)
	}
	if m.Path() != "/sys/fs/cgroup/memory/hako/abc" {
		t.Errorf("v1 path: %s", m.Path())
	}

	if none := detectLayout(nil); none.mode() != "none" {
		t.Errorf("empty mount table: mode %s", none.mode())
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("malformed mountinfo accepted")
	}
}

func TestNames(t *testing.T) {
	lay := layout{unified: t.TempDir()}
	for _, bad := range [][2]string{{"", "x"}, {"hako", ""}, {"..", "x"}, {"hako", "a/b"}, {"hako", "."}} {
		if _, err := managerFor(lay, bad[0], bad[1]); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%q/%q: err %v", bad[0], bad[1], err)
		}
	}
}

// fakeTree writes files (path relative to root -> content) the way the kernel
// would show them, since a plain directory does not grow cgroup files.
func fakeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func wantFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := strings.TrimSpace(string(b)); got != want {
		t.Errorf("%s = %q, want %q", path, got, want)
	}
}

func v2Leaf(root string) map[string]string {
	leaf := "hako/abc/"
	return map[string]string{
		"cgroup.controllers":          "cpuset cpu io memory hugetlb pids rdma misc",
		"cgroup.subtree_control":      "cpu",
		"hako/cgroup.subtree_control": "",
		leaf + "cgroup.procs":         "",
		leaf + "memory.max":           "",
		leaf + "memory.swap.max":      "",
		leaf + "cpu.max":              "",
		leaf + "cpu.weight":           "",
		leaf + "pids.max":             "",
	}
}

func TestNewV2(t *testing.T) {
	root := t.TempDir()
	fakeTree(t, root, v2Leaf(root))
	lay := layout{unified: root}
	l := Limits{Memory: 64 << 20, MemorySwap: 96 << 20, CPUQuota: 150000, CPUShares: 512, PidsLimit: 20}
	m, err := newWith(lay, "hako", "abc", l)
	if err != nil {
		t.Fatal(err)
	}
	// cpu was already enabled in the root; the rest are asked for in one write.
	wantFile(t, filepath.Join(root, "cgroup.subtree_control"), "+cpuset +io +memory +pids")
	wantFile(t, filepath.Join(root, "hako/cgroup.subtree_control"), "+cpu +cpuset +io +memory +pids")
	dir := filepath.Join(root, "hako/abc")
	if m.Path() != dir {
		t.Errorf("path %s, want %s", m.Path(), dir)
	}
	wantFile(t, filepath.Join(dir, "memory.max"), "67108864")
	wantFile(t, filepath.Join(dir, "memory.swap.max"), "33554432")
	wantFile(t, filepath.Join(dir, "cpu.max"), "150000 100000")
	wantFile(t, filepath.Join(dir, "cpu.weight"), "20")
	wantFile(t, filepath.Join(dir, "pids.max"), "20")

	if err := m.Add(4242); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "cgroup.procs"), "4242")
	if got := m.ProcsFiles(); !slices.Equal(got, []string{filepath.Join(dir, "cgroup.procs")}) {
		t.Errorf("procs files %v", got)
	}
	if pids, err := m.Pids(); err != nil || !slices.Equal(pids, []int{4242}) {
		t.Errorf("pids %v, %v", pids, err)
	}

	// Reusing the group with no limits writes the unlimited values; unset swap
	// and shares are left alone.
	if _, err := newWith(lay, "hako", "abc", Limits{}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "memory.max"), "max")
	wantFile(t, filepath.Join(dir, "memory.swap.max"), "33554432")
	wantFile(t, filepath.Join(dir, "cpu.max"), "max 100000")
	wantFile(t, filepath.Join(dir, "pids.max"), "max")

	// Unlimited swap.
	if _, err := newWith(lay, "hako", "abc", Limits{Memory: 1 << 20, MemorySwap: -1}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(dir, "memory.swap.max"), "max")

	// Load finds it; a missing group is not found.
	if got, err := loadWith(lay, "hako", "abc"); err != nil || got.Path() != dir {
		t.Errorf("load: %v %v", got, err)
	}
	if _, err := loadWith(lay, "hako", "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("load missing: %v", err)
	}
}

func TestNewV2MissingFiles(t *testing.T) {
	root := t.TempDir()
	files := v2Leaf(root)
	delete(files, "hako/abc/memory.swap.max") // no swap accounting: skipped
	fakeTree(t, root, files)
	lay := layout{unified: root}
	if _, err := newWith(lay, "hako", "abc", Limits{Memory: 1 << 20, MemorySwap: 2 << 20}); err != nil {
		t.Fatalf("missing memory.swap.max: %v", err)
	}
	if err := os.Remove(filepath.Join(root, "hako/abc/pids.max")); err != nil {
		t.Fatal(err)
	}
	_, err := newWith(lay, "hako", "abc", Limits{PidsLimit: 5})
	if err == nil || !strings.Contains(err.Error(), "pids.max") || !strings.Contains(err.Error(), filepath.Join(root, "hako/abc")) {
		t.Errorf("missing pids.max: %v", err)
	}
}

func TestNewV2NoMemoryController(t *testing.T) {
	root := t.TempDir()
	files := v2Leaf(root)
	files["cgroup.controllers"] = "cpu pids"
	fakeTree(t, root, files)
	lay := layout{unified: root}
	_, err := newWith(lay, "hako", "abc", Limits{Memory: 1 << 20})
	if !errors.Is(err, errdefs.ErrUnsupported) || !strings.Contains(err.Error(), "memory controller") {
		t.Errorf("memory limit without memory controller: %v", err)
	}
	// Without a memory limit the group is fine, and memory.max is not touched.
	if _, err := newWith(lay, "hako", "abc", Limits{PidsLimit: 3}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(root, "hako/abc/memory.max"), "")
	wantFile(t, filepath.Join(root, "hako/cgroup.subtree_control"), "+cpu +pids")
}

func TestStatsV2(t *testing.T) {
	root := t.TempDir()
	fakeTree(t, root, map[string]string{
		"hako/abc/memory.current": "1048576\n",
		"hako/abc/memory.max":     "max\n",
		"hako/abc/memory.stat":    "anon 4096\nfile 8192\ninactive_file 4096\nactive_file 4096\n",
		"hako/abc/pids.current":   "3\n",
		"hako/abc/pids.max":       "20\n",
		"hako/abc/cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
	})
	m, err := loadWith(layout{unified: root}, "hako", "abc")
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{MemoryUsage: 1 << 20, MemoryInactiveFile: 4096, PidsCurrent: 3, PidsLimit: 20, CPUUsageNanos: 1500000}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

func TestNewV1(t *testing.T) {
	root := t.TempDir()
	leaf := "/hako/abc/"
	fakeTree(t, root, map[string]string{
		"memory" + leaf + "memory.limit_in_bytes":       "",
		"memory" + leaf + "memory.memsw.limit_in_bytes": "",
		"memory" + leaf + "cgroup.procs":                "",
		"cpu,cpuacct" + leaf + "cpu.shares":             "",
		"cpu,cpuacct" + leaf + "cpu.cfs_period_us":      "",
		"cpu,cpuacct" + leaf + "cpu.cfs_quota_us":       "",
		"cpu,cpuacct" + leaf + "cgroup.procs":           "",
		"pids" + leaf + "pids.max":                      "",
		"pids" + leaf + "cgroup.procs":                  "",
		"cpuset/cpuset.cpus":                            "0-3\n",
		"cpuset/cpuset.mems":                            "0\n",
		"cpuset/hako/cpuset.cpus":                       "",
		"cpuset/hako/cpuset.mems":                       "",
		"cpuset" + leaf + "cpuset.cpus":                 "",
		"cpuset" + leaf + "cpuset.mems":                 "",
		"cpuset" + leaf + "cgroup.procs":                "",
	})
	lay := layout{v1: map[string]string{
		"memory": filepath.Join(root, "memory"), "cpu": filepath.Join(root, "cpu,cpuacct"),
		"cpuacct": filepath.Join(root, "cpu,cpuacct"), "pids": filepath.Join(root, "pids"),
		"cpuset": filepath.Join(root, "cpuset"),
	}}
	m, err := newWith(lay, "hako", "abc", Limits{Memory: 64 << 20, MemorySwap: 64 << 20, CPUQuota: 50000, CPUPeriod: 50000, CPUShares: 512, PidsLimit: 20})
	if err != nil {
		t.Fatal(err)
	}
	wantFile(t, filepath.Join(root, "memory/hako/abc/memory.limit_in_bytes"), "67108864")
	wantFile(t, filepath.Join(root, "memory/hako/abc/memory.memsw.limit_in_bytes"), "67108864")
	wantFile(t, filepath.Join(root, "cpu,cpuacct/hako/abc/cpu.shares"), "512")
	wantFile(t, filepath.Join(root, "cpu,cpuacct/hako/abc/cpu.cfs_period_us"), "50000")
	wantFile(t, filepath.Join(root, "cpu,cpuacct/hako/abc/cpu.cfs_quota_us"), "50000")
	wantFile(t, filepath.Join(root, "pids/hako/abc/pids.max"), "20")
	for _, lvl := range []string{"cpuset/hako", "cpuset/hako/abc"} {
		wantFile(t, filepath.Join(root, lvl, "cpuset.cpus"), "0-3")
		wantFile(t, filepath.Join(root, lvl, "cpuset.mems"), "0")
	}
	if m.Path() != filepath.Join(root, "memory/hako/abc") {
		t.Errorf("path %s", m.Path())
	}
	if got := m.ProcsFiles(); len(got) != 4 {
		t.Errorf("procs files %v", got)
	}
	if err := m.Add(77); err != nil {
		t.Fatal(err)
	}
	for _, f := range m.ProcsFiles() {
		wantFile(t, f, "77")
	}

	// No pids hierarchy: a pids limit is an error, no limit is fine.
	delete(lay.v1, "pids")
	if _, err := newWith(lay, "hako", "abc", Limits{PidsLimit: 5}); !errors.Is(err, errdefs.ErrUnsupported) {
		t.Errorf("pids limit without pids controller: %v", err)
	}
	if _, err := newWith(lay, "hako", "abc", Limits{}); err != nil {
		t.Error(err)
	}
	wantFile(t, filepath.Join(root, "memory/hako/abc/memory.limit_in_bytes"), "-1")
	wantFile(t, filepath.Join(root, "cpu,cpuacct/hako/abc/cpu.cfs_quota_us"), "-1")
}

func TestValidate(t *testing.T) {
	bad := []Limits{
		{MemorySwap: 1 << 20},                  // swap without memory
		{Memory: 2 << 20, MemorySwap: 1 << 20}, // memory+swap below memory
		{MemorySwap: -2},
		{CPUQuota: 10},
		{CPUPeriod: 10},
	}
	lay := layout{unified: t.TempDir()}
	for _, l := range bad {
		if _, err := newWith(lay, "hako", "abc", l); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%+v: err %v", l, err)
		}
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := sharesToWeight(shares); got != want {
			t.Errorf("shares %d: weight %d, want %d", shares, got, want)
		}
	}
}
