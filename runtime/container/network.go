package container

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/network"
)

// EndpointSettings is one entry of Docker's .NetworkSettings.Networks. The
// address fields are filled while the container runs.
type EndpointSettings struct {
	IPAMConfig          any               `json:"IPAMConfig"`
	Links               []string          `json:"Links"`
	Aliases             []string          `json:"Aliases"`
	MacAddress          string            `json:"MacAddress"`
	DriverOpts          map[string]string `json:"DriverOpts"`
	NetworkID           string            `json:"NetworkID"`
	EndpointID          string            `json:"EndpointID"`
	Gateway             string            `json:"Gateway"`
	IPAddress           string            `json:"IPAddress"`
	IPPrefixLen         int               `json:"IPPrefixLen"`
	IPv6Gateway         string            `json:"IPv6Gateway"`
	GlobalIPv6Address   string            `json:"GlobalIPv6Address"`
	GlobalIPv6PrefixLen int               `json:"GlobalIPv6PrefixLen"`
	DNSNames            []string          `json:"DNSNames"`
}

// NetworkNames lists the networks a container is attached to, its primary
// one (HostConfig.NetworkMode) first.
func (c *Container) NetworkNames() []string {
	var out []string
	mode := c.HostConfig.NetworkMode
	if _, ok := c.Networks[mode]; ok {
		out = append(out, mode)
	}
	var rest []string
	for name := range c.Networks {
		if name != mode {
			rest = append(rest, name)
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// ContainerNetwork is the container whose network namespace a
// `--network container:NAME` container shares ("" otherwise).
func (c *Container) ContainerNetwork() string {
	if s, ok := strings.CutPrefix(c.HostConfig.NetworkMode, "container:"); ok {
		return s
	}
	return ""
}

// netStart is one start's network: leases and, for a shared namespace, the
// process whose namespace is joined.
type netStart struct {
	setup  *network.Setup
	joinNS string // /proc/PID/ns/net of the container whose namespace is shared
	dns    *network.DNSServer
	ips    []string
}

// prepareNetwork leases the container's addresses and writes its /etc/hosts
// and /etc/resolv.conf for this start.
func (m *monitor) prepareNetwork(c *Container, ports map[string][]PortBinding) (*netStart, error) {
	ns := &netStart{}
	dir := m.store.Dir(c.ID)
	embedded := false
	switch {
	case c.HostConfig.NetworkMode == network.Host:
		// The host's names: its /etc/hosts, and its hostname (the UTS
		// namespace is shared too).
		if err := copyHostFile("/etc/hosts", filepath.Join(dir, "hosts")); err != nil {
			return nil, err
		}
		h, _ := os.Hostname()
		if err := writeInPlace(filepath.Join(dir, "hostname"), []byte(h+"\n")); err != nil {
			return nil, err
		}
	case c.ContainerNetwork() != "":
		other, err := m.store.Find(c.ContainerNetwork())
		if err != nil {
			return nil, err
		}
		if !other.State.Running || other.State.Pid <= 0 {
			return nil, errdefs.Errorf(errdefs.ErrConflict, "cannot join network namespace of a non running container: container %s is %s", other.Name, other.State.Status)
		}
		ns.joinNS = "/proc/" + strconv.Itoa(other.State.Pid) + "/ns/net"
		for _, f := range []string{"hosts", "resolv.conf"} {
			if b, err := os.ReadFile(filepath.Join(m.store.Dir(other.ID), f)); err == nil {
				os.WriteFile(filepath.Join(dir, f), b, 0o644)
			}
		}
		return ns, nil
	case c.HostConfig.NetworkMode == network.None:
	default:
		nets, err := network.NewStore(m.store.Root())
		if err != nil {
			return nil, err
		}
		var reqs []network.Request
		for _, name := range c.NetworkNames() {
			reqs = append(reqs, network.Request{Network: c.Networks[name].NetworkIDOr(name), Aliases: c.Networks[name].Aliases})
		}
		// A stale lease (a killed monitor) must not block this start.
		if leases, err := nets.Leases(c.ID); err == nil && len(leases) > 0 {
			nets.Release(c.ID, 0)
		}
		st, err := nets.Prepare(c.ID, c.Name, reqs)
		if err != nil {
			return nil, err
		}
		st.Ports = portList(ports)
		ns.setup = st
		embedded = st.UsesDNS()
		for _, ep := range st.Endpoints {
			ns.ips = append(ns.ips, ep.IPAddress)
		}
	}
	if c.HostConfig.NetworkMode != network.Host {
		if err := writeInPlace(filepath.Join(dir, "hosts"), network.Hosts(c.Config.Hostname, ns.ips)); err != nil {
			return nil, err
		}
	}
	var resolv []byte
	if len(c.HostConfig.DNS) > 0 {
		var b strings.Builder
		for _, s := range c.HostConfig.DNS {
			b.WriteString("nameserver " + s + "\n")
		}
		resolv = []byte(b.String())
	} else {
		resolv = network.ResolvConf(embedded)
	}
	if err := writeInPlace(filepath.Join(dir, "resolv.conf"), resolv); err != nil {
		return nil, err
	}
	return ns, nil
}

// NetworkIDOr is the network's ID when the record knows it, else name.
func (e *EndpointSettings) NetworkIDOr(name string) string {
	if e != nil && e.NetworkID != "" {
		return e.NetworkID
	}
	return name
}

// writeInPlace rewrites a file without replacing it: the running container
// sees these files through bind mounts of the inode.
func writeInPlace(path string, b []byte) error {
	return os.WriteFile(path, b, 0o644)
}

func copyHostFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeInPlace(dst, b)
}

func portList(ports map[string][]PortBinding) []network.Port {
	var out []network.Port
	for cport, bs := range ports {
		num, proto, _ := strings.Cut(cport, "/")
		cp, _ := strconv.Atoi(num)
		for _, b := range bs {
			hp, _ := strconv.Atoi(b.HostPort)
			ip := b.HostIP
			if ip == "0.0.0.0" {
				ip = ""
			}
			out = append(out, network.Port{Proto: proto, HostIP: ip, HostPort: hp, ContainerPort: cp})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].HostPort < out[j].HostPort })
	return out
}

// adjustSpec applies the network mode to the init's namespaces.
func (ns *netStart) adjustSpec(c *Container, spec *specs.Spec) {
	var keep []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			if c.HostConfig.NetworkMode == network.Host {
				continue
			}
			if ns.joinNS != "" {
				n.Path = ns.joinNS
			}
		}
		if n.Type == specs.UTSNamespace && c.HostConfig.NetworkMode == network.Host {
			continue // Docker's host mode shares the host's name too
		}
		keep = append(keep, n)
	}
	spec.Linux.Namespaces = keep
	if c.HostConfig.NetworkMode == network.Host {
		spec.Hostname = ""
	}
}

