package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/oci"
)

// createFlags are the flags `run` and `create` share.
type createFlags struct {
	name, workdir, user, entrypoint, hostname, restart                    string
	memory, memorySwap, cpus, detachKeys, network                         string
	cpuShares                                                             int64
	pidsLimit                                                             int64
	env, envFile, attach, securityOpt, capAdd, capDrop, networkAlias, dns []string
	labels, publish, expose, volumes, volumesFrom, tmpfs                  []string
	mounts                                                                []string
	pull, platform                                                        string
	interactive, tty, rm, readOnly, init, privileged                      bool
	publishAll                                                            bool
}

func (f *createFlags) register(fs *pflag.FlagSet) {
	fs.SetInterspersed(false)
	fs.Bool("help", false, "Print usage") // -h is --hostname here, as in Docker
	fs.StringVar(&f.name, "name", "", "Assign a name to the container")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "Working directory inside the container")
	fs.StringVarP(&f.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	fs.StringVarP(&f.hostname, "hostname", "h", "", "Container host name")
	fs.StringVar(&f.restart, "restart", "no", "Restart policy to apply when a container exits")
	fs.StringVarP(&f.memory, "memory", "m", "", "Memory limit")
	fs.StringVar(&f.memorySwap, "memory-swap", "", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	fs.StringVar(&f.cpus, "cpus", "", "Number of CPUs")
	fs.Int64VarP(&f.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	fs.Int64Var(&f.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	fs.StringVar(&f.network, "network", "", "Connect a container to a network")
	fs.StringVar(&f.network, "net", "", "Connect a container to a network")
	fs.MarkHidden("net")
	fs.StringArrayVar(&f.networkAlias, "network-alias", nil, "Add network-scoped alias for the container")
	fs.StringArrayVar(&f.dns, "dns", nil, "Set custom DNS servers")
	fs.StringVar(&f.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	fs.StringVar(&f.pull, "pull", "missing", `Pull image before running ("always", "missing", "never")`)
	fs.StringVar(&f.platform, "platform", "", "Set platform if server is multi-platform capable")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "Set environment variables")
	fs.StringArrayVar(&f.envFile, "env-file", nil, "Read in a file of environment variables")
	fs.StringArrayVarP(&f.attach, "attach", "a", nil, "Attach to STDIN, STDOUT or STDERR")
	fs.StringArrayVar(&f.securityOpt, "security-opt", nil, "Security Options")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "Add Linux capabilities")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "Drop Linux capabilities")
	fs.StringArrayVarP(&f.labels, "label", "l", nil, "Set meta data on a container")
	fs.StringArrayVarP(&f.publish, "publish", "p", nil, "Publish a container's port(s) to the host")
	fs.BoolVarP(&f.publishAll, "publish-all", "P", false, "Publish all exposed ports to random ports")
	fs.StringArrayVar(&f.expose, "expose", nil, "Expose a port or a range of ports")
	fs.StringArrayVarP(&f.volumes, "volume", "v", nil, "Bind mount a volume")
	fs.StringArrayVar(&f.volumesFrom, "volumes-from", nil, "Mount volumes from the specified container(s)")
	fs.StringArrayVar(&f.tmpfs, "tmpfs", nil, "Mount a tmpfs directory")
	fs.StringArrayVar(&f.mounts, "mount", nil, "Attach a filesystem mount to the container")
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	fs.BoolVarP(&f.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	fs.BoolVar(&f.rm, "rm", false, "Automatically remove the container and its associated anonymous volumes when it exits")
	fs.BoolVar(&f.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	fs.BoolVar(&f.init, "init", false, "Run an init inside the container that forwards signals and reaps processes")
	fs.BoolVar(&f.privileged, "privileged", false, "Give extended privileges to this container")
}

// options turns the flags and arguments into engine options, checking every
// value before anything is created.
func (f *createFlags) options(fs *pflag.FlagSet, args []string) (engine.CreateOptions, error) {
	var o engine.CreateOptions
	o.Name = f.name
	switch f.pull {
	case "missing", "always", "never":
		o.Pull = f.pull
	default:
		return o, fmt.Errorf("invalid pull option: '%s': must be one of \"always\", \"missing\" or \"never\"", f.pull)
	}
	o.Platform = f.platform
	cfg := &o.Config
	cfg.Image = args[0]
	cfg.Cmd = args[1:]
	cfg.Tty, cfg.OpenStdin = f.tty, f.interactive
	cfg.WorkingDir, cfg.User, cfg.Hostname = f.workdir, f.user, f.hostname
	if fs.Changed("entrypoint") {
		o.EntrypointSet = true
		if f.entrypoint != "" {
			cfg.Entrypoint = []string{f.entrypoint}
		}
	}
	for _, file := range f.envFile {
		lines, err := readEnvFile(file)
		if err != nil {
			return o, err
		}
		cfg.Env = append(cfg.Env, lines...)
	}
	for _, e := range f.env {
		kv, err := envValue(e)
		if err != nil {
			return o, err
		}
		if kv != "" {
			cfg.Env = append(cfg.Env, kv)
		}
	}
	if len(f.labels) > 0 {
		cfg.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			cfg.Labels[k] = v
		}
	}
	if f.init {
		return o, errors.New("--init is not supported by hako yet: the command runs as PID 1")
	}
	for _, spec := range f.publish {
		cport, b, err := container.ParsePublish(spec)
		if err != nil {
			return o, err
		}
		if o.HostConfig.PortBindings == nil {
			o.HostConfig.PortBindings = map[string][]container.PortBinding{}
		}
		o.HostConfig.PortBindings[cport] = append(o.HostConfig.PortBindings[cport], b)
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		cfg.ExposedPorts[cport] = struct{}{}
	}
	for _, e := range f.expose {
		cport, _, err := container.ParsePublish(e)
		if err != nil || strings.Contains(e, ":") {
			return o, fmt.Errorf("invalid range format for --expose: %s", e)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		cfg.ExposedPorts[cport] = struct{}{}
	}
	o.HostConfig.PublishAllPorts = f.publishAll
	o.VolumesFrom = f.volumesFrom
	o.HostConfig.VolumesFrom = f.volumesFrom
	for _, t := range f.tmpfs {
		p, opts, err := container.ParseTmpfs(t)
		if err != nil {
			return o, err
		}
		if o.HostConfig.Tmpfs == nil {
			o.HostConfig.Tmpfs = map[string]string{}
		}
		o.HostConfig.Tmpfs[p] = opts
	}
	for _, spec := range f.mounts {
		m, err := container.ParseMount(spec)
		if err != nil {
			return o, err
		}
		if m.Type == "tmpfs" {
			if o.HostConfig.Tmpfs == nil {
				o.HostConfig.Tmpfs = map[string]string{}
			}
			o.HostConfig.Tmpfs[m.Destination] = ""
			continue
		}
		o.Binds = append(o.Binds, m)
	}
	for _, v := range f.volumes {
		m, err := container.ParseBind(v)
		if err != nil {
			return o, err
		}
		o.Binds = append(o.Binds, m)
		o.HostConfig.Binds = append(o.HostConfig.Binds, v)
	}
	o.HostConfig.NetworkMode = f.network
	o.NetworkAliases = f.networkAlias
	for _, d := range f.dns {
		if net.ParseIP(d) == nil {
			return o, fmt.Errorf("%s is not an ip address", d)
		}
	}
	o.HostConfig.DNS = f.dns
	hc := &o.HostConfig
	hc.AutoRemove, hc.ReadonlyRootfs, hc.Privileged = f.rm, f.readOnly, f.privileged
	hc.SecurityOpt = f.securityOpt
	for _, s := range f.securityOpt {
		if !strings.HasPrefix(s, "no-new-privileges") && !strings.HasPrefix(s, "seccomp") && !strings.HasPrefix(s, "apparmor") && !strings.HasPrefix(s, "label") {
			return o, fmt.Errorf("invalid --security-opt: %q", s)
		}
	}
	for _, cp := range append(append([]string{}, f.capAdd...), f.capDrop...) {
		if _, err := oci.NormalizeCap(cp); err != nil {
			return o, fmt.Errorf("invalid capability: %w", err)
		}
	}
	hc.CapAdd, hc.CapDrop = f.capAdd, f.capDrop
	rp, err := parseRestart(f.restart)
	if err != nil {
		return o, err
	}
	hc.RestartPolicy = rp
	if f.memory != "" {
		n, err := units.RAMInBytes(f.memory)
		if err != nil || n < 0 {
			return o, fmt.Errorf("invalid argument %q for \"-m, --memory\" flag: invalid size: '%s'", f.memory, f.memory)
		}
		if n < 6*1024*1024 {
			return o, errors.New("Minimum memory limit allowed is 6MB")
		}
		hc.Memory = n
	}
	if f.memorySwap != "" {
		if f.memorySwap == "-1" {
			hc.MemorySwap = -1
		} else {
			n, err := units.RAMInBytes(f.memorySwap)
			if err != nil {
				return o, fmt.Errorf("invalid argument %q for \"--memory-swap\" flag: invalid size: '%s'", f.memorySwap, f.memorySwap)
			}
			if hc.Memory == 0 {
				return o, errors.New("You should always set the Memory limit when using Memoryswap limit, see usage")
			}
			if n < hc.Memory {
				return o, errors.New("Minimum memoryswap limit should be larger than memory limit, see usage")
			}
			hc.MemorySwap = n
		}
	}
	if hc.Memory > 0 && hc.MemorySwap == 0 {
		// Docker's default: as much swap as memory.
		hc.MemorySwap = 2 * hc.Memory
	}
	if f.cpus != "" {
		v, err := strconv.ParseFloat(f.cpus, 64)
		if err != nil || v < 0 {
			return o, fmt.Errorf("invalid argument %q for \"--cpus\" flag: failed to parse %s as a rational number", f.cpus, f.cpus)
		}
		if v > 0 && v < 0.01 {
			return o, errors.New("Range of CPUs is from 0.01 to the number of CPUs available")
		}
		hc.NanoCpus = int64(v * 1e9)
	}
	if f.cpuShares < 0 {
		return o, fmt.Errorf("invalid CPU shares: %d", f.cpuShares)
	}
	hc.CpuShares = f.cpuShares
	if fs.Changed("pids-limit") {
		n := f.pidsLimit
		hc.PidsLimit = &n
	}
	if f.tty && f.interactive {
		cfg.StdinOnce = true
	}
	cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr = f.interactive, true, true
	if len(f.attach) > 0 {
		cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr = false, false, false
		for _, a := range f.attach {
			switch strings.ToLower(a) {
			case "stdin":
				cfg.AttachStdin = true
			case "stdout":
				cfg.AttachStdout = true
			case "stderr":
				cfg.AttachStderr = true
			default:
				return o, fmt.Errorf("valid streams are STDIN, STDOUT and STDERR")
			}
		}
	}
	if cfg.OpenStdin && !cfg.StdinOnce {
		cfg.StdinOnce = true
	}
	if f.detachKeys != "" {
		if _, err := parseDetachKeys(f.detachKeys); err != nil {
			return o, err
		}
	}
	return o, nil
}

func parseRestart(s string) (container.RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	p := container.RestartPolicy{Name: name}
	switch name {
	case "", "no":
		p.Name = "no"
		if hasCount {
			return p, fmt.Errorf("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
		}
	case "always", "unless-stopped":
		if hasCount {
			return p, fmt.Errorf("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
		}
	case "on-failure":
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return p, fmt.Errorf("invalid restart policy format: maximum retry count must be a positive integer")
			}
			p.MaximumRetryCount = n
		}
	default:
		return p, fmt.Errorf("invalid restart policy format: no such policy: %s", name)
	}
	return p, nil
}

// envValue handles -e KEY=value and -e KEY (taken from the caller's environment).
func envValue(e string) (string, error) {
	k, _, has := strings.Cut(e, "=")
	if k == "" {
		return "", fmt.Errorf("invalid environment variable: %s", e)
	}
	if has {
		return e, nil
	}
	if v, ok := os.LookupEnv(k); ok {
		return k + "=" + v, nil
	}
	return "", nil
}

func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: no such file or directory", path)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv, err := envValue(line)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if kv != "" {
			out = append(out, kv)
		}
	}
	return out, sc.Err()
}

