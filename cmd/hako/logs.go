package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/oci"
)

func (c *cli) logsCmd() *cobra.Command {
	var follow, timestamps bool
	var tail, since, until string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opt := container.LogOptions{Follow: follow, Timestamps: timestamps, Tail: -1}
			if tail != "all" && tail != "" {
				n, err := strconv.Atoi(tail)
				if err != nil {
					return &exitError{code: 1, msg: fmt.Sprintf("invalid value for \"tail\": %q", tail)}
				}
				opt.Tail = n
			}
			var err error
			if opt.Since, err = parseTimeArg(since); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			if opt.Until, err = parseTimeArg(until); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			if err := eng.Containers.Logs(ctx, ctr.ID, opt, c.out, c.err); err != nil {
				return fail1(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "Follow log output")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "Show timestamps")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	cmd.Flags().StringVar(&since, "since", "", "Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	cmd.Flags().StringVar(&until, "until", "", "Show logs before a timestamp or relative")
	return cmd
}

// parseTimeArg reads Docker's --since/--until: RFC 3339, a Unix time, or a
// duration before now ("10m").
func parseTimeArg(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("invalid value for time: %q", s)
}

func (c *cli) execCmd() *cobra.Command {
	var o container.ExecOptions
	var interactive bool
	var envs, envFiles []string
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range envFiles {
				lines, err := readEnvFile(f)
				if err != nil {
					return &exitError{code: 125, msg: err.Error()}
				}
				o.Env = append(o.Env, lines...)
			}
			for _, e := range envs {
				kv, err := envValue(e)
				if err != nil {
					return &exitError{code: 125, msg: err.Error()}
				}
				if kv != "" {
					o.Env = append(o.Env, kv)
				}
			}
			o.Cmd = args[1:]
			if o.Tty && interactive && !isTerminal(c.in) && !o.Detach {
				return &exitError{code: 1, msg: "the input device is not a TTY"}
			}
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			var stdio oci.Stdio
			if !o.Tty && !o.Detach {
				if interactive {
					stdio.Stdin = fileOf(c.in)
				}
				stdio.Stdout, stdio.Stderr = fileOf(c.out), fileOf(c.err)
			}
			p, err := eng.Containers.Exec(ctr.ID, o, stdio)
			if err != nil {
				var pe *oci.ProcessError
				switch {
				case errors.As(err, &pe) && errdefs.Is(err, errdefs.ErrCommandNotFound):
					return &exitError{code: 127, msg: "OCI runtime exec failed: exec failed: unable to start container process: " + err.Error() + ": unknown"}
				case errors.As(err, &pe) && errdefs.Is(err, errdefs.ErrCannotInvoke):
					return &exitError{code: 126, msg: "OCI runtime exec failed: exec failed: unable to start container process: " + err.Error() + ": unknown"}
				case errors.As(err, &pe):
					return &exitError{code: 126, msg: daemonError(err)}
				}
				return fail1(err)
			}
			if o.Detach {
				return nil
			}
			if p.Console != nil {
				code := c.pumpTerminal(cmd.Context(), p, interactive, detachKeys)
				if code != 0 {
					return &exitError{code: code}
				}
				return nil
			}
			code, _ := p.Wait()
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false)
	fs.BoolVarP(&interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	fs.BoolVarP(&o.Tty, "tty", "t", false, "Allocate a pseudo-TTY")
	fs.BoolVarP(&o.Detach, "detach", "d", false, "Detached mode: run command in the background")
	fs.StringArrayVarP(&envs, "env", "e", nil, "Set environment variables")
	fs.StringArrayVar(&envFiles, "env-file", nil, "Read in a file of environment variables")
	fs.StringVarP(&o.WorkingDir, "workdir", "w", "", "Working directory inside the container")
	fs.StringVarP(&o.User, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fs.BoolVar(&o.Privileged, "privileged", false, "Give extended privileges to the command")
	fs.StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// fileOf returns the *os.File behind a stream, or nil (then /dev/null).
func fileOf(v any) *os.File {
	f, _ := v.(*os.File)
	return f
}

// pumpTerminal copies between the user's terminal and an exec'd process's
// pseudo-terminal, in raw mode, until the process exits.
func (c *cli) pumpTerminal(ctx context.Context, p *oci.Process, interactive bool, detachKeys string) int {
	in := fileOf(c.in)
	if in != nil && term.IsTerminal(int(in.Fd())) {
		if old, err := term.MakeRaw(int(in.Fd())); err == nil {
			defer term.Restore(int(in.Fd()), old)
		}
		resize := func() {
			if ws, err := unix.IoctlGetWinsize(int(in.Fd()), unix.TIOCGWINSZ); err == nil {
				unix.IoctlSetWinsize(int(p.Console.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
		resize()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, unix.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				resize()
			}
		}()
	}
	if interactive && c.in != nil {
		go io.Copy(p.Console, c.in)
	}
	done := make(chan struct{})
	go func() {
		io.Copy(c.out, p.Console) // ends with EIO once the process is gone
		close(done)
	}()
	code, _ := p.Wait()
	select {
	case <-done:
	case <-time.After(200 * time.Millisecond):
	}
	p.Console.Close()
	return code
}

func (c *cli) attachCmd() *cobra.Command {
	var noStdin bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			if !ctr.State.Running {
				return &exitError{code: 1, msg: "You cannot attach to a stopped container, start it first"}
			}
			if detachKeys != "" {
				if _, err := parseDetachKeys(detachKeys); err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
			}
			ctr.Config.AttachStdout, ctr.Config.AttachStderr = true, true
			ctr.Config.AttachStdin = ctr.Config.OpenStdin && !noStdin
			if ctr.Config.Tty && ctr.Config.AttachStdin && !isTerminal(c.in) {
				return &exitError{code: 1, msg: "the input device is not a TTY"}
			}
			return c.attachAndStart(cmd.Context(), eng, ctr, detachKeys, false, "attach")
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "Do not attach STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	cmd.Flags().Bool("sig-proxy", true, "Proxy all received signals to the process")
	return cmd
}
