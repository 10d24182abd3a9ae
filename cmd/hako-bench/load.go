package main

// The anchors of issue 3: loading a ~200 MB image from a docker-archive
// (load-200m) and pulling it from a registry on 127.0.0.1 (pull-local), each
// against the floor or the reference tool, side by side and interleaved run
// by run. Every unpacking goes to a fresh file system mounted for that one
// run (the root file system of the development machine is slow to re-create
// many files right after many were deleted), unmounted right after.

import (
	"archive/tar"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/image/imagetest"
)

const (
	loadWarmups  = 1
	bigRef       = "bench/big:1"
	bigFiles     = 7000             // regular files, over two layers
	bigBytes     = 200 << 20        // their total size
	bigDirFanout = 20               // files per directory
	goalLoadX    = 2.5              // hako load within this factor of tar -x
	freshFSBytes = 3 << 30          // size limit of each fresh file system
	freshInodes  = 64 << 10         // inodes of an ext4 fresh file system
	registryWait = 10 * time.Second // for docker-registry to answer
	pullTimeout  = 10 * time.Minute // per measured command of these rows
)

// groupRows are the rows each group adds; -only takes the group's name.
var groupRows = map[string][]string{
	"load-200m":  {"load-200m", "load-200m-tar", "load-200m-podman"},
	"pull-local": {"pull-local", "pull-local-skopeo"},
	// issue 5's anchors (volumes.go)
	"cp-100m":     {"cp-100m", "cp-100m-cp"},
	"commit-100m": {"commit-100m", "commit-100m-tar"},
}

// bigImage is the generated image: the docker-archive and its layer tars.
type bigImage struct {
	archive string
	layers  []string
	files   int
	bytes   int64
}

// genBig writes the ~200 MB image once: two layers of about 3,500 files
// each, of log-uniformly spread sizes (64 B to 256 KiB before scaling to the
// total), half random and half repetitive bytes so that gzip halves them.
// The same seed gives the same bytes on every run.
func (b *bench) genBig() (*bigImage, error) {
	if b.big != nil || b.bigErr != nil {
		return b.big, b.bigErr
	}
	b.progress("  generating the %d MiB image (%d files, 2 layers) ...", bigBytes>>20, bigFiles)
	b.big, b.bigErr = func() (*bigImage, error) {
		rng := rand.New(rand.NewPCG(3, 200))
		sizes := make([]float64, bigFiles)
		var sum float64
		for i := range sizes {
			sizes[i] = math.Exp(math.Log(64) + rng.Float64()*(math.Log(256<<10)-math.Log(64)))
			sum += sizes[i]
		}
		img := &bigImage{archive: filepath.Join(b.base, "big.tar"), files: bigFiles}
		var layers [][]byte
		per := bigFiles / 2
		for l := 0; l < 2; l++ {
			var files []imagetest.File
			dir := func(name string) {
				files = append(files, imagetest.File{Name: name, Mode: 0o755, Type: tar.TypeDir})
			}
			top := fmt.Sprintf("opt/layer%d/", l)
			dir("opt/")
			dir(top)
			for i := l * per; i < (l+1)*per || (l == 1 && i < bigFiles); i++ {
				k := i - l*per
				d := fmt.Sprintf("%sd%03d/", top, k/bigDirFanout)
				if k%bigDirFanout == 0 {
					dir(d)
				}
				n := int(sizes[i] * bigBytes / sum)
				img.bytes += int64(n)
				files = append(files, imagetest.File{Name: fmt.Sprintf("%sf%04d.dat", d, k), Mode: 0o644, Body: fill(rng, n)})
			}
			layer, err := imagetest.Layer(files)
			if err != nil {
				return nil, err
			}
			p := filepath.Join(b.base, fmt.Sprintf("big-layer%d.tar", l))
			if err := os.WriteFile(p, layer, 0o644); err != nil {
				return nil, err
			}
			img.layers = append(img.layers, p)
			layers = append(layers, layer)
		}
		f, err := os.Create(img.archive)
		if err != nil {
			return nil, err
		}
		err = imagetest.WriteArchive(f, bigRef, layers, []string{"sh"}, []string{imagetest.DefaultPath})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", img.archive, err)
		}
		return img, nil
	}()
	if b.bigErr == nil {
		st, _ := os.Stat(b.big.archive)
		b.note("generated image: %d files, %.0f MiB of file data, docker-archive of %.0f MiB, 2 layers", b.big.files, float64(b.big.bytes)/(1<<20), float64(st.Size())/(1<<20))
	}
	return b.big, b.bigErr
}

// fill returns n bytes: 4 KiB blocks alternately random and a repeated line.
func fill(rng *rand.Rand, n int) []byte {
	buf := make([]byte, n)
	const line = "hako bench filler line, compressible on purpose 0123456789\n"
	for off := 0; off < n; off += 4096 {
		end := min(off+4096, n)
		if (off/4096)%2 == 0 {
			for i := off; i < end; i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < end; j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
		} else {
			for i := off; i < end; i++ {
				buf[i] = line[(i-off)%len(line)]
			}
		}
	}
	return buf
}

