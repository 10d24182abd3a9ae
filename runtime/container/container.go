// Package container keeps container records and runs their lifecycle without a
// daemon.
//
// Each container is a directory under <root>/containers/<id>/ holding its record
// (container.json, replaced atomically and changed only under the container's
// flock), its log (<id>-json.log, Docker's json-file format), the overlay's
// upper and work directories, and, while it runs, the socket of its monitor.
//
// The monitor is a small process per running container (the hako binary
// re-executed, in a session of its own, so it outlives the command that started
// it). It creates the cgroup, starts the container's init through package oci,
// owns the container's stdio (pipes or a pseudo-terminal), writes the log,
// serves `attach`, applies the restart policy and records the exit code. The
// CLI commands talk to it through the record and signals, never through a daemon.
//
// A record says "running" only while its monitor lives: the monitor's PID and
// start time (from /proc/PID/stat) and the boot ID are recorded, so after a
// reboot or a killed monitor the container reads as exited, never as running
// with a reused PID.
package container

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/network"
	"hako.dev/hako/runtime/rootfs"
	"hako.dev/hako/runtime/state"
)

// Config is Docker's container configuration (what `inspect` shows as .Config).
type Config struct {
	Hostname     string              `json:"Hostname"`
	Domainname   string              `json:"Domainname"`
	User         string              `json:"User"`
	AttachStdin  bool                `json:"AttachStdin"`
	AttachStdout bool                `json:"AttachStdout"`
	AttachStderr bool                `json:"AttachStderr"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Tty          bool                `json:"Tty"`
	OpenStdin    bool                `json:"OpenStdin"`
	StdinOnce    bool                `json:"StdinOnce"`
	Env          []string            `json:"Env"`
	Cmd          []string            `json:"Cmd"`
	Image        string              `json:"Image"`
	Volumes      map[string]struct{} `json:"Volumes"`
	WorkingDir   string              `json:"WorkingDir"`
	Entrypoint   []string            `json:"Entrypoint"`
	Labels       map[string]string   `json:"Labels"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

// RestartPolicy is Docker's --restart.
type RestartPolicy struct {
	Name              string `json:"Name"`
	MaximumRetryCount int    `json:"MaximumRetryCount"`
}

// HostConfig is the part of Docker's configuration about the host side.
type HostConfig struct {
	AutoRemove     bool          `json:"AutoRemove"`
	RestartPolicy  RestartPolicy `json:"RestartPolicy"`
	NetworkMode    string        `json:"NetworkMode"`
	DNS            []string      `json:"Dns"`
	Memory         int64         `json:"Memory"`
	MemorySwap     int64         `json:"MemorySwap"`
	NanoCpus       int64         `json:"NanoCpus"`
	CpuShares      int64         `json:"CpuShares"`
	PidsLimit      *int64        `json:"PidsLimit"`
	ReadonlyRootfs bool          `json:"ReadonlyRootfs"`
	Init           *bool         `json:"Init"`
	SecurityOpt    []string      `json:"SecurityOpt"`
	CapAdd         []string      `json:"CapAdd"`
	CapDrop        []string      `json:"CapDrop"`
	Privileged     bool          `json:"Privileged"`
	Binds          []string      `json:"Binds"`
	// PortBindings is -p: container port ("80/tcp") to host bindings.
	PortBindings    map[string][]PortBinding `json:"PortBindings"`
	PublishAllPorts bool                     `json:"PublishAllPorts"`
	Tmpfs           map[string]string        `json:"Tmpfs,omitempty"`
	VolumesFrom     []string                 `json:"VolumesFrom"`
	LogConfig       struct {
		Type   string            `json:"Type"`
		Config map[string]string `json:"Config"`
	} `json:"LogConfig"`
}

// State is Docker's .State, plus what hako needs to tell a live container.
type State struct {
	Status     string    `json:"Status"` // created, running, restarting, exited, removing, dead
	Running    bool      `json:"Running"`
	Paused     bool      `json:"Paused"`
	Restarting bool      `json:"Restarting"`
	OOMKilled  bool      `json:"OOMKilled"`
	Dead       bool      `json:"Dead"`
	Pid        int       `json:"Pid"`
	ExitCode   int       `json:"ExitCode"`
	Error      string    `json:"Error"`
	StartedAt  time.Time `json:"StartedAt"`
	FinishedAt time.Time `json:"FinishedAt"`
}

// Monitor identifies the process that keeps a container alive.
type Monitor struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // field 22 of /proc/PID/stat
	BootID    string `json:"bootId"`
}

