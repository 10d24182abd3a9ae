// Package course loads a hako course from a file system: the built-in course
// embedded in the binary (package chapters) or an instructor's folder.
//
// A course is data, so that an instructor can write one without touching Go:
//
//	course.json                  {"format": 1, "id", "title": {"en", "ja"}, "chapters": ["03-webserver", ...]}
//	03-webserver/chapter.json    {"number": 3, "title", "images": ["httpd:2.4"], "exercises": ["run", ...]}
//	03-webserver/en.md, ja.md    the chapter's text
//	03-webserver/run/exercise.json {"title", "resources": {"containers", "images"}, "phases": [{"id", "points", "title", "hint"}]}
//	03-webserver/run/en.md, ja.md  the task
//	03-webserver/run/check.txtar   a testscript; each "# id: comment" line starts a phase
//	03-webserver/run/solution.txtar the reference solution (a testscript too)
//	03-webserver/run/setup.txtar   optional: the state the exercise starts from
//
// Every text the learner reads exists in English and Japanese. Validate
// reports every problem with its file and line, so a course is proved before
// a learner meets it; `hako course test` then proves each check fails before
// its solution and passes after it.
package course

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Format is the course format version this package reads.
const Format = 1

// Langs are the languages every learner-visible text must exist in.
var Langs = []string{"en", "ja"}

// Text is one text in several languages.
type Text map[string]string

// Get returns the text in lang, else in English.
func (t Text) Get(lang string) string {
	if s := t[lang]; s != "" {
		return s
	}
	return t["en"]
}

// Course is a loaded course.
type Course struct {
	Format   int        `json:"format"`
	ID       string     `json:"id"`
	Title    Text       `json:"title"`
	Dirs     []string   `json:"chapters"`
	Chapters []*Chapter `json:"-"`
	// Hash names this version of the course: a digest of every file.
	Hash string `json:"-"`
	FS   fs.FS  `json:"-"`
}

// Chapter is one chapter: its text and exercises.
type Chapter struct {
	Number    int         `json:"number"`
	Title     Text        `json:"title"`
	Images    []string    `json:"images"`
	ExDirs    []string    `json:"exercises"`
	Dir       string      `json:"-"`
	Text      Text        `json:"-"`
	Exercises []*Exercise `json:"-"`
}

// Slug is the chapter's folder name without its number ("webserver").
func (c *Chapter) Slug() string {
	if i := strings.IndexByte(c.Dir, '-'); i >= 0 {
		return c.Dir[i+1:]
	}
	return c.Dir
}

// Exercise is one task with its check.
type Exercise struct {
	Title     Text      `json:"title"`
	Resources Resources `json:"resources"`
	Phases    []*Phase  `json:"phases"`
	Name      string    `json:"-"` // folder name
	Chapter   *Chapter  `json:"-"`
	Text      Text      `json:"-"`
	Check     string    `json:"-"`
	Solution  string    `json:"-"`
	Setup     string    `json:"-"`
}

// Resources are what an exercise makes, removed by `hako reset`.
type Resources struct {
	Containers []string `json:"containers"`
	Images     []string `json:"images"`
}

// Phase is one "# id" section of a check: what the verdict lists.
type Phase struct {
	ID     string `json:"id"`
	Points int    `json:"points"`
	Title  Text   `json:"title"`
	Hint   Text   `json:"hint"`
}

// Key names an exercise across the course: "3/run".
func (e *Exercise) Key() string { return strconv.Itoa(e.Chapter.Number) + "/" + e.Name }

// Points is the exercise's total.
func (e *Exercise) Points() int {
	n := 0
	for _, p := range e.Phases {
		n += p.Points
	}
	return n
}

// Phase returns the phase with id, or nil.
func (e *Exercise) Phase(id string) *Phase {
	for _, p := range e.Phases {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// Exercises lists every exercise in order.
func (c *Course) Exercises() []*Exercise {
	var all []*Exercise
	for _, ch := range c.Chapters {
		all = append(all, ch.Exercises...)
	}
	return all
}

// Chapter finds a chapter by number ("3") or name ("webserver", "03-webserver").
func (c *Course) Chapter(name string) *Chapter {
	for _, ch := range c.Chapters {
		if strconv.Itoa(ch.Number) == name || ch.Dir == name || ch.Slug() == name {
			return ch
		}
	}
	return nil
}

// Exercise finds an exercise by key ("3/run"), by chapter and position
// ("3.1") or by name when it is unique ("run").
func (c *Course) Exercise(name string) *Exercise {
	if ch, ex, ok := strings.Cut(name, "/"); ok {
		if chap := c.Chapter(ch); chap != nil {
			for _, e := range chap.Exercises {
				if e.Name == ex {
					return e
				}
			}
		}
		return nil
	}
	if ch, n, ok := strings.Cut(name, "."); ok {
		i, err := strconv.Atoi(n)
		if chap := c.Chapter(ch); chap != nil && err == nil && i >= 1 && i <= len(chap.Exercises) {
			return chap.Exercises[i-1]
		}
		return nil
	}
	var found *Exercise
	for _, e := range c.Exercises() {
		if e.Name == name {
			if found != nil {
				return nil
			}
			found = e
		}
	}
	return found
}

// Images lists every image the course's chapters need, without duplicates.
func (c *Course) Images() []string {
	seen := map[string]bool{}
	var out []string
	for _, ch := range c.Chapters {
		for _, im := range ch.Images {
			if !seen[im] {
				seen[im] = true
				out = append(out, im)
			}
		}
	}
	return out
}

// Problem is one thing wrong in a course, at a file and line.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return p.File + ": " + p.Msg
}

// Problems is every problem Load found; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "\n")
}

