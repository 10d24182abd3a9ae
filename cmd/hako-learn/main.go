// Command hako-learn is hako's lessons: `hako learn`, `check`, `next`, `lab`,
// `grade`, `course ...` and the rest are dispatched here by the hako CLI
// (which execs this binary, found beside it, with the same arguments), so
// that glamour and testscript never slow down a plain `docker ps`.
//
// It drives the real hako binary beside it (or $HAKO_BIN) on the learner's
// state root ($HAKO_ROOT or --root) for checks, setup, reset and images.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"hako.dev/hako/chapters"
	"hako.dev/hako/lessons/check"
	"hako.dev/hako/lessons/course"
	"hako.dev/hako/lessons/progress"
	"hako.dev/hako/lessons/render"
)

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

// app is one invocation.
type app struct {
	lang     string
	root     string
	hako     string
	course   *course.Course
	store    progress.Store
	state    *progress.State
	out      *render.Output
	stdout   io.Writer
	stderr   io.Writer
	stdin    io.Reader
	flags    map[string]string
	args     []string
	courseIn string
}

// valueFlags take a value; boolFlags do not.
var (
	valueFlags = map[string]bool{"lang": true, "course": true, "root": true, "chapter": true, "format": true, "save": true, "bundle": true}
	boolFlags  = map[string]bool{"force": true, "resume": true, "help": true, "h": true}
)

// parse pulls --flag, --flag=value and --flag value out of args, anywhere.
func parse(args []string) (map[string]string, []string, error) {
	flags := map[string]string{}
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest = append(rest, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case valueFlags[name] && hasVal:
			flags[name] = val
		case valueFlags[name]:
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("flag --%s needs a value", name)
			}
			flags[name] = args[i+1]
			i++
		case boolFlags[name]:
			flags[name] = "true"
		default:
			return nil, nil, fmt.Errorf("unknown flag %s", a)
		}
	}
	return flags, rest, nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags, rest, err := parse(args)
	a := &app{stdout: stdout, stderr: stderr, stdin: stdin, out: render.NewOutput(stdout)}
	a.lang = render.Lang(flags["lang"])
	if err != nil {
		fmt.Fprintln(stderr, "hako:", err)
		return 2
	}
	if a.lang != "en" && a.lang != "ja" {
		fmt.Fprintf(stderr, "hako: --lang %s: want ja or en\n", a.lang)
		return 2
	}
	a.flags, a.args = flags, rest
	if len(rest) == 0 || flags["help"] != "" || flags["h"] != "" || rest[0] == "help" {
		fmt.Fprint(stdout, render.Msg(a.lang, "usage"))
		return 0
	}
	a.root = flags["root"]
	if a.root == "" {
		a.root = os.Getenv("HAKO_ROOT")
	}
	if a.root == "" {
		a.root = "/var/lib/hako"
	}
	a.hako = hakoBinary()
	cmd, rest := rest[0], rest[1:]
	if cmd == "course" {
		return a.courseCmd(rest)
	}
	if err := a.load(); err != nil {
		fmt.Fprintln(stderr, "hako:", err)
		return 1
	}
	var cmdErr error
	switch cmd {
	case "learn":
		cmdErr = a.learn(rest)
	case "next":
		cmdErr = a.move(+1)
	case "prev":
		cmdErr = a.move(-1)
	case "goto":
		cmdErr = a.gotoCmd(rest)
	case "check":
		return a.check(rest)
	case "hint":
		cmdErr = a.hint(rest)
	case "solution":
		cmdErr = a.solution(rest)
	case "reset":
		cmdErr = a.reset(rest)
	case "progress":
		cmdErr = a.progressCmd()
	case "lab":
		return a.lab()
	case "lab-tick":
		return a.labTick()
	case "grade":
		return a.grade()
	default:
		fmt.Fprintln(stderr, "hako:", render.Msg(a.lang, "unknown-cmd", cmd))
		fmt.Fprint(stderr, render.Msg(a.lang, "usage"))
		return 2
	}
	if cmdErr != nil {
		fmt.Fprintln(stderr, "hako:", cmdErr)
		return 1
	}
	return 0
}

// hakoBinary is $HAKO_BIN, else hako beside this program, else hako on PATH.
func hakoBinary() string {
	if p := os.Getenv("HAKO_BIN"); p != "" {
		return p
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "hako")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("hako"); err == nil {
		return p
	}
	return "hako"
}