// freshFS mounts a new, empty file system on a new directory below base:
// a tmpfs, or an ext4 made with mkfs.ext4 in a sparse file and loop-mounted.
// The returned func unmounts it and removes what it made; it is safe to call
// twice, and cleanup unmounts whatever is left under base in any case.
func (b *bench) freshFS(tag string) (string, func() error, error) {
	b.fsSeq++
	dir := filepath.Join(b.base, fmt.Sprintf("fs-%s-%d", tag, b.fsSeq))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	img := ""
	switch b.loadFS {
	case "tmpfs":
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", int64(freshFSBytes))); err != nil {
			os.Remove(dir)
			return "", nil, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
		}
	case "ext4":
		img = dir + ".img"
		f, err := os.Create(img)
		if err == nil {
			err = f.Truncate(freshFSBytes)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err == nil {
			_, err = quiet(nil, "mkfs.ext4", "-q", "-F", "-N", fmt.Sprint(freshInodes), "-E", "lazy_itable_init=0,lazy_journal_init=0", img)
		}
		if err == nil {
			_, err = quiet(nil, "mount", "-o", "loop", img, dir)
		}
		if err != nil {
			os.Remove(img)
			os.Remove(dir)
			return "", nil, err
		}
	default:
		os.Remove(dir)
		return "", nil, fmt.Errorf("unknown -load-fs %q", b.loadFS)
	}
	done := false
	return dir, func() error {
		if done {
			return nil
		}
		done = true
		err := unix.Unmount(dir, 0)
		if err != nil {
			// Something still holds it (a command killed half way): detach.
			err = unix.Unmount(dir, unix.MNT_DETACH)
		}
		if err != nil {
			return fmt.Errorf("umount %s: %w", dir, err)
		}
		if img != "" {
			os.Remove(img)
		}
		return os.Remove(dir)
	}, nil
}

// side is one tool of a group: a row and how one run of it goes in a fresh
// file system mounted on dir.
type side struct {
	r       *result
	run     func(ctx context.Context, dir string) (time.Duration, error)
	samples []float64
}

// interleave runs the sides in turn, loadWarmups+nLoad times, each run on a
// fresh file system; a side that fails stops, the others go on.
func (b *bench) interleave(ctx context.Context, tag string, sides []*side) {
	if !b.fsNoted {
		b.fsNoted = true
		b.note("load-200m, pull-local: each run unpacks into a fresh %s mounted for it (%d warm-up, then %d runs, interleaved)", b.loadFS, loadWarmups, b.nLoad)
	}
	for i := 0; i < loadWarmups+b.nLoad; i++ {
		for _, s := range sides {
			if s.r.Error != "" || s.r.Skipped != "" {
				continue
			}
			if ctx.Err() != nil {
				s.r.Error = "interrupted"
				continue
			}
			d, err := func() (time.Duration, error) {
				dir, umount, err := b.freshFS(tag)
				if err != nil {
					return 0, err
				}
				d, err := s.run(ctx, dir)
				if uerr := umount(); uerr != nil && err == nil {
					err = uerr
				}
				return d, err
			}()
			if err != nil {
				phase := "warm-up"
				if i >= loadWarmups {
					phase = "run"
				}
				s.r.Error = fmt.Sprintf("%s %d: %v", phase, i+1, err)
				continue
			}
			if i >= loadWarmups {
				s.samples = append(s.samples, ms(d))
			}
		}
	}
	for _, s := range sides {
		s.r.Unit = "ms"
		s.r.stats(s.samples)
	}
}

// timed runs argv like command, with a longer time limit.
func (b *bench) timed(ctx context.Context, env []string, argv ...string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	d, _, err := b.command(ctx, env, argv...)
	return d, err
}

func (b *bench) measureGroup(ctx context.Context, name string) []*result {
	switch name {
	case "load-200m":
		return b.load200m(ctx)
	case "pull-local":
		return b.pullLocal(ctx)
	}
	return []*result{{Name: name, Error: "unknown row"}}
}

func failAll(rs []*result, err error) []*result {
	for _, r := range rs {
		if r.Skipped == "" {
			r.Error = err.Error()
		}
	}
	return rs
}

func (b *bench) load200m(ctx context.Context) []*result {
	hr := &result{Name: "load-200m", Command: "hako load -i big.tar"}
	tr := &result{Name: "load-200m-tar", Command: "tar -xf LAYER (x2, the floor)"}
	pr := &result{Name: "load-200m-podman", Command: "podman load -i big.tar"}
	rs := []*result{hr, tr, pr}
	podman, err := exec.LookPath("podman")
	if err != nil {
		pr.Skipped = "skipped: podman not installed"
	}
	img, err := b.genBig()
	if err != nil {
		return failAll(rs, err)
	}
	sides := []*side{
		{r: hr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			return b.timed(ctx, []string{"HAKO_ROOT=" + filepath.Join(dir, "root"), "HAKO_OFFLINE=1"}, b.hako, "load", "-i", img.archive)
		}},
		{r: tr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			var total time.Duration
			for i, l := range img.layers {
				d := filepath.Join(dir, fmt.Sprint(i))
				if err := os.Mkdir(d, 0o755); err != nil {
					return 0, err
				}
				t, err := b.timed(ctx, nil, "tar", "-xf", l, "-C", d)
				total += t
				if err != nil {
					return total, err
				}
			}
			return total, nil
		}},
		{r: pr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			return b.timed(ctx, nil, podman, "--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
				"--storage-driver", "overlay", "--events-backend", "none", "load", "-q", "-i", img.archive)
		}},
	}
	b.interleave(ctx, "load", sides)
	return rs
}

