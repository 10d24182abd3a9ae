package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
)

// Limits are the resources a container may use, in Docker's units. The zero
// value limits nothing.
type Limits struct {
	Memory int64 // bytes, 0 = unlimited (docker -m)
	// MemorySwap is memory plus swap in bytes, as docker --memory-swap: 0 leaves
	// the kernel default, -1 allows unlimited swap, equal to Memory forbids swap.
	// (Docker itself turns an unset value into twice Memory; that policy belongs
	// to the caller.)
	MemorySwap int64
	CPUQuota   int64  // microseconds per period, 0 = unlimited (docker --cpus 1.5 => 150000 with period 100000)
	CPUPeriod  uint64 // microseconds, default 100000
	CPUShares  uint64 // relative weight, 0 = unset (v2: converted to cpu.weight as runc does)
	PidsLimit  int64  // 0 or -1 = unlimited
}

// defaultPeriod is the kernel's CFS period, which Docker also uses.
const defaultPeriod = 100000

// Stats is a snapshot of what a container uses. Fields of a controller that is
// not available are zero.
type Stats struct {
	MemoryUsage uint64 // bytes charged, page cache included
	// MemoryInactiveFile is the inactive page cache, which can be dropped under
	// pressure; docker stats shows MemoryUsage minus it.
	MemoryInactiveFile uint64
	MemoryLimit        uint64 // bytes, 0 = unlimited
	PidsCurrent        uint64
	PidsLimit          uint64 // 0 = unlimited
	CPUUsageNanos      uint64 // CPU time consumed by all members, ever
}

// hierarchy is one directory of the group: on v2 the only one, on v1 one per
// mounted hierarchy (which may carry several controllers, e.g. cpu,cpuacct).
type hierarchy struct {
	controllers []string // v1: the controllers hako uses on this hierarchy; v2: nil
	mount       string   // the mount point of the hierarchy
	dir         string   // mount/parent/name
}

// Manager is the cgroup of one container. It holds only paths: every method reads
// or writes the kernel's files, so two managers of the same group (one from New,
// one from Load in a later command) see the same state.
type Manager struct {
	v2   bool
	hier []hierarchy
}

// v1Used are the v1 controllers a container joins; hako sets limits through
// memory, cpu and pids and reads stats from cpuacct, the others keep the
// container's processes together for later features (devices, freezer for pause,
// blkio, cpuset).
var v1Used = []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids"}

// v2Wanted are the controllers enabled for hako's subtree on v2, when available.
var v2Wanted = []string{"cpu", "cpuset", "io", "memory", "pids"}

// New creates (or reuses) the cgroup for one container named name under the
// group parent (hako uses parent "hako" and the container's ID as name) and
// writes the limits. On v2 the group is <mount>/<parent>/<name>, and the
// controllers it needs are enabled in cgroup.subtree_control of the root and of
// parent. On v1 and hybrid it is <mount of each controller>/<parent>/<name>.
func New(parent, name string, l Limits) (*Manager, error) {
	lay, err := hostLayout()
	if err != nil {
		return nil, err
	}
	return newWith(lay, parent, name, l)
}

// Load returns the manager of an existing cgroup without changing any limit: a
// later command uses it to join (exec), inspect, signal or delete the group.
func Load(parent, name string) (*Manager, error) {
	lay, err := hostLayout()
	if err != nil {
		return nil, err
	}
	return loadWith(lay, parent, name)
}

func newWith(lay layout, parent, name string, l Limits) (*Manager, error) {
	m, err := managerFor(lay, parent, name)
	if err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", m.Path(), err)
	}
	if m.v2 {
		avail, err := m.setupV2(lay.unified, parent, l)
		if err != nil {
			return nil, err
		}
		if err := m.applyV2(l, avail); err != nil {
			return nil, err
		}
		return m, nil
	}
	if err := m.setupV1(l); err != nil {
		return nil, err
	}
	if err := m.applyV1(l); err != nil {
		return nil, err
	}
	return m, nil
}