// courseFS is --course DIR, else $HAKO_COURSE, else the built-in course.
func (a *app) courseFS() (fs.FS, string) {
	dir := a.flags["course"]
	if dir == "" {
		dir = os.Getenv("HAKO_COURSE")
	}
	if dir != "" {
		return os.DirFS(dir), dir
	}
	return chapters.FS, ""
}

func (a *app) load() error {
	fsys, dir := a.courseFS()
	c, err := course.Load(fsys)
	if err != nil {
		if dir == "" {
			return fmt.Errorf("built-in course:\n%w", err)
		}
		return inDir(err, dir)
	}
	a.course, a.courseIn = c, dir
	d, err := progress.Dir()
	if err != nil {
		return err
	}
	a.store = progress.Store{Dir: d}
	a.state, err = a.store.Load(c.ID)
	return err
}

func (a *app) save() error { return a.store.Save(a.state) }

func (a *app) status() render.Status {
	return render.Status{Done: a.state.DoneSet(), Current: a.current().Key()}
}

// current is the saved current exercise, else the first unfinished one.
func (a *app) current() *course.Exercise {
	if e := a.course.Exercise(a.state.Current); e != nil {
		return e
	}
	return a.firstUnfinished()
}

// firstUnfinished is where a learner resumes (the last exercise when all are done).
func (a *app) firstUnfinished() *course.Exercise {
	all := a.course.Exercises()
	for _, e := range all {
		if _, done := a.state.Done[e.Key()]; !done {
			return e
		}
	}
	return all[len(all)-1]
}

// exercise is the named exercise, or the current one.
func (a *app) exercise(args []string) (*course.Exercise, error) {
	if len(args) == 0 {
		return a.current(), nil
	}
	if e := a.course.Exercise(args[0]); e != nil {
		return e, nil
	}
	return nil, errors.New(render.Msg(a.lang, "no-such-ex", args[0]))
}

func (a *app) learn(args []string) error {
	if len(args) == 0 {
		md := render.ChapterList(a.course, a.lang, a.status())
		if a.flags["resume"] != "" {
			// `make run`: the list, then the first unfinished exercise,
			// which becomes the current one.
			cur := a.firstUnfinished()
			a.state.Current = cur.Key()
			if err := a.save(); err != nil {
				return err
			}
			md += "\n---\n\n" + render.Exercise(cur, a.lang, a.status())
			if m := a.missingImages(cur.Chapter.Images); len(m) > 0 {
				md += "\n> " + render.Msg(a.lang, "images-missing", "`"+strings.Join(m, "`, `")+"`") + "\n"
			}
		}
		return a.out.Show(md)
	}
	ch := a.course.Chapter(args[0])
	if ch == nil {
		return errors.New(render.Msg(a.lang, "no-such-chapter", args[0]))
	}
	// Reading a chapter makes its first unfinished exercise the current one.
	if cur := a.current(); cur.Chapter != ch {
		next := ch.Exercises[0]
		for _, e := range ch.Exercises {
			if _, done := a.state.Done[e.Key()]; !done {
				next = e
				break
			}
		}
		a.state.Current = next.Key()
		if err := a.save(); err != nil {
			return err
		}
	}
	return a.out.Show(render.Chapter(ch, a.lang, a.status(), a.missingImages(ch.Images)))
}

// missingImages lists which of images the learner's state root lacks.
func (a *app) missingImages(images []string) []string {
	if len(images) == 0 {
		return nil
	}
	out, err := a.hakoOutput("images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		return nil
	}
	have := map[string]bool{}
	for _, l := range strings.Fields(out) {
		have[l] = true
	}
	var missing []string
	for _, im := range images {
		ref := im
		if !strings.Contains(ref, ":") {
			ref += ":latest"
		}
		if !have[ref] {
			missing = append(missing, im)
		}
	}
	return missing
}

func (a *app) hakoOutput(args ...string) (string, error) {
	cmd := exec.Command(a.hako, args...)
	cmd.Env = append(os.Environ(), "HAKO_ROOT="+a.root)
	out, err := cmd.Output()
	return string(out), err
}

func (a *app) move(delta int) error {
	all := a.course.Exercises()
	cur := a.current()
	i := 0
	for j, e := range all {
		if e == cur {
			i = j
		}
	}
	if i+delta < 0 {
		fmt.Fprintln(a.stderr, render.Msg(a.lang, "at-first"))
		return nil
	}
	if i+delta >= len(all) {
		fmt.Fprintln(a.stderr, render.Msg(a.lang, "at-last"))
		return nil
	}
	return a.goTo(all[i+delta])
}