// registry is Debian's docker-registry, started for pull-local.
type registry struct {
	cmd  *exec.Cmd
	log  *os.File
	addr string
}

func (b *bench) startRegistry() (*registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry is not installed (Debian package docker-registry)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(b.base, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	b.reg = &registry{cmd: cmd, log: logf, addr: addr}
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(registryWait); ; time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return b.reg, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("docker-registry did not answer on %s: %v", addr, err)
		}
	}
}

// stopRegistry kills the registry by its PID and reaps it.
func (b *bench) stopRegistry() {
	if b.reg == nil {
		return
	}
	if err := b.reg.cmd.Process.Kill(); err != nil {
		b.note("cleanup: kill docker-registry (PID %d): %v", b.reg.cmd.Process.Pid, err)
	}
	b.reg.cmd.Wait()
	b.reg.log.Close()
	b.reg = nil
}

func (b *bench) pullLocal(ctx context.Context) []*result {
	hr := &result{Name: "pull-local", Command: "hako pull 127.0.0.1:PORT/bench/big:1"}
	sr := &result{Name: "pull-local-skopeo", Command: "skopeo copy docker://... dir:DIR"}
	rs := []*result{hr, sr}
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		sr.Skipped = "skipped: skopeo not installed"
	}
	img, err := b.genBig()
	if err != nil {
		return failAll(rs, err)
	}
	reg, err := b.startRegistry()
	defer b.stopRegistry()
	if err != nil {
		return failAll(rs, err)
	}
	ref := reg.addr + "/bench/big:1"
	hr.Command = "hako pull " + ref
	sr.Command = "skopeo copy docker://" + ref + " dir:DIR"

	// Push once, from a state root on its own fresh file system.
	b.progress("  pushing the image to %s ...", ref)
	if err := func() error {
		dir, umount, err := b.freshFS("push")
		if err != nil {
			return err
		}
		defer umount()
		env := []string{"HAKO_ROOT=" + filepath.Join(dir, "root"), "HAKO_OFFLINE=1"}
		start := time.Now()
		for _, argv := range [][]string{
			{b.hako, "load", "-q", "-i", img.archive},
			{b.hako, "tag", bigRef, ref},
			{b.hako, "push", ref},
		} {
			if _, err := b.timed(ctx, env, argv...); err != nil {
				return err
			}
		}
		b.note("pull-local: loading, tagging and pushing the image once took %.1f s", time.Since(start).Seconds())
		return umount()
	}(); err != nil {
		return failAll(rs, fmt.Errorf("push to the registry: %w", err))
	}

	sides := []*side{
		{r: hr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			return b.timed(ctx, []string{"HAKO_ROOT=" + filepath.Join(dir, "root"), "HAKO_OFFLINE=1"}, b.hako, "pull", "-q", ref)
		}},
		{r: sr, run: func(ctx context.Context, dir string) (time.Duration, error) {
			return b.timed(ctx, nil, skopeo, "--insecure-policy", "copy", "-q", "--src-tls-verify=false",
				"docker://"+ref, "dir:"+filepath.Join(dir, "img"))
		}},
	}
	b.interleave(ctx, "pull", sides)
	return rs
}

// loadGoals are the goal lines of the two groups.
func loadGoals(by map[string]*result, only string) []goal {
	var goals []goal
	ratio := func(name, a, b string, ok func(x float64) bool) goal {
		g := goal{Name: name, Status: "n/a"}
		ra, rb := by[a], by[b]
		switch {
		case ra.ok() && rb.ok():
			x := ra.Median / rb.Median
			g.Status = metOrMissed(ok(x))
			g.Detail = fmt.Sprintf("%.0f ms vs %.0f ms = %.2fx", ra.Median, rb.Median, x)
		case rb != nil && rb.Skipped != "":
			g.Detail = strings.TrimPrefix(rb.Skipped, "skipped: ")
		default:
			g.Detail = "needs both " + a + " and " + b + " measured in this run"
		}
		return g
	}
	if only == "" || only == "load-200m" {
		goals = append(goals,
			ratio(fmt.Sprintf("hako load within %gx of tar -x", goalLoadX), "load-200m", "load-200m-tar", func(x float64) bool { return x <= goalLoadX }),
			ratio("hako load faster than podman load", "load-200m", "load-200m-podman", func(x float64) bool { return x < 1 }))
	}
	if only == "" || only == "pull-local" {
		goals = append(goals,
			ratio("hako pull not slower than skopeo copy", "pull-local", "pull-local-skopeo", func(x float64) bool { return x <= 1 }))
	}
	return goals
}
