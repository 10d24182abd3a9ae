package container

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/cgroup"
	"hako.dev/hako/runtime/oci"
	"hako.dev/hako/runtime/state"
	"hako.dev/hako/runtime/volume"
)

// EnvMonitor marks a hako process started as a container's monitor.
const EnvMonitor = "_HAKO_MONITOR"

// syncMsg is what a monitor tells the command that started it, one JSON line
// each, on the pipe it got as fd 3.
type syncMsg struct {
	Event string `json:"event"` // "listening", "started", "error"
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// monitor keeps one container alive.
type monitor struct {
	store     *Store
	id        string
	log       *logWriter
	ln        net.Listener
	mu        sync.Mutex
	clients   map[*client]bool
	first     chan struct{} // closed when the first client said hello
	firstOnce sync.Once
	stdin     io.WriteCloser // the container's stdin (pipe or terminal)
	console   *os.File
	stdinOnce bool
	started   bool
	me        *Monitor
	cg        *cgroup.Manager // made ahead of the first start
	cgErr     error
	used      *cgroup.Manager // the cgroup of the last run
	net       *netStart       // the network of the last run, until releaseNet
	// pending holds input that arrived before the process had a stdin (a
	// client attaches before the start); it is written once there is one.
	pending     []byte
	stdinClosed bool
}

// MonitorMain is the monitor process: args are the state root, the container
// ID and "attach" if it must wait for a client before starting. It returns
// the process's exit code.
func MonitorMain(args []string) int {
	runtime.LockOSThread() // the container's parent-death signal follows this thread
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "monitor: usage: ROOT ID [attach]")
		return 2
	}
	sync := os.NewFile(3, "sync")
	report := func(m syncMsg) {
		if sync != nil {
			b, _ := json.Marshal(m)
			sync.Write(append(b, '\n'))
		}
	}
	root := &state.Root{Dir: args[0]}
	m := &monitor{store: NewStore(root), id: args[1], clients: map[*client]bool{}, first: make(chan struct{})}
	waitAttach := len(args) > 2 && args[2] == "attach"
	if err := m.run(waitAttach, report, func() {
		if sync != nil {
			sync.Close()
			sync = nil
		}
	}); err != nil {
		report(syncMsg{Event: "error", Error: err.Error(), Kind: oci.KindName(err)})
		return 1
	}
	return 0
}

