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

	"hako.dev/hako/runtime/errdefs"
)

// setupV2 enables the controllers hako uses down the path root -> parent -> name
// and creates the directories. It returns the controllers the group ended up
// with.
func (m *Manager) setupV2(root, parent string, l Limits) (map[string]bool, error) {
	s, err := readString(root, "cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: read cgroup.controllers: %w", root, err)
	}
	avail := map[string]bool{}
	for _, c := range strings.Fields(s) {
		avail[c] = true
	}
	req := l.required()
	for _, c := range req {
		if !avail[c] {
			return nil, controllerMissing(m.Path(), c)
		}
	}
	var want []string
	for _, c := range v2Wanted {
		if avail[c] {
			want = append(want, c)
		}
	}

	// A controller reaches a child only if every ancestor lists it in
	// cgroup.subtree_control, so enable it in the root, then in parent.
	if _, err := enableV2(root, want, req); err != nil {
		return nil, err
	}
	pdir := filepath.Join(root, parent)
	if err := mkdir(pdir); err != nil {
		return nil, err
	}
	enabled, err := enableV2(pdir, want, req)
	if err != nil {
		return nil, err
	}
	dir := m.hier[0].dir
	if err := mkdir(dir); err != nil {
		return nil, err
	}

	// The group's own cgroup.controllers says exactly what arrived.
	got := map[string]bool{}
	if s, err := readString(dir, "cgroup.controllers"); err == nil {
		for _, c := range strings.Fields(s) {
			got[c] = true
		}
	} else {
		for _, c := range enabled {
			got[c] = true
		}
	}
	for _, c := range req {
		if !got[c] {
			return nil, controllerMissing(dir, c)
		}
	}
	return got, nil
}

// enableV2 makes sure the controllers of want are in dir's cgroup.subtree_control
// and returns those that are. All are asked for in one write; if the kernel
// refuses it, they are asked for one by one, and only a controller the limits
// require makes a refusal an error.
func enableV2(dir string, want, required []string) ([]string, error) {
	s, err := readString(dir, "cgroup.subtree_control")
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: read cgroup.subtree_control: %w", dir, err)
	}
	var have, missing []string
	for _, c := range strings.Fields(s) {
		have = append(have, strings.TrimPrefix(c, "+"))
	}
	for _, c := range want {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return have, nil
	}
	plus := make([]string, len(missing))
	for i, c := range missing {
		plus[i] = "+" + c
	}
	if writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(plus, " ")) == nil {
		return append(have, missing...), nil
	}
	for _, c := range missing {
		err := set(dir, "cgroup.subtree_control", "+"+c)
		if err == nil {
			have = append(have, c)
			continue
		}
		if slices.Contains(required, c) {
			return nil, err
		}
	}
	return have, nil
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cgroup %s: create: %w", dir, unwrapPath(err))
	}
	return nil
}

// applyV2 writes the limits. An unlimited value is written too ("max"), so that
// reusing a group drops the limits of its previous life.
func (m *Manager) applyV2(l Limits, avail map[string]bool) error {
	dir := m.hier[0].dir
	if avail["memory"] {
		if err := set(dir, "memory.max", maxOr(l.Memory)); err != nil {
			return err
		}
		if l.MemorySwap != 0 {
			// v2 limits swap alone; Docker's value is memory plus swap.
			swap := "max"
			if l.MemorySwap > 0 {
				swap = strconv.FormatInt(l.MemorySwap-l.Memory, 10)
			}
			// Without swap accounting the file does not exist, and there is
			// no swap to limit.
			if err := set(dir, "memory.swap.max", swap); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if avail["cpu"] {
		if l.CPUShares > 0 {
			if err := set(dir, "cpu.weight", strconv.FormatUint(sharesToWeight(l.CPUShares), 10)); err != nil {
				return err
			}
		}
		if err := set(dir, "cpu.max", maxOr(l.CPUQuota)+" "+strconv.FormatUint(l.period(), 10)); err != nil {
			return err
		}
	}
	if avail["pids"] {
		if err := set(dir, "pids.max", maxOr(l.PidsLimit)); err != nil {
			return err
		}
	}
	return nil
}

// maxOr formats a positive limit, anything else as v2's "max".
func maxOr(v int64) string {
	if v <= 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// sharesToWeight maps v1 cpu.shares (2..262144, default 1024) linearly onto v2
// cpu.weight (1..10000, default 100), the conversion runc and crun use, so that
// the same docker --cpu-shares gives the same weight on both versions (1024
// becomes 39, not 100: the scales' minimums and maximums match, not the defaults).
func sharesToWeight(shares uint64) uint64 {
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

func (m *Manager) statsV2() (Stats, error) {
	dir := m.hier[0].dir
	var st Stats
	var err error
	read := func(dst *uint64, v uint64, e error) {
		if err == nil {
			*dst, err = v, e
		}
	}
	v, e := readUint(dir, "memory.current")
	read(&st.MemoryUsage, v, e)
	v, e = readKey(dir, "memory.stat", "inactive_file")
	read(&st.MemoryInactiveFile, v, e)
	v, e = readUint(dir, "memory.max")
	read(&st.MemoryLimit, v, e)
	v, e = readUint(dir, "pids.current")
	read(&st.PidsCurrent, v, e)
	v, e = readUint(dir, "pids.max")
	read(&st.PidsLimit, v, e)
	v, e = readKey(dir, "cpu.stat", "usage_usec")
	read(&st.CPUUsageNanos, v*1000, e)
	return st, err
}

// setFrozenV2 writes cgroup.freeze and waits for cgroup.events to report
// "frozen 1" (or 0): freezing takes effect when each task reaches a safe point.
func (m *Manager) setFrozenV2(frozen bool) error {
	dir := m.hier[0].dir
	want := "0"
	if frozen {
		want = "1"
	}
	if err := set(dir, "cgroup.freeze", want); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w (needs Linux 5.2): %w", err, errdefs.ErrUnsupported)
		}
		return err
	}
	deadline := time.Now().Add(freezeTimeout)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		s, err := readString(dir, "cgroup.events")
		if err != nil {
			return fmt.Errorf("cgroup %s: read cgroup.events: %w", dir, err)
		}
		for line := range strings.Lines(s) {
			if strings.TrimSpace(line) == "frozen "+want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: cgroup.freeze %s: not reached after %s", dir, want, freezeTimeout)
		}
		time.Sleep(wait)
	}
}
