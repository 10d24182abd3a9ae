package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/state"
)

// Request is one network a container asks to join.
type Request struct {
	Network string   // name or ID
	Aliases []string // --network-alias
}

// Setup is what Prepare leased for one start of a container: an endpoint per
// network, in the order asked. Plumb gives them to the container's namespace.
type Setup struct {
	store     *Store
	ctrID     string
	Endpoints []*Endpoint
	Networks  []*Network
	// Ports are published on the first network's endpoint.
	Ports []Port
}

// Prepare leases an address on each network for container ctrID and builds
// the networks' bridges if they are missing. Nothing is plumbed yet: the
// container's network namespace does not exist until its init is cloned.
func (s *Store) Prepare(ctrID, name string, reqs []Request) (*Setup, error) {
	if err := s.ensurePredefined(); err != nil {
		return nil, err
	}
	unlock, err := s.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	st := &Setup{store: s, ctrID: ctrID}
	ok := false
	defer func() {
		if !ok {
			for i, ep := range st.Endpoints {
				os.Remove(s.endpointPath(st.Networks[i].ID, ep.ContainerID))
			}
		}
	}()
	for i, r := range reqs {
		n, err := find(all, r.Network)
		if err != nil {
			return nil, err
		}
		if n.Driver != "bridge" {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "container cannot be connected to network %s together with other networks", n.Name)
		}
		ep, err := s.lease(n, ctrID, name, r.Aliases, fmt.Sprintf("eth%d", i))
		if err != nil {
			return nil, err
		}
		st.Networks = append(st.Networks, n)
		st.Endpoints = append(st.Endpoints, ep)
	}
	ok = true
	return st, nil
}

// lease builds n's bridge if needed and writes an endpoint with the lowest
// free address (the caller holds the lock).
func (s *Store) lease(n *Network, ctrID, name string, aliases []string, iface string) (*Endpoint, error) {
	if _, err := os.Stat(s.endpointPath(n.ID, ctrID)); err == nil {
		return nil, errdefs.Errorf(errdefs.ErrConflict, "endpoint with name %s already exists in network %s", name, n.Name)
	}
	var repick func(*Network) error
	if n.Default() {
		repick = func(n *Network) error {
			all, err := s.list()
			if err != nil {
				return err
			}
			var others []*Network
			for _, o := range all {
				if o.ID != n.ID {
					others = append(others, o)
				}
			}
			sub, err := s.freeSubnet(others)
			if err != nil {
				return err
			}
			n.IPAM.Config = []IPAMConfig{{Subnet: sub.String(), Gateway: sub.Addr().Next().String()}}
			return s.write(n)
		}
	}
	if err := ensureBridge(n, repick); err != nil {
		return nil, err
	}
	ip, err := s.allocate(n)
	if err != nil {
		return nil, err
	}
	ep := &Endpoint{
		ContainerID: ctrID, Name: name, Aliases: aliases,
		EndpointID: newID(), MacAddress: macFor(ip).String(),
		IPAddress: ip.String(), PrefixLen: n.Prefix().Bits(), Gateway: n.GatewayAddr().String(),
		Iface: iface, HostVeth: randomVeth(),
	}
	if err := state.WriteVolatileJSON(s.endpointPath(n.ID, ctrID), ep); err != nil {
		return nil, err
	}
	return ep, nil
}

// Plumb gives the container whose init is pid its interfaces (the default
// route through the first network) and publishes its ports there.
func (st *Setup) Plumb(pid int) error {
	for i, ep := range st.Endpoints {
		if err := plumb(st.Networks[i], ep, pid, i == 0); err != nil {
			return err
		}
	}
	if len(st.Endpoints) > 0 && len(st.Ports) > 0 {
		ip, _ := netip.ParseAddr(st.Endpoints[0].IPAddress)
		ep := st.Endpoints[0]
		ep.Ports = st.Ports
		if err := state.WriteVolatileJSON(st.store.endpointPath(st.Networks[0].ID, ep.ContainerID), ep); err != nil {
			return err
		}
		if err := addPortRules(st.ctrID, ip, st.Ports); err != nil {
			return err
		}
	}
	return nil
}