// Container is one container's record.
type Container struct {
	ID           string       `json:"Id"`
	Name         string       `json:"Name"` // without Docker's leading slash
	Created      time.Time    `json:"Created"`
	Image        string       `json:"Image"`    // sha256:<hex>
	ImageRef     string       `json:"ImageRef"` // as the user typed it
	Config       Config       `json:"Config"`
	HostConfig   HostConfig   `json:"HostConfig"`
	State        State        `json:"State"`
	RestartCount int          `json:"RestartCount"`
	Rootfs       rootfs.Mount `json:"Rootfs"` // the overlay of the image's layers
	// StopRequested: stopped or killed by a user, so the restart policy stays out.
	StopRequested bool `json:"StopRequested"`
	// Ports are the host ports published while the container runs (a
	// requested port 0 becomes the one the kernel chose).
	Ports map[string][]PortBinding `json:"Ports,omitempty"`
	// MountPoints are the container's bind mounts (Docker's .Mounts).
	MountPoints []MountPoint `json:"MountPoints,omitempty"`
	// Networks is .NetworkSettings.Networks: the networks the container is
	// attached to, by name, with their addresses while it runs.
	Networks map[string]*EndpointSettings `json:"Networks,omitempty"`
	Monitor  *Monitor                     `json:"Monitor,omitempty"`
}

// ShortID is the 12-character ID that tables show.
func (c *Container) ShortID() string { return c.ID[:12] }

// Store holds the container records under <root>/containers.
type Store struct {
	root *state.Root
	dir  string
}

// NewStore returns the container store of a state root.
func NewStore(root *state.Root) *Store {
	return &Store{root: root, dir: root.Path("containers")}
}

// Root is the state root.
func (s *Store) Root() *state.Root { return s.root }

// Dir is the directory of one container.
func (s *Store) Dir(id string) string { return filepath.Join(s.dir, id) }

func (s *Store) recordPath(id string) string { return filepath.Join(s.dir, id, "container.json") }

// LogPath is where a container's json-file log lives.
func (s *Store) LogPath(id string) string { return filepath.Join(s.dir, id, id+"-json.log") }

// SocketPath is the monitor's attach socket.
func (s *Store) SocketPath(id string) string { return filepath.Join(s.dir, id, "attach.sock") }

// socketAddr returns an address for a unix socket at path that fits the
// kernel's 108-byte limit: a long path is reached through an O_PATH
// descriptor of its directory (/proc/self/fd/N/name). done releases it.
func socketAddr(path string) (addr string, done func(), err error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + filepath.Base(path), func() { unix.Close(fd) }, nil
}

var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidateName checks a container name as Docker does.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return errdefs.Errorf(errdefs.ErrInvalid, "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return nil
}

// Lock takes the store-wide lock that makes name checks and creation atomic.
func (s *Store) Lock() (func(), error) { return state.Lock(filepath.Join(s.dir, ".lock")) }

// LockContainer takes one container's lock.
func (s *Store) LockContainer(id string) (func(), error) {
	return state.Lock(filepath.Join(s.dir, id, "lock"))
}

// NewID returns a fresh 64-hex container ID.
func NewID() string {
	b := make([]byte, 32)
	randomBytes(b)
	return hex.EncodeToString(b)
}

// Create writes a new container's directory and record. The caller holds Lock
// and has checked the name. The directory is prepared under a temporary name
// and renamed into place, so a killed create leaves nothing visible.
func (s *Store) Create(c *Container) error {
	tmp, err := os.MkdirTemp(s.dir, ".creating-")
	if err != nil {
		return err
	}
	for _, d := range []string{"rootfs", "upper", "work"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	if err := writeEtcFiles(tmp, c); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	// A --rm container lives no longer than its processes, which a power
	// loss ends: its record need not reach the disk (it is still replaced
	// atomically, never torn). Any other new container is made durable.
	write := state.WriteJSON
	if c.HostConfig.AutoRemove {
		write = state.WriteVolatileJSON
	}
	if err := write(filepath.Join(tmp, "container.json"), c); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, s.Dir(c.ID)); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if c.HostConfig.AutoRemove {
		return nil
	}
	return state.SyncDir(s.dir)
}

// Save replaces a container's record. The caller holds its lock. Records
// change with the container's processes (start, exit, restart): they are
// replaced atomically but not fsynced, since a power loss ends those
// processes anyway and Load settles a stale "running".
func (s *Store) Save(c *Container) error { return state.WriteVolatileJSON(s.recordPath(c.ID), c) }

// Load reads a container's record by its full ID, settling a stale "running".
func (s *Store) Load(id string) (*Container, error) {
	var c Container
	if err := state.ReadJSON(s.recordPath(id), &c); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "No such container: %s", id)
		}
		return nil, err
	}
	if (c.State.Running || c.State.Restarting) && !c.Monitor.Alive() {
		c.State.Running, c.State.Restarting, c.State.Pid = false, false, 0
		c.Ports = nil
		c.State.Status = "exited"
		if c.State.ExitCode == 0 {
			c.State.ExitCode = 137
		}
		if c.State.FinishedAt.IsZero() || c.State.FinishedAt.Before(c.State.StartedAt) {
			c.State.FinishedAt = time.Now().UTC()
		}
		c.Monitor = nil
		for _, e := range c.Networks {
			clearAddress(e)
		}
		// The monitor died without giving back the network: do it now.
		if nets, err := network.NewStore(s.root); err == nil {
			if leases, err := nets.Leases(c.ID); err == nil && len(leases) > 0 {
				nets.Release(c.ID, 0)
			}
		}
	}
	return &c, nil
}