var (
	phaseRE = regexp.MustCompile(`^#\s*([a-z0-9][a-z0-9-]*)(:.*)?$`)
	nameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// ScriptPhase is a phase header in a check script.
type ScriptPhase struct {
	ID     string
	Line   int    // 1-based line of the header
	Header string // the line as written
}

// ParsePhases lists the "# id: comment" headers of a check script (the
// comment part of a txtar, before its first file).
func ParsePhases(script string) ([]ScriptPhase, []Problem) {
	var out []ScriptPhase
	var probs []Problem
	for i, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			break
		}
		if !strings.HasPrefix(line, "#") {
			continue
		}
		m := phaseRE.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			probs = append(probs, Problem{Line: i + 1, Msg: fmt.Sprintf("phase header %q: want \"# id: comment\" (id in a-z, 0-9, -)", line)})
			continue
		}
		out = append(out, ScriptPhase{ID: m[1], Line: i + 1, Header: line})
	}
	return out, probs
}

// loader gathers problems while reading.
type loader struct {
	fsys  fs.FS
	probs Problems
	files []string
}

func (l *loader) problem(file string, line int, format string, args ...any) {
	l.probs = append(l.probs, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) read(name string, required bool) string {
	b, err := fs.ReadFile(l.fsys, name)
	if err != nil {
		if required {
			l.problem(name, 0, "missing")
		}
		return ""
	}
	l.files = append(l.files, name)
	return string(b)
}

// readJSON decodes name into v, reporting syntax and type errors at their line.
func (l *loader) readJSON(name string, v any) (string, bool) {
	data := l.read(name, true)
	if data == "" {
		return "", false
	}
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		line := 0
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case asErr(err, &se):
			line = lineAt(data, int(se.Offset))
		case asErr(err, &te):
			line = lineAt(data, int(te.Offset))
		default:
			if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				line = lineOf(data, f)
			}
		}
		l.problem(name, line, "%v", err)
		return data, false
	}
	return data, true
}