func loadWith(lay layout, parent, name string) (*Manager, error) {
	m, err := managerFor(lay, parent, name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(m.Path()); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("cgroup %s: %w", m.Path(), errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("cgroup %s: %w", m.Path(), unwrapPath(err))
	}
	if m.v2 {
		return m, nil
	}
	// A hierarchy mounted after the group was made has no directory for it;
	// leave it out rather than fail every later Add.
	kept := m.hier[:0]
	for _, h := range m.hier {
		if _, err := os.Stat(h.dir); err == nil {
			kept = append(kept, h)
		}
	}
	m.hier = kept
	return m, nil
}

// managerFor computes the directories of parent/name in a layout.
func managerFor(lay layout, parent, name string) (*Manager, error) {
	for _, p := range []string{parent, name} {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\x00") {
			return nil, fmt.Errorf("cgroup %q: not a single path element: %w", p, errdefs.ErrInvalid)
		}
	}
	switch lay.mode() {
	case "v2":
		return &Manager{v2: true, hier: []hierarchy{{
			mount: lay.unified,
			dir:   filepath.Join(lay.unified, parent, name),
		}}}, nil
	case "v1", "hybrid":
		byMount := map[string]*hierarchy{}
		var mounts []string
		for _, c := range v1Used {
			mnt, ok := lay.v1[c]
			if !ok {
				continue
			}
			h := byMount[mnt]
			if h == nil {
				h = &hierarchy{mount: mnt, dir: filepath.Join(mnt, parent, name)}
				byMount[mnt] = h
				mounts = append(mounts, mnt)
			}
			h.controllers = append(h.controllers, c)
		}
		if len(mounts) == 0 {
			return nil, fmt.Errorf("cgroup: no usable v1 controller mounted: %w", errdefs.ErrUnsupported)
		}
		slices.Sort(mounts)
		m := &Manager{}
		for _, mnt := range mounts {
			m.hier = append(m.hier, *byMount[mnt])
		}
		return m, nil
	}
	return nil, fmt.Errorf("cgroup: no cgroup file system mounted: %w", errdefs.ErrUnsupported)
}

func (l Limits) validate() error {
	if l.MemorySwap < -1 {
		return fmt.Errorf("memory+swap limit %d: %w", l.MemorySwap, errdefs.ErrInvalid)
	}
	if l.MemorySwap > 0 {
		if l.Memory <= 0 {
			return fmt.Errorf("a memory+swap limit needs a memory limit: %w", errdefs.ErrInvalid)
		}
		if l.MemorySwap < l.Memory {
			return fmt.Errorf("memory+swap limit %d is below the memory limit %d: %w", l.MemorySwap, l.Memory, errdefs.ErrInvalid)
		}
	}
	if l.CPUQuota > 0 && l.CPUQuota < 1000 {
		return fmt.Errorf("CPU quota %dµs is below the kernel's minimum of 1000µs: %w", l.CPUQuota, errdefs.ErrInvalid)
	}
	if l.CPUPeriod != 0 && (l.CPUPeriod < 1000 || l.CPUPeriod > 1000000) {
		return fmt.Errorf("CPU period %dµs is outside 1000..1000000µs: %w", l.CPUPeriod, errdefs.ErrInvalid)
	}
	return nil
}

// required lists the controllers the limits cannot do without.
func (l Limits) required() []string {
	var r []string
	if l.Memory > 0 || l.MemorySwap > 0 {
		r = append(r, "memory")
	}
	if l.CPUQuota > 0 || l.CPUShares > 0 || l.CPUPeriod > 0 {
		r = append(r, "cpu")
	}
	if l.PidsLimit > 0 {
		r = append(r, "pids")
	}
	return r
}

func (l Limits) period() uint64 {
	if l.CPUPeriod == 0 {
		return defaultPeriod
	}
	return l.CPUPeriod
}

// Path is the main directory of the group, for inspect and debugging: the only
// one on v2, the memory (else pids) hierarchy's on v1.
func (m *Manager) Path() string {
	return m.mainDir()
}

func (m *Manager) mainDir() string {
	if d := m.dirOf("memory"); d != "" {
		return d
	}
	if d := m.dirOf("pids"); d != "" {
		return d
	}
	return m.hier[0].dir
}

// dirOf returns the directory holding a controller's files: on v2 the group's
// directory (whether the files exist depends on subtree_control), on v1 the
// directory in that controller's hierarchy, or "" when it is not mounted.
func (m *Manager) dirOf(controller string) string {
	if m.v2 {
		return m.hier[0].dir
	}
	for _, h := range m.hier {
		if slices.Contains(h.controllers, controller) {
			return h.dir
		}
	}
	return ""
}

// ProcsFiles returns the cgroup.procs files of the group, one on v2 and one per
// hierarchy on v1. A process joins the group by writing its PID ("0" meaning
// itself) to each of them.
func (m *Manager) ProcsFiles() []string {
	out := make([]string, 0, len(m.hier))
	for _, h := range m.hier {
		out = append(out, filepath.Join(h.dir, "cgroup.procs"))
	}
	return out
}

