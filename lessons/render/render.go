// Package render writes what the learner reads as Markdown (lessons,
// verdicts, progress) and shows it: through glamour on a terminal, as the
// Markdown itself when NO_COLOR is set or the output is not a terminal, so
// that graders, pipes and golden files see stable text.
package render

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/charmbracelet/glamour"
	"golang.org/x/term"

	"hako.dev/hako/lessons/check"
	"hako.dev/hako/lessons/course"
)

// Output decides how Markdown is shown.
type Output struct {
	W     io.Writer
	Color bool // render with glamour
	Width int
}

// NewOutput inspects w: glamour on a terminal (or with CLICOLOR_FORCE=1),
// unless NO_COLOR is set; the width is the terminal's, or $COLUMNS.
func NewOutput(w io.Writer) *Output {
	o := &Output{W: w, Width: 80}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if _, noColor := os.LookupEnv("NO_COLOR"); !noColor && os.Getenv("TERM") != "dumb" {
			o.Color = true
		}
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil && wd > 20 {
			o.Width = wd
		}
	}
	if os.Getenv("CLICOLOR_FORCE") == "1" {
		if _, noColor := os.LookupEnv("NO_COLOR"); !noColor {
			o.Color = true
		}
	}
	if c, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && c > 20 {
		o.Width = c
	}
	return o
}

// Show prints Markdown.
func (o *Output) Show(md string) error {
	if !o.Color {
		_, err := io.WriteString(o.W, md)
		return err
	}
	style := os.Getenv("GLAMOUR_STYLE")
	if style == "" {
		style = "dark"
	}
	r, err := glamour.NewTermRenderer(glamour.WithStandardStyle(style), glamour.WithWordWrap(o.Width-4))
	if err != nil {
		return err
	}
	out, err := r.Render(md)
	if err != nil {
		return err
	}
	_, err = io.WriteString(o.W, out)
	return err
}

// Status is an exercise's state for the lists.
type Status struct {
	Done    map[string]bool
	Current string
}

func mark(st Status, key string) string {
	switch {
	case st.Done[key]:
		return "[x]"
	default:
		return "[ ]"
	}
}

// ChapterList is `hako learn` without arguments.
func ChapterList(c *course.Course, lang string, st Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", c.Title.Get(lang))
	fmt.Fprintf(&b, "## %s\n\n", Msg(lang, "chapters"))
	for _, ch := range c.Chapters {
		done := 0
		for _, e := range ch.Exercises {
			if st.Done[e.Key()] {
				done++
			}
		}
		fmt.Fprintf(&b, "%d. **%s** (`hako learn %d`): %d/%d\n", ch.Number, ch.Title.Get(lang), ch.Number, done, len(ch.Exercises))
		for i, e := range ch.Exercises {
			cur := ""
			if e.Key() == st.Current {
				cur = " ← " + Msg(lang, "current")
			}
			fmt.Fprintf(&b, "    - %s %d.%d %s (`%s`)%s\n", mark(st, e.Key()), ch.Number, i+1, e.Title.Get(lang), e.Key(), cur)
		}
	}
	b.WriteString("\n")
	b.WriteString(Resume(c, lang, st))
	return b.String()
}

// Resume names the first unfinished exercise.
func Resume(c *course.Course, lang string, st Status) string {
	for _, e := range c.Exercises() {
		if !st.Done[e.Key()] {
			return Msg(lang, "resume", strconv.Itoa(e.Chapter.Number), e.Key()) + "\n"
		}
	}
	return Msg(lang, "all-done") + "\n"
}

// Chapter is `hako learn N`: the chapter's text, then each exercise's task.
func Chapter(ch *course.Chapter, lang string, st Status, missing []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %d. %s\n\n", ch.Number, ch.Title.Get(lang))
	if len(missing) > 0 {
		fmt.Fprintf(&b, "> %s\n\n", Msg(lang, "images-missing", "`"+strings.Join(missing, "`, `")+"`"))
	}
	b.WriteString(strings.TrimSpace(ch.Text.Get(lang)))
	b.WriteString("\n")
	for i, e := range ch.Exercises {
		b.WriteString("\n")
		b.WriteString(exerciseBlock(e, i+1, lang, st))
	}
	return b.String()
}

func exerciseBlock(e *course.Exercise, n int, lang string, st Status) string {
	var b strings.Builder
	cur := ""
	if e.Key() == st.Current {
		cur = " ← " + Msg(lang, "current")
	}
	fmt.Fprintf(&b, "## %s %d.%d: %s %s%s\n\n", Msg(lang, "exercise"), e.Chapter.Number, n, e.Title.Get(lang), mark(st, e.Key()), cur)
	b.WriteString(strings.TrimSpace(e.Text.Get(lang)))
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "*%s* (`hako goto %s`)\n", Msg(lang, "next-steps"), e.Key())
	return b.String()
}

// Exercise is one exercise on its own (`hako next`, `hako goto`).
func Exercise(e *course.Exercise, lang string, st Status) string {
	n := 1
	for i, x := range e.Chapter.Exercises {
		if x == e {
			n = i + 1
		}
	}
	return exerciseBlock(e, n, lang, st)
}