func (a *app) gotoCmd(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: hako goto EXERCISE (3/run, 3.1)")
	}
	e, err := a.exercise(args)
	if err != nil {
		return err
	}
	return a.goTo(e)
}

func (a *app) goTo(e *course.Exercise) error {
	a.state.Current = e.Key()
	if err := a.save(); err != nil {
		return err
	}
	fmt.Fprintln(a.stderr, render.Msg(a.lang, "now-at", e.Key()))
	return a.out.Show(render.Exercise(e, a.lang, a.status()))
}

// lessonPorts are the host ports the lessons ask for, as the scripts' PORT
// and SITE_PORT; $HAKO_LESSON_PORT and $HAKO_LESSON_SITE_PORT change them
// (a classroom where 8080 is taken, and the tests).
func lessonPorts() (port, site string) {
	port, site = os.Getenv("HAKO_LESSON_PORT"), os.Getenv("HAKO_LESSON_SITE_PORT")
	if port == "" {
		port = "8080"
	}
	if site == "" {
		site = "8081"
	}
	return port, site
}

// runner is a check runner on the learner's state root.
func (a *app) runner(root string) *check.Runner {
	port, site := lessonPorts()
	return &check.Runner{Hako: a.hako, Root: root, Env: []string{"PORT=" + port, "SITE_PORT=" + site}}
}

func (a *app) check(args []string) int {
	e, err := a.exercise(args)
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := a.runner(a.root).Exercise(ctx, e)
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	if len(args) == 0 {
		a.state.Current = e.Key() // `hako next` moves on from here
	}
	if res.Passed() {
		a.state.Done[e.Key()] = time.Now().UTC()
	} else {
		a.state.Failed[e.Key()]++
	}
	if err := a.save(); err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	all := a.course.Exercises()
	if err := a.out.Show(render.Verdict(e, res, a.lang, e == all[len(all)-1])); err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	if !res.Passed() {
		return 1
	}
	return 0
}

func (a *app) hint(args []string) error {
	e, err := a.exercise(args)
	if err != nil {
		return err
	}
	return a.out.Show(render.Hints(e, a.lang))
}

func (a *app) solution(args []string) error {
	e, err := a.exercise(args)
	if err != nil {
		return err
	}
	_, done := a.state.Done[e.Key()]
	if a.state.Failed[e.Key()] == 0 && !done && a.flags["force"] == "" {
		fmt.Fprintln(a.stdout, render.Msg(a.lang, "solution-locked"))
		return nil
	}
	port, site := lessonPorts()
	return a.out.Show(render.Solution(e, a.lang, map[string]string{"${PORT}": port, "${SITE_PORT}": site, "${WORK}/": "~/"}))
}

// reset removes the exercise's containers and images and clears its progress.
func (a *app) reset(args []string) error {
	e, err := a.exercise(args)
	if err != nil {
		return err
	}
	if err := resetResources(a.hako, a.root, e); err != nil {
		return err
	}
	delete(a.state.Done, e.Key())
	delete(a.state.Failed, e.Key())
	a.state.Current = e.Key()
	if err := a.save(); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, render.Msg(a.lang, "reset-done", e.Key()))
	return nil
}

func resetResources(hako, root string, e *course.Exercise) error {
	env := append(os.Environ(), "HAKO_ROOT="+root)
	for _, c := range e.Resources.Containers {
		cmd := exec.Command(hako, "rm", "-f", c)
		cmd.Env = env
		cmd.Run() // a container that is not there is what reset wants
	}
	for _, im := range e.Resources.Images {
		cmd := exec.Command(hako, "rmi", "-f", im)
		cmd.Env = env
		cmd.Run()
	}
	return nil
}

func (a *app) progressCmd() error {
	st := a.status()
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s\n\n", render.Msg(a.lang, "progress"), a.course.Title.Get(a.lang))
	all := a.course.Exercises()
	fmt.Fprintf(&b, "%s\n\n", render.Msg(a.lang, "progress-line", len(a.state.Done), len(all)))
	for _, e := range all {
		box := "[ ]"
		if st.Done[e.Key()] {
			box = "[x]"
		}
		cur := ""
		if e.Key() == st.Current {
			cur = " ← " + render.Msg(a.lang, "current")
		}
		fmt.Fprintf(&b, "- %s `%s` %s%s\n", box, e.Key(), e.Title.Get(a.lang), cur)
	}
	b.WriteString("\n" + render.Resume(a.course, a.lang, st))
	return a.out.Show(b.String())
}