// Add moves a process, with all its threads, into the group: into every
// hierarchy on v1.
func (m *Manager) Add(pid int) error {
	for _, h := range m.hier {
		if err := set(h.dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// Pids lists the processes in the group (v2: cgroup.procs; v1: the pids or
// memory hierarchy, which every member joined too).
func (m *Manager) Pids() ([]int, error) {
	dir := m.mainDir()
	if !m.v2 {
		if d := m.dirOf("pids"); d != "" {
			dir = d
		}
	}
	s, err := readString(dir, "cgroup.procs")
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: read cgroup.procs: %w", dir, err)
	}
	var pids []int
	for _, line := range strings.Fields(s) {
		pid, err := strconv.Atoi(line)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: cgroup.procs: bad pid %q", dir, line)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Kill sends sig to every process in the group. SIGKILL uses cgroup.kill where
// the kernel has it (v2, Linux 5.14), which also catches processes forked while
// killing; otherwise the group is frozen while the signal goes out to each
// member, so that no member can fork a new one in between, and thawed again (a
// frozen process dies of SIGKILL as soon as it thaws).
func (m *Manager) Kill(sig unix.Signal) error {
	if sig == unix.SIGKILL {
		if m.v2 {
			err := set(m.hier[0].dir, "cgroup.kill", "1")
			if err == nil || !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if m.canFreeze() && m.Freeze() == nil {
			err := m.signalAll(sig)
			if terr := m.Thaw(); err == nil {
				err = terr
			}
			return err
		}
	}
	return m.signalAll(sig)
}

func (m *Manager) signalAll(sig unix.Signal) error {
	pids, err := m.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("cgroup %s: signal %d: %w", m.Path(), pid, err)
		}
	}
	return nil
}

// freezeTimeout bounds how long Freeze and Thaw wait for the kernel to report
// the new state.
const freezeTimeout = 5 * time.Second

func (m *Manager) canFreeze() bool {
	if m.v2 {
		_, err := os.Stat(filepath.Join(m.hier[0].dir, "cgroup.freeze"))
		return err == nil
	}
	return m.dirOf("freezer") != ""
}

// Freeze stops every process of the group where it stands (docker pause): v2
// cgroup.freeze, v1 the freezer controller. It returns once the kernel reports
// the group frozen.
func (m *Manager) Freeze() error { return m.setFrozen(true) }

// Thaw lets the processes of a frozen group run again (docker unpause).
func (m *Manager) Thaw() error { return m.setFrozen(false) }

func (m *Manager) setFrozen(frozen bool) error {
	if m.v2 {
		return m.setFrozenV2(frozen)
	}
	return m.setFrozenV1(frozen)
}

// Delete removes the group's directories. Processes that were just killed may
// still be exiting, so a busy directory is retried for a short while; a
// directory that is already gone is not an error.
func (m *Manager) Delete() error {
	deadline := time.Now().Add(2 * time.Second)
	var errs []error
	for _, h := range m.hier {
		for {
			err := unix.Rmdir(h.dir)
			if err == nil || err == unix.ENOENT {
				break
			}
			if err == unix.EBUSY && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			errs = append(errs, fmt.Errorf("cgroup %s: remove: %w", h.dir, err))
			break
		}
	}
	return errors.Join(errs...)
}

// Stats reads what the group uses now.
func (m *Manager) Stats() (Stats, error) {
	if m.v2 {
		return m.statsV2()
	}
	return m.statsV1()
}

// set writes one value to one cgroup file in a single write, as the kernel
// expects, and names the file and the directory in the error.
func set(dir, file, value string) error {
	if err := writeFile(filepath.Join(dir, file), value); err != nil {
		return fmt.Errorf("cgroup %s: set %s: %w", dir, file, err)
	}
	return nil
}

// writeFile never creates a file: a missing cgroup file means a missing
// controller, and the caller wants to know.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return unwrapPath(err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return unwrapPath(err)
}

func readString(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", unwrapPath(err)
	}
	return strings.TrimSpace(string(b)), nil
}

// unwrapPath drops the *fs.PathError around an errno, as the callers already
// name the directory and the file.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readUint reads a file holding one number; "max" (v2) reads as 0, meaning
// unlimited, and a missing file as 0 with no error.
func readUint(dir, file string) (uint64, error) {
	s, err := readString(dir, file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: read %s: %w", dir, file, err)
	}
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: read %s: %w", dir, file, err)
	}
	return v, nil
}

// readKey reads one "key value" line of a flat-keyed file such as memory.stat or
// cpu.stat; a missing file or key reads as 0.
func readKey(dir, file, key string) (uint64, error) {
	s, err := readString(dir, file)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup %s: read %s: %w", dir, file, err)
	}
	for line := range strings.Lines(s) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cgroup %s: read %s: %s: %w", dir, file, key, err)
		}
		return n, nil
	}
	return 0, nil
}

// controllerMissing is the error for a limit whose controller is not there.
func controllerMissing(where, controller string) error {
	return fmt.Errorf("cgroup %s: the %s controller is not available, so the %s limit cannot be applied: %w",
		where, controller, controller, errdefs.ErrUnsupported)
}
