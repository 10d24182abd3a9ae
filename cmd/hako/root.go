package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"strings"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/errdefs"
)

// cli carries what every command needs: the streams, the program's name (as
// invoked: "docker" or "hako") and a lazily opened engine.
type cli struct {
	prog    string
	in      io.Reader
	out     io.Writer
	err     io.Writer
	rootDir string
	eng     *engine.Engine
}

func (c *cli) engine() (*engine.Engine, error) {
	if c.eng == nil {
		e, err := engine.Open(engine.RootFromEnv(c.rootDir))
		if err != nil {
			return nil, err
		}
		c.eng = e
	}
	return c.eng, nil
}

// exitError ends the command with a code; msg (if any) is printed as is.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// daemonError prints like an error from Docker's daemon.
func daemonError(err error) string { return "Error response from daemon: " + err.Error() }

func execute(prog string, args []string, in io.Reader, out, errw io.Writer) int {
	c := &cli{prog: prog, in: in, out: out, err: errw}
	root := c.rootCmd()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errw)
	cmd, err := root.ExecuteContextC(context.Background())
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(errw, ee.msg)
		}
		return ee.code
	}
	// Flag and argument errors, as Docker prints them.
	fmt.Fprintf(errw, "%s: %s\nSee '%s --help'.\n", prog, err, cmd.CommandPath())
	return 125
}

func (c *cli) rootCmd() *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   c.prog + " [OPTIONS] COMMAND",
		Short: "A Docker classroom: Docker's commands on hako's own container runtime",
		Long: "hako runs the commands of a Docker course for real, on its own daemonless\n" +
			"container runtime (namespaces, overlayfs, cgroups). Invoked as `docker`, it is\n" +
			"the Docker CLI.",
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				fmt.Fprintf(c.out, "%s version %s (hako, Docker-compatible CLI)\n", displayName(c.prog), version)
				return nil
			}
			return cmd.Help()
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.Flags().BoolVarP(&showVersion, "version", "v", false, "Print version information and quit")
	root.PersistentFlags().StringVar(&c.rootDir, "root", "", "State root (default $HAKO_ROOT or /var/lib/hako)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return err })

	containerCmds := func() []*cobra.Command {
		return []*cobra.Command{
			c.runCmd(), c.createCmd(), c.startCmd(), c.stopCmd(), c.restartCmd(), c.killCmd(),
			c.rmCmd(), c.psCmd(), c.logsCmd(), c.waitCmd(), c.execCmd(), c.attachCmd(),
			c.topCmd(), c.renameCmd(), c.portCmd(), c.diffCmd(), c.commitCmd(), c.cpCmd(), c.inspectCmd("container"),
		}
	}
	root.AddCommand(containerCmds()...)
	root.RemoveCommand(findCmd(root, "inspect"))
	root.AddCommand(c.inspectCmd(""))
	root.AddCommand(c.imagesCmd(), c.rmiCmd(), c.tagCmd(), c.loadCmd(), c.importCmd(), c.versionCmd(), c.ociCmd())
	root.AddCommand(c.saveCmd(), c.historyCmd(), c.pullCmd(), c.pushCmd())
	root.AddCommand(c.loginCmd(), c.logoutCmd(), c.exportCmd(), c.searchCmd(), c.registryCmd(), c.volumeCmd(), c.networkCmd(), c.systemCmd())

	ctr := &cobra.Command{Use: "container", Short: "Manage containers"}
	for _, sub := range containerCmds() {
		if sub.Name() == "ps" {
			sub.Use = "ls [OPTIONS]"
			sub.Aliases = []string{"ps", "list"}
		}
		ctr.AddCommand(sub)
	}
	ctr.AddCommand(c.exportCmd())
	img := &cobra.Command{Use: "image", Short: "Manage images"}
	ls := c.imagesCmd()
	ls.Use, ls.Aliases = "ls [OPTIONS] [REPOSITORY[:TAG]]", []string{"list"}
	rm := c.rmiCmd()
	rm.Use, rm.Aliases = "rm [OPTIONS] IMAGE [IMAGE...]", []string{"remove"}
	img.AddCommand(ls, rm, c.tagCmd(), c.loadCmd(), c.importCmd(), c.inspectCmd("image"))
	img.AddCommand(c.saveCmd(), c.historyCmd(), c.imagePruneCmd(), c.pullCmd(), c.pushCmd())
	root.AddCommand(ctr, img)
	root.AddCommand(c.learnCmds()...)
	return root
}

func displayName(prog string) string {
	if prog == "docker" {
		return "Docker"
	}
	return "hako"
}

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the hako version information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(c.out, "Client: hako\n Version:\t%s\n API version:\tnone (daemonless)\n\nServer: hako embedded runtime\n Engine:\n  Version:\t%s\n", version, version)
			return nil
		},
	}
}

// fail1 makes an exit-1 error with Docker's daemon prefix.
func fail1(err error) error { return &exitError{code: 1, msg: daemonError(err)} }

// runError maps an error from run/create to Docker's message and exit code.
func (c *cli) runError(cmdName string, err error) error {
	code := 125
	msg := err.Error()
	switch {
	case errdefs.Is(err, errdefs.ErrCommandNotFound):
		code = 127
		msg = "failed to create task for container: unable to start container process: " + msg
	case errdefs.Is(err, errdefs.ErrCannotInvoke):
		code = 126
		msg = "failed to create task for container: unable to start container process: " + msg
	}
	return &exitError{code: code, msg: c.prog + ": Error response from daemon: " + msg + ".\nSee '" + c.prog + " " + cmdName + " --help'."}
}

// multiErr collects per-argument failures (rm a missing b removes a and b,
// prints the error, and exits 1).
type multiErr struct {
	errs []string
}

func (m *multiErr) add(err error) { m.errs = append(m.errs, daemonError(err)) }

func (m *multiErr) result() error {
	if len(m.errs) == 0 {
		return nil
	}
	return &exitError{code: 1, msg: strings.Join(m.errs, "\n")}
}

func findCmd(root *cobra.Command, name string) *cobra.Command {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	return nil
}
