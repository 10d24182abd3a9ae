package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hako.dev/hako/runtime/network"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/engine"
)

// containerJSON is `docker container inspect`'s shape, field for field where
// hako has the information.
type containerJSON struct {
	ID              string               `json:"Id"`
	Created         string               `json:"Created"`
	Path            string               `json:"Path"`
	Args            []string             `json:"Args"`
	State           stateJSON            `json:"State"`
	Image           string               `json:"Image"`
	ResolvConfPath  string               `json:"ResolvConfPath"`
	HostnamePath    string               `json:"HostnamePath"`
	HostsPath       string               `json:"HostsPath"`
	LogPath         string               `json:"LogPath"`
	Name            string               `json:"Name"`
	RestartCount    int                  `json:"RestartCount"`
	Driver          string               `json:"Driver"`
	Platform        string               `json:"Platform"`
	MountLabel      string               `json:"MountLabel"`
	ProcessLabel    string               `json:"ProcessLabel"`
	AppArmorProfile string               `json:"AppArmorProfile"`
	ExecIDs         []string             `json:"ExecIDs"`
	HostConfig      container.HostConfig `json:"HostConfig"`
	GraphDriver     graphDriverJSON      `json:"GraphDriver"`
	Mounts          []any                `json:"Mounts"`
	Config          container.Config     `json:"Config"`
	NetworkSettings networkSettingsJSON  `json:"NetworkSettings"`
}

type stateJSON struct {
	Status     string `json:"Status"`
	Running    bool   `json:"Running"`
	Paused     bool   `json:"Paused"`
	Restarting bool   `json:"Restarting"`
	OOMKilled  bool   `json:"OOMKilled"`
	Dead       bool   `json:"Dead"`
	Pid        int    `json:"Pid"`
	ExitCode   int    `json:"ExitCode"`
	Error      string `json:"Error"`
	StartedAt  string `json:"StartedAt"`
	FinishedAt string `json:"FinishedAt"`
}

type graphDriverJSON struct {
	Data map[string]string `json:"Data"`
	Name string            `json:"Name"`
}

type networkSettingsJSON struct {
	Bridge              string         `json:"Bridge"`
	SandboxID           string         `json:"SandboxID"`
	SandboxKey          string         `json:"SandboxKey"`
	Ports               map[string]any `json:"Ports"`
	Gateway             string         `json:"Gateway"`
	IPAddress           string         `json:"IPAddress"`
	IPPrefixLen         int            `json:"IPPrefixLen"`
	MacAddress          string         `json:"MacAddress"`
	GlobalIPv6Address   string         `json:"GlobalIPv6Address"`
	GlobalIPv6PrefixLen int            `json:"GlobalIPv6PrefixLen"`
	IPv6Gateway         string         `json:"IPv6Gateway"`
	Networks            map[string]any `json:"Networks"`
}

func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func inspectContainer(eng *engine.Engine, c *container.Container) containerJSON {
	args := c.Args()
	path, rest := "", []string{}
	if len(args) > 0 {
		path, rest = args[0], args[1:]
	}
	dir := eng.Containers.Dir(c.ID)
	lower := ""
	for _, o := range c.Rootfs.Options {
		if strings.HasPrefix(o, "lowerdir=") {
			lower = strings.TrimPrefix(o, "lowerdir=")
		}
	}
	hc := c.HostConfig
	if hc.Binds == nil {
		hc.Binds = nil
	}
	return containerJSON{
		ID: c.ID, Created: dockerTime(c.Created), Path: path, Args: rest,
		State: stateJSON{
			Status: c.State.Status, Running: c.State.Running, Paused: c.State.Paused,
			Restarting: c.State.Restarting, OOMKilled: c.State.OOMKilled, Dead: c.State.Dead,
			Pid: c.State.Pid, ExitCode: c.State.ExitCode, Error: c.State.Error,
			StartedAt: dockerTime(c.State.StartedAt), FinishedAt: dockerTime(c.State.FinishedAt),
		},
		Image:          c.Image,
		ResolvConfPath: filepath.Join(dir, "resolv.conf"),
		HostnamePath:   filepath.Join(dir, "hostname"),
		HostsPath:      filepath.Join(dir, "hosts"),
		LogPath:        eng.Containers.LogPath(c.ID),
		Name:           "/" + c.Name,
		RestartCount:   c.RestartCount,
		Driver:         "overlay2",
		Platform:       "linux",
		HostConfig:     hc,
		GraphDriver: graphDriverJSON{Name: "overlay2", Data: map[string]string{
			"LowerDir": lower, "MergedDir": filepath.Join(dir, "rootfs"),
			"UpperDir": filepath.Join(dir, "upper"), "WorkDir": filepath.Join(dir, "work"),
		}},
		Mounts:          mountsJSON(c),
		Config:          c.Config,
		NetworkSettings: networkSettingsOf(c),
	}
}