func (m *monitor) update(fn func(c *Container)) (*Container, error) {
	unlock, err := m.store.LockContainer(m.id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var c Container
	if err := state.ReadJSON(m.store.recordPath(m.id), &c); err != nil {
		return nil, err
	}
	fn(&c)
	return &c, m.store.Save(&c)
}

func (m *monitor) run(waitAttach bool, report func(syncMsg), closeSync func()) error {
	st, err := ProcStartTime(os.Getpid())
	if err != nil {
		return err
	}
	m.me = &Monitor{Pid: os.Getpid(), StartTime: st, BootID: BootID()}
	c, err := m.store.Load(m.id)
	if err != nil {
		return err
	}
	sock := m.store.SocketPath(m.id)
	os.Remove(sock)
	addr, done, err := socketAddr(sock)
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	m.ln, err = net.Listen("unix", addr)
	done()
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	defer os.Remove(sock)
	defer m.ln.Close()
	defer m.releaseNet() // whatever way out
	go m.accept()
	m.log, err = openLog(m.store.LogPath(m.id))
	if err != nil {
		return err
	}
	defer m.log.close()

	// Stop and kill tell the monitor through the record; SIGTERM only wakes it.
	wake := make(chan os.Signal, 1)
	signal.Notify(wake, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)

	m.stdinOnce = c.Config.StdinOnce // before any client can say its stdin ended
	report(syncMsg{Event: "listening"})
	// The cgroup is made while the client connects (the first start).
	m.cg, m.cgErr = cgroup.New("hako", c.ID, c.Limits())
	// Idle most of its life: keep the heap small (every container pays for it).
	debug.SetGCPercent(20)
	if waitAttach {
		closeSync()
		select {
		case <-m.first:
		case <-time.After(30 * time.Second):
			m.update(func(c *Container) { c.Monitor = nil })
			return fmt.Errorf("monitor: nobody attached")
		}
	}
	backoff := 100 * time.Millisecond
	for {
		startedAt := time.Now()
		code, err := m.once(c, report)
		if err != nil {
			kind := oci.KindName(err)
			exit := 125
			switch kind {
			case "notfound":
				exit = 127
			case "noinvoke":
				exit = 126
			}
			m.update(func(c *Container) {
				c.State.Error, c.State.ExitCode, c.Monitor = err.Error(), exit, nil
				if c.State.StartedAt.IsZero() {
					c.State.Status = "created"
				} else {
					c.State.Status, c.State.Running, c.State.Restarting = "exited", false, false
				}
			})
			b, _ := json.Marshal(startError{Error: err.Error(), Kind: kind})
			m.broadcast(frameError, b)
			m.releaseNet()
			if !m.started {
				report(syncMsg{Event: "error", Error: err.Error(), Kind: kind})
				m.dropCgroup()
				if c.HostConfig.AutoRemove {
					m.removeSelf()
				}
				return nil
			}
			code = exit
		}
		closeSync()
		if c.HostConfig.AutoRemove {
			// --rm (never with a restart policy): once set aside the
			// container is gone for every command; the client may go on
			// while its files and cgroup are deleted.
			aside, _ := m.store.SetAside(m.id)
			m.removeAnonymousVolumes(c)
			m.broadcast(frameExit, []byte(strconv.Itoa(code)))
			m.releaseNet()
			m.dropCgroup()
			if aside != "" {
				Purge(aside)
			}
			return nil
		}
		restart := false
		c, err = m.update(func(c *Container) {
			c.State.Running, c.State.Pid, c.State.Status = false, 0, "exited"
			c.Ports = nil
			c.Networks = (*netStart)(nil).settings(c)
			c.State.ExitCode = code
			c.State.FinishedAt = time.Now().UTC()
			restart = shouldRestart(c)
			if restart {
				c.State.Restarting, c.State.Status = true, "restarting"
				c.RestartCount++
			}
			// Monitor stays: until this process is gone, a new start waits.
		})
		if err != nil || !restart {
			m.broadcast(frameExit, []byte(strconv.Itoa(code)))
			m.releaseNet()
			m.dropCgroup()
			return nil
		}
		m.releaseNet()
		m.dropCgroup()
		// Docker's backoff: 100ms, doubled at each restart, at most a minute,
		// back to 100ms after a run of ten seconds or more.
		if time.Since(startedAt) >= 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		deadline := time.Now().Add(backoff)
		for time.Now().Before(deadline) {
			select {
			case <-wake:
			case <-time.After(time.Until(deadline)):
			}
			cur, err := m.store.Load(m.id)
			if err != nil || cur.StopRequested {
				m.update(func(c *Container) {
					c.State.Restarting, c.State.Status = false, "exited"
				})
				m.broadcast(frameExit, []byte(strconv.Itoa(code)))
				return nil
			}
		}
		backoff *= 2
		if backoff > time.Minute {
			backoff = time.Minute
		}
	}
}

func shouldRestart(c *Container) bool {
	if c.StopRequested {
		return false
	}
	switch c.HostConfig.RestartPolicy.Name {
	case "always", "unless-stopped":
		return true
	case "on-failure":
		max := c.HostConfig.RestartPolicy.MaximumRetryCount
		return c.State.ExitCode != 0 && (max == 0 || c.RestartCount < max)
	}
	return false
}

// dropCgroup deletes the cgroup of the last run.
func (m *monitor) dropCgroup() {
	if m.used != nil {
		m.used.Delete()
		m.used = nil
	}
}

func (m *monitor) removeSelf() {
	if cg, err := cgroup.Load("hako", m.id); err == nil {
		cg.Kill(unix.SIGKILL)
		cg.Delete()
	}
	m.store.Delete(m.id)
}

// Limits turns the host config into cgroup limits.
func (c *Container) Limits() cgroup.Limits {
	l := cgroup.Limits{Memory: c.HostConfig.Memory, MemorySwap: c.HostConfig.MemorySwap}
	if c.HostConfig.NanoCpus > 0 {
		l.CPUPeriod = 100000
		l.CPUQuota = c.HostConfig.NanoCpus * 100000 / 1e9
	}
	if c.HostConfig.CpuShares > 0 {
		l.CPUShares = uint64(c.HostConfig.CpuShares)
	}
	if c.HostConfig.PidsLimit != nil {
		l.PidsLimit = *c.HostConfig.PidsLimit
	}
	return l
}

// once runs the container's process one time and returns its exit code.
func (m *monitor) once(c *Container, report func(syncMsg)) (int, error) {
	cg, err := cgroup.New("hako", c.ID, c.Limits())
	if err != nil {
		return -1, err
	}
	m.used = cg // deleted by dropCgroup, once the client has its answer
	var stdio oci.Stdio
	var pumps sync.WaitGroup
	var closers []*os.File
	defer func() {
		for _, f := range closers {
			f.Close()
		}
	}()
	pipe := func(stream string) (*os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		closers = append(closers, w)
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			m.pump(stream, r)
		}()
		return w, nil
	}
	if !c.Config.Tty {
		if stdio.Stdout, err = pipe("stdout"); err != nil {
			return -1, err
		}
		if stdio.Stderr, err = pipe("stderr"); err != nil {
			return -1, err
		}
		if c.Config.OpenStdin {
			r, w, err := os.Pipe()
			if err != nil {
				return -1, err
			}
			closers = append(closers, r)
			stdio.Stdin = r
			m.setStdin(w, nil)
		}
	}
	cfg := &oci.InitConfig{
		Spec:        m.store.Spec(c),
		Rootfs:      m.store.Dir(c.ID) + "/rootfs",
		Overlay:     &c.Rootfs,
		User:        c.Config.User,
		DeathSignal: true,
	}
	var published map[string][]PortBinding
	if mode := c.HostConfig.NetworkMode; mode != "host" && mode != "none" && c.ContainerNetwork() == "" {
		published = c.PublishedPorts() // Docker discards them in the other modes
	}
	pub, ports, err := listen(published)
	if err != nil {
		m.setStdin(nil, nil)
		return -1, err
	}
	defer pub.close()
	netw, err := m.prepareNetwork(c, ports)
	if err != nil {
		m.setStdin(nil, nil)
		return -1, err
	}
	m.net = netw // released by run, after the exit is told (releaseNet)
	netw.adjustSpec(c, cfg.Spec)
	opts := cgroupOptions(cg)
	if netw.setup != nil {
		// Before the command runs: its interfaces, its ports, and the DNS
		// server it may ask at once.
		opts.Prepare = netw.plumb
	}
	p, err := oci.Start(cfg, stdio, opts)
	if err != nil {
		m.setStdin(nil, nil)
		return -1, err
	}
	pub.serve(netw.dialer(p.Pid))
	// The child has its copies now.
	for _, f := range closers {
		f.Close()
	}
	closers = nil
	if p.Console != nil {
		m.setStdin(p.Console, p.Console)
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			m.pump("stdout", p.Console)
		}()
	}
	_, err = m.update(func(c *Container) {
		c.State = State{Status: "running", Running: true, Pid: p.Pid, StartedAt: time.Now().UTC()}
		c.Ports = ports
		c.Networks = netw.settings(c)
		c.Monitor = m.me
		if !m.started {
			c.StopRequested = false
		}
	})
	if err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
	}
	if !m.started {
		m.started = true
		report(syncMsg{Event: "started", Pid: p.Pid})
	}
	m.broadcast(frameStart, nil)
	trimResident()
	code, _ := p.Wait()
	// Everything in the container's PID namespace died with its init; the
	// output pipes drain to EOF. A terminal reads EIO once the last slave
	// descriptor is gone.
	pumps.Wait()
	m.setStdin(nil, nil)
	if p.Console != nil {
		p.Console.Close()
	}
	cg.Kill(unix.SIGKILL)
	return code, nil
}