// Release gives back everything container ctrID holds on every network: its
// port rules, its interfaces (pid is its init, 0 if gone) and its leases.
// It is safe to call more than once, and after a crash.
func (s *Store) Release(ctrID string, pid int) error {
	var errs []error
	leases, err := s.Leases(ctrID)
	if err != nil {
		errs = append(errs, err)
	}
	// Listing the rules costs a millisecond: only a lease with published
	// ports has any (rules whose lease is gone are found by prune).
	for _, ep := range leases {
		if len(ep.Ports) > 0 {
			if err := deleteRules("ctr:" + ctrID); err != nil {
				errs = append(errs, err)
			}
			break
		}
	}
	for netID, ep := range leases {
		unplumb(ep, pid)
		if err := os.Remove(s.endpointPath(netID, ctrID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Connect attaches a running container (init pid) to one more network.
func (s *Store) Connect(ctrID, name string, pid int, netRef string, aliases []string) (*Network, *Endpoint, error) {
	unlock, err := s.Lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	all, err := s.list()
	if err != nil {
		return nil, nil, err
	}
	n, err := find(all, netRef)
	if err != nil {
		return nil, nil, err
	}
	if n.Driver != "bridge" {
		return nil, nil, errdefs.Errorf(errdefs.ErrInvalid, "container cannot be disconnected from host network or connected to host network")
	}
	leases, err := s.Leases(ctrID)
	if err != nil {
		return nil, nil, err
	}
	used := map[string]bool{}
	for _, ep := range leases {
		used[ep.Iface] = true
	}
	iface := ""
	for i := 0; ; i++ {
		if iface = fmt.Sprintf("eth%d", i); !used[iface] {
			break
		}
	}
	ep, err := s.lease(n, ctrID, name, aliases, iface)
	if err != nil {
		return nil, nil, err
	}
	if err := plumb(n, ep, pid, len(leases) == 0); err != nil {
		os.Remove(s.endpointPath(n.ID, ctrID))
		return nil, nil, err
	}
	return n, ep, nil
}

// Disconnect detaches a container from a network: its interface there goes,
// and its lease.
func (s *Store) Disconnect(ctrID string, pid int, n *Network) error {
	unlock, err := s.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	ep, err := s.readEndpoint(n.ID, ctrID)
	if err != nil {
		return nil // not attached now: nothing to undo
	}
	if len(ep.Ports) > 0 {
		if err := deleteRules("ctr:" + ctrID); err != nil {
			return err
		}
	}
	unplumb(ep, pid)
	return os.Remove(s.endpointPath(n.ID, ctrID))
}

// Resolver answers names for a container from the endpoints of the
// user-defined networks it is attached to: container names, aliases, and
// full or 12-character IDs. The default bridge resolves nothing, as in Docker.
func (s *Store) Resolver(ctrID string) Resolver {
	return func(name string) []net.IP {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		all, err := s.list()
		if err != nil {
			return nil
		}
		var out []net.IP
		seen := map[string]bool{}
		for _, n := range all {
			if n.Default() || n.Driver != "bridge" {
				continue
			}
			if _, err := os.Stat(s.endpointPath(n.ID, ctrID)); err != nil {
				continue
			}
			eps, _ := s.Endpoints(n.ID)
			for _, ep := range eps {
				if !ep.answers(name) || seen[ep.IPAddress] {
					continue
				}
				if ip := net.ParseIP(ep.IPAddress).To4(); ip != nil {
					seen[ep.IPAddress] = true
					out = append(out, ip)
				}
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
		return out
	}
}

func (ep *Endpoint) answers(name string) bool {
	if name == "" {
		return false
	}
	if strings.EqualFold(ep.Name, name) || name == ep.ContainerID || (len(name) == 12 && strings.HasPrefix(ep.ContainerID, name)) {
		return true
	}
	for _, a := range ep.Aliases {
		if strings.EqualFold(a, name) {
			return true
		}
	}
	return false
}

// UsesDNS reports whether a container on these networks gets the embedded DNS
// server (any user-defined network).
func (st *Setup) UsesDNS() bool {
	for _, n := range st.Networks {
		if !n.Default() {
			return true
		}
	}
	return false
}

// Containers is `network inspect`'s .Containers: the endpoints by container ID.
func (s *Store) Containers(n *Network) map[string]*Endpoint {
	eps, _ := s.Endpoints(n.ID)
	out := map[string]*Endpoint{}
	for _, ep := range eps {
		out[ep.ContainerID] = ep
	}
	return out
}

// Prune removes the user-defined networks no container uses (inUse says which
// are named by a container) and returns their names.
func (s *Store) Prune(inUse func(n *Network) bool) ([]string, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range all {
		switch n.Name {
		case Bridge, Host, None:
			continue
		}
		if inUse(n) {
			continue
		}
		if err := s.Remove(n.ID, inUse); err != nil {
			if errdefs.Is(err, errdefs.ErrConflict) {
				continue
			}
			return removed, err
		}
		removed = append(removed, n.Name)
	}
	// Directories of networks whose removal was cut short.
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			if _, err := os.Stat(s.recordPath(e.Name())); errors.Is(err, os.ErrNotExist) {
				os.RemoveAll(s.netDir(e.Name()))
			}
		}
	}
	return removed, nil
}

// HostResolvConf is the resolver configuration containers start from: the
// host's /etc/resolv.conf, or the file HAKO_RESOLV_CONF names (a classroom or
// a test pointing containers at its own resolver).
func HostResolvConf() string {
	if p := os.Getenv("HAKO_RESOLV_CONF"); p != "" {
		return p
	}
	return "/etc/resolv.conf"
}

// ResolvConf is a container's /etc/resolv.conf: on user-defined networks the
// embedded server at 127.0.0.11 (with the host's search domains), elsewhere the
// host's configuration without loopback nameservers, which would mean the
// container's own loopback inside.
func ResolvConf(embedded bool) []byte {
	b, _ := os.ReadFile(HostResolvConf())
	var out []string
	var ns int
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if embedded || strings.HasPrefix(f[1], "127.") || f[1] == "::1" {
				continue
			}
			ns++
		}
		if strings.TrimSpace(l) != "" && !(embedded && len(f) > 0 && f[0] == "options") {
			out = append(out, l)
		}
	}
	if embedded {
		out = append(out, "nameserver 127.0.0.11", "options ndots:0")
	} else if ns == 0 {
		// Docker's fallback when the host has only local resolvers.
		out = append(out, "nameserver 8.8.8.8", "nameserver 8.8.4.4")
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// Hosts is a container's /etc/hosts: localhost, and its own addresses under
// its hostname.
func Hosts(hostname string, ips []string) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	for _, ip := range ips {
		b.WriteString(ip + "\t" + hostname + "\n")
	}
	return []byte(b.String())
}

// Resolver answers names for the container of this start.
func (st *Setup) Resolver() Resolver { return st.store.Resolver(st.ctrID) }