// parseDetachKeys reads Docker's detach key syntax: "ctrl-p,ctrl-q", "a,ctrl-@".
func parseDetachKeys(s string) ([]byte, error) {
	var out []byte
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(k, "ctrl-") && len(k) == 6:
			ch := k[5]
			switch {
			case ch >= 'a' && ch <= 'z':
				out = append(out, ch-'a'+1)
			case ch == '@':
				out = append(out, 0)
			case ch == '[':
				out = append(out, 27)
			case ch == '\\':
				out = append(out, 28)
			case ch == ']':
				out = append(out, 29)
			case ch == '^':
				out = append(out, 30)
			case ch == '_':
				out = append(out, 31)
			default:
				return nil, fmt.Errorf("Unknown character: '%s'", k)
			}
		default:
			return nil, fmt.Errorf("Unknown character: '%s'", k)
		}
	}
	return out, nil
}

func (c *cli) createCmd() *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd.Flags(), args)
			if err != nil {
				return &exitError{code: 125, msg: c.prog + ": " + err.Error() + ".\nSee '" + c.prog + " create --help'."}
			}
			eng, err := c.engine()
			if err != nil {
				return &exitError{code: 125, msg: err.Error()}
			}
			o.PullProgress = c.err
			warnHostPorts(c, o)
			ctr, err := eng.Create(cmd.Context(), o)
			if err != nil {
				return c.runError("create", err)
			}
			fmt.Fprintln(c.out, ctr.ID)
			return nil
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (c *cli) runCmd() *cobra.Command {
	var f createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(cmd.Flags(), args)
			if err != nil {
				return &exitError{code: 125, msg: c.prog + ": " + err.Error() + ".\nSee '" + c.prog + " run --help'."}
			}
			stdinTTY := isTerminal(c.in)
			if f.tty && f.interactive && !stdinTTY && !detach {
				return &exitError{code: 1, msg: "the input device is not a TTY"}
			}
			eng, err := c.engine()
			if err != nil {
				return &exitError{code: 125, msg: err.Error()}
			}
			ctx := cmd.Context()
			o.PullProgress = c.err
			warnHostPorts(c, o)
			ctr, err := eng.Create(ctx, o)
			if err != nil {
				return c.runError("run", err)
			}
			if detach {
				if _, err := eng.Containers.StartMonitor(ctr.ID, false); err != nil {
					return c.runError("run", err)
				}
				fmt.Fprintln(c.out, ctr.ID)
				return nil
			}
			return c.attachAndStart(ctx, eng, ctr, f.detachKeys, true, "run")
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Run container in background and print container ID")
	f.register(cmd.Flags())
	return cmd
}

