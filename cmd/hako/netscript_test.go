package main

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/vishvananda/netlink"

	"hako.dev/hako/runtime/network"
)

// lanhost NAME PREFIX: a network namespace NAME standing for another machine
// on the host's LAN (or the "outside" world): a veth pair with PREFIX.1/24 on
// the host's side and PREFIX.2/24 in the namespace, whose default route is the
// host. Removed when the script ends, also on failure.
func cmdLANHost(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: lanhost NAME PREFIX (e.g. lan1 10.201.0)")
	}
	name, prefix := args[0], args[1]
	hostEnd := "hkt-" + name
	run := func(a ...string) {
		if out, err := exec.Command(a[0], a[1:]...).CombinedOutput(); err != nil {
			ts.Fatalf("%s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
	ts.Defer(func() {
		exec.Command("ip", "link", "del", hostEnd).Run()
		exec.Command("ip", "netns", "del", name).Run()
	})
	run("ip", "netns", "add", name)
	run("ip", "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", name)
	run("ip", "addr", "add", prefix+".1/24", "dev", hostEnd)
	run("ip", "link", "set", hostEnd, "up")
	run("ip", "-n", name, "addr", "add", prefix+".2/24", "dev", "eth0")
	run("ip", "-n", name, "link", "set", "eth0", "up")
	run("ip", "-n", name, "link", "set", "lo", "up")
	run("ip", "-n", name, "route", "add", "default", "via", prefix+".1")
}

// netof CONTAINER: set CID to the container's ID, and VETH, IP to its host
// veth and address on its first network.
func cmdNetOf(ts *testscript.TestScript, neg bool, args []string) {
	eng := withEngine(ts)
	c, err := eng.Containers.Find(args[0])
	ts.Check(err)
	leases, err := eng.Networks.Leases(c.ID)
	ts.Check(err)
	if len(leases) == 0 {
		ts.Fatalf("%s holds no lease", args[0])
	}
	ts.Setenv("CID", c.ID)
	for _, ep := range leases {
		if ep.Iface == "eth0" {
			ts.Setenv("VETH", ep.HostVeth)
			ts.Setenv("IP", ep.IPAddress)
		}
	}
}

// netgone ID VETH: nothing of container ID's network is left: no host veth,
// no nftables rule, no lease.
func cmdNetGone(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: netgone ID VETH")
	}
	id, veth := args[0], args[1]
	var left []string
	if _, err := netlink.LinkByName(veth); err == nil {
		left = append(left, "interface "+veth)
	}
	tags, err := network.TaggedRules()
	ts.Check(err)
	if slices.Contains(tags, "ctr:"+id) {
		left = append(left, "nftables rules tagged ctr:"+id)
	}
	// The lease files as they are: a Load would release a dead monitor's
	// leases and hide the leak.
	leases, _ := filepath.Glob(filepath.Join(ts.Getenv("HAKO_ROOT"), "networks", "*", "endpoints", id+".json"))
	for _, l := range leases {
		left = append(left, "lease "+l)
	}
	if (len(left) > 0) != neg {
		if neg {
			ts.Fatalf("nothing of %.12s is left", id)
		}
		ts.Fatalf("left behind: %s", strings.Join(left, ", "))
	}
}
