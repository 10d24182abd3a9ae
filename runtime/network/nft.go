package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// hako's rules live in one nftables table, "ip hako", beside whatever else the
// host has (no iptables binary, no shared chains):
//
//	prerouting, output (nat): packets for a local address jump to "ports"
//	ports: one DNAT rule per published port, tagged "ctr:<container id>"
//	postrouting (nat): per network, masquerade what leaves for elsewhere, what
//	    came from 127.0.0.1 through a DNAT, and hairpin traffic; tagged "net:<id>"
//	forward (filter): jump to isolate1; isolate1 sends what crosses from one
//	    hako bridge to another to isolate2, which drops it (as Docker's
//	    DOCKER-ISOLATION-STAGE-1/2): networks do not reach each other.
//
// Each rule carries its tag as user data, so a container's or a network's
// rules are found and removed by tag, also after a crash.
const tableName = "hako"

var table = &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}

func chainRef(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: table} }

// ensureTable creates the table and its chains (adding what exists is a
// no-op), and the fixed jumps unless they are there (the caller holds the
// store's lock; it runs when a bridge is built).
func ensureTable(c *nftables.Conn) error {
	c.AddTable(table)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	c.AddChain(&nftables.Chain{Name: "postrouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.AddChain(&nftables.Chain{Name: "guard", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	c.AddChain(&nftables.Chain{Name: "ports", Table: table})
	c.AddChain(&nftables.Chain{Name: "isolate1", Table: table})
	c.AddChain(&nftables.Chain{Name: "isolate2", Table: table})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table %s: %w", tableName, err)
	}
	for _, j := range []struct {
		ch    *nftables.Chain
		exprs []expr.Any
	}{{pre, concat(localDaddr(), jump("ports"))}, {out, concat(localDaddr(), jump("ports"))}, {fwd, jump("isolate1")}} {
		if rules, err := c.GetRules(table, j.ch); err == nil && len(rules) == 0 {
			c.AddRule(&nftables.Rule{Table: table, Chain: j.ch, Exprs: j.exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: create table %s: %w", tableName, err)
	}
	return nil
}

// addNetworkRules writes the rules of one bridge network, replacing any it
// had (the caller holds the store's lock).
func addNetworkRules(n *Network) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := ensureTable(c); err != nil {
		return err
	}
	tag := "net:" + n.ID
	if err := deleteTagged(c, tag, "guard", "postrouting", "isolate1", "isolate2"); err != nil {
		return err
	}
	br := n.Iface()
	sub := n.Prefix()
	add := func(chain string, e ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: table, Chain: chainRef(chain), Exprs: concat(e...), UserData: []byte(tag)})
	}
	masq := []expr.Any{&expr.Masq{}}
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	if n.Internal {
		// --internal: nothing in or out but between its own containers.
		add("isolate1", ifname(true, br, true), ifname(false, br, false), drop)
		add("isolate1", ifname(false, br, true), ifname(true, br, false), drop)
	} else {
		// Outbound NAT: from the subnet to anywhere but the bridge itself.
		add("postrouting", saddrIn(sub), ifname(false, br, false), masq)
	}
	// Published on 127.0.0.1 and DNATed here: the source must change, or the
	// reply would go to the container's own loopback.
	add("postrouting", ifname(false, br, true), saddrIn(netip.MustParsePrefix("127.0.0.0/8")), masq)
	// Hairpin: a container reaching a port published by a neighbour through an
	// address of the host.
	add("postrouting", ifname(false, br, true), ifname(true, br, true), dnatted(), masq)
	// route_localnet lets 127.0.0.1 be DNATed to the bridge, and would also
	// let a container send packets for the host's 127.0.0.1 (CVE-2020-8558):
	// nothing for a loopback address may come in through the bridge.
	add("guard", ifname(true, br, true), daddrIn(netip.MustParsePrefix("127.0.0.0/8")), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})
	add("isolate1", ifname(true, br, true), ifname(false, br, false), jump("isolate2"))
	add("isolate2", ifname(false, br, true), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: rules of network %s: %w", n.Name, err)
	}
	return nil
}

