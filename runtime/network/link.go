package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/state"
)

// hostRoutes are the IPv4 destinations the host routes (the main table).
func hostRoutes() []netip.Prefix {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok {
			out = append(out, netip.PrefixFrom(a, ones).Masked())
		}
	}
	return out
}

func writeSysctl(path, value string) error {
	return os.WriteFile("/proc/sys/"+path, []byte(value), 0o644)
}

// ensureBridge builds n's Linux bridge with its gateway address and its
// nftables rules, unless it exists (the caller holds the store's lock). A
// reboot takes bridges and rules away together; the next container to start
// builds both again.
func ensureBridge(n *Network, repick func(*Network) error) error {
	name := n.Iface()
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Type() != "bridge" {
			return errdefs.Errorf(errdefs.ErrConflict, "network %s: %s exists on the host and is not a bridge", n.Name, name)
		}
		if l.Attrs().OperState == netlink.OperUp || l.Attrs().Flags&net.FlagUp != 0 {
			return nil
		}
		return netlink.LinkSetUp(l)
	}
	// State roots do not know each other's networks: the host's routes tell
	// which subnets are taken, under a lock every root shares.
	unlock, err := state.Lock("/run/hako-network.lock")
	if err != nil {
		return err
	}
	defer unlock()
	if r := hostRouteOverlapping(n.Prefix()); r != "" && repick != nil {
		// The default bridge's subnet was picked before the bridge existed;
		// another root took it meanwhile: pick again.
		if err := repick(n); err != nil {
			return err
		}
	}
	if r := hostRouteOverlapping(n.Prefix()); r != "" {
		return errdefs.Errorf(errdefs.ErrConflict, "network %s: subnet %s overlaps with the host's route %s (remove the network, or the route)", n.Name, n.Prefix(), r)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}}
	if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			netlink.LinkDel(l)
		}
	}()
	p := n.Prefix()
	gw := n.GatewayAddr()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("bridge %s: address %s: %w", name, p, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: up: %w", name, err)
	}
	// Containers reach beyond the host through the host's routing (Docker turns
	// forwarding on too); connections published on 127.0.0.1 are DNATed to the
	// bridge, which needs local addresses routable there.
	if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable IP forwarding: %w", err)
	}
	if err := writeSysctl("net/ipv4/conf/"+name+"/route_localnet", "1"); err != nil {
		return fmt.Errorf("bridge %s: route_localnet: %w", name, err)
	}
	if err := addNetworkRules(n); err != nil {
		return err
	}
	ok = true
	return nil
}

// removeBridge deletes n's bridge and rules, if they exist.
func removeBridge(n *Network) error {
	if n.Driver != "bridge" {
		return nil
	}
	if err := deleteRules("net:" + n.ID); err != nil {
		return err
	}
	if l, err := netlink.LinkByName(n.Iface()); err == nil && l.Type() == "bridge" {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete bridge %s: %w", n.Iface(), err)
		}
	}
	return nil
}

// randomVeth is a host-side veth name, Docker style: "veth" and 7 hex digits.
func randomVeth() string {
	b := make([]byte, 4)
	unix.Getrandom(b, 0)
	return fmt.Sprintf("veth%07x", (uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))&0xfffffff)
}

// plumb gives the network namespace of process pid its end of a new veth
// pair, named ep.Iface, with ep's address and MAC, and with the default route
// through the gateway when route is set; the host's end joins the bridge.
func plumb(n *Network, ep *Endpoint, pid int, route bool) error {
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return fmt.Errorf("network namespace of %d: %w", pid, err)
	}
	defer ns.Close()
	return plumbNS(n, ep, ns, route)
}

func plumbNS(n *Network, ep *Endpoint, ns netns.NsHandle, route bool) error {
	br, err := netlink.LinkByName(n.Iface())
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Iface(), err)
	}
	mac, _ := net.ParseMAC(ep.MacAddress)
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: ep.HostVeth, MasterIndex: br.Attrs().Index, MTU: 1500},
		PeerName:         ep.Iface,
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth pair %s: %w", ep.HostVeth, err)
	}
	ok := false
	defer func() {
		if !ok {
			if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
				netlink.LinkDel(l)
			}
		}
	}()
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth %s up: %w", ep.HostVeth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in the container: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(ep.Iface)
	if err != nil {
		return fmt.Errorf("container's %s: %w", ep.Iface, err)
	}
	// The init brings lo up too, maybe later: the embedded DNS server binds
	// 127.0.0.11 there before the command runs.
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	ip, _ := netip.ParseAddr(ep.IPAddress)
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ep.PrefixLen, 32)}}
	if err := h.AddrAdd(l, addr); err != nil {
		return fmt.Errorf("container's address %s: %w", ep.IPAddress, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("container's %s up: %w", ep.Iface, err)
	}
	if route {
		gw, _ := netip.ParseAddr(ep.Gateway)
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("container's default route via %s: %w", ep.Gateway, err)
		}
	}
	ok = true
	return nil
}

// unplumb removes the container's interface (its peer on the host goes with
// it) if the namespace still exists, and the host end otherwise.
func unplumb(ep *Endpoint, pid int) {
	if pid > 0 {
		if ns, err := netns.GetFromPid(pid); err == nil {
			if h, err := netlink.NewHandleAt(ns); err == nil {
				if l, err := h.LinkByName(ep.Iface); err == nil {
					h.LinkDel(l)
				}
				h.Close()
			}
			ns.Close()
		}
	}
	if ep.HostVeth != "" {
		if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
			netlink.LinkDel(l)
		}
	}
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}
