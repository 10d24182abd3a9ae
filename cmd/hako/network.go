package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/network"
)

var networkHeaders = map[string]string{"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
	"IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}

// networkJSON is `network inspect`'s shape.
type networkJSON struct {
	*network.Network
	ConfigFrom struct {
		Network string `json:"Network"`
	} `json:"ConfigFrom"`
	ConfigOnly bool                        `json:"ConfigOnly"`
	Ingress    bool                        `json:"Ingress"`
	Containers map[string]networkContainer `json:"Containers"`
}

type networkContainer struct {
	Name        string `json:"Name"`
	EndpointID  string `json:"EndpointID"`
	MacAddress  string `json:"MacAddress"`
	IPv4Address string `json:"IPv4Address"`
	IPv6Address string `json:"IPv6Address"`
}

func inspectNetwork(eng *engine.Engine, n *network.Network) networkJSON {
	out := networkJSON{Network: n, Containers: map[string]networkContainer{}}
	for id, ep := range eng.Networks.Containers(n) {
		name := ep.Name
		if c, err := eng.Containers.Load(id); err == nil {
			name = c.Name
		}
		out.Containers[id] = networkContainer{Name: name, EndpointID: ep.EndpointID, MacAddress: ep.MacAddress,
			IPv4Address: fmt.Sprintf("%s/%d", ep.IPAddress, ep.PrefixLen)}
	}
	return out
}

func (c *cli) networkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks"}

	var driver, subnet, gateway string
	var internal bool
	var labels, opts []string
	create := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			lm := map[string]string{}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				lm[k] = v
			}
			om := map[string]string{}
			for _, o := range opts {
				k, v, _ := strings.Cut(o, "=")
				om[k] = v
			}
			n, err := eng.Networks.Create(args[0], network.CreateOptions{Driver: driver, Subnet: subnet, Gateway: gateway,
				Internal: internal, Labels: lm, Options: om})
			if err != nil {
				return fail1(err)
			}
			fmt.Fprintln(c.out, n.ID)
			return nil
		},
	}
	create.Flags().StringVarP(&driver, "driver", "d", "bridge", "Driver to manage the Network")
	create.Flags().StringVar(&subnet, "subnet", "", "Subnet in CIDR format that represents a network segment")
	create.Flags().StringVar(&gateway, "gateway", "", "IPv4 Gateway for the master subnet")
	create.Flags().BoolVar(&internal, "internal", false, "Restrict external access to the network")
	create.Flags().StringArrayVar(&labels, "label", nil, "Set metadata on a network")
	create.Flags().StringArrayVarP(&opts, "opt", "o", nil, "Set driver specific options")

	var quiet, noTrunc bool
	var format string
	var filters []string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			all, err := eng.Networks.List()
			if err != nil {
				return fail1(err)
			}
			var rows []map[string]any
			for _, n := range all {
				if !matchNetworkFilters(n, filters) {
					continue
				}
				id := n.ID
				if !noTrunc {
					id = id[:12]
				}
				if quiet {
					fmt.Fprintln(c.out, id)
					continue
				}
				var ls []string
				for k, v := range n.Labels {
					ls = append(ls, k+"="+v)
				}
				rows = append(rows, map[string]any{"ID": id, "Name": n.Name, "Driver": n.Driver, "Scope": n.Scope,
					"IPv6": n.EnableIPv6, "Internal": n.Internal, "Labels": strings.Join(ls, ","),
					"CreatedAt": n.Created.Local().Format("2006-01-02 15:04:05.999999999 -0700 MST")})
			}
			if quiet {
				return nil
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
			}
			if err := renderRows(c.out, format, networkHeaders, rows); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	ls.Flags().BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	ls.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	ls.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Provide filter values (e.g. 'driver=bridge')")

	inspect := c.inspectEachCmd("network", "NETWORK", "networks", func(eng *engine.Engine, ref string) (any, error) {
		n, err := eng.Networks.Find(ref)
		if err != nil {
			return nil, err
		}
		return inspectNetwork(eng, n), nil
	})
	// Refused while a container is attached: running (a lease) or stopped
	// (it would not start again).
	rm := c.removeEachCmd("NETWORK", "networks", "Do not error if the network does not exist", func(eng *engine.Engine, ref string) error {
		return eng.Networks.Remove(ref, eng.Containers.NetworkUsers)
	})

	var force bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				if !c.confirm("WARNING! This will remove all custom networks not used by at least one container.") {
					return nil
				}
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			if err := eng.ReleaseStaleNetworks(); err != nil {
				return fail1(err)
			}
			removed, err := eng.Networks.Prune(eng.Containers.NetworkUsers)
			if err != nil {
				return fail1(err)
			}
			if len(removed) > 0 {
				fmt.Fprintln(c.out, "Deleted Networks:")
				for _, n := range removed {
					fmt.Fprintln(c.out, n)
				}
			}
			return nil
		},
	}
	prune.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	prune.Flags().StringArray("filter", nil, "Provide filter values (e.g. 'until=<timestamp>')")

	var aliases []string
	connect := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			if err := eng.Containers.Connect(args[1], args[0], aliases); err != nil {
				return fail1(err)
			}
			return nil
		},
	}
	connect.Flags().StringArrayVar(&aliases, "alias", nil, "Add network-scoped alias for the container")

	var dforce bool
	disconnect := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			if err := eng.Containers.Disconnect(args[1], args[0], dforce); err != nil {
				return fail1(err)
			}
			return nil
		},
	}
	disconnect.Flags().BoolVarP(&dforce, "force", "f", false, "Force the container to disconnect from a network")
	cmd.AddCommand(create, ls, inspect, rm, prune, connect, disconnect)
	return cmd
}

func matchNetworkFilters(n *network.Network, filters []string) bool {
	for _, f := range filters {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "name":
			if !strings.Contains(n.Name, v) {
				return false
			}
		case "driver":
			if n.Driver != v {
				return false
			}
		case "id":
			if !strings.HasPrefix(n.ID, v) {
				return false
			}
		case "type":
			custom := n.Name != network.Bridge && n.Name != network.Host && n.Name != network.None
			if (v == "custom") != custom {
				return false
			}
		}
	}
	return true
}
