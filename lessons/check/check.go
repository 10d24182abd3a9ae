// Package check runs an exercise's check script against the learner's real
// hako state and turns it into a Verdict: for each "# id" phase of the script,
// passed or failed, and on failure the command, what it expected and what it
// found.
//
// A check is a testscript (github.com/rogpeppe/go-internal/testscript) run in
// process, with ContinueOnError so every phase runs and earns its points even
// when an earlier one failed. Its commands are
//
//	docker ARGS...   the hako CLI beside this program, on the learner's state
//	                 root; in a check only read-only verbs (ps, inspect, logs,
//	                 images, port, ...), so a check never changes that state
//	hako ARGS...     the same
//	http URL         GET with bounded retries; prints the status line, then the body
//	waitfor running|exited|http|log ... bounded waits (see cmdWait)
//
// and testscript's own stdout, stderr, grep, exists, cmp, env, stop, skip;
// conditions [image:REF], [container:NAME] and [running:NAME] look at the state.
// Setup and solution scripts (Mode Act) may use every docker verb.
package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"hako.dev/hako/lessons/course"
)

// Mode says what a script may do.
type Mode int

const (
	// Check may only look: docker is limited to read-only verbs.
	Check Mode = iota
	// Act may change the state (setup and solution scripts).
	Act
)

// Runner runs scripts against one state root.
type Runner struct {
	Hako string   // the hako binary
	Root string   // the state root (HAKO_ROOT)
	Env  []string // extra KEY=VALUE for the scripts (PORT, HAKO_BUNDLE, ...)
	// WorkDir, if set, holds the scripts' work folders ($WORK) and keeps
	// them, so that files a solution writes (a site to mount) outlive it;
	// otherwise each script gets a temp folder removed when it ends.
	WorkDir string
	// HTTPTries and HTTPDelay bound the http command's retries.
	HTTPTries int
	HTTPDelay time.Duration
}

// PhaseResult is one phase's outcome.
type PhaseResult struct {
	ID       string `json:"id"`
	Passed   bool   `json:"passed"`
	Command  string `json:"command,omitempty"`  // the command that failed
	Expected string `json:"expected,omitempty"` // what it wanted
	Found    string `json:"found,omitempty"`    // the output it saw
}

// Result is the outcome of a whole check.
type Result struct {
	Phases []PhaseResult `json:"phases"`
	Log    string        `json:"-"` // testscript's full log
}

// Passed reports whether every phase passed.
func (r *Result) Passed() bool {
	for _, p := range r.Phases {
		if !p.Passed {
			return false
		}
	}
	return len(r.Phases) > 0
}

// Exercise runs ex's check script.
func (r *Runner) Exercise(ctx context.Context, ex *course.Exercise) (*Result, error) {
	log, err := r.Script(ctx, ex.Key()+"/check", ex.Check, Check)
	if err != nil && log == "" {
		return nil, err
	}
	phases, _ := course.ParsePhases(ex.Check)
	return &Result{Phases: Parse(log, phases), Log: log}, nil
}

// Script runs a script and returns testscript's log; the error is non-nil
// when the script failed.
func (r *Runner) Script(ctx context.Context, name, script string, mode Mode) (string, error) {
	tmp, err := os.MkdirTemp(r.WorkDir, "hako-check-")
	if err != nil {
		return "", err
	}
	if r.WorkDir == "" {
		defer os.RemoveAll(tmp)
	}
	file := filepath.Join(tmp, strings.NewReplacer("/", "-").Replace(name)+".txtar")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		return "", err
	}
	work := filepath.Join(tmp, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		return "", err
	}
	t := &scriptT{}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(2 * time.Minute)
	}
	testscript.RunT(t, testscript.Params{
		Files:               []string{file},
		WorkdirRoot:         work,
		RequireExplicitExec: true,
		ContinueOnError:     true,
		Deadline:            deadline,
		Setup: func(env *testscript.Env) error {
			env.Setenv("HAKO_ROOT", r.Root)
			env.Setenv("HAKO_BIN", r.Hako)
			for _, kv := range r.Env {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env.Setenv(k, v)
				}
			}
			return nil
		},
		Cmds:      r.commands(mode),
		Condition: r.condition,
	})
	if t.failed {
		return t.log.String(), fmt.Errorf("%s failed", name)
	}
	return t.log.String(), nil
}

// scriptT is the testscript.T of a run outside `go test`.
type scriptT struct {
	mu     sync.Mutex
	log    bytes.Buffer
	failed bool
}

