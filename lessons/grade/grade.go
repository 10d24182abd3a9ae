// Package grade turns check results into reports for instructors and CI:
// Markdown for people, JSON for programs, JUnit XML for CI systems that show
// test results. Points are per phase, so a half-done exercise earns part of
// its points; the report names the course version (its content hash) so a
// grade says what it was graded against.
package grade

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"hako.dev/hako/lessons/check"
	"hako.dev/hako/lessons/course"
	"hako.dev/hako/lessons/render"
)

// Report is what `hako grade --format json` prints (see README, "Grade report JSON").
type Report struct {
	Course    string     `json:"course"`
	Version   string     `json:"version"` // the course's content hash
	Lang      string     `json:"lang"`
	Time      time.Time  `json:"time"`
	Points    int        `json:"points"`
	Max       int        `json:"max"`
	Passed    bool       `json:"passed"`
	Exercises []Exercise `json:"exercises"`
}

// Exercise is one exercise's grade.
type Exercise struct {
	Key     string  `json:"key"` // "3/run"
	Chapter int     `json:"chapter"`
	Title   string  `json:"title"`
	Points  int     `json:"points"`
	Max     int     `json:"max"`
	Passed  bool    `json:"passed"`
	Seconds float64 `json:"seconds"`
	Phases  []Phase `json:"phases"`
}

// Phase is one phase's grade.
type Phase struct {
	ID       string `json:"id"`
	Title    string `json:"title"`
	Points   int    `json:"points"`
	Max      int    `json:"max"`
	Passed   bool   `json:"passed"`
	Command  string `json:"command,omitempty"`
	Expected string `json:"expected,omitempty"`
	Found    string `json:"found,omitempty"`
}

// Add records an exercise's result.
func (r *Report) Add(e *course.Exercise, res *check.Result, took time.Duration) {
	ex := Exercise{Key: e.Key(), Chapter: e.Chapter.Number, Title: e.Title.Get(r.Lang), Passed: res.Passed(), Seconds: took.Seconds()}
	for _, pr := range res.Phases {
		p := e.Phase(pr.ID)
		if p == nil {
			continue
		}
		ph := Phase{ID: p.ID, Title: p.Title.Get(r.Lang), Max: p.Points, Passed: pr.Passed,
			Command: pr.Command, Expected: pr.Expected, Found: pr.Found}
		if pr.Passed {
			ph.Points = p.Points
		}
		ex.Points += ph.Points
		ex.Max += ph.Max
		ex.Phases = append(ex.Phases, ph)
	}
	r.Exercises = append(r.Exercises, ex)
	r.Points += ex.Points
	r.Max += ex.Max
	r.Passed = true
	for _, x := range r.Exercises {
		r.Passed = r.Passed && x.Passed
	}
}

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Markdown writes the report for people.
func (r *Report) Markdown(w io.Writer) error {
	lang := r.Lang
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s\n\n", render.Msg(lang, "grade-title"), r.Course)
	fmt.Fprintf(&b, "%s %s · %s\n\n", render.Msg(lang, "version"), r.Version, r.Time.UTC().Format(time.RFC3339))
	b.WriteString("| | | |\n|---|---|---|\n")
	for _, e := range r.Exercises {
		st := "✓"
		if !e.Passed {
			st = "✗"
		}
		fmt.Fprintf(&b, "| %s `%s` | %s | %d/%d |\n", st, e.Key, e.Title, e.Points, e.Max)
	}
	fmt.Fprintf(&b, "| **%s** | | **%d/%d** |\n\n", render.Msg(lang, "total"), r.Points, r.Max)
	for _, e := range r.Exercises {
		if e.Passed {
			continue
		}
		fmt.Fprintf(&b, "## ✗ %s %s\n\n", e.Key, e.Title)
		for _, p := range e.Phases {
			box := "[x]"
			if !p.Passed {
				box = "[ ]"
			}
			fmt.Fprintf(&b, "- %s %s (%d/%d)", box, p.Title, p.Points, p.Max)
			if !p.Passed && p.Expected != "" {
				fmt.Fprintf(&b, ": `%s`", strings.ReplaceAll(p.Expected, "`", "'"))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// JUnit XML, in the shape most CI systems read (the Ant/Jenkins schema): one
// testsuite per exercise, one testcase per phase.
type (
	JUnitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []JUnitSuite `xml:"testsuite"`
	}
	JUnitSuite struct {
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Skipped    int             `xml:"skipped,attr"`
		Time       string          `xml:"time,attr"`
		Timestamp  string          `xml:"timestamp,attr"`
		Properties []JUnitProperty `xml:"properties>property"`
		Cases      []JUnitCase     `xml:"testcase"`
	}
	JUnitProperty struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	JUnitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *JUnitFailure `xml:"failure,omitempty"`
	}
	JUnitFailure struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	}
)

// JUnit converts the report.
func (r *Report) JUnit() *JUnitSuites {
	out := &JUnitSuites{Name: r.Course + "@" + r.Version}
	var total float64
	for _, e := range r.Exercises {
		s := JUnitSuite{Name: e.Key + " " + e.Title, Time: fmt.Sprintf("%.3f", e.Seconds), Timestamp: r.Time.UTC().Format("2006-01-02T15:04:05"),
			Properties: []JUnitProperty{{"course", r.Course}, {"version", r.Version}, {"points", fmt.Sprint(e.Points)}, {"max", fmt.Sprint(e.Max)}}}
		total += e.Seconds
		for _, p := range e.Phases {
			c := JUnitCase{Name: fmt.Sprintf("%s (%d points)", p.ID, p.Max), Classname: r.Course + "." + e.Key, Time: "0"}
			if !p.Passed {
				c.Failure = &JUnitFailure{Message: p.Title, Type: "check", Text: strings.TrimSpace(fmt.Sprintf("command: %s\nexpected: %s\nfound:\n%s", p.Command, p.Expected, p.Found))}
				s.Failures++
			}
			s.Tests++
			s.Cases = append(s.Cases, c)
		}
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Suites = append(out.Suites, s)
	}
	out.Time = fmt.Sprintf("%.3f", total)
	return out
}

// WriteJUnit writes the report as JUnit XML.
func (r *Report) WriteJUnit(w io.Writer) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(r.JUnit()); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