// Verdict is the Markdown of a check: a checklist of the phases; for each
// failed one the command, what it expected, what it found and the hint.
func Verdict(e *course.Exercise, res *check.Result, lang string, last bool) string {
	var b strings.Builder
	title := e.Key() + " " + e.Title.Get(lang)
	if res.Passed() {
		fmt.Fprintf(&b, "# ✓ %s\n\n", Msg(lang, "check-pass", title))
	} else {
		fmt.Fprintf(&b, "# ✗ %s\n\n", Msg(lang, "check-fail", title))
	}
	got, max := Score(e, res)
	fmt.Fprintf(&b, "%s\n\n", Msg(lang, "points", got, max))
	for _, pr := range res.Phases {
		p := e.Phase(pr.ID)
		if p == nil {
			continue
		}
		box := "[ ]"
		if pr.Passed {
			box = "[x]"
		}
		fmt.Fprintf(&b, "- %s %s\n", box, p.Title.Get(lang))
		if pr.Passed {
			continue
		}
		b.WriteString("\n")
		if pr.Command != "" {
			fmt.Fprintf(&b, "    - %s: `%s`\n", Msg(lang, "command"), pr.Command)
		}
		fmt.Fprintf(&b, "    - %s: %s\n", Msg(lang, "expected"), Expectation(pr.Expected, lang))
		found := pr.Found
		if strings.TrimSpace(found) == "" {
			fmt.Fprintf(&b, "    - %s: %s\n", Msg(lang, "found"), Msg(lang, "no-output"))
		} else {
			fmt.Fprintf(&b, "    - %s:\n\n", Msg(lang, "found"))
			fmt.Fprintf(&b, "      ```\n%s\n      ```\n", indent(clip(found, 12), "      "))
		}
		fmt.Fprintf(&b, "    - %s: %s\n\n", Msg(lang, "hint"), strings.TrimSpace(p.Hint.Get(lang)))
	}
	b.WriteString("\n")
	switch {
	case res.Passed() && last:
		b.WriteString(Msg(lang, "after-pass-last") + "\n")
	case res.Passed():
		b.WriteString(Msg(lang, "after-pass") + "\n")
	default:
		b.WriteString(Msg(lang, "after-fail") + "\n")
	}
	return b.String()
}

// Score is the points a result earns out of the exercise's total.
func Score(e *course.Exercise, res *check.Result) (got, max int) {
	for _, p := range e.Phases {
		max += p.Points
	}
	for _, pr := range res.Phases {
		if p := e.Phase(pr.ID); p != nil && pr.Passed {
			got += p.Points
		}
	}
	return got, max
}

// expectations translate the failure messages of testscript's and hako's
// check commands.
var expectations = []struct {
	re *regexp.Regexp
	ja string
}{
	{regexp.MustCompile("^no match for (`.*`) found in (stdout|stderr)$"), "$2 に $1 に一致する行があること(見つからない)"},
	{regexp.MustCompile("^unexpected match for (`.*`) found in (stdout|stderr): (.*)$"), "$2 に $1 に一致する行がないこと(あった: $3)"},
	{regexp.MustCompile("^the command to succeed; it exited with status (\\d+)$"), "コマンドが成功すること(終了ステータス $1 で失敗)"},
	{regexp.MustCompile("^the command to fail; it succeeded$"), "コマンドが失敗すること(成功した)"},
	{regexp.MustCompile("^an answer from (\\S+); got (.*)$"), "$1 が応答すること(エラー: $2)"},
	{regexp.MustCompile("^no answer from (\\S+); it answered$"), "$1 が応答しないこと(応答があった)"},
	{regexp.MustCompile("^the phase did not run$"), "この項目が実行されること(実行されなかった)"},
}

// Expectation is a failure message for the verdict, in lang where known.
func Expectation(s, lang string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\n", " "))
	if s == "" {
		return "-"
	}
	if lang == "ja" {
		for _, e := range expectations {
			if e.re.MatchString(s) {
				return e.re.ReplaceAllString(s, e.ja)
			}
		}
	}
	return s
}

// clip keeps at most n lines of s.
func clip(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, "\n")
}

func indent(s, pre string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = pre + strings.ReplaceAll(l, "```", "'''")
	}
	return strings.Join(lines, "\n")
}

// Hints lists every phase's hint.
func Hints(e *course.Exercise, lang string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", Msg(lang, "hints-for", e.Key()+" "+e.Title.Get(lang)))
	for _, p := range e.Phases {
		fmt.Fprintf(&b, "- **%s**: %s\n", p.Title.Get(lang), strings.TrimSpace(p.Hint.Get(lang)))
	}
	return b.String()
}

// Solution shows the reference solution as a learner types it: its docker
// commands (not the script's own waits and output checks), with vars (such as
// "${PORT}") replaced, then the files it writes.
func Solution(e *course.Exercise, lang string, vars map[string]string) string {
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, k, v)
	}
	sub := strings.NewReplacer(pairs...)
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s\n\n```sh\n", Msg(lang, "solution"), e.Key()+" "+e.Title.Get(lang))
	for _, line := range strings.Split(e.Solution, "\n") {
		if strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --") {
			break
		}
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "docker" || f[0] == "hako") {
			b.WriteString(sub.Replace(line) + "\n")
		}
	}
	b.WriteString("```\n")
	// files the solution writes
	parts := strings.Split(e.Solution, "\n-- ")
	for _, p := range parts[1:] {
		name, body, _ := strings.Cut(p, " --\n")
		fmt.Fprintf(&b, "\n`~/%s`:\n\n```\n%s```\n", name, body)
	}
	return b.String()
}
