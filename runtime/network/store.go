package network

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/state"
)

// The predefined networks, as in Docker.
const (
	Bridge = "bridge"
	Host   = "host"
	None   = "none"
)

// DefaultBridgeIface is the Linux bridge of the default network. Docker's is
// docker0; hako's has its own name so both can live on one host.
const DefaultBridgeIface = "hako0"

// optBridgeName is the option Docker shows for a bridge network's interface.
const optBridgeName = "com.docker.network.bridge.name"

// IPAMConfig is one subnet of a network.
type IPAMConfig struct {
	Subnet  string `json:"Subnet"`
	Gateway string `json:"Gateway,omitempty"`
}

// IPAM is Docker's .IPAM of a network.
type IPAM struct {
	Driver  string            `json:"Driver"`
	Options map[string]string `json:"Options"`
	Config  []IPAMConfig      `json:"Config"`
}

// Network is a network's record, in Docker's `network inspect` shape (without
// .Containers, which is read from the endpoints).
type Network struct {
	Name       string            `json:"Name"`
	ID         string            `json:"Id"`
	Created    time.Time         `json:"Created"`
	Scope      string            `json:"Scope"`
	Driver     string            `json:"Driver"`
	EnableIPv6 bool              `json:"EnableIPv6"`
	IPAM       IPAM              `json:"IPAM"`
	Internal   bool              `json:"Internal"`
	Attachable bool              `json:"Attachable"`
	Options    map[string]string `json:"Options"`
	Labels     map[string]string `json:"Labels"`
}

// Iface is the Linux bridge of a bridge network.
func (n *Network) Iface() string { return n.Options[optBridgeName] }

// Default reports whether n is the default bridge network, which has no name
// resolution between containers.
func (n *Network) Default() bool { return n.Name == Bridge }

// Prefix is the network's subnet.
func (n *Network) Prefix() netip.Prefix {
	if len(n.IPAM.Config) == 0 {
		return netip.Prefix{}
	}
	p, _ := netip.ParsePrefix(n.IPAM.Config[0].Subnet)
	return p
}