// IDs lists the IDs of all containers.
func (s *Store) IDs() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && len(e.Name()) == 64 {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// List loads every container, newest first.
func (s *Store) List() ([]*Container, error) {
	ids, err := s.IDs()
	if err != nil {
		return nil, err
	}
	var out []*Container
	for _, id := range ids {
		c, err := s.Load(id)
		if errdefs.Is(err, errdefs.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// Find resolves a name, a full ID or a unique ID prefix, as Docker does.
func (s *Store) Find(ref string) (*Container, error) {
	ref = strings.TrimPrefix(ref, "/")
	if ref == "" {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "No such container: %s", ref)
	}
	if len(ref) == 64 {
		if c, err := s.Load(ref); err == nil {
			return c, nil
		}
	}
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		if c.Name == ref {
			return c, nil
		}
	}
	var match *Container
	for _, c := range all {
		if strings.HasPrefix(c.ID, ref) {
			if match != nil {
				return nil, errdefs.Errorf(errdefs.ErrInvalid, "multiple IDs found with provided prefix: %s", ref)
			}
			match = c
		}
	}
	if match == nil {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "No such container: %s", ref)
	}
	return match, nil
}

// NameTaken reports the container that already has name, if any.
func (s *Store) NameTaken(name string) (*Container, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, c := range all {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, nil
}

// Delete removes a container's directory. It is first renamed aside, so that a
// killed removal never leaves a half-deleted container that still lists.
func (s *Store) Delete(id string) error {
	aside, err := s.SetAside(id)
	if err != nil || aside == "" {
		return err
	}
	return Purge(aside)
}

// SetAside renames a container's directory out of the listings (atomically:
// from then on the container does not exist) and returns the new path, or ""
// if it was gone already. Purge finishes the removal; a command killed in
// between leaves a .removing- directory that CleanLeftovers sweeps.
func (s *Store) SetAside(id string) (string, error) {
	aside := filepath.Join(s.dir, ".removing-"+id)
	if err := os.Rename(s.Dir(id), aside); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", err
	}
	return aside, nil
}

// Purge deletes a directory set aside.
func Purge(aside string) error {
	unix.Unmount(filepath.Join(aside, "rootfs"), unix.MNT_DETACH)
	return os.RemoveAll(aside)
}

// CleanLeftovers removes what killed commands left aside: half-created and
// half-removed container directories.
func (s *Store) CleanLeftovers() {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".removing-") || (strings.HasPrefix(n, ".creating-") && olderThan(filepath.Join(s.dir, n), time.Minute)) {
			os.RemoveAll(filepath.Join(s.dir, n))
		}
	}
}

func olderThan(path string, d time.Duration) bool {
	fi, err := os.Stat(path)
	return err == nil && time.Since(fi.ModTime()) > d
}

// Alive reports whether the monitor is still the process it was.
func (m *Monitor) Alive() bool {
	if m == nil || m.Pid <= 0 {
		return false
	}
	if m.BootID != BootID() {
		return false
	}
	st, err := ProcStartTime(m.Pid)
	return err == nil && st == m.StartTime
}

// BootID identifies this boot of the host.
func BootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// ProcStartTime reads a process's start time in clock ticks since boot: with
// the PID it names one process for the whole uptime.
func ProcStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat for %d", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("bad stat for %d", pid)
	}
	// f[0] is field 3 (state); start time is field 22.
	if f[0] == "Z" {
		return 0, fmt.Errorf("process %d is a zombie", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// writeEtcFiles writes the files bind-mounted over the image's /etc/hostname,
// /etc/hosts and /etc/resolv.conf, as Docker does.
func writeEtcFiles(dir string, c *Container) error {
	host := c.Config.Hostname
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	if err := os.WriteFile(filepath.Join(dir, "hostname"), []byte(host+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), resolvConf(), 0o644)
}

// resolvConf copies the host's resolver configuration without loopback
// nameservers, which would mean the container's own loopback inside.
func resolvConf() []byte {
	b, _ := os.ReadFile("/etc/resolv.conf")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
			continue
		}
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// randomBytes fills b from the kernel's random pool (getrandom(2), without
// linking the crypto packages into the monitor).
func randomBytes(b []byte) {
	for len(b) > 0 {
		n, err := unix.Getrandom(b, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			panic("getrandom: " + err.Error()) // the kernel's pool cannot fail after boot
		}
		b = b[n:]
	}
}