// plumb gives the new namespace of process pid its interfaces and published
// ports, and starts the embedded DNS server on user-defined networks.
func (ns *netStart) plumb(pid int) error {
	if err := ns.setup.Plumb(pid); err != nil {
		return err
	}
	if ns.setup.UsesDNS() {
		dns, err := network.StartDNS(pid, ns.setup.Resolver(), network.HostUpstreams(network.HostResolvConf()))
		if err != nil {
			return fmt.Errorf("embedded DNS server: %w", err)
		}
		ns.dns = dns
	}
	return nil
}

// releaseNet gives back the last start's network, once its exit is told:
// deleting a veth waits for the kernel's RCU grace periods (15-50 ms here),
// which no client needs to wait for.
func (m *monitor) releaseNet() {
	ns := m.net
	m.net = nil
	ns.release(m, m.id)
}

// release gives back the start's leases, interfaces and rules.
func (ns *netStart) release(m *monitor, id string) {
	if ns == nil {
		return
	}
	if ns.dns != nil {
		ns.dns.Close()
	}
	if ns.setup != nil {
		if nets, err := network.NewStore(m.store.Root()); err == nil {
			nets.Release(id, 0)
		}
	}
}

// settings is .NetworkSettings.Networks for this start.
func (ns *netStart) settings(c *Container) map[string]*EndpointSettings {
	out := map[string]*EndpointSettings{}
	for name, e := range c.Networks {
		cp := *e
		clearAddress(&cp)
		out[name] = &cp
	}
	if ns == nil || ns.setup == nil {
		return out
	}
	for i, n := range ns.setup.Networks {
		ep := ns.setup.Endpoints[i]
		e := out[n.Name]
		if e == nil {
			e = &EndpointSettings{}
			out[n.Name] = e
		}
		fillEndpoint(e, n, ep, c)
	}
	return out
}

func fillEndpoint(e *EndpointSettings, n *network.Network, ep *network.Endpoint, c *Container) {
	e.NetworkID, e.EndpointID = n.ID, ep.EndpointID
	e.Gateway, e.IPAddress, e.IPPrefixLen, e.MacAddress = ep.Gateway, ep.IPAddress, ep.PrefixLen, ep.MacAddress
	if !n.Default() {
		e.DNSNames = append([]string{c.Name, c.ShortID()}, ep.Aliases...)
	}
}

