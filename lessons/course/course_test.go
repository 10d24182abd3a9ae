package course_test

import (
	"strings"
	"testing"
	"testing/fstest"

	"hako.dev/hako/chapters"
	"hako.dev/hako/lessons/course"
)

func TestBuiltInCourse(t *testing.T) {
	c, err := course.Load(chapters.FS)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Chapters) != 2 || len(c.Exercises()) != 10 || len(c.Hash) != 12 {
		t.Fatalf("chapters %d, exercises %d, hash %q", len(c.Chapters), len(c.Exercises()), c.Hash)
	}
	for name, want := range map[string]string{"3/run": "3/run", "3.2": "3/stop", "cleanup": "3/cleanup", "webserver/start": "3/start", "4.6": "4/exec"} {
		e := c.Exercise(name)
		if e == nil || e.Key() != want {
			t.Errorf("Exercise(%q) = %v, want %s", name, e, want)
		}
	}
	for _, bad := range []string{"3/none", "3.9", "9.1", ""} {
		if e := c.Exercise(bad); e != nil {
			t.Errorf("Exercise(%q) = %s", bad, e.Key())
		}
	}
	if ch := c.Chapter("basics"); ch == nil || ch.Number != 4 {
		t.Errorf("Chapter(basics) = %v", ch)
	}
	if got := strings.Join(c.Images(), " "); got != "httpd:2.4 busybox" {
		t.Errorf("images %q", got)
	}
}

// A course with one mistake of each kind: every one is reported, with its
// file and line.
func TestProblems(t *testing.T) {
	fsys := fstest.MapFS{
		"course.json": {Data: []byte(`{
  "format": 2,
  "id": "demo",
  "title": {"en": "Demo"},
  "chapters": ["01-one", "02-two"]
}
`)},
		"01-one/chapter.json": {Data: []byte(`{
  "number": 1,
  "title": {"en": "One", "ja": "一"},
  "exercises": ["ex"]
}
`)},
		"01-one/en.md": {Data: []byte("text\n")},
		"01-one/ex/exercise.json": {Data: []byte(`{
  "title": {"en": "Ex", "ja": "演習"},
  "phases": [
    {"id": "a", "points": 1, "title": {"en": "A", "ja": "A"}, "hint": {"en": "h"}},
    {"id": "b", "points": 1, "title": {"en": "B", "ja": "B"}, "hint": {"en": "h", "ja": "h"}}
  ]
}
`)},
		"01-one/ex/en.md":          {Data: []byte("x\n")},
		"01-one/ex/ja.md":          {Data: []byte("x\n")},
		"01-one/ex/solution.txtar": {Data: []byte("docker run busybox\n")},
		"01-one/ex/check.txtar": {Data: []byte(`# a: first
docker ps

# c: not declared
exec rm -rf /
`)},
		"02-two/chapter.json": {Data: []byte("{\n  \"number\": 1,\n  \"title\": {\"en\": \"Two\", \"ja\": \"二\"},\n  \"exercises\": [\"x\"\n}\n")},
	}
	_, err := course.Load(fsys)
	ps, ok := err.(course.Problems)
	if !ok {
		t.Fatalf("Load: %v", err)
	}
	got := ps.Error()
	for _, want := range []string{
		"course.json:2: format 2: this hako reads format 1",
		`course.json:4: "title" has no "ja" text`,
		"01-one/ja.md: missing",
		`01-one/ex/exercise.json:4: phase a has no "ja" hint`,
		`01-one/ex/exercise.json:5: phase b has no "# b" section in check.txtar`,
		"01-one/ex/check.txtar:4: phase c is not in exercise.json",
		`01-one/ex/check.txtar:5: command "exec" is not available in a check`,
		"02-two/chapter.json:5: invalid character",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing problem %q in:\n%s", want, got)
		}
	}
}

func TestParsePhases(t *testing.T) {
	ps, probs := course.ParsePhases("# one: x\ndocker ps\n#Two\n# three\n-- f --\n# not a phase\n")
	if len(ps) != 2 || ps[0].ID != "one" || ps[0].Line != 1 || ps[1].ID != "three" || ps[1].Line != 4 {
		t.Errorf("phases %+v", ps)
	}
	if len(probs) != 1 || probs[0].Line != 3 {
		t.Errorf("problems %+v", probs)
	}
}