// toGeneric round-trips through JSON so that templates see Docker's field
// names (and `json .X` prints what inspect prints).
func toGeneric(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return out, d.Decode(&out)
}

func (c *cli) inspectCmd(kind string) *cobra.Command {
	var format, typ string
	use := "inspect [OPTIONS] NAME|ID [NAME|ID...]"
	cmd := &cobra.Command{
		Use:   use,
		Short: "Return low-level information on " + map[string]string{"": "objects", "container": "one or more containers", "image": "one or more images"}[kind],
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if kind != "" {
				typ = kind
			}
			eng, err := c.engine()
			if err != nil {
				return fail1(err)
			}
			var results []any
			var errs []string
			for _, a := range args {
				var v any
				if typ == "" || typ == "container" {
					if ctr, err := eng.Containers.Find(a); err == nil {
						v = inspectContainer(eng, ctr)
					}
				}
				if v == nil && (typ == "" || typ == "image") {
					if img, err := eng.Images.Get(a); err == nil {
						v = eng.Images.InspectJSON(img)
					}
				}
				if v == nil {
					switch typ {
					case "container":
						errs = append(errs, "Error: No such container: "+a)
					case "image":
						errs = append(errs, "Error: No such image: "+a)
					default:
						errs = append(errs, "Error: No such object: "+a)
					}
					continue
				}
				results = append(results, v)
			}
			if format != "" {
				for _, r := range results {
					// Docker's way: the typed value first (numbers print as
					// numbers), then the JSON field names (.Id) as a fallback.
					var buf bytes.Buffer
					if err := renderOne(&buf, format, r); err != nil {
						g, gerr := toGeneric(r)
						if gerr != nil {
							return fail1(gerr)
						}
						buf.Reset()
						if err := renderOne(&buf, format, g); err != nil {
							return &exitError{code: 1, msg: err.Error()}
						}
					}
					c.out.Write(buf.Bytes())
				}
			} else {
				if results == nil {
					results = []any{}
				}
				b, err := json.MarshalIndent(results, "", "    ")
				if err != nil {
					return fail1(err)
				}
				fmt.Fprintln(c.out, string(b))
			}
			if len(errs) > 0 {
				return &exitError{code: 1, msg: strings.Join(errs, "\n")}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	if kind == "" || kind == "container" {
		cmd.Flags().BoolP("size", "s", false, "Display total file sizes")
	}
	if kind == "" {
		cmd.Flags().StringVar(&typ, "type", "", "Return JSON for specified type")
	}
	return cmd
}

// portsJSON is .NetworkSettings.Ports: every exposed port, with its host
// bindings while the container runs (null when not published), as Docker shows.
func portsJSON(c *container.Container) map[string]any {
	out := map[string]any{}
	for p := range c.Config.ExposedPorts {
		out[p] = nil
	}
	for p, bs := range c.Ports {
		out[p] = bs
	}
	return out
}

func mountsJSON(c *container.Container) []any {
	out := []any{}
	for _, m := range c.MountPoints {
		out = append(out, m)
	}
	return out
}

// networkSettingsOf is .NetworkSettings: every network by name, and, as in
// Docker, the default bridge's address also at the top level (empty on
// user-defined networks).
func networkSettingsOf(c *container.Container) networkSettingsJSON {
	ns := networkSettingsJSON{Ports: portsJSON(c), Networks: map[string]any{}}
	for _, name := range c.NetworkNames() {
		ns.Networks[name] = c.Networks[name]
	}
	if e, ok := c.Networks[network.Bridge]; ok && c.State.Running {
		ns.IPAddress, ns.Gateway, ns.IPPrefixLen, ns.MacAddress = e.IPAddress, e.Gateway, e.IPPrefixLen, e.MacAddress
		ns.Bridge = network.DefaultBridgeIface
	}
	if c.State.Running {
		ns.SandboxKey = fmt.Sprintf("/proc/%d/ns/net", c.State.Pid)
	}
	return ns
}
