package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"hako.dev/hako/lessons/check"
	"hako.dev/hako/lessons/course"
)

// courseCmd is `hako course validate DIR | test [DIR] | images [--save FILE]`.
func (a *app) courseCmd(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(a.stderr, "usage: hako course validate DIR | test [DIR] [--bundle FILE] | images [--save FILE]")
		return 2
	}
	if len(args) > 1 && args[0] != "images" {
		a.flags["course"] = args[1]
	}
	fsys, dir := a.courseFS()
	name := dir
	if name == "" {
		name = "built-in course"
	}
	c, err := course.Load(fsys)
	err = inDir(err, dir)
	switch args[0] {
	case "validate":
		if err != nil {
			fmt.Fprintln(a.stderr, err)
			var ps course.Problems
			if errors.As(err, &ps) {
				fmt.Fprintf(a.stderr, "%s: %d problems\n", name, len(ps))
			}
			return 1
		}
		n := len(c.Exercises())
		fmt.Fprintf(a.stdout, "%s: ok, %d chapters, %d exercises, version %s\n", name, len(c.Chapters), n, c.Hash)
		return 0
	case "test":
		if err != nil {
			fmt.Fprintln(a.stderr, err)
			return 1
		}
		return a.courseTest(c)
	case "images":
		if err != nil {
			fmt.Fprintln(a.stderr, err)
			return 1
		}
		images := c.Images()
		if f := a.flags["save"]; f != "" {
			cmd := exec.Command(a.hako, append([]string{"save", "-o", f}, images...)...)
			cmd.Env = append(os.Environ(), "HAKO_ROOT="+a.root)
			cmd.Stdout, cmd.Stderr = a.stdout, a.stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(a.stderr, "hako: save %s: %v\n", strings.Join(images, " "), err)
				return 1
			}
			fmt.Fprintf(a.stderr, "%s: %s\n", f, strings.Join(images, " "))
			return 0
		}
		for _, im := range images {
			fmt.Fprintln(a.stdout, im)
		}
		return 0
	}
	fmt.Fprintf(a.stderr, "hako course: unknown command %q\n", args[0])
	return 2
}

// inDir prefixes the files of a course's problems with its folder, so that
// each reads as a path an editor opens at the line.
func inDir(err error, dir string) error {
	var ps course.Problems
	if dir == "" || !errors.As(err, &ps) {
		return err
	}
	out := make(course.Problems, len(ps))
	for i, p := range ps {
		p.File = filepath.Join(dir, p.File)
		out[i] = p
	}
	return out
}

// courseTest proves every exercise: in a fresh state root (with the images of
// --bundle loaded), after its setup, its check fails; after its solution, it
// passes. Each root is cleaned (containers removed) and deleted afterwards.
func (a *app) courseTest(c *course.Course) int {
	tmp, err := os.MkdirTemp("", "hako-course-test-")
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	failed := 0
	for i, e := range c.Exercises() {
		root := filepath.Join(tmp, "root"+strconv.Itoa(i))
		start := time.Now()
		err := a.proveExercise(e, root)
		cleanRoot(a.hako, root)
		if err != nil {
			failed++
			fmt.Fprintf(a.stdout, "FAIL %s: %v\n", e.Key(), err)
			continue
		}
		fmt.Fprintf(a.stdout, "ok   %s: fails before the solution, passes after (%.1fs)\n", e.Key(), time.Since(start).Seconds())
	}
	if failed > 0 {
		fmt.Fprintf(a.stdout, "%d of %d exercises failed\n", failed, len(c.Exercises()))
		return 1
	}
	fmt.Fprintf(a.stdout, "ok: %d exercises, version %s\n", len(c.Exercises()), c.Hash)
	return 0
}

func (a *app) proveExercise(e *course.Exercise, root string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port, err := freePort()
	if err != nil {
		return err
	}
	site, err := freePort()
	if err != nil {
		return err
	}
	r := &check.Runner{Hako: a.hako, Root: root, Env: []string{"PORT=" + port, "SITE_PORT=" + site}, HTTPTries: 3, WorkDir: root + "-work"}
	if err := os.Mkdir(r.WorkDir, 0o755); err != nil {
		return err
	}
	if b := a.flags["bundle"]; b != "" {
		abs, _ := filepath.Abs(b)
		cmd := exec.Command(a.hako, "load", "-i", abs)
		cmd.Env = append(os.Environ(), "HAKO_ROOT="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("load %s: %v: %s", b, err, out)
		}
		r.Env = append(r.Env, "HAKO_BUNDLE="+abs)
	}
	if e.Setup != "" {
		if log, err := r.Script(ctx, e.Key()+"/setup", e.Setup, check.Act); err != nil {
			return fmt.Errorf("setup: %v\n%s", err, log)
		}
	}
	before, err := r.Exercise(ctx, e)
	if err != nil {
		return err
	}
	if before.Passed() {
		return fmt.Errorf("the check passes before the solution\n%s", before.Log)
	}
	if log, err := r.Script(ctx, e.Key()+"/solution", e.Solution, check.Act); err != nil {
		return fmt.Errorf("solution: %v\n%s", err, log)
	}
	after, err := r.Exercise(ctx, e)
	if err != nil {
		return err
	}
	if !after.Passed() {
		return fmt.Errorf("the check fails after the solution\n%s", after.Log)
	}
	return nil
}

// cleanRoot removes every container of a state root (killing what runs) and
// gives back its networks' bridges and rules, before the root is deleted.
func cleanRoot(hako, root string) {
	cmd := exec.Command(hako, "system", "reset", "-f")
	cmd.Env = append(os.Environ(), "HAKO_ROOT="+root)
	cmd.Run()
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}