// addPortRules DNATs a container's published ports to its address.
func addPortRules(ctrID string, ip netip.Addr, ports []Port) error {
	if len(ports) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tag := "ctr:" + ctrID
	for _, p := range ports {
		e := []expr.Any{}
		if p.HostIP != "" && p.HostIP != "0.0.0.0" {
			a, err := netip.ParseAddr(p.HostIP)
			if err != nil || !a.Is4() {
				continue // IPv6 bindings are served by the monitor's proxy
			}
			e = append(e, daddrIs(a)...)
		}
		e = append(e, l4Port(p.Proto, p.HostPort)...)
		e = append(e, dnat(ip, p.ContainerPort)...)
		c.AddRule(&nftables.Rule{Table: table, Chain: chainRef("ports"), Exprs: e, UserData: []byte(tag)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: publish ports of %.12s: %w", ctrID, err)
	}
	return nil
}

// deleteRules removes every rule tagged tag, in every chain of the table.
func deleteRules(tag string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if _, err := c.ListTableOfFamily(tableName, nftables.TableFamilyIPv4); err != nil {
		return nil // no table: no rules
	}
	if err := deleteTagged(c, tag, "ports", "guard", "postrouting", "isolate1", "isolate2"); err != nil {
		return err
	}
	return c.Flush()
}

func deleteTagged(c *nftables.Conn, tag string, chains ...string) error {
	for _, ch := range chains {
		rules, err := c.GetRules(table, chainRef(ch))
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("nftables: list %s: %w", ch, err)
		}
		for _, r := range rules {
			if string(r.UserData) == tag {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("nftables: delete rule: %w", err)
				}
			}
		}
	}
	return nil
}

// TaggedRules lists the tags of every rule in hako's table (for cleanup and
// for tests that prove nothing is left behind).
func TaggedRules() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	if _, err := c.ListTableOfFamily(tableName, nftables.TableFamilyIPv4); err != nil {
		return nil, nil
	}
	var out []string
	for _, ch := range []string{"ports", "guard", "postrouting", "isolate1", "isolate2"} {
		rules, err := c.GetRules(table, chainRef(ch))
		if err != nil {
			continue
		}
		for _, r := range rules {
			if len(r.UserData) > 0 {
				out = append(out, string(r.UserData))
			}
		}
	}
	return out, nil
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// localDaddr: fib daddr type local.
func localDaddr() []expr.Any {
	v := make([]byte, 4)
	binary.NativeEndian.PutUint32(v, unix.RTN_LOCAL)
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v},
	}
}

func ifnameBytes(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// ifname matches the input (in) or output interface's name, equal or not.
func ifname(in bool, name string, eq bool) []expr.Any {
	key := expr.MetaKeyOIFNAME
	if in {
		key = expr.MetaKeyIIFNAME
	}
	op := expr.CmpOpNeq
	if eq {
		op = expr.CmpOpEq
	}
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: ifnameBytes(name)},
	}
}

func saddrIn(p netip.Prefix) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	a := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func daddrIn(p netip.Prefix) []expr.Any {
	e := saddrIn(p)
	e[0] = &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
	return e
}

func daddrIs(a netip.Addr) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]},
	}
}

func protoNum(proto string) byte {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func l4Port(proto string, port int) []expr.Any {
	pb := make([]byte, 2)
	binary.BigEndian.PutUint16(pb, uint16(port))
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoNum(proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pb},
	}
}

func dnat(ip netip.Addr, port int) []expr.Any {
	a := ip.As4()
	pb := make([]byte, 2)
	binary.BigEndian.PutUint16(pb, uint16(port))
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: pb},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// dnatted: ct status dnat.
func dnatted() []expr.Any {
	mask := make([]byte, 4)
	binary.NativeEndian.PutUint32(mask, 0x20) // IPS_DST_NAT
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}
