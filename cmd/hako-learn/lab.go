package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"hako.dev/hako/lessons/render"
)

// lab opens the learner's shell with docker (and docker-compose) on PATH
// pointing to hako, a prompt naming the current exercise, and a quiet
// re-check after each command that announces when the exercise passes. bash
// runs with a temporary rcfile that first reads the learner's own ~/.bashrc;
// everything lives in that shell's environment and a temp folder removed on
// exit, so leaving the shell restores everything.
func (a *app) lab() int {
	tmp, err := os.MkdirTemp("", "hako-lab-")
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	self, err := os.Executable()
	if err == nil {
		err = os.Mkdir(bin, 0o755)
	}
	for _, name := range []string{"docker", "docker-compose", "hako"} {
		if err == nil {
			err = os.Symlink(a.hako, filepath.Join(bin, name))
		}
	}
	if err == nil {
		err = os.Symlink(self, filepath.Join(bin, "hako-learn"))
	}
	if err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	cur := a.current()
	fmt.Fprintln(a.stderr, render.Msg(a.lang, "lab-enter", cur.Key()))
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	rc := filepath.Join(tmp, "rc")
	script := `[ -f ~/.bashrc ] && . ~/.bashrc
export PATH=` + q(bin) + `:"$PATH"
export HAKO_ROOT=` + q(a.root) + ` HAKO_BIN=` + q(a.hako) + ` HAKO_LAB=1
__hako_tick() { __hako_ex=$(hako-learn lab-tick --lang ` + a.lang + ` ` + courseFlag(a.courseIn) + `); }
__hako_ex=` + q(cur.Key()) + `
PROMPT_COMMAND="__hako_tick${PROMPT_COMMAND:+; $PROMPT_COMMAND}"
PS1='(hako $__hako_ex) \w\$ '
`
	if err := os.WriteFile(rc, []byte(script), 0o600); err != nil {
		fmt.Fprintln(a.stderr, "hako:", err)
		return 1
	}
	shell, err := exec.LookPath("bash")
	var cmd *exec.Cmd
	if err == nil {
		cmd = exec.Command(shell, "--rcfile", rc, "-i")
	} else {
		// No bash: a POSIX sh reads $ENV; no re-check after each command.
		cmd = exec.Command("/bin/sh", "-i")
		cmd.Env = append(os.Environ(), "ENV="+rc)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = a.stdin, a.stdout, a.stderr
	cmd.Dir, _ = os.Getwd()
	err = cmd.Run()
	fmt.Fprintln(a.stderr, render.Msg(a.lang, "lab-left"))
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return 0
}

func courseFlag(dir string) string {
	if dir == "" {
		return ""
	}
	abs, _ := filepath.Abs(dir)
	return "--course '" + strings.ReplaceAll(abs, "'", `'\''`) + "'"
}

// labTick is the quiet re-check after each command in `hako lab`: it checks
// the current exercise once (the http command does not wait), announces on
// stderr when it passes for the first time, and prints the current
// exercise's key for the prompt.
func (a *app) labTick() int {
	e := a.current()
	if _, done := a.state.Done[e.Key()]; !done {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r := a.runner(a.root)
		r.HTTPTries = 1
		if res, err := r.Exercise(ctx, e); err == nil && res.Passed() {
			a.state.Done[e.Key()] = time.Now().UTC()
			if a.save() == nil {
				fmt.Fprintln(a.stderr, render.Msg(a.lang, "lab-passed", e.Key()))
			}
		}
	}
	fmt.Fprintln(a.stdout, e.Key())
	return 0
}
