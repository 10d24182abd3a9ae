package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
)

// setupV1 creates parent/name in every hierarchy, one level at a time, so that
// each new cpuset directory gets its CPUs and memory nodes before the next level
// is made below it.
func (m *Manager) setupV1(l Limits) error {
	for _, c := range l.required() {
		if m.dirOf(c) == "" {
			return controllerMissing(m.Path(), c)
		}
	}
	for _, h := range m.hier {
		rel, err := filepath.Rel(h.mount, h.dir)
		if err != nil {
			return fmt.Errorf("cgroup %s: %w", h.dir, err)
		}
		cur := h.mount
		for _, elem := range strings.Split(rel, string(filepath.Separator)) {
			next := filepath.Join(cur, elem)
			if err := mkdir(next); err != nil {
				return err
			}
			if slices.Contains(h.controllers, "cpuset") {
				if err := inheritCpuset(cur, next); err != nil {
					return err
				}
			}
			cur = next
		}
	}
	return nil
}

// inheritCpuset copies cpuset.cpus and cpuset.mems from parent into a child that
// has none. A v1 cpuset directory starts empty, and the kernel refuses to add a
// process to a cpuset with no CPU or no memory node to run on (ENOSPC).
func inheritCpuset(parent, child string) error {
	for _, file := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := readString(child, file)
		if err != nil {
			return fmt.Errorf("cgroup %s: read %s: %w", child, file, err)
		}
		if cur != "" {
			continue
		}
		val, err := readString(parent, file)
		if err != nil {
			return fmt.Errorf("cgroup %s: read %s: %w", parent, file, err)
		}
		if err := set(child, file, val); err != nil {
			return err
		}
	}
	return nil
}

// applyV1 writes the limits into the memory, cpu and pids hierarchies. Unlimited
// values are written too (-1, "max"), so that reusing a group drops the limits of
// its previous life.
func (m *Manager) applyV1(l Limits) error {
	if dir := m.dirOf("memory"); dir != "" {
		mem := "-1"
		if l.Memory > 0 {
			mem = strconv.FormatInt(l.Memory, 10)
		}
		swap := ""
		switch {
		case l.MemorySwap > 0:
			swap = strconv.FormatInt(l.MemorySwap, 10)
		case l.MemorySwap == -1:
			swap = "-1"
		}
		// The kernel keeps memory.limit_in_bytes <= memory.memsw.limit_in_bytes
		// at every moment. Lowering: memory first. Raising above the current
		// memsw limit: memsw first. Try the first order, fall back to the second.
		err := set(dir, "memory.limit_in_bytes", mem)
		if err != nil && (swap == "" || !errors.Is(err, unix.EINVAL)) {
			return err
		}
		if swap != "" {
			// memory.memsw.* exists only with swap accounting; without it
			// there is no swap to limit.
			if serr := set(dir, "memory.memsw.limit_in_bytes", swap); serr != nil && !errors.Is(serr, fs.ErrNotExist) {
				return serr
			}
			if err != nil {
				if err := set(dir, "memory.limit_in_bytes", mem); err != nil {
					return err
				}
			}
		}
	}
	if dir := m.dirOf("cpu"); dir != "" {
		if l.CPUShares > 0 {
			if err := set(dir, "cpu.shares", strconv.FormatUint(l.CPUShares, 10)); err != nil {
				return err
			}
		}
		if l.CPUQuota > 0 || l.CPUPeriod > 0 {
			if err := set(dir, "cpu.cfs_period_us", strconv.FormatUint(l.period(), 10)); err != nil {
				return err
			}
		}
		quota := "-1"
		if l.CPUQuota > 0 {
			quota = strconv.FormatInt(l.CPUQuota, 10)
		}
		if err := set(dir, "cpu.cfs_quota_us", quota); err != nil {
			return err
		}
	}
	if dir := m.dirOf("pids"); dir != "" {
		if err := set(dir, "pids.max", maxOr(l.PidsLimit)); err != nil {
			return err
		}
	}
	return nil
}

// v1Unlimited: v1 shows "no limit" as the largest page-aligned int64
// (9223372036854771712); anything this large is no limit.
const v1Unlimited = 1 << 62

func (m *Manager) statsV1() (Stats, error) {
	var st Stats
	var err error
	read := func(dst *uint64, v uint64, e error) {
		if err == nil {
			*dst, err = v, e
		}
	}
	if dir := m.dirOf("memory"); dir != "" {
		v, e := readUint(dir, "memory.usage_in_bytes")
		read(&st.MemoryUsage, v, e)
		v, e = readKey(dir, "memory.stat", "total_inactive_file")
		read(&st.MemoryInactiveFile, v, e)
		v, e = readUint(dir, "memory.limit_in_bytes")
		if v >= v1Unlimited {
			v = 0
		}
		read(&st.MemoryLimit, v, e)
	}
	if dir := m.dirOf("pids"); dir != "" {
		v, e := readUint(dir, "pids.current")
		read(&st.PidsCurrent, v, e)
		v, e = readUint(dir, "pids.max")
		read(&st.PidsLimit, v, e)
	}
	if dir := m.dirOf("cpuacct"); dir != "" {
		v, e := readUint(dir, "cpuacct.usage")
		read(&st.CPUUsageNanos, v, e)
	}
	return st, err
}

// setFrozenV1 writes freezer.state until it reads back as wanted. FREEZING is
// the state in between; a task forking at the wrong moment can make the kernel
// give up, so the request is repeated, as runc does.
func (m *Manager) setFrozenV1(frozen bool) error {
	dir := m.dirOf("freezer")
	if dir == "" {
		return fmt.Errorf("cgroup %s: freezer controller not mounted: %w", m.Path(), errdefs.ErrUnsupported)
	}
	want := "THAWED"
	if frozen {
		want = "FROZEN"
	}
	deadline := time.Now().Add(freezeTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if err := set(dir, "freezer.state", want); err != nil {
			return err
		}
		got, err := readString(dir, "freezer.state")
		if err != nil {
			return fmt.Errorf("cgroup %s: read freezer.state: %w", dir, err)
		}
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("cgroup %s: freezer.state %s: still %s after %s", dir, want, got, freezeTimeout)
			if frozen {
				// Leave the group running rather than half frozen.
				err = errors.Join(err, set(dir, "freezer.state", "THAWED"))
			}
			return err
		}
		time.Sleep(wait)
	}
}
