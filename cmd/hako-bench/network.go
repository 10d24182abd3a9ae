package main

// The anchors of issue 4: the start-up a container pays for the default
// bridge over --network none (net-start), and requests/s through a published
// port against the same server reached directly at the container's address
// (publish-wrk, with wrk), through the kernel's DNAT (127.0.0.1) and through
// the monitor's userspace proxy ([::1], which DNAT does not take).

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"hako.dev/hako/runtime/network"
	"hako.dev/hako/runtime/state"
)

const (
	goalBridgeMS   = 15.0 // bridge start-up over --network none
	goalPublishPct = 90.0 // published port at least this share of direct
	benchWeb       = "benchweb"
	wrkRounds      = 5 // interleaved rounds of each side
	wrkSeconds     = 3
)

// serveMode: `hako-bench -serve ADDR` is the tiny HTTP server publish-wrk runs
// inside a busybox container (a static copy of this binary, bind-mounted).
func serveMode() {
	if len(os.Args) == 3 && os.Args[1] == "-serve" {
		body := []byte("<h1>It works!</h1>\n")
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
		if err := http.ListenAndServe(os.Args[2], nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// networkGroup measures the issue 4 groups; nil for any other name.
func (b *bench) networkGroup(ctx context.Context, name string) []*result {
	switch name {
	case "net-start":
		return b.netStart(ctx)
	case "publish-wrk":
		return b.publishWrk(ctx)
	}
	return nil
}

func (b *bench) netStart(ctx context.Context) []*result {
	none := &result{Name: "net-start-none", Command: "hako run --rm --network none busybox true"}
	br := &result{Name: "net-start-bridge", Command: "hako run --rm busybox true (default bridge)"}
	rs := []*result{none, br}
	if err := b.setupHako(); err != nil {
		return failAll(rs, err)
	}
	// Interleaved, so that both sides see the same machine.
	var ns, bs []float64
	for i := 0; i < warmups+b.n && ctx.Err() == nil; i++ {
		d1, _, err := b.command(ctx, b.hakoEnv(), b.hako, "run", "--rm", "--network", "none", "busybox", "true")
		if err != nil {
			return failAll(rs, err)
		}
		d2, _, err := b.command(ctx, b.hakoEnv(), b.hako, "run", "--rm", "busybox", "true")
		if err != nil {
			return failAll(rs, err)
		}
		if i >= warmups {
			ns, bs = append(ns, ms(d1)), append(bs, ms(d2))
		}
	}
	none.Unit, br.Unit = "ms", "ms"
	none.stats(ns)
	br.stats(bs)
	return rs
}

var reqPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func (b *bench) publishWrk(ctx context.Context) []*result {
	direct := &result{Name: "publish-direct", Command: "wrk http://CONTAINER-IP:80/ (the floor)"}
	dnat := &result{Name: "publish-dnat", Command: "wrk http://127.0.0.1:PORT/ (-p PORT:80, kernel DNAT)"}
	proxy := &result{Name: "publish-proxy", Command: "wrk http://[::1]:PORT/ (-p PORT:80, monitor's proxy)"}
	rs := []*result{direct, dnat, proxy}
	if _, err := exec.LookPath("wrk"); err != nil {
		for _, r := range rs {
			r.Skipped = "wrk not installed (apt-get install wrk)"
		}
		return rs
	}
	if err := b.setupHako(); err != nil {
		return failAll(rs, err)
	}
	dir := filepath.Join(b.base, "serve")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failAll(rs, err)
	}
	self, _ := os.Executable()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "serve"), "./cmd/hako-bench")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		// Not in the source tree: a copy of this binary, if it is static.
		if cerr := copyFile(self, filepath.Join(dir, "serve")); cerr != nil {
			return failAll(rs, fmt.Errorf("build the server: %v: %s", err, out))
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return failAll(rs, err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	quiet(b.hakoEnv(), b.hako, "rm", "-f", benchWeb)
	defer quiet(b.hakoEnv(), b.hako, "rm", "-f", benchWeb)
	if _, err := quiet(b.hakoEnv(), b.hako, "run", "-d", "--name", benchWeb, "-p", port+":80", "-v", dir+":/srv:ro", "busybox", "/srv/serve", "-serve", ":80"); err != nil {
		return failAll(rs, err)
	}
	ip, err := quiet(b.hakoEnv(), b.hako, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", benchWeb)
	if err != nil {
		return failAll(rs, err)
	}
	ip = strings.TrimSpace(ip)
	urls := map[*result]string{
		direct: "http://" + ip + ":80/",
		dnat:   "http://127.0.0.1:" + port + "/",
		proxy:  "http://[::1]:" + port + "/",
	}
	for r, u := range urls {
		if err := waitHTTP(u); err != nil {
			if r == proxy {
				r.Skipped = "no IPv6 loopback here"
				continue
			}
			return failAll(rs, err)
		}
	}
	samples := map[*result][]float64{}
	for i := 0; i < wrkRounds && ctx.Err() == nil; i++ {
		for _, r := range rs {
			if r.Skipped != "" || r.Error != "" {
				continue
			}
			out, err := exec.CommandContext(ctx, "wrk", "-t", "2", "-c", "16", "-d", strconv.Itoa(wrkSeconds)+"s", urls[r]).CombinedOutput()
			m := reqPerSec.FindSubmatch(out)
			if err != nil || m == nil {
				r.Error = fmt.Sprintf("wrk %s: %v: %s", urls[r], err, oneLine(string(out)))
				continue
			}
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			samples[r] = append(samples[r], v)
		}
	}
	for _, r := range rs {
		if r.Skipped == "" {
			r.Unit = "req/s"
			r.stats(samples[r])
		}
	}
	b.note("publish-wrk: wrk -t 2 -c 16 -d %ds, %d interleaved rounds; the server is a small Go HTTP server in a busybox container on the default bridge", wrkSeconds, wrkRounds)
	return rs
}

func waitHTTP(u string) error {
	c := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := c.Get(u); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return fmt.Errorf("%s does not answer", u)
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// teardownNetworks removes the bench root's bridges and rules.
func (b *bench) teardownNetworks() {
	if b.hakoRoot == "" {
		return
	}
	root, err := state.Open(b.hakoRoot)
	if err != nil {
		return
	}
	if s, err := network.NewStore(root); err == nil {
		if err := s.Teardown(); err != nil {
			b.note("cleanup: networks: %v", err)
		}
	}
}

func networkGoals(by map[string]*result, only string) []goal {
	var goals []goal
	if only == "" || only == "net-start" {
		g := goal{Name: fmt.Sprintf("default bridge adds under %g ms over --network none", goalBridgeMS), Status: "n/a", Detail: "not measured"}
		if n, br := by["net-start-none"], by["net-start-bridge"]; n.ok() && br.ok() {
			d := br.Median - n.Median
			g.Status = metOrMissed(d < goalBridgeMS)
			g.Detail = fmt.Sprintf("%.2f ms vs %.2f ms = +%.2f ms (podman: +235 ms)", br.Median, n.Median, d)
		}
		goals = append(goals, g)
	}
	if only == "" || only == "publish-wrk" {
		g := goal{Name: fmt.Sprintf("published port at least %g%% of direct", goalPublishPct), Status: "n/a", Detail: "not measured"}
		if d, k := by["publish-direct"], by["publish-dnat"]; d.ok() && k.ok() {
			pct := 100 * k.Median / d.Median
			g.Status = metOrMissed(pct >= goalPublishPct)
			g.Detail = fmt.Sprintf("DNAT %.0f vs direct %.0f req/s = %.0f%%", k.Median, d.Median, pct)
			if p := by["publish-proxy"]; p.ok() {
				g.Detail += fmt.Sprintf("; userspace proxy %.0f req/s = %.0f%%", p.Median, 100*p.Median/d.Median)
			}
		}
		goals = append(goals, g)
	}
	return goals
}