func (t *scriptT) Skip(args ...any)  { t.Log(args...); runtime.Goexit() }
func (t *scriptT) Fatal(args ...any) { t.Log(args...); t.FailNow() }
func (t *scriptT) Parallel()         {}
func (t *scriptT) Verbose() bool     { return true }
func (t *scriptT) Log(args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintln(&t.log, args...)
}
func (t *scriptT) FailNow() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
	runtime.Goexit()
}

// Run runs f on a goroutine of its own, so that FailNow (Goexit) ends only it.
func (t *scriptT) Run(name string, f func(testscript.T)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(t)
	}()
	<-done
}

// Parse splits a verbose testscript log into the script's phases. testscript
// prints each "# ..." header as written (plus a timing), then "> command"
// lines, their "[stdout]"/"[stderr]" and, for a failed command, "FAIL: file:line: message".
func Parse(log string, phases []course.ScriptPhase) []PhaseResult {
	out := make([]PhaseResult, len(phases))
	seen := make([]bool, len(phases))
	for i, p := range phases {
		out[i] = PhaseResult{ID: p.ID, Passed: true}
	}
	cur := -1
	var lastCmd, block string
	var stdout strings.Builder
	inStd := false
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "#") {
			head := timingRE.ReplaceAllString(line, "")
			for i, p := range phases {
				if i > cur && head == p.Header {
					cur, lastCmd, inStd = i, "", false
					seen[i] = true
					stdout.Reset()
					break
				}
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "> "):
			// The command a verdict names is the last one that ran something,
			// not the stdout assertion that looked at its output.
			inStd = false
			if cmd := strings.TrimPrefix(line, "> "); !isAssertion(cmd) {
				lastCmd = cmd
				stdout.Reset()
			}
		case line == "[stdout]" || line == "[stderr]":
			inStd, block = true, line
			if block == "[stderr]" && stdout.Len() > 0 {
				stdout.WriteString("\n")
			}
		case strings.HasPrefix(line, "FAIL: "):
			inStd = false
			if cur >= 0 && out[cur].Passed {
				msg := line
				if i := strings.Index(line, ": "); i >= 0 {
					msg = line[i+2:]
					if j := strings.Index(msg, ": "); j >= 0 {
						msg = msg[j+2:]
					}
				}
				out[cur] = PhaseResult{ID: out[cur].ID, Command: lastCmd, Expected: msg, Found: strings.TrimRight(stdout.String(), "\n")}
			}
		case inStd:
			if strings.HasPrefix(line, "PASS") && line == "PASS" {
				continue
			}
			stdout.WriteString(line + "\n")
		}
	}
	for i := range out {
		if !seen[i] {
			out[i].Passed = false
			out[i].Expected = "the phase did not run"
		}
	}
	return out
}

var timingRE = regexp.MustCompile(` \([0-9.]+s\)$`)

// isAssertion reports whether a command only looks at the previous output.
func isAssertion(cmd string) bool {
	f := strings.Fields(cmd)
	for len(f) > 0 && (f[0] == "!" || strings.HasPrefix(f[0], "[")) {
		f = f[1:]
	}
	return len(f) > 0 && (f[0] == "stdout" || f[0] == "stderr")
}

// readOnly are the docker verbs a check may use: they only read the state.
var readOnly = map[string]bool{
	"ps": true, "inspect": true, "logs": true, "images": true, "port": true, "top": true, "diff": true,
	"history": true, "version": true, "--version": true,
}

// readOnlySub are read-only verbs under a management command.
var readOnlySub = map[string]map[string]bool{
	"container": {"ls": true, "ps": true, "list": true, "inspect": true, "logs": true, "port": true, "top": true, "diff": true},
	"image":     {"ls": true, "list": true, "inspect": true, "history": true},
	"volume":    {"ls": true, "list": true, "inspect": true},
	"network":   {"ls": true, "list": true, "inspect": true},
}

// allowed reports whether a check may run `docker args...`.
func allowed(args []string) bool {
	var verbs []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "--version" {
			verbs = append(verbs, a)
		}
		if len(verbs) == 2 {
			break
		}
	}
	if len(verbs) == 0 {
		return false
	}
	if readOnly[verbs[0]] {
		return true
	}
	if sub, ok := readOnlySub[verbs[0]]; ok && len(verbs) > 1 {
		return sub[verbs[1]]
	}
	return false
}