func clearAddress(e *EndpointSettings) {
	e.EndpointID, e.Gateway, e.IPAddress, e.IPPrefixLen, e.MacAddress, e.DNSNames = "", "", "", 0, "", nil
}

// dialer reaches a published port: at the container's address when it has
// one (the monitor's proxy serves what the kernel's DNAT does not: IPv6
// clients), else inside its network namespace.
func (ns *netStart) dialer(pid int) func(port string) (net.Conn, error) {
	if ns != nil && len(ns.ips) > 0 {
		ip := ns.ips[0]
		return func(port string) (net.Conn, error) { return net.Dial("tcp", net.JoinHostPort(ip, port)) }
	}
	return func(port string) (net.Conn, error) { return dialInNetns(pid, "127.0.0.1:"+port) }
}

// lockWithNetwork finds a container and a network, and returns the
// container's record read again under its lock (the caller unlocks).
func (s *Store) lockWithNetwork(ref, netRef string) (*Container, *network.Store, *network.Network, func(), error) {
	c, err := s.Find(ref)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	nets, err := network.NewStore(s.root)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	n, err := nets.Find(netRef)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	unlock, err := s.LockContainer(c.ID)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if c, err = s.Load(c.ID); err != nil {
		unlock()
		return nil, nil, nil, nil, err
	}
	return c, nets, n, unlock, nil
}

// Connect attaches a container to a network (`network connect`): at once if
// it runs, at its next start otherwise.
func (s *Store) Connect(ref, netRef string, aliases []string) error {
	c, nets, n, unlock, err := s.lockWithNetwork(ref, netRef)
	if err != nil {
		return err
	}
	defer unlock()
	mode := c.HostConfig.NetworkMode
	if mode == network.Host || mode == network.None || c.ContainerNetwork() != "" {
		return errdefs.Errorf(errdefs.ErrInvalid, "container sharing network namespace with another container or host cannot be connected to any other network")
	}
	if n.Driver != "bridge" {
		return errdefs.Errorf(errdefs.ErrInvalid, "container cannot be disconnected from host network or connected to host network")
	}
	if _, ok := c.Networks[n.Name]; ok {
		return errdefs.Errorf(errdefs.ErrConflict, "endpoint with name %s already exists in network %s", c.Name, n.Name)
	}
	if n.Default() && len(aliases) > 0 {
		return errdefs.Errorf(errdefs.ErrInvalid, "network-scoped alias is supported only for containers in user defined networks")
	}
	e := &EndpointSettings{NetworkID: n.ID, Aliases: aliases}
	if c.State.Running && c.State.Pid > 0 {
		_, ep, err := nets.Connect(c.ID, c.Name, c.State.Pid, n.ID, aliases)
		if err != nil {
			return err
		}
		fillEndpoint(e, n, ep, c)
	}
	if c.Networks == nil {
		c.Networks = map[string]*EndpointSettings{}
	}
	c.Networks[n.Name] = e
	return s.Save(c)
}

// Disconnect detaches a container from a network (`network disconnect`).
func (s *Store) Disconnect(ref, netRef string, force bool) error {
	c, nets, n, unlock, err := s.lockWithNetwork(ref, netRef)
	if err != nil {
		return err
	}
	defer unlock()
	if _, ok := c.Networks[n.Name]; !ok {
		return errdefs.Errorf(errdefs.ErrConflict, "container %s is not connected to network %s", c.Name, n.Name)
	}
	if c.State.Running {
		if err := nets.Disconnect(c.ID, c.State.Pid, n); err != nil {
			return err
		}
	}
	delete(c.Networks, n.Name)
	if c.HostConfig.NetworkMode == n.Name {
		// Docker keeps the mode; the container starts next without networks
		// unless it is connected again.
		if len(c.Networks) == 0 {
			c.HostConfig.NetworkMode = network.None
		}
	}
	return s.Save(c)
}

// NetworkUsers reports whether any container (running or not) names network n.
func (s *Store) NetworkUsers(n *network.Network) bool {
	cs, err := s.List()
	if err != nil {
		return true
	}
	for _, c := range cs {
		if _, ok := c.Networks[n.Name]; ok {
			return true
		}
		if c.HostConfig.NetworkMode == n.Name || c.HostConfig.NetworkMode == n.ID {
			return true
		}
	}
	return false
}
