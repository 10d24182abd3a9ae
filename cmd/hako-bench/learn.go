package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"hako.dev/hako/runtime/image/imagetest"
)

// The lessons' rows: `hako learn 3` rendered with glamour (as on a
// learner's terminal) and `hako check 3/run` on a passing exercise, both
// through hako's dispatch to hako-learn beside it.
const (
	goalLearnRenderMS = 100.0
	goalLearnCheckMS  = 150.0
)

func (b *bench) learnEnv(extra ...string) []string {
	return append(append(b.hakoEnv(), "XDG_STATE_HOME="+filepath.Join(b.base, "xdg"), "LANG=en_US.UTF-8"), extra...)
}

// learnGroup measures learn-render and learn-check; nil for any other name.
func (b *bench) learnGroup(ctx context.Context, name string) []*result {
	switch name {
	case "learn-render":
		r := &result{Name: name, Command: "hako learn 3 (glamour, 100 columns)"}
		if !b.learnReady(r) {
			return []*result{r}
		}
		env := b.learnEnv("CLICOLOR_FORCE=1", "COLUMNS=100")
		b.loop(ctx, r, func(int) (time.Duration, error) {
			d, _, err := b.command(ctx, env, b.hako, "learn", "3")
			return d, err
		})
		return []*result{r}
	case "learn-check":
		r := &result{Name: name, Command: "hako check 3/run (passing: 4 phases, 3 docker commands and a GET)"}
		if !b.learnReady(r) {
			return []*result{r}
		}
		port, err := b.learnWeb()
		defer quiet(b.hakoEnv(), b.hako, "rm", "-f", "web")
		if err != nil {
			r.Error = err.Error()
			return []*result{r}
		}
		env := b.learnEnv("HAKO_LESSON_PORT="+port, "NO_COLOR=1")
		b.loop(ctx, r, func(int) (time.Duration, error) {
			d, _, err := b.command(ctx, env, b.hako, "check", "3/run")
			return d, err
		})
		return []*result{r}
	}
	return nil
}

// learnReady checks for hako-learn beside hako and loads the images.
func (b *bench) learnReady(r *result) bool {
	if _, err := os.Stat(filepath.Join(filepath.Dir(b.hako), "hako-learn")); err != nil {
		r.Skipped = "no hako-learn beside hako (make build)"
		return false
	}
	if err := b.setupHako(); err != nil {
		r.Error = err.Error()
		return false
	}
	if _, err := quiet(b.hakoEnv(), b.hako, "image", "inspect", "httpd:2.4"); err == nil {
		return true
	}
	archive := filepath.Join(b.base, "httpd.tar")
	f, err := os.Create(archive)
	if err == nil {
		err = imagetest.WriteHTTPD(f, "httpd:2.4")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		_, err = quiet(b.hakoEnv(), b.hako, "load", "-i", archive)
	}
	if err != nil {
		r.Error = err.Error()
		return false
	}
	return true
}

// learnWeb runs chapter 3's solution (a container named web, in the bench's own state root) on a free port and waits until it answers.
func (b *bench) learnWeb() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	if _, err := quiet(b.hakoEnv(), b.hako, "run", "-d", "--name", "web", "-p", port+":80", "httpd:2.4"); err != nil {
		return "", err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://127.0.0.1:" + port + "/"); err == nil {
			resp.Body.Close()
			return port, nil
		}
	}
	return "", fmt.Errorf("httpd on port %s does not answer", port)
}

func learnGoals(by map[string]*result, only string) []goal {
	var goals []goal
	for _, g := range []struct {
		row  string
		name string
		ms   float64
	}{{"learn-render", "hako learn 3 rendered under %g ms", goalLearnRenderMS}, {"learn-check", "hako check on a passing exercise under %g ms", goalLearnCheckMS}} {
		if only != "" && only != g.row {
			continue
		}
		gl := goal{Name: fmt.Sprintf(g.name, g.ms), Status: "n/a", Detail: "not measured"}
		if r := by[g.row]; r.ok() {
			gl.Status = metOrMissed(r.Median < g.ms)
			gl.Detail = fmt.Sprintf("median %.2f ms", r.Median)
		}
		goals = append(goals, gl)
	}
	return goals
}
