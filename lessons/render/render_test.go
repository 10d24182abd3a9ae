package render_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"hako.dev/hako/chapters"
	"hako.dev/hako/lessons/check"
	"hako.dev/hako/lessons/course"
	"hako.dev/hako/lessons/render"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n%s", name, path, got)
	}
}

func load(t *testing.T) *course.Course {
	c, err := course.Load(chapters.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A failed check of 3/run as check.Parse reads it from testscript's log.
const failedLog = `# image: httpd:2.4 is there (0.004s)
> docker image ls --format '{{.Repository}}:{{.Tag}}'
[stdout]
httpd:2.4
busybox:latest

> stdout '^httpd:2\.4$'
# running: web runs from httpd:2.4 (0.005s)
> docker inspect -f '{{.State.Status}} {{.Config.Image}}' web
[stdout]
exited httpd:2.4

> stdout '^running httpd:2\.4$'
FAIL: /tmp/x/3-run-check.txtar:7: no match for ` + "`^running httpd:2\\.4$`" + ` found in stdout
# published: port 80 is published on $PORT (0.004s)
> docker port web 80
[stdout]
0.0.0.0:8080

> stdout ':'${PORT}'$'
# page: Apache's page answers (0.001s)
> http http://127.0.0.1:${PORT}/
FAIL: /tmp/x/3-run-check.txtar:15: an answer from http://127.0.0.1:8080/; got Get "http://127.0.0.1:8080/": dial tcp 127.0.0.1:8080: connect: connection refused
`

func TestVerdictGolden(t *testing.T) {
	c := load(t)
	e := c.Exercise("3/run")
	phases, _ := course.ParsePhases(e.Check)
	failed := &check.Result{Phases: check.Parse(failedLog, phases)}
	if failed.Passed() {
		t.Fatal("the failed log passed")
	}
	passed := &check.Result{Phases: []check.PhaseResult{{ID: "image", Passed: true}, {ID: "running", Passed: true}, {ID: "published", Passed: true}, {ID: "page", Passed: true}}}
	for _, lang := range []string{"en", "ja"} {
		golden(t, "verdict_fail_"+lang, render.Verdict(e, failed, lang, false))
		golden(t, "verdict_pass_"+lang, render.Verdict(e, passed, lang, false))
	}
}

func TestParse(t *testing.T) {
	c := load(t)
	phases, _ := course.ParsePhases(c.Exercise("3/run").Check)
	got := check.Parse(failedLog, phases)
	want := []check.PhaseResult{
		{ID: "image", Passed: true},
		{ID: "running", Command: "docker inspect -f '{{.State.Status}} {{.Config.Image}}' web", Expected: "no match for `^running httpd:2\\.4$` found in stdout", Found: "exited httpd:2.4"},
		{ID: "published", Passed: true},
		{ID: "page", Command: "http http://127.0.0.1:${PORT}/", Expected: `an answer from http://127.0.0.1:8080/; got Get "http://127.0.0.1:8080/": dial tcp 127.0.0.1:8080: connect: connection refused`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("phase %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	// A phase the log never reached did not pass.
	short := check.Parse("# image: httpd:2.4 is there\n", phases)
	if !short[0].Passed || short[1].Passed {
		t.Errorf("truncated log: %+v", short)
	}
}

func TestEveryTextInBothLanguages(t *testing.T) {
	c := load(t)
	for _, lang := range []string{"en", "ja"} {
		md := render.ChapterList(c, lang, render.Status{Current: "3/run"})
		if lang == "ja" && !strings.Contains(md, "章の一覧") || lang == "en" && !strings.Contains(md, "Chapters") {
			t.Errorf("%s list:\n%s", lang, md)
		}
	}
	if render.Msg("ja", "usage") == render.Msg("en", "usage") {
		t.Error("usage is not translated")
	}
}

func TestLang(t *testing.T) {
	for _, tc := range []struct{ flag, lcAll, lcMsg, lang, want string }{
		{"", "", "", "ja_JP.UTF-8", "ja"},
		{"", "", "", "en_US.UTF-8", "en"},
		{"", "C", "", "ja_JP.UTF-8", "en"},
		{"", "", "ja_JP", "C", "ja"},
		{"en", "ja_JP.UTF-8", "", "", "en"},
		{"", "", "", "", "en"},
	} {
		t.Setenv("LC_ALL", tc.lcAll)
		t.Setenv("LC_MESSAGES", tc.lcMsg)
		t.Setenv("LANG", tc.lang)
		if got := render.Lang(tc.flag); got != tc.want {
			t.Errorf("%+v: %s", tc, got)
		}
	}
}

// Plain output off a terminal, glamour (ANSI) when forced on.
func TestOutput(t *testing.T) {
	var buf bytes.Buffer
	o := render.NewOutput(&buf)
	if o.Color {
		t.Fatal("a buffer is not a terminal")
	}
	o.Show("# Title\n\n- [x] done\n")
	if buf.String() != "# Title\n\n- [x] done\n" {
		t.Errorf("plain: %q", buf.String())
	}
	buf.Reset()
	o.Color = true
	if err := o.Show("# Title\n\n**bold**\n"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\x1b[") || !strings.Contains(buf.String(), "Title") {
		t.Errorf("glamour: %q", buf.String())
	}
}
