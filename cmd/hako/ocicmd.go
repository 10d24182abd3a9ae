package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/cgroup"
	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/oci"
	"hako.dev/hako/runtime/state"
)

// ociState is the state a runc-style runtime reports (`runc state`).
type ociState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartTime   uint64            `json:"hakoStartTime,omitempty"`
}

// ociCmd is `hako oci`: the runtime below the CLI, driven like runc with a
// bundle (a directory with config.json and a root filesystem).
func (c *cli) ociCmd() *cobra.Command {
	var stateRoot string
	cmd := &cobra.Command{
		Use:   "oci",
		Short: "Run OCI bundles like runc (create, start, state, kill, delete, run)",
	}
	defState := os.Getenv("HAKO_OCI_STATE")
	if defState == "" {
		defState = "/run/hako-oci"
	}
	cmd.PersistentFlags().StringVar(&stateRoot, "state", defState, "Directory for the state of OCI containers (default $HAKO_OCI_STATE or /run/hako-oci)")
	dirOf := func(id string) (string, error) {
		if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
			return "", fmt.Errorf("invalid container id %q", id)
		}
		return filepath.Join(stateRoot, id), nil
	}
	load := func(id string) (*ociState, string, error) {
		dir, err := dirOf(id)
		if err != nil {
			return nil, "", err
		}
		var st ociState
		if err := state.ReadJSON(filepath.Join(dir, "state.json"), &st); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, dir, fmt.Errorf("container %q does not exist", id)
			}
			return nil, dir, err
		}
		// The status is read off the process: alive and waiting on the fifo
		// is created; alive is running; otherwise stopped.
		alive := false
		if t, err := container.ProcStartTime(st.Pid); err == nil && t == st.StartTime {
			alive = true
		}
		_, fifoErr := os.Stat(filepath.Join(dir, "exec.fifo"))
		switch {
		case !alive:
			st.Status = "stopped"
		case fifoErr == nil:
			st.Status = "created"
		default:
			st.Status = "running"
		}
		return &st, dir, nil
	}
	fail := func(err error) error { return &exitError{code: 1, msg: "hako oci: " + err.Error()} }

	create := func(id, bundle, consoleSocket, pidFile string, wait bool) (*oci.Process, string, error) {
		dir, err := dirOf(id)
		if err != nil {
			return nil, "", err
		}
		bundle, err = filepath.Abs(bundle)
		if err != nil {
			return nil, "", err
		}
		var spec specs.Spec
		if err := state.ReadJSON(filepath.Join(bundle, "config.json"), &spec); err != nil {
			return nil, "", fmt.Errorf("bundle: %w", err)
		}
		if spec.Root == nil || spec.Process == nil {
			return nil, "", errors.New("bundle: config.json needs root and process")
		}
		root := spec.Root.Path
		if !filepath.IsAbs(root) {
			root = filepath.Join(bundle, root)
		}
		if spec.Process.Terminal && consoleSocket == "" && !wait {
			return nil, "", errors.New("cannot allocate tty if hako oci will detach without setting console socket")
		}
		if err := os.MkdirAll(stateRoot, 0o700); err != nil {
			return nil, "", err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			if errors.Is(err, os.ErrExist) {
				return nil, "", fmt.Errorf("container with id %q already exists", id)
			}
			return nil, "", err
		}
		fifo := ""
		if !wait {
			fifo = filepath.Join(dir, "exec.fifo")
			if err := unix.Mkfifo(fifo, 0o600); err != nil {
				os.RemoveAll(dir)
				return nil, "", err
			}
		}
		var limits cgroup.Limits
		if r := spec.Linux.Resources; r != nil {
			if r.Memory != nil && r.Memory.Limit != nil {
				limits.Memory = *r.Memory.Limit
			}
			if r.Pids != nil && r.Pids.Limit != nil {
				limits.PidsLimit = *r.Pids.Limit
			}
			if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 {
				limits.CPUQuota = *r.CPU.Quota
				if r.CPU.Period != nil {
					limits.CPUPeriod = *r.CPU.Period
				}
			}
		}
		cg, err := cgroup.New("hako-oci", id, limits)
		if err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
		stdio := oci.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
		opts := oci.Options{JoinCgroup: cg.Add, Setsid: !wait}
		if cgroup.Mode() == "v2" {
			opts = oci.Options{CgroupDir: cg.Path(), Setsid: !wait}
		}
		p, err := oci.Start(&oci.InitConfig{Spec: &spec, Rootfs: root, Fifo: fifo, DeathSignal: wait}, stdio, opts)
		if err != nil {
			cg.Delete()
			os.RemoveAll(dir)
			return nil, "", err
		}
		if p.Console != nil && consoleSocket != "" {
			conn, err := net.Dial("unix", consoleSocket)
			if err == nil {
				uc := conn.(*net.UnixConn)
				_, _, err = uc.WriteMsgUnix([]byte("console"), unix.UnixRights(int(p.Console.Fd())), nil)
				conn.Close()
			}
			if err != nil {
				unix.Kill(p.Pid, unix.SIGKILL)
				cg.Delete()
				os.RemoveAll(dir)
				return nil, "", fmt.Errorf("console socket: %w", err)
			}
			p.Console.Close()
		}
		st, _ := container.ProcStartTime(p.Pid)
		s := &ociState{OCIVersion: specs.Version, ID: id, Status: "created", Pid: p.Pid, Bundle: bundle, Annotations: spec.Annotations, StartTime: st}
		if err := state.WriteJSON(filepath.Join(dir, "state.json"), s); err != nil {
			return nil, "", err
		}
		if pidFile != "" {
			if err := state.WriteFile(pidFile, []byte(strconv.Itoa(p.Pid)), 0o644); err != nil {
				return nil, "", err
			}
		}
		return p, dir, nil
	}

	var bundle, consoleSocket, pidFile string
	createCmd := &cobra.Command{
		Use:   "create [--bundle DIR] ID",
		Short: "Create a container from a bundle; it waits for `start`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := create(args[0], bundle, consoleSocket, pidFile, false); err != nil {
				return fail(err)
			}
			return nil
		},
	}
	for _, cc := range []*cobra.Command{createCmd} {
		cc.Flags().StringVarP(&bundle, "bundle", "b", ".", "Path to the bundle directory")
		cc.Flags().StringVar(&consoleSocket, "console-socket", "", "Unix socket that receives the terminal's master fd")
		cc.Flags().StringVar(&pidFile, "pid-file", "", "File to write the init's PID to")
	}
	var runBundle string
	runCmd := &cobra.Command{
		Use:   "run [--bundle DIR] ID",
		Short: "Create and start a container, wait for it, and delete it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, dir, err := create(args[0], runBundle, "", "", true)
			if err != nil {
				return fail(err)
			}
			code, _ := p.Wait()
			if cg, err := cgroup.Load("hako-oci", args[0]); err == nil {
				cg.Kill(unix.SIGKILL)
				cg.Delete()
			}
			os.RemoveAll(dir)
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	runCmd.Flags().StringVarP(&runBundle, "bundle", "b", ".", "Path to the bundle directory")

	startCmd := &cobra.Command{
		Use:   "start ID",
		Short: "Start a created container",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, dir, err := load(args[0])
			if err != nil {
				return fail(err)
			}
			if st.Status != "created" {
				return fail(fmt.Errorf("cannot start a container that has %s", map[string]string{"running": "already started", "stopped": "stopped"}[st.Status]))
			}
			fifo := filepath.Join(dir, "exec.fifo")
			f, err := os.OpenFile(fifo, os.O_RDONLY, 0)
			if err != nil {
				return fail(err)
			}
			buf := make([]byte, 1)
			f.Read(buf)
			f.Close()
			os.Remove(fifo)
			return nil
		},
	}
	stateCmd := &cobra.Command{
		Use:   "state ID",
		Short: "Print a container's state as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := load(args[0])
			if err != nil {
				return fail(err)
			}
			if st.Status == "stopped" {
				st.Pid = 0
			}
			st.StartTime = 0
			b, _ := json.MarshalIndent(st, "", "  ")
			fmt.Fprintln(c.out, string(b))
			return nil
		},
	}
	killCmd := &cobra.Command{
		Use:   "kill ID [SIGNAL]",
		Short: "Send a signal (default SIGTERM) to a container's init",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				s, err := container.ParseSignal(args[1])
				if err != nil {
					return fail(err)
				}
				sig = s
			}
			st, _, err := load(args[0])
			if err != nil {
				return fail(err)
			}
			if st.Status == "stopped" {
				return fail(errors.New("container not running"))
			}
			if err := unix.Kill(st.Pid, sig); err != nil {
				return fail(err)
			}
			return nil
		},
	}
	var force bool
	deleteCmd := &cobra.Command{
		Use:   "delete [--force] ID",
		Short: "Delete a container's resources",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, dir, err := load(args[0])
			if err != nil {
				return fail(err)
			}
			if st.Status == "running" && !force {
				return fail(errors.New("cannot delete container that is not stopped: running"))
			}
			if st.Status != "stopped" {
				unix.Kill(st.Pid, unix.SIGKILL)
				for i := 0; i < 200; i++ {
					if t, err := container.ProcStartTime(st.Pid); err != nil || t != st.StartTime {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if cg, err := cgroup.Load("hako-oci", args[0]); err == nil {
				cg.Kill(unix.SIGKILL)
				cg.Delete()
			}
			return os.RemoveAll(dir)
		},
	}
	deleteCmd.Flags().BoolVarP(&force, "force", "f", false, "Kill the container first if it runs")
	cmd.AddCommand(createCmd, startCmd, stateCmd, killCmd, deleteCmd, runCmd)
	return cmd
}
