// Command hako-bench measures hako's hot paths against crun and runc, in one
// run and side by side: the median and p90 wall-clock time of whole processes
// (`hako run --rm busybox true`, `crun run`, `runc run`, `hako oci run` on
// the same bundle, `hako --version`) and the resident memory of a detached
// container's monitor. `make bench` runs it as
//
//	go run ./cmd/hako-bench -hako bin/hako
//
// Everything it creates (a temp state root, an OCI bundle, runtime state,
// containers) is removed before it exits, also on failure or Ctrl-C. It exits
// 1 when a measurement failed, 2 on bad flags, and 0 otherwise (a missed goal
// is a result, not a failure).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// warmups is how many untimed runs precede the measured ones.
const warmups = 3

// Goals.
const (
	goalRunFactor  = 2.0 // hako run --rm within this factor of crun run
	goalVersionMS  = 15.0
	goalMonitorMiB = 4.0
)

// rowNames are the rows in the order they run and print; -only takes one.
var rowNames = []string{"hako-run", "crun-run", "runc-run", "hako-oci-run", "hako-version", "monitor-rss", "load-200m", "pull-local", "cp-100m", "commit-100m", "net-start", "publish-wrk", "learn-render", "learn-check"}

// result is one row of the table.
type result struct {
	Name    string    `json:"name"`
	Command string    `json:"command"`
	Unit    string    `json:"unit"` // "ms" or "MiB"
	N       int       `json:"n"`
	Median  float64   `json:"median"`
	P90     float64   `json:"p90"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples,omitempty"`
	Skipped string    `json:"skipped,omitempty"` // why the row was not measured
	Error   string    `json:"error,omitempty"`   // why the measurement failed
}

func (r *result) ok() bool { return r != nil && r.Skipped == "" && r.Error == "" && r.N > 0 }

// goal is one final met/missed line.
type goal struct {
	Name   string `json:"name"`
	Status string `json:"status"` // "met", "missed" or "n/a"
	Detail string `json:"detail"`
}

// report is what -json prints.
type report struct {
	N          int       `json:"n"`
	Warmups    int       `json:"warmups"`
	Results    []*result `json:"results"`
	Goals      []goal    `json:"goals"`
	Notes      []string  `json:"notes,omitempty"`
	References []string  `json:"references"`
}

// references are the figures the author measured on this kind of machine.
var references = []string{
	"crun run 11 ms", "runc run 30 ms", "podman run --rm 180 ms", "conmon 2 MiB RSS",
	"podman --version 25 ms", "bare Go clone+chroot 3.3 ms",
	"tar -x 0.29 s and podman load 1.63 s of a 105 MiB layer of 7,400 files on fresh ext4",
}

func main() {
	serveMode()
	os.Exit(run())
}

