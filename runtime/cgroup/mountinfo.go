package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// mountEntry is the part of one /proc/self/mountinfo line that tells where a
// cgroup file system is mounted and what it carries.
type mountEntry struct {
	root   string   // the directory of the file system seen at the mount point
	point  string   // the mount point
	fstype string   // "cgroup" (v1), "cgroup2", "tmpfs", ...
	super  []string // super block options; for v1 they name the controllers
}

// parseMountinfo reads the format of proc(5):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)
//
// Field 7 repeats zero or more times, so the fields after it are found from the
// "-" separator.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+3 > len(f) {
			return nil, fmt.Errorf("mountinfo: malformed line %q", sc.Text())
		}
		e := mountEntry{
			root:   unescapeMount(f[3]),
			point:  unescapeMount(f[4]),
			fstype: f[sep+1],
		}
		if sep+3 < len(f) {
			e.super = strings.Split(f[sep+3], ",")
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMount undoes the octal escapes (\040 for a space, \011, \012, \134) the
// kernel writes for unusual characters in paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// knownV1 are the controllers a v1 mount may carry. Super options that are not
// in this set ("rw", "name=systemd", "xattr", "release_agent=...") are not
// controllers.
var knownV1 = map[string]bool{
	"blkio": true, "cpu": true, "cpuacct": true, "cpuset": true, "devices": true,
	"freezer": true, "hugetlb": true, "memory": true, "misc": true, "net_cls": true,
	"net_prio": true, "perf_event": true, "pids": true, "rdma": true,
}

// layout is where the cgroup file systems of this mount namespace are.
type layout struct {
	unified string            // the cgroup2 mount point, "" if none
	v1      map[string]string // v1 controller -> its mount point
}

// detectLayout picks the cgroup mounts out of a mount table. When a file system is
// mounted twice (a bind mount, a container's view), the mount under
// /sys/fs/cgroup showing the whole tree wins.
func detectLayout(mounts []mountEntry) layout {
	l := layout{v1: map[string]string{}}
	unifiedScore, v1Score := -1, map[string]int{}
	for _, m := range mounts {
		s := mountScore(m)
		switch m.fstype {
		case "cgroup2":
			if s > unifiedScore {
				l.unified, unifiedScore = m.point, s
			}
		case "cgroup":
			for _, opt := range m.super {
				if !knownV1[opt] {
					continue
				}
				if old, ok := v1Score[opt]; !ok || s > old {
					l.v1[opt], v1Score[opt] = m.point, s
				}
			}
		}
	}
	return l
}

func mountScore(m mountEntry) int {
	s := 0
	if m.point == "/sys/fs/cgroup" || strings.HasPrefix(m.point, "/sys/fs/cgroup/") {
		s += 2
	}
	if m.root == "/" {
		s++
	}
	return s
}

// mode names the layout: v2 when only the unified tree exists, hybrid when v1
// controllers sit beside a cgroup2 mount, v1 without any cgroup2 mount.
func (l layout) mode() string {
	switch {
	case len(l.v1) > 0 && l.unified != "":
		return "hybrid"
	case len(l.v1) > 0:
		return "v1"
	case l.unified != "":
		return "v2"
	}
	return "none"
}

// hostLayout reads this process's mount table once.
var hostLayout = sync.OnceValues(func() (layout, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return layout{}, fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	mounts, err := parseMountinfo(f)
	if err != nil {
		return layout{}, fmt.Errorf("cgroup: %w", err)
	}
	return detectLayout(mounts), nil
})

// Mode reports the cgroup layout of this machine: "v2" (one unified tree),
// "v1" (a hierarchy per controller), "hybrid" (v1 hierarchies plus a cgroup2 tree
// without the controllers hako needs) or "none" when no cgroup file system is
// mounted (or the mount table cannot be read).
func Mode() string {
	l, err := hostLayout()
	if err != nil {
		return "none"
	}
	return l.mode()
}