func asErr[T error](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

// lineAt is the 1-based line of a byte offset.
func lineAt(data string, off int) int {
	if off > len(data) {
		off = len(data)
	}
	return strings.Count(data[:off], "\n") + 1
}

// lineOf is the line where s first occurs in data (1 when it does not).
func lineOf(data, s string) int {
	if i := strings.Index(data, s); i >= 0 {
		return lineAt(data, i)
	}
	return 1
}

func (l *loader) texts(file, data, what string, t Text) {
	for _, lang := range Langs {
		if strings.TrimSpace(t[lang]) == "" {
			l.problem(file, lineOf(data, what), "%s has no %q text", what, lang)
		}
	}
}

// Load reads and validates a course. On problems it returns the course as far
// as it could read it and a Problems error listing all of them.
func Load(fsys fs.FS) (*Course, error) {
	l := &loader{fsys: fsys}
	c := &Course{FS: fsys}
	data, ok := l.readJSON("course.json", c)
	if !ok {
		return c, l.probs
	}
	if c.Format != Format {
		l.problem("course.json", lineOf(data, `"format"`), "format %d: this hako reads format %d", c.Format, Format)
	}
	if !nameRE.MatchString(c.ID) {
		l.problem("course.json", lineOf(data, `"id"`), "id %q: want a-z, 0-9 and -", c.ID)
	}
	l.texts("course.json", data, `"title"`, c.Title)
	if len(c.Dirs) == 0 {
		l.problem("course.json", lineOf(data, `"chapters"`), "no chapters")
	}
	numbers := map[int]string{}
	for _, dir := range c.Dirs {
		ch := l.chapter(dir, data)
		if ch == nil {
			continue
		}
		if prev, dup := numbers[ch.Number]; dup {
			l.problem(path.Join(dir, "chapter.json"), lineOf(data, `"number"`), "chapter number %d is also %s's", ch.Number, prev)
		}
		numbers[ch.Number] = dir
		c.Chapters = append(c.Chapters, ch)
	}
	c.Hash = l.hash()
	if len(l.probs) > 0 {
		return c, l.probs
	}
	return c, nil
}

func (l *loader) chapter(dir, courseData string) *Chapter {
	if !nameRE.MatchString(dir) {
		l.problem("course.json", lineOf(courseData, `"`+dir+`"`), "chapter folder %q: want a-z, 0-9 and -", dir)
		return nil
	}
	file := path.Join(dir, "chapter.json")
	ch := &Chapter{Dir: dir, Text: Text{}}
	data, ok := l.readJSON(file, ch)
	if !ok {
		return nil
	}
	if ch.Number <= 0 {
		l.problem(file, lineOf(data, `"number"`), "number must be positive")
	}
	l.texts(file, data, `"title"`, ch.Title)
	for _, lang := range Langs {
		ch.Text[lang] = l.read(path.Join(dir, lang+".md"), true)
	}
	if len(ch.ExDirs) == 0 {
		l.problem(file, lineOf(data, `"exercises"`), "no exercises")
	}
	seen := map[string]bool{}
	for _, name := range ch.ExDirs {
		if !nameRE.MatchString(name) || seen[name] {
			l.problem(file, lineOf(data, `"`+name+`"`), "exercise %q: want a unique name of a-z, 0-9 and -", name)
			continue
		}
		seen[name] = true
		if ex := l.exercise(ch, name); ex != nil {
			ch.Exercises = append(ch.Exercises, ex)
		}
	}
	return ch
}

func (l *loader) exercise(ch *Chapter, name string) *Exercise {
	dir := path.Join(ch.Dir, name)
	file := path.Join(dir, "exercise.json")
	ex := &Exercise{Name: name, Chapter: ch, Text: Text{}}
	data, ok := l.readJSON(file, ex)
	if !ok {
		return nil
	}
	l.texts(file, data, `"title"`, ex.Title)
	for _, lang := range Langs {
		ex.Text[lang] = l.read(path.Join(dir, lang+".md"), true)
	}
	ex.Check = l.read(path.Join(dir, "check.txtar"), true)
	ex.Solution = l.read(path.Join(dir, "solution.txtar"), true)
	ex.Setup = l.read(path.Join(dir, "setup.txtar"), false)
	ids := map[string]bool{}
	for _, p := range ex.Phases {
		at := lineOf(data, `"`+p.ID+`"`)
		if !nameRE.MatchString(p.ID) || ids[p.ID] {
			l.problem(file, at, "phase %q: want a unique id of a-z, 0-9 and -", p.ID)
		}
		ids[p.ID] = true
		if p.Points < 0 {
			l.problem(file, at, "phase %s: negative points", p.ID)
		}
		for _, lang := range Langs {
			if p.Title[lang] == "" {
				l.problem(file, at, "phase %s has no %q title", p.ID, lang)
			}
			if p.Hint[lang] == "" {
				l.problem(file, at, "phase %s has no %q hint", p.ID, lang)
			}
		}
	}
	if len(ex.Phases) == 0 {
		l.problem(file, lineOf(data, `"phases"`), "no phases")
	}
	checkFile := path.Join(dir, "check.txtar")
	if ex.Check != "" {
		phases, probs := ParsePhases(ex.Check)
		for _, p := range probs {
			l.problem(checkFile, p.Line, "%s", p.Msg)
		}
		inScript := map[string]bool{}
		for _, sp := range phases {
			if inScript[sp.ID] {
				l.problem(checkFile, sp.Line, "phase %s appears twice", sp.ID)
			}
			inScript[sp.ID] = true
			if !ids[sp.ID] {
				l.problem(checkFile, sp.Line, "phase %s is not in exercise.json", sp.ID)
			}
		}
		for _, p := range ex.Phases {
			if !inScript[p.ID] {
				l.problem(file, lineOf(data, `"`+p.ID+`"`), "phase %s has no \"# %s\" section in check.txtar", p.ID, p.ID)
			}
		}
		if len(phases) > 0 && firstCommandLine(ex.Check) < phases[0].Line {
			l.problem(checkFile, firstCommandLine(ex.Check), "a command before the first phase header")
		}
		for _, p := range scriptCommands(ex.Check) {
			if !CheckCommands[p.Msg] {
				l.problem(checkFile, p.Line, "command %q is not available in a check (%s)", p.Msg, strings.Join(sortedKeys(CheckCommands), ", "))
			}
		}
	}
	return ex
}

// CheckCommands are the commands a check script may use: testscript's
// read-only built-ins and hako's own (see lessons/check).
var CheckCommands = map[string]bool{
	"docker": true, "hako": true, "http": true, "waitfor": true,
	"stdout": true, "stderr": true, "cmp": true, "exists": true, "grep": true, "env": true, "stop": true, "skip": true,
}

func sortedKeys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// scriptCommands lists each command line's command name (in Msg) and line.
func scriptCommands(script string) []Problem {
	var out []Problem
	for i, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			break
		}
		f := strings.Fields(line)
		for len(f) > 0 && (f[0] == "!" || strings.HasPrefix(f[0], "[")) {
			f = f[1:]
		}
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out = append(out, Problem{Line: i + 1, Msg: f[0]})
	}
	return out
}

func firstCommandLine(script string) int {
	if c := scriptCommands(script); len(c) > 0 {
		return c[0].Line
	}
	return 1 << 30
}

// hash digests every file the course is made of, in a fixed order.
func (l *loader) hash() string {
	files := append([]string(nil), l.files...)
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, _ := fs.ReadFile(l.fsys, f)
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}