func run() int {
	hako := flag.String("hako", "bin/hako", "path to the hako binary")
	n := flag.Int("n", 30, "measured runs per row (after 3 warm-ups)")
	only := flag.String("only", "", "run one row only: "+strings.Join(rowNames, ", "))
	asJSON := flag.Bool("json", false, "print machine-readable results")
	nLoad := flag.Int("n-load", 5, "measured runs of the load-200m and pull-local rows (after 1 warm-up)")
	loadFS := flag.String("load-fs", "tmpfs", "fresh file system of each load-200m and pull-local run: tmpfs, or ext4 (loop-mounted, needs mkfs.ext4)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "hako-bench: unexpected arguments %q\n", flag.Args())
		return 2
	}
	if *n < 1 {
		fmt.Fprintln(os.Stderr, "hako-bench: -n must be at least 1")
		return 2
	}
	if *nLoad < 1 {
		fmt.Fprintln(os.Stderr, "hako-bench: -n-load must be at least 1")
		return 2
	}
	if *loadFS != "tmpfs" && *loadFS != "ext4" {
		fmt.Fprintf(os.Stderr, "hako-bench: -load-fs must be tmpfs or ext4, not %q\n", *loadFS)
		return 2
	}
	if *only != "" && !contains(rowNames, *only) {
		fmt.Fprintf(os.Stderr, "hako-bench: unknown row %q (one of %s)\n", *only, strings.Join(rowNames, ", "))
		return 2
	}
	hakoPath, err := filepath.Abs(*hako)
	if err == nil {
		_, err = os.Stat(hakoPath)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hako-bench: hako binary: %v (run `make build` first)\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := newBench(hakoPath, *n)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hako-bench: %v\n", err)
		return 1
	}
	b.verbose = !*asJSON
	b.nLoad, b.loadFS = *nLoad, *loadFS
	defer b.cleanup()

	want := func(name string) bool { return *only == "" || *only == name }
	var results []*result
	byName := map[string]*result{}
	for _, name := range rowNames {
		if !want(name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		b.progress("measuring %s ...", name)
		var rs []*result
		if vs := b.volumeGroup(ctx, name); vs != nil {
			rs = vs
		} else if ns := b.networkGroup(ctx, name); ns != nil {
			rs = ns
		} else if ls := b.learnGroup(ctx, name); ls != nil {
			rs = ls
		} else if _, ok := groupRows[name]; ok {
			rs = b.measureGroup(ctx, name)
		} else {
			rs = []*result{b.measure(ctx, name)}
		}
		for _, r := range rs {
			results = append(results, r)
			byName[r.Name] = r
			if r.Error != "" {
				b.progress("  %s failed: %s", r.Name, r.Error)
			}
		}
	}
	if ctx.Err() != nil {
		b.note("interrupted; results are partial")
	}
	goals := computeGoals(byName, *only)

	// Clean up before printing, so that notes about leftovers are printed too.
	b.cleanup()

	if *asJSON {
		rep := report{N: *n, Warmups: warmups, Results: results, Goals: goals, Notes: b.notes, References: references}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(os.Stderr, "hako-bench: %v\n", err)
			return 1
		}
	} else {
		printTable(os.Stdout, *n, results, goals, b.notes)
	}
	for _, r := range results {
		if r.Error != "" {
			return 1
		}
	}
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

func (b *bench) measure(ctx context.Context, name string) *result {
	switch name {
	case "hako-run":
		return b.hakoRun(ctx)
	case "crun-run":
		return b.ociRuntime(ctx, "crun")
	case "runc-run":
		return b.ociRuntime(ctx, "runc")
	case "hako-oci-run":
		return b.hakoOCIRun(ctx)
	case "hako-version":
		return b.hakoVersion(ctx)
	case "monitor-rss":
		return b.monitorRSS(ctx)
	}
	return &result{Name: name, Error: "unknown row"}
}

func computeGoals(by map[string]*result, only string) []goal {
	var goals []goal
	g := goal{Name: fmt.Sprintf("hako run --rm within %gx of crun run", goalRunFactor)}
	hr, cr := by["hako-run"], by["crun-run"]
	switch {
	case hr.ok() && cr.ok():
		ratio := hr.Median / cr.Median
		g.Status = metOrMissed(ratio <= goalRunFactor)
		g.Detail = fmt.Sprintf("%.2f ms vs %.2f ms = %.2fx", hr.Median, cr.Median, ratio)
	default:
		g.Status = "n/a"
		g.Detail = "needs both hako-run and crun-run measured in this run"
		if cr != nil && cr.Skipped != "" {
			g.Detail = "crun " + cr.Skipped
		}
	}
	if only == "" || only == "hako-run" || only == "crun-run" {
		goals = append(goals, g)
	}
	if only == "" || only == "hako-version" {
		g = goal{Name: fmt.Sprintf("hako --version under %g ms", goalVersionMS), Status: "n/a", Detail: "not measured"}
		if r := by["hako-version"]; r.ok() {
			g.Status = metOrMissed(r.Median < goalVersionMS)
			g.Detail = fmt.Sprintf("median %.2f ms", r.Median)
		}
		goals = append(goals, g)
	}
	if only == "" || only == "monitor-rss" {
		g = goal{Name: fmt.Sprintf("monitor under %g MiB RSS", goalMonitorMiB), Status: "n/a", Detail: "not measured"}
		if r := by["monitor-rss"]; r.ok() {
			g.Status = metOrMissed(r.Median < goalMonitorMiB)
			g.Detail = fmt.Sprintf("median %.2f MiB", r.Median)
		}
		goals = append(goals, g)
	}
	goals = append(append(goals, loadGoals(by, only)...), volumeGoals(by, only)...)
	return append(append(goals, networkGoals(by, only)...), learnGoals(by, only)...)
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

func printTable(w io.Writer, n int, results []*result, goals []goal, notes []string) {
	fmt.Fprintf(w, "hako-bench: median and p90 of %d runs each (load-200m, pull-local, cp-100m, commit-100m: N below), after %d warm-ups\n\n", n, warmups)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tCOMMAND\tN\tMEDIAN\tP90\tMIN\tMAX\t")
	for _, r := range results {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%s\n", r.Name, r.Command, r.Skipped)
		case r.Error != "" && r.N == 0:
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\tFAILED\n", r.Name, r.Command)
		default:
			f := func(v float64) string { return fmt.Sprintf("%.2f %s", v, r.Unit) }
			tail := ""
			if r.Error != "" {
				tail = "FAILED (partial)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Command, r.N, f(r.Median), f(r.P90), f(r.Min), f(r.Max), tail)
		}
	}
	tw.Flush()
	var failed []*result
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintln(w)
		for _, r := range failed {
			fmt.Fprintf(w, "error: %s: %s\n", r.Name, r.Error)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, s := range notes {
			fmt.Fprintf(w, "note: %s\n", s)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "reference (issue's author, this kind of machine): %s\n", strings.Join(references, ", "))
	fmt.Fprintln(w)
	for _, g := range goals {
		fmt.Fprintf(w, "goal: %s: %s (%s)\n", g.Name, g.Status, g.Detail)
	}
}

// stats fills the summary fields of r from samples.
func (r *result) stats(samples []float64) {
	r.Samples = samples
	r.N = len(samples)
	if r.N == 0 {
		return
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	r.Min, r.Max = s[0], s[len(s)-1]
	if len(s)%2 == 1 {
		r.Median = s[len(s)/2]
	} else {
		r.Median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	// p90 by nearest rank.
	k := (9*len(s) + 9) / 10 // ceil(0.9*n)
	r.P90 = s[k-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
