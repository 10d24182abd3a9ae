package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"hako.dev/hako/lessons/grade"
	"hako.dev/hako/runtime/image/imagetest"
)

// The end-to-end tests drive the real binaries: hako and hako-learn are built
// once into a temp bin folder (with docker linked to hako), the course's
// images are the offline fixtures under their real names, and each script
// has its own state root, progress folder and free ports.

var (
	buildOnce sync.Once
	binDir    string
	bundle    string
	buildErr  error
)

func build(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the runtime needs root")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "hako-learn-test-")
		if buildErr != nil {
			return
		}
		for _, p := range []struct{ out, pkg string }{{"hako", "../hako"}, {"hako-learn", "."}} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, p.out), p.pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
				return
			}
		}
		if buildErr = os.Symlink("hako", filepath.Join(binDir, "docker")); buildErr != nil {
			return
		}
		bundle, buildErr = makeBundle(binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// makeBundle writes the fixtures, loads them into a scratch root and saves
// them with `hako course images --save`, as an instructor makes a bundle.
func makeBundle(dir string) (string, error) {
	root := filepath.Join(dir, "bundle-root")
	defer os.RemoveAll(root)
	for name, w := range map[string]func(*os.File) error{
		"busybox.tar": func(f *os.File) error { return imagetest.WriteBusybox(f, "busybox:latest") },
		"httpd.tar":   func(f *os.File) error { return imagetest.WriteHTTPD(f, "httpd:2.4") },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		err = w(f)
		f.Close()
		if err != nil {
			return "", err
		}
		if out, err := hakoCmd(root, "load", "-i", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			return "", fmt.Errorf("load %s: %v: %s", name, err, out)
		}
	}
	b := filepath.Join(dir, "bundle.tar")
	if out, err := hakoCmd(root, "course", "images", "--save", b).CombinedOutput(); err != nil {
		return "", fmt.Errorf("course images --save: %v: %s", err, out)
	}
	return b, nil
}

func hakoCmd(root string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "hako"), args...)
	cmd.Env = append(os.Environ(), "HAKO_ROOT="+root, "HAKO_OFFLINE=1", "XDG_STATE_HOME="+filepath.Join(root, "xdg"))
	return cmd
}

// cleanRootT removes every container of a state root, also when a test failed.
func cleanRootT(root string) {
	cleanRoot(filepath.Join(binDir, "hako"), root)
}

func freePortT(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestLearnerScripts walks learners through the course (testdata/script).
func TestLearnerScripts(t *testing.T) {
	build(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			root := filepath.Join(env.WorkDir, "state")
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("HAKO_ROOT", root)
			env.Setenv("HAKO_OFFLINE", "1")
			env.Setenv("XDG_STATE_HOME", filepath.Join(env.WorkDir, "xdg"))
			env.Setenv("BUNDLE", bundle)
			env.Setenv("NO_COLOR", "1")
			env.Setenv("LANG", "C.UTF-8")
			env.Setenv("HAKO_LESSON_PORT", freePortT(t))
			env.Setenv("HAKO_LESSON_SITE_PORT", freePortT(t))
			env.Defer(func() { cleanRootT(root) })
			return nil
		},
	})
}

// TestCourse proves the built-in course: every exercise's check fails before
// its solution and passes after it (`hako course test`).
func TestCourse(t *testing.T) {
	build(t)
	out, err := hakoCmd(t.TempDir(), "course", "test", "--bundle", bundle).CombinedOutput()
	if err != nil {
		t.Fatalf("hako course test: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "ok: 10 exercises") {
		t.Fatalf("hako course test:\n%s", out)
	}
}

// TestGradeFormats grades a root where chapter 3's first exercise is done
// and the rest is not: each format must say so, and parse back.
func TestGradeFormats(t *testing.T) {
	build(t)
	root := t.TempDir()
	t.Cleanup(func() { cleanRootT(root) })
	port := freePortT(t)
	if out, err := hakoCmd(root, "load", "-i", bundle).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := hakoCmd(root, "run", "-d", "--name", "web", "-p", port+":80", "httpd:2.4").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	gradeOut := func(format string) (string, int) {
		cmd := hakoCmd(root, "grade", "--chapter", "3", "--format", format, "--lang", "en")
		cmd.Env = append(cmd.Env, "HAKO_LESSON_PORT="+port)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stdout.String(), code
	}

	// JSON: the documented shape.
	js, code := gradeOut("json")
	if code != 1 {
		t.Errorf("grade exited %d with failures, want 1", code)
	}
	var rep grade.Report
	dec := json.NewDecoder(strings.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("json: %v\n%s", err, js)
	}
	if rep.Course != "hako-basics" || len(rep.Version) != 12 || len(rep.Exercises) != 4 || rep.Passed {
		t.Fatalf("report: %+v", rep)
	}
	run := rep.Exercises[0]
	if run.Key != "3/run" || !run.Passed || run.Points != run.Max || run.Max == 0 {
		t.Errorf("3/run: %+v", run)
	}
	// 3/stop: web runs, so "stopped" fails and "kept" (listed as Exited) fails;
	// partial credit is per phase.
	if stop := rep.Exercises[1]; stop.Passed || stop.Points >= stop.Max {
		t.Errorf("3/stop: %+v", stop)
	}
	if rep.Points <= run.Points || rep.Points >= rep.Max {
		t.Errorf("total %d/%d: want partial credit beyond 3/run's %d", rep.Points, rep.Max, run.Points)
	}

	// JUnit: parse it back against the schema's shape.
	x, _ := gradeOut("junit")
	var suites struct {
		XMLName  xml.Name `xml:"testsuites"`
		Name     string   `xml:"name,attr"`
		Tests    int      `xml:"tests,attr"`
		Failures int      `xml:"failures,attr"`
		Suites   []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Time     string `xml:"time,attr"`
			Props    []struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			} `xml:"properties>property"`
			Cases []struct {
				Name      string `xml:"name,attr"`
				Classname string `xml:"classname,attr"`
				Failure   *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal([]byte(x), &suites); err != nil {
		t.Fatalf("junit: %v\n%s", err, x)
	}
	if !strings.HasPrefix(x, "<?xml") || len(suites.Suites) != 4 || suites.Tests == 0 {
		t.Fatalf("junit: %+v", suites)
	}
	failures := 0
	for _, s := range suites.Suites {
		n := 0
		for _, c := range s.Cases {
			if c.Name == "" || c.Classname == "" {
				t.Errorf("testcase without name or classname in %s", s.Name)
			}
			if c.Failure != nil {
				n++
				if c.Failure.Message == "" {
					t.Errorf("failure without message in %s", s.Name)
				}
			}
		}
		if n != s.Failures || len(s.Cases) != s.Tests {
			t.Errorf("suite %s: counts %d/%d, attributes %d/%d", s.Name, n, len(s.Cases), s.Failures, s.Tests)
		}
		failures += n
	}
	if failures != suites.Failures || failures == 0 || suites.Suites[0].Failures != 0 {
		t.Errorf("failures: %d, attribute %d, first suite %d", failures, suites.Failures, suites.Suites[0].Failures)
	}

	// Markdown: the table and the failed phases.
	md, _ := gradeOut("markdown")
	for _, want := range []string{"# Grade report: hako-basics", "| ✓ `3/run` |", "| ✗ `3/stop` |", "## ✗ 3/stop", "**Total**", rep.Version} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
