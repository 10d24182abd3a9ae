package main

import (
	"context"
	"fmt"
	"time"

	"hako.dev/hako/lessons/course"
	"hako.dev/hako/lessons/grade"
)

// grade runs every check (of one chapter with --chapter) and prints a report;
// it exits 1 when anything failed, so it serves as a CI autograding step.
// It reads the state; it does not change the learner's progress.
func (a *app) grade() int {
	exs := a.course.Exercises()
	if n := a.flags["chapter"]; n != "" {
		ch := a.course.Chapter(n)
		if ch == nil {
			fmt.Fprintln(a.stderr, "hako:", fmt.Sprintf("no chapter %q", n))
			return 2
		}
		exs = ch.Exercises
	}
	format := a.flags["format"]
	if format == "" {
		format = "markdown"
	}
	if format != "markdown" && format != "json" && format != "junit" {
		fmt.Fprintf(a.stderr, "hako: --format %s: want markdown, json or junit\n", format)
		return 2
	}
	rep, err := a.gradeReport(exs)
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	switch format {
	case "json":
		err = rep.JSON(a.stdout)
	case "junit":
		err = rep.WriteJUnit(a.stdout)
	default:
		if a.out.Color {
			var md stringWriter
			rep.Markdown(&md)
			err = a.out.Show(md.String())
		} else {
			err = rep.Markdown(a.stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	if !rep.Passed {
		return 1
	}
	return 0
}

func (a *app) gradeReport(exs []*course.Exercise) (*grade.Report, error) {
	rep := &grade.Report{Course: a.course.ID, Version: a.course.Hash, Lang: a.lang, Time: time.Now().UTC()}
	r := a.runner(a.root)
	for _, e := range exs {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := time.Now()
		res, err := r.Exercise(ctx, e)
		cancel()
		if err != nil {
			return nil, err
		}
		rep.Add(e, res, time.Since(start))
	}
	return rep, nil
}

type stringWriter struct{ b []byte }

func (w *stringWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *stringWriter) String() string              { return string(w.b) }
