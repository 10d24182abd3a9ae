package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// learnCommands are the lessons' commands. They live in the hako-learn
// binary installed beside hako, the way `docker compose` lives in a plugin:
// its Markdown renderer and check runner cost start-up time that every plain
// `docker ps` would otherwise pay.
var learnCommands = []struct{ name, short string }{
	{"learn", "The course: list chapters and progress, or show chapter N"},
	{"next", "Move to the next exercise"},
	{"prev", "Move to the previous exercise"},
	{"goto", "Move to an exercise (3/run, 3.1)"},
	{"check", "Check the current (or named) exercise"},
	{"hint", "Show the hints of the current exercise"},
	{"solution", "Show the reference solution (after a failed check)"},
	{"reset", "Remove what the current exercise created and clear its progress"},
	{"progress", "Show the exercises done"},
	{"lab", "A shell where docker is hako, re-checking after each command"},
	{"grade", "Grade every exercise (markdown, json or junit)"},
	{"course", "Validate, test and bundle the images of a course"},
}

// learnCmds makes one command per lesson command, each handing its arguments
// unparsed to hako-learn.
func (c *cli) learnCmds() []*cobra.Command {
	var cmds []*cobra.Command
	for _, lc := range learnCommands {
		cmds = append(cmds, &cobra.Command{
			Use:                lc.name,
			Short:              lc.short,
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.execLearn(append([]string{cmd.Name()}, args...))
			},
		})
	}
	return cmds
}

// learnBinary is $HAKO_LEARN, else hako-learn beside this executable, else on PATH.
func learnBinary() (string, error) {
	if p := os.Getenv("HAKO_LEARN"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "hako-learn")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath("hako-learn")
}

// execLearn replaces this process with hako-learn (so a lab shell owns the
// terminal directly), telling it which hako and which state root to use.
func (c *cli) execLearn(args []string) error {
	bin, err := learnBinary()
	if err != nil {
		return &exitError{code: 1, msg: "hako: the lessons need hako-learn beside hako (make build installs it): " + err.Error()}
	}
	env := os.Environ()
	if exe, err := os.Executable(); err == nil {
		env = append(env, "HAKO_BIN="+exe)
	}
	if c.rootDir != "" {
		env = append(env, "HAKO_ROOT="+c.rootDir)
	}
	err = syscall.Exec(bin, append([]string{"hako-learn"}, args...), env)
	return &exitError{code: 1, msg: fmt.Sprintf("hako: exec %s: %v", bin, err)}
}