// GatewayAddr is the bridge's own address, the containers' default route.
func (n *Network) GatewayAddr() netip.Addr {
	if len(n.IPAM.Config) == 0 {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(n.IPAM.Config[0].Gateway)
	return a
}

// Endpoint is one container's attachment to a network: the lease of its
// address. Its file exists exactly while the container may use the address.
type Endpoint struct {
	ContainerID string   `json:"ContainerID"`
	Name        string   `json:"Name"` // the container's name
	Aliases     []string `json:"Aliases,omitempty"`
	EndpointID  string   `json:"EndpointID"`
	MacAddress  string   `json:"MacAddress"`
	IPAddress   string   `json:"IPAddress"` // without the prefix length
	PrefixLen   int      `json:"IPPrefixLen"`
	Gateway     string   `json:"Gateway"`
	Iface       string   `json:"Iface"`    // inside the container: eth0, eth1, ...
	HostVeth    string   `json:"HostVeth"` // the host's end of the pair
	Ports       []Port   `json:"Ports,omitempty"`
}

// Port is a published port forwarded by the kernel to an endpoint.
type Port struct {
	Proto         string `json:"Proto"`
	HostIP        string `json:"HostIP"` // "" for every address of the host
	HostPort      int    `json:"HostPort"`
	ContainerPort int    `json:"ContainerPort"`
}

// Store keeps the networks under <root>/networks/<id>/: network.json and an
// endpoints/ directory with one lease per attached container. One lock file
// (<root>/networks/.lock) serialises every change: creating and removing
// networks, allocating addresses, building bridges.
type Store struct {
	root *state.Root
	dir  string
}

// NewStore returns the network store of a state root.
func NewStore(root *state.Root) (*Store, error) {
	dir := root.Path("networks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Store{root: root, dir: dir}, nil
}

// defaultIface names the default bridge: hako0 for the default state root;
// another root (a test, a second classroom) gets its own, "hk" and a hash of
// its path, so that roots never share a bridge.
func (s *Store) defaultIface() string {
	if s.root.Dir == state.DefaultRoot {
		return DefaultBridgeIface
	}
	h := fnv.New32a()
	h.Write([]byte(s.root.Dir))
	return fmt.Sprintf("hk%08x", h.Sum32())
}

// Teardown removes every bridge and rule of this state root's networks and
// every lease (for tests, and for a root about to be deleted).
func (s *Store) Teardown() error {
	all, err := s.list()
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range all {
		eps, _ := s.Endpoints(n.ID)
		for _, ep := range eps {
			if err := s.Release(ep.ContainerID, 0); err != nil {
				errs = append(errs, err)
			}
		}
		if err := removeBridge(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Lock takes the store's lock.
func (s *Store) Lock() (func(), error) { return state.Lock(filepath.Join(s.dir, ".lock")) }

func (s *Store) netDir(id string) string         { return filepath.Join(s.dir, id) }
func (s *Store) endpointDir(id string) string    { return filepath.Join(s.dir, id, "endpoints") }
func (s *Store) recordPath(id string) string     { return filepath.Join(s.dir, id, "network.json") }
func (s *Store) endpointPath(n, c string) string { return filepath.Join(s.endpointDir(n), c+".json") }

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func newID() string {
	b := make([]byte, 32)
	for {
		if _, err := unix.Getrandom(b, 0); err != unix.EINTR {
			break
		}
	}
	return hex.EncodeToString(b)
}

// list reads every network record, the predefined ones first, then by name.
func (s *Store) list() ([]*Network, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []*Network
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var n Network
		if err := state.ReadJSON(s.recordPath(e.Name()), &n); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // being created or removed
			}
			return nil, err
		}
		out = append(out, &n)
	}
	rank := func(n *Network) int {
		switch n.Name {
		case Bridge:
			return 0
		case Host:
			return 1
		case None:
			return 2
		}
		return 3
	}
	sort.Slice(out, func(i, j int) bool {
		if rank(out[i]) != rank(out[j]) {
			return rank(out[i]) < rank(out[j])
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// List returns every network, making the predefined ones on first use.
func (s *Store) List() ([]*Network, error) {
	if err := s.ensurePredefined(); err != nil {
		return nil, err
	}
	return s.list()
}

// Find looks a network up by name, full ID or unique ID prefix.
func (s *Store) Find(ref string) (*Network, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	return find(all, ref)
}

func find(all []*Network, ref string) (*Network, error) {
	for _, n := range all {
		if n.Name == ref || n.ID == ref {
			return n, nil
		}
	}
	var hit *Network
	if ref != "" {
		for _, n := range all {
			if strings.HasPrefix(n.ID, ref) {
				if hit != nil {
					return nil, errdefs.Errorf(errdefs.ErrInvalid, "network %s is ambiguous (%d matches found based on ID prefix)", ref, 2)
				}
				hit = n
			}
		}
	}
	if hit == nil {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "network %s not found", ref)
	}
	return hit, nil
}

// ensurePredefined writes the records of bridge, host and none once. The
// default bridge's subnet is chosen then: 172.17.0.0/16 unless the host uses
// it, as Docker does.
func (s *Store) ensurePredefined() error {
	if _, err := os.Stat(filepath.Join(s.dir, ".predefined")); err == nil {
		return nil
	}
	unlock, err := s.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(s.dir, ".predefined")); err == nil {
		return nil
	}
	all, err := s.list()
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range all {
		have[n.Name] = true
	}
	now := time.Now().UTC()
	if !have[Bridge] {
		sub, err := s.freeSubnet(all)
		if err != nil {
			return err
		}
		gw := sub.Addr().Next()
		n := &Network{Name: Bridge, ID: newID(), Created: now, Scope: "local", Driver: "bridge",
			IPAM: IPAM{Driver: "default", Options: map[string]string{}, Config: []IPAMConfig{{Subnet: sub.String(), Gateway: gw.String()}}},
			Options: map[string]string{
				"com.docker.network.bridge.default_bridge":       "true",
				"com.docker.network.bridge.enable_icc":           "true",
				"com.docker.network.bridge.enable_ip_masquerade": "true",
				"com.docker.network.bridge.host_binding_ipv4":    "0.0.0.0",
				optBridgeName:                   s.defaultIface(),
				"com.docker.network.driver.mtu": "1500",
			},
			Labels: map[string]string{}}
		if err := s.write(n); err != nil {
			return err
		}
	}
	for _, p := range []struct{ name, driver string }{{Host, "host"}, {None, "null"}} {
		if have[p.name] {
			continue
		}
		n := &Network{Name: p.name, ID: newID(), Created: now, Scope: "local", Driver: p.driver,
			IPAM:    IPAM{Driver: "default", Options: map[string]string{}, Config: []IPAMConfig{}},
			Options: map[string]string{}, Labels: map[string]string{}}
		if err := s.write(n); err != nil {
			return err
		}
	}
	return state.WriteFile(filepath.Join(s.dir, ".predefined"), nil, 0o600)
}

func (s *Store) write(n *Network) error {
	if err := os.MkdirAll(s.endpointDir(n.ID), 0o700); err != nil {
		return err
	}
	return state.WriteJSON(s.recordPath(n.ID), n)
}

// CreateOptions are `network create`'s flags.
type CreateOptions struct {
	Driver   string
	Subnet   string
	Gateway  string
	Internal bool
	Labels   map[string]string
	Options  map[string]string
}

// Create makes a user-defined bridge network. Its Linux bridge is built when
// the first container joins it.
func (s *Store) Create(name string, opt CreateOptions) (*Network, error) {
	if !validName.MatchString(name) {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	switch opt.Driver {
	case "", "bridge":
	case "host", "null":
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "only one instance of %q network is allowed", opt.Driver)
	default:
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "plugin %q not found", opt.Driver)
	}
	if err := s.ensurePredefined(); err != nil {
		return nil, err
	}
	var sub netip.Prefix
	var gw netip.Addr
	if opt.Subnet != "" {
		p, err := netip.ParsePrefix(opt.Subnet)
		if err != nil || !p.Addr().Is4() {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid subnet %s: want an IPv4 CIDR such as 172.30.0.0/16", opt.Subnet)
		}
		if p.Masked() != p {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid subnet %s: it has host bits set (did you mean %s?)", opt.Subnet, p.Masked())
		}
		if p.Bits() > 30 {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid subnet %s: too small for a gateway and a container (at most /30)", opt.Subnet)
		}
		sub = p
	} else if opt.Gateway != "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "a --gateway needs a --subnet")
	}
	if opt.Gateway != "" {
		a, err := netip.ParseAddr(opt.Gateway)
		if err != nil || !a.Is4() {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid gateway %s: want an IPv4 address", opt.Gateway)
		}
		if !sub.Contains(a) || a == sub.Addr() || a == lastAddr(sub) {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid gateway %s: not a host address of subnet %s", opt.Gateway, sub)
		}
		gw = a
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
	for _, n := range all {
		if n.Name == name {
			return nil, errdefs.Errorf(errdefs.ErrConflict, "network with name %s already exists", name)
		}
	}
	if sub.IsValid() {
		for _, n := range all {
			if p := n.Prefix(); p.IsValid() && p.Overlaps(sub) {
				return nil, errdefs.Errorf(errdefs.ErrConflict, "invalid pool request: Pool overlaps with other one on this address space (%s of network %s)", p, n.Name)
			}
		}
		if r := hostRouteOverlapping(sub); r != "" {
			return nil, errdefs.Errorf(errdefs.ErrConflict, "subnet %s overlaps with the host's route %s", sub, r)
		}
	} else {
		if sub, err = s.freeSubnet(all); err != nil {
			return nil, err
		}
	}
	if !gw.IsValid() {
		gw = sub.Addr().Next()
	}
	id := newID()
	opts := map[string]string{}
	for k, v := range opt.Options {
		opts[k] = v
	}
	if opts[optBridgeName] == "" {
		opts[optBridgeName] = "br-" + id[:12]
	}
	if len(opts[optBridgeName]) > 15 {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "bridge name %q is longer than 15 characters", opts[optBridgeName])
	}
	// hako deletes the bridge with the network: never one it did not make.
	if linkExists(opts[optBridgeName]) {
		return nil, errdefs.Errorf(errdefs.ErrConflict, "bridge name %q: an interface of that name exists on the host", opts[optBridgeName])
	}
	labels := opt.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	n := &Network{Name: name, ID: id, Created: time.Now().UTC(), Scope: "local", Driver: "bridge",
		IPAM:     IPAM{Driver: "default", Options: map[string]string{}, Config: []IPAMConfig{{Subnet: sub.String(), Gateway: gw.String()}}},
		Internal: opt.Internal, Options: opts, Labels: labels}
	if err := s.write(n); err != nil {
		os.RemoveAll(s.netDir(id))
		return nil, err
	}
	return n, nil
}

// Endpoints reads the leases of a network.
func (s *Store) Endpoints(id string) ([]*Endpoint, error) {
	ents, err := os.ReadDir(s.endpointDir(id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []*Endpoint
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var ep Endpoint
		if err := state.ReadJSON(filepath.Join(s.endpointDir(id), e.Name()), &ep); err != nil {
			continue
		}
		out = append(out, &ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IPAddress < out[j].IPAddress })
	return out, nil
}

// Remove deletes a user-defined network that no container uses, with its bridge
// and rules. inUse reports whether a container (running or not) still names
// it; without it, any lease makes the network busy.
func (s *Store) Remove(ref string, inUse func(n *Network) bool) error {
	n, err := s.Find(ref)
	if err != nil {
		return err
	}
	switch n.Name {
	case Bridge, Host, None:
		return errdefs.Errorf(errdefs.ErrConflict, "%s is a pre-defined network and cannot be removed", n.Name)
	}
	unlock, err := s.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	// With inUse, the containers decide: a lease can outlive its container
	// for the moment its monitor takes to give it back after a `run --rm`.
	busy := false
	if inUse != nil {
		busy = inUse(n)
	} else {
		eps, _ := s.Endpoints(n.ID)
		busy = len(eps) > 0
	}
	if busy {
		return errdefs.Errorf(errdefs.ErrConflict, "error while removing network: network %s id %s has active endpoints", n.Name, n.ID)
	}
	if err := removeBridge(n); err != nil {
		return err
	}
	// The record goes first: a network half removed is a directory without a
	// record, which list skips and the next prune clears.
	if err := os.Remove(s.recordPath(n.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.RemoveAll(s.netDir(n.ID))
}

// hostRouteOverlapping names a route of the host's that overlaps p ("" if none).
func hostRouteOverlapping(p netip.Prefix) string {
	for _, r := range hostRoutes() {
		if r.Bits() > 0 && r.Overlaps(p) {
			return r.String()
		}
	}
	return ""
}

// pool is Docker's default address pool: /16s from 172.17 to 172.31, then
// /20s of 192.168.0.0/16.
func pool() []netip.Prefix {
	var out []netip.Prefix
	for i := 17; i <= 31; i++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	for i := 0; i < 256; i += 16 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 20))
	}
	return out
}

// freeSubnet picks the first pool subnet that neither a network nor a route
// of the host's uses.
func (s *Store) freeSubnet(all []*Network) (netip.Prefix, error) {
	routes := hostRoutes()
next:
	for _, p := range pool() {
		for _, n := range all {
			if q := n.Prefix(); q.IsValid() && q.Overlaps(p) {
				continue next
			}
		}
		for _, r := range routes {
			// The default route overlaps everything; it is no use of the pool.
			if r.Bits() > 0 && r.Overlaps(p) {
				continue next
			}
		}
		return p, nil
	}
	return netip.Prefix{}, errdefs.Errorf(errdefs.ErrConflict, "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocate picks the lowest free address of n for a container (the caller
// holds the lock).
func (s *Store) allocate(n *Network) (netip.Addr, error) {
	eps, err := s.Endpoints(n.ID)
	if err != nil {
		return netip.Addr{}, err
	}
	used := map[netip.Addr]bool{n.GatewayAddr(): true}
	for _, ep := range eps {
		if a, err := netip.ParseAddr(ep.IPAddress); err == nil {
			used[a] = true
		}
	}
	p := n.Prefix()
	last := lastAddr(p)
	for a := p.Addr().Next(); a.IsValid() && a.Less(last); a = a.Next() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, errdefs.Errorf(errdefs.ErrConflict, "no available IPv4 addresses on network %s", n.Name)
}

// macFor derives a container's MAC address from its IPv4 address, as Docker
// did for years (02:42 and the address's four bytes): stable and unique on
// the network.
func macFor(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

// ErrExists is returned when a container is already attached to a network.
var ErrExists = errors.New("endpoint exists")

func (s *Store) readEndpoint(netID, ctrID string) (*Endpoint, error) {
	var ep Endpoint
	if err := state.ReadJSON(s.endpointPath(netID, ctrID), &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// Leases lists every endpoint of a container, on every network.
func (s *Store) Leases(ctrID string) (map[string]*Endpoint, error) {
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	out := map[string]*Endpoint{}
	for _, n := range all {
		if ep, err := s.readEndpoint(n.ID, ctrID); err == nil {
			out[n.ID] = ep
		}
	}
	return out, nil
}