func (m *monitor) setStdin(w io.WriteCloser, console *os.File) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stdin != nil && m.stdin != w && m.console == nil {
		m.stdin.Close()
	}
	m.stdin, m.console = w, console
	if w != nil && len(m.pending) > 0 {
		w.Write(m.pending)
		m.pending = nil
	}
	if w != nil && m.stdinClosed && console == nil {
		w.Close()
		m.stdin = nil
	}
}

// writeStdin passes input on, or keeps it until the process has a stdin.
func (m *monitor) writeStdin(p []byte) {
	m.mu.Lock()
	stdin := m.stdin
	if stdin == nil && !m.started && len(m.pending)+len(p) <= 1<<20 {
		m.pending = append(m.pending, p...)
	}
	m.mu.Unlock()
	if stdin != nil {
		stdin.Write(p)
	}
}

// closeStdin ends the process's input (a client's stdin ended, with StdinOnce).
func (m *monitor) closeStdin() {
	m.mu.Lock()
	if m.stdin == nil && !m.started {
		m.stdinClosed = true
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.setStdin(nil, nil)
}

func (m *monitor) pump(stream string, r *os.File) {
	defer r.Close()
	buf := make([]byte, 32<<10)
	t := byte(frameStdout)
	if stream == "stderr" {
		t = frameStderr
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m.log.write(stream, buf[:n])
			m.broadcast(t, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (m *monitor) broadcast(t byte, p []byte) {
	m.mu.Lock()
	cs := make([]*client, 0, len(m.clients))
	for c := range m.clients {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	for _, c := range cs {
		if t == frameStdout && !c.hello.Stdout || t == frameStderr && !c.hello.Stderr {
			continue
		}
		if c.send(t, p) != nil {
			m.drop(c)
		}
	}
}

func (m *monitor) drop(c *client) {
	m.mu.Lock()
	delete(m.clients, c)
	m.mu.Unlock()
	c.conn.Close()
}

func (m *monitor) accept() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			return
		}
		go m.serve(conn)
	}
}

func (m *monitor) serve(conn net.Conn) {
	t, p, err := readFrame(conn)
	if err != nil || t != frameHello {
		conn.Close()
		return
	}
	c := &client{conn: conn}
	json.Unmarshal(p, &c.hello)
	m.mu.Lock()
	m.clients[c] = true
	m.mu.Unlock()
	m.firstOnce.Do(func() { close(m.first) })
	defer m.drop(c)
	for {
		t, p, err := readFrame(conn)
		if err != nil {
			return
		}
		m.mu.Lock()
		console := m.console
		m.mu.Unlock()
		switch t {
		case frameStdin:
			if c.hello.Stdin {
				m.writeStdin(p)
			}
		case frameClose:
			if c.hello.Stdin && m.stdinOnce && console == nil {
				m.closeStdin()
			}
		case frameResize:
			if console != nil && len(p) == 4 {
				ws := &unix.Winsize{Row: binary.BigEndian.Uint16(p[0:]), Col: binary.BigEndian.Uint16(p[2:])}
				unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
	}
}

// cgroupOptions puts a container's init into its cgroup: at clone time on
// cgroup v2, by migration on v1.
func cgroupOptions(cg *cgroup.Manager) oci.Options {
	if cgroup.Mode() == "v2" {
		return oci.Options{CgroupDir: cg.Path()}
	}
	return oci.Options{JoinCgroup: cg.Add}
}

// removeAnonymousVolumes deletes the anonymous volumes of a --rm container
// that no other container mounts (--volumes-from may share them).
func (m *monitor) removeAnonymousVolumes(c *Container) {
	var names []string
	for _, mp := range c.MountPoints {
		if mp.Type == "volume" && mp.Anonymous && mp.Name != "" {
			names = append(names, mp.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	others, err := m.store.List()
	if err != nil {
		return
	}
	vs, err := volume.NewStore(m.store.Root())
	if err != nil {
		return
	}
	for _, n := range names {
		used := false
		for _, o := range others {
			for _, mp := range o.MountPoints {
				used = used || (mp.Type == "volume" && mp.Name == n)
			}
		}
		if !used {
			vs.Remove(n)
		}
	}
}