func (r *Runner) commands(mode Mode) map[string]func(*testscript.TestScript, bool, []string) {
	docker := func(ts *testscript.TestScript, neg bool, args []string) {
		if mode == Check && !allowed(args) {
			ts.Fatalf("a check may only look: `docker %s` would change the state", strings.Join(args, " "))
		}
		err := ts.Exec(r.Hako, args...)
		if err != nil && !neg {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				ts.Fatalf("the command to succeed; it exited with status %d", ee.ExitCode())
			}
			ts.Fatalf("the command to run: %v", err)
		}
		if err == nil && neg {
			ts.Fatalf("the command to fail; it succeeded")
		}
	}
	return map[string]func(*testscript.TestScript, bool, []string){
		"docker":  docker,
		"hako":    docker,
		"http":    r.cmdHTTP,
		"waitfor": r.cmdWait,
	}
}

// condition answers a script's [image:REF], [container:NAME] and
// [running:NAME]: whether the learner's state has that image, that container,
// that container running.
func (r *Runner) condition(cond string) (bool, error) {
	kind, arg, ok := strings.Cut(cond, ":")
	if !ok || arg == "" {
		return false, fmt.Errorf("unknown condition %q (image:REF, container:NAME, running:NAME)", cond)
	}
	hako := func(a ...string) (string, error) {
		cmd := exec.Command(r.Hako, a...)
		cmd.Env = append(os.Environ(), "HAKO_ROOT="+r.Root)
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	switch kind {
	case "image":
		_, err := hako("image", "inspect", arg)
		return err == nil, nil
	case "container":
		_, err := hako("inspect", "--type", "container", arg)
		return err == nil, nil
	case "running":
		s, err := hako("inspect", "-f", "{{.State.Status}}", arg)
		return err == nil && s == "running", nil
	}
	return false, fmt.Errorf("unknown condition %q (image:REF, container:NAME, running:NAME)", cond)
}

// get fetches url once.
func get(url string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s\n%s", resp.Proto, resp.Status, body), nil
}

// http URL: GET URL, retrying a refused connection a few times (a server that
// was just started may not listen yet); print the status line and the body.
// `! http URL` passes when nothing answers, and tries once.
func (r *Runner) cmdHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: http URL")
	}
	tries, delay := r.HTTPTries, r.HTTPDelay
	if tries <= 0 {
		tries = 5
	}
	if delay <= 0 {
		delay = 100 * time.Millisecond
	}
	if neg {
		tries = 1
	}
	var err error
	var out string
	for i := 0; i < tries; i++ {
		if out, err = get(args[0]); err == nil {
			break
		}
		if i+1 < tries {
			time.Sleep(delay)
		}
	}
	if neg {
		if err == nil {
			fmt.Fprint(ts.Stdout(), out)
			ts.Fatalf("no answer from %s; it answered", args[0])
		}
		return
	}
	if err != nil {
		ts.Fatalf("an answer from %s; got %v", args[0], err)
	}
	fmt.Fprint(ts.Stdout(), out)
}

// waitfor running NAME [SECONDS] | waitfor exited NAME [SECONDS] | waitfor http URL [SECONDS] | waitfor log NAME REGEXP [SECONDS]:
// poll (every 50 ms, 5 s unless told) until the condition holds.
func (r *Runner) cmdWait(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! waitfor")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: waitfor running|exited|http|log ...")
	}
	n := 2
	if args[0] == "log" {
		n = 3
	}
	if len(args) < n {
		ts.Fatalf("usage: waitfor log NAME REGEXP [SECONDS]")
	}
	limit := 5 * time.Second
	if len(args) > n {
		s, err := strconv.Atoi(args[n])
		if err != nil || s <= 0 || s > 60 {
			ts.Fatalf("waitfor: bad seconds %q (1 to 60)", args[n])
		}
		limit = time.Duration(s) * time.Second
	}
	var test func() (bool, string)
	hako := func(a ...string) string {
		cmd := exec.Command(r.Hako, a...)
		cmd.Env = append(os.Environ(), "HAKO_ROOT="+r.Root)
		out, _ := cmd.CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	switch args[0] {
	case "running", "exited":
		test = func() (bool, string) {
			s := hako("inspect", "-f", "{{.State.Status}}", args[1])
			return s == args[0], s
		}
	case "http":
		test = func() (bool, string) {
			_, err := get(args[1])
			return err == nil, fmt.Sprint(err)
		}
	case "log":
		re, err := regexp.Compile("(?m)" + args[2])
		ts.Check(err)
		test = func() (bool, string) {
			s := hako("logs", args[1])
			return re.MatchString(s), s
		}
	default:
		ts.Fatalf("waitfor: unknown condition %q", args[0])
	}
	var last string
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, last = test(); ok {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	fmt.Fprintln(ts.Stdout(), last)
	ts.Fatalf("waitfor %s: not after %s", strings.Join(args[:n], " "), limit)
}