// attachAndStart starts a container's monitor, attaches to it before the
// process starts (so no output is missed) and copies the streams until the
// container exits or the user detaches.
func (c *cli) attachAndStart(ctx context.Context, eng *engine.Engine, ctr *container.Container, detachKeys string, start bool, cmdName string) error {
	cfg := ctr.Config
	opt := container.AttachOptions{CloseStdin: cfg.StdinOnce}
	if cfg.AttachStdout {
		opt.Stdout = c.out
	}
	if cfg.AttachStderr {
		opt.Stderr = c.err
		if cfg.Tty {
			opt.Stderr = nil
		}
	}
	if cfg.OpenStdin && cfg.AttachStdin {
		opt.Stdin = c.in
	}
	keys, _ := parseDetachKeys("ctrl-p,ctrl-q")
	if detachKeys != "" {
		keys, _ = parseDetachKeys(detachKeys)
	}
	if cfg.Tty && opt.Stdin != nil {
		opt.DetachKeys = keys
	}
	// A terminal in raw mode passes every key to the container's terminal.
	if cfg.Tty && opt.Stdin != nil {
		if f, ok := c.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			old, err := term.MakeRaw(int(f.Fd()))
			if err == nil {
				defer term.Restore(int(f.Fd()), old)
			}
			resize := make(chan [2]uint16, 1)
			sendSize := func() {
				if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
					select {
					case resize <- [2]uint16{ws.Row, ws.Col}:
					default:
					}
				}
			}
			sendSize()
			winch := make(chan os.Signal, 1)
			signal.Notify(winch, unix.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for range winch {
					sendSize()
				}
			}()
			opt.Resize = resize
		}
	}
	if !cfg.Tty {
		// --sig-proxy: signals to the CLI go to the container.
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
		defer signal.Stop(sigs)
		go func() {
			for s := range sigs {
				eng.Containers.Signal(ctr.ID, s.(unix.Signal), false)
			}
		}()
	}
	if start {
		if _, err := eng.Containers.StartMonitor(ctr.ID, true); err != nil {
			return c.runError(cmdName, err)
		}
	}
	code, err := eng.Containers.Attach(ctx, ctr.ID, opt)
	if errors.Is(err, container.ErrDetached) {
		if cmdName == "attach" {
			fmt.Fprintln(c.err, "read escape sequence")
		}
		return nil
	}
	if err != nil {
		var pe *oci.ProcessError
		if errors.As(err, &pe) || errdefs.Is(err, errdefs.ErrInvalid) {
			return c.runError(cmdName, err)
		}
		return &exitError{code: 125, msg: c.prog + ": " + err.Error()}
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// isTerminal reports whether a stream (in or out) is a terminal.
func isTerminal(r any) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// warnHostPorts says, as Docker does, that -p means nothing with the host's
// network.
func warnHostPorts(c *cli, o engine.CreateOptions) {
	if o.HostConfig.NetworkMode == "host" && (len(o.HostConfig.PortBindings) > 0 || o.HostConfig.PublishAllPorts) {
		fmt.Fprintln(c.err, "WARNING: Published ports are discarded when using host network mode")
	}
}
