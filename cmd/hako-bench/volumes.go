package main

// The anchors of issue 5: copying 100 MB out of a running container
// (cp-100m) against cp -a of the same tree through /proc/PID/root, and
// committing it (commit-100m) against tar -c of the container's upper dir.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

const (
	benchCP      = "benchcp"  // the container both rows use
	benchImg     = "benchimg" // repository of the committed images
	goalCPX      = 1.5        // hako cp within this factor of cp -a
	volFillFiles = 1000       // files of the tree
	volFillBytes = 100000     // bytes of each
)

// volumeGroup measures the issue 5 groups; nil for any other name.
func (b *bench) volumeGroup(ctx context.Context, name string) []*result {
	switch name {
	case "cp-100m":
		return b.cp100m(ctx)
	case "commit-100m":
		return b.commit100m(ctx)
	}
	return nil
}

// startBenchCP runs benchcp and fills /big in it; the returned func removes
// it (and is to be called on failure too).
func (b *bench) startBenchCP(ctx context.Context) (func(), error) {
	if err := b.setupHako(); err != nil {
		return func() {}, err
	}
	quiet(b.hakoEnv(), b.hako, "rm", "-f", benchCP) // a leftover of an earlier run
	remove := func() {
		if out, err := quiet(b.hakoEnv(), b.hako, "rm", "-f", benchCP); err != nil && !strings.Contains(strings.ToLower(out), "no such container") {
			b.note("cleanup: %v", err)
		}
	}
	if _, err := quiet(b.hakoEnv(), b.hako, "run", "-d", "--name", benchCP, "busybox", "sleep", "300"); err != nil {
		remove()
		return func() {}, err
	}
	script := fmt.Sprintf("mkdir /big && for i in $(seq %d); do head -c %d /dev/urandom > /big/f$i || exit 1; done", volFillFiles, volFillBytes)
	if _, err := b.timed(ctx, b.hakoEnv(), b.hako, "exec", benchCP, "sh", "-c", script); err != nil {
		remove()
		return func() {}, fmt.Errorf("fill /big: %w", err)
	}
	return remove, nil
}

func (b *bench) inspectBenchCP(format string) (string, error) {
	out, err := quiet(b.hakoEnv(), b.hako, "inspect", "-f", format, benchCP)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(out)
	if s == "" || s == "<no value>" {
		return "", fmt.Errorf("hako inspect -f %s %s: empty", format, benchCP)
	}
	return s, nil
}

func (b *bench) cp100m(ctx context.Context) []*result {
	hr := &result{Name: "cp-100m", Command: "hako cp benchcp:/big DIR (100 MB, 1,000 files)"}
	cr := &result{Name: "cp-100m-cp", Command: "cp -a /proc/PID/root/big DIR (the floor)"}
	rs := []*result{hr, cr}
	remove, err := b.startBenchCP(ctx)
	defer remove()
	if err != nil {
		return failAll(rs, err)
	}
	pid, err := b.inspectBenchCP("{{.State.Pid}}")
	if err != nil {
		return failAll(rs, err)
	}
	src := filepath.Join("/proc", pid, "root", "big")
	if !b.fsNoted {
		b.fsNoted = true
		b.note("cp-100m: each run copies into a fresh %s mounted for it (%d warm-up, then %d runs, interleaved)", b.loadFS, loadWarmups, b.nLoad)
	}
	sides := []*side{
		{r: hr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			return b.timed(ctx, b.hakoEnv(), b.hako, "cp", benchCP+":/big", filepath.Join(dir, "big"))
		}},
		{r: cr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			return b.timed(ctx, nil, "cp", "-a", src, filepath.Join(dir, "big"))
		}},
	}
	b.interleave(ctx, "cp", sides)
	return rs
}

func (b *bench) commit100m(ctx context.Context) []*result {
	hr := &result{Name: "commit-100m", Command: "hako commit benchcp benchimg:N (100 MB, 1,000 files)"}
	tr := &result{Name: "commit-100m-tar", Command: "tar -cf - -C UPPER . | cat >/dev/null (the floor)"}
	rs := []*result{hr, tr}
	remove, err := b.startBenchCP(ctx)
	defer remove()
	if err != nil {
		return failAll(rs, err)
	}
	upper, err := b.inspectBenchCP("{{.GraphDriver.Data.UpperDir}}")
	if err != nil {
		return failAll(rs, err)
	}
	var made []string
	defer func() {
		for _, ref := range made {
			if _, err := quiet(b.hakoEnv(), b.hako, "rmi", ref); err != nil {
				b.note("cleanup: %v", err)
			}
		}
	}()
	var hs, ts []float64
	for i := 0; i < loadWarmups+b.nLoad; i++ {
		if ctx.Err() != nil {
			failAll(rs, fmt.Errorf("interrupted"))
			break
		}
		phase := "warm-up"
		if i >= loadWarmups {
			phase = "run"
		}
		if hr.Error == "" {
			ref := fmt.Sprintf("%s:%d", benchImg, i+1)
			d, err := b.timed(ctx, b.hakoEnv(), b.hako, "commit", benchCP, ref)
			if err != nil {
				hr.Error = fmt.Sprintf("%s %d: %v", phase, i+1, err)
			} else {
				if _, err := quiet(b.hakoEnv(), b.hako, "rmi", ref); err != nil {
					made = append(made, ref)
					b.note("commit-100m: %v", err)
				}
				if i >= loadWarmups {
					hs = append(hs, ms(d))
				}
			}
		}
		if tr.Error == "" {
			// Not tar -cf /dev/null: GNU tar then skips reading the files.
			d, err := b.timed(ctx, nil, "sh", "-c", `tar -cf - -C "$1" . | cat >/dev/null`, "sh", upper)
			if err != nil {
				tr.Error = fmt.Sprintf("%s %d: %v", phase, i+1, err)
			} else if i >= loadWarmups {
				ts = append(ts, ms(d))
			}
		}
	}
	hr.Unit, tr.Unit = "ms", "ms"
	hr.stats(hs)
	tr.stats(ts)
	return rs
}

// volumeGoals are the goal lines of the issue 5 groups (commit-100m has none).
func volumeGoals(by map[string]*result, only string) []goal {
	if only != "" && only != "cp-100m" {
		return nil
	}
	g := goal{Name: fmt.Sprintf("hako cp within %gx of cp -a", goalCPX), Status: "n/a"}
	hr, cr := by["cp-100m"], by["cp-100m-cp"]
	if hr.ok() && cr.ok() {
		x := hr.Median / cr.Median
		g.Status = metOrMissed(x <= goalCPX)
		g.Detail = fmt.Sprintf("%.0f ms vs %.0f ms = %.2fx", hr.Median, cr.Median, x)
	} else {
		g.Detail = "needs both cp-100m and cp-100m-cp measured in this run"
	}
	return []goal{g}
}
