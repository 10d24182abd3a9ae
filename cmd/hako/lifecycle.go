package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/errdefs"
)

// findContainer opens the engine and resolves one container argument, with
// Docker's exit-1 errors.
func (c *cli) findContainer(ref string) (*engine.Engine, *container.Container, error) {
	eng, err := c.engine()
	if err != nil {
		return nil, nil, fail1(err)
	}
	ctr, err := eng.Containers.Find(ref)
	if err != nil {
		return nil, nil, fail1(err)
	}
	return eng, ctr, nil
}

// eachContainer runs fn for every argument, printing errors Docker's way and
// going on with the rest; it exits 1 if any failed.
func (c *cli) eachContainer(args []string, fn func(eng *engine.Engine, ctr *container.Container, arg string) error) error {
	eng, err := c.engine()
	if err != nil {
		return fail1(err)
	}
	var m multiErr
	for _, a := range args {
		ctr, err := eng.Containers.Find(a)
		if err == nil {
			err = fn(eng, ctr, a)
		}
		if err != nil {
			var ee *exitError
			if errors.As(err, &ee) {
				m.errs = append(m.errs, ee.msg)
				continue
			}
			m.add(err)
		}
	}
	return m.result()
}

func (c *cli) startCmd() *cobra.Command {
	var attach, interactive bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if attach || interactive {
				if len(args) > 1 {
					return &exitError{code: 1, msg: "you cannot start and attach multiple containers at once"}
				}
				eng, ctr, err := c.findContainer(args[0])
				if err != nil {
					return err
				}
				if ctr.State.Running {
					return c.attachAndStart(cmd.Context(), eng, ctr, detachKeys, false, "attach")
				}
				ctr.Config.AttachStdin = interactive && ctr.Config.OpenStdin
				ctr.Config.AttachStdout, ctr.Config.AttachStderr = attach, attach
				return c.attachAndStart(cmd.Context(), eng, ctr, detachKeys, true, "start")
			}
			return c.eachContainer(args, func(eng *engine.Engine, ctr *container.Container, arg string) error {
				if !ctr.State.Running && !ctr.State.Restarting {
					if _, err := eng.Containers.StartMonitor(ctr.ID, false); err != nil {
						return &exitError{code: 1, msg: daemonError(fmt.Errorf("failed to start container: %s: %w", arg, err))}
					}
				}
				fmt.Fprintln(c.out, arg)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Attach container's STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

func (c *cli) stopCmd() *cobra.Command {
	var timeout int
	var signal string
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.eachContainer(args, func(eng *engine.Engine, ctr *container.Container, arg string) error {
				if signal != "" {
					if _, err := container.ParseSignal(signal); err != nil {
						return err
					}
					ctr.Config.StopSignal = signal
				}
				if err := stopContainer(cmd.Context(), eng, ctr, timeout, signal); err != nil {
					return err
				}
				fmt.Fprintln(c.out, arg)
				return nil
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "Seconds to wait before killing the container")
	cmd.Flags().StringVarP(&signal, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func stopContainer(ctx context.Context, eng *engine.Engine, ctr *container.Container, timeout int, signal string) error {
	if signal != "" {
		if _, err := eng.Containers.Signal(ctr.ID, mustSignal(signal), true); err != nil && !errdefs.Is(err, errdefs.ErrNotRunning) {
			return err
		}
	}
	return eng.Containers.Stop(ctx, ctr.ID, time.Duration(timeout)*time.Second)
}

func mustSignal(s string) unix.Signal {
	n, _ := container.ParseSignal(s)
	return n
}

func (c *cli) restartCmd() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.eachContainer(args, func(eng *engine.Engine, ctr *container.Container, arg string) error {
				if err := eng.Containers.Stop(cmd.Context(), ctr.ID, time.Duration(timeout)*time.Second); err != nil {
					return err
				}
				if _, err := eng.Containers.StartMonitor(ctr.ID, false); err != nil {
					return fmt.Errorf("Cannot restart container %s: %w", arg, err)
				}
				fmt.Fprintln(c.out, arg)
				return nil
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "Seconds to wait before killing the container")
	return cmd
}

func (c *cli) killCmd() *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := container.ParseSignal(signal)
			if err != nil {
				return fail1(err)
			}
			return c.eachContainer(args, func(eng *engine.Engine, ctr *container.Container, arg string) error {
				if _, err := eng.Containers.Signal(ctr.ID, sig, true); err != nil {
					if errdefs.Is(err, errdefs.ErrNotRunning) {
						return fmt.Errorf("cannot kill container: %s: container %s is not running", arg, ctr.ID)
					}
					return err
				}
				fmt.Fprintln(c.out, arg)
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "Signal to send to the container")
	return cmd
}

func (c *cli) rmCmd() *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.eachContainer(args, func(eng *engine.Engine, ctr *container.Container, arg string) error {
				if err := eng.RemoveContainer(cmd.Context(), ctr, force, volumes); err != nil {
					return err
				}
				fmt.Fprintln(c.out, arg)
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "Remove anonymous volumes associated with the container")
	return cmd
}

func (c *cli) waitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.eachContainer(args, func(eng *engine.Engine, ctr *container.Container, arg string) error {
				st, err := eng.Containers.WaitStopped(cmd.Context(), ctr.ID)
				if errdefs.Is(err, errdefs.ErrNotFound) && ctr.HostConfig.AutoRemove {
					// removed by --rm meanwhile: its exit is gone with it
					fmt.Fprintln(c.out, 0)
					return nil
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(c.out, st.State.ExitCode)
				return nil
			})
		},
	}
}

func (c *cli) renameCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			if err := eng.Containers.Rename(ctr.ID, args[1]); err != nil {
				return fail1(fmt.Errorf("Error when allocating new name: %w", err))
			}
			return nil
		},
	}
}

func (c *cli) topCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, ctr, err := c.findContainer(args[0])
			if err != nil {
				return err
			}
			ps, err := eng.Containers.Top(ctr.ID)
			if err != nil {
				return fail1(err)
			}
			tw := newTable(c.out)
			fmt.Fprintln(tw, "UID\tPID\tPPID\tC\tSTIME\tTTY\tTIME\tCMD")
			for _, p := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.UID, p.PID, p.PPID, p.C, p.STIME, p.TTY, p.TIME, p.CMD)
			}
			return tw.Flush()
		},
	}
}
