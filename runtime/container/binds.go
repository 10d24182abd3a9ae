package container

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/oci"
)

// MountPoint is one entry of Docker's .Mounts.
type MountPoint struct {
	Type        string `json:"Type"`
	Name        string `json:"Name,omitempty"` // a named volume's name
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	Mode        string `json:"Mode"`
	RW          bool   `json:"RW"`
	Propagation string `json:"Propagation"`
	Driver      string `json:"Driver,omitempty"`
	// NoCopy: do not fill a new, empty volume with the image's content.
	NoCopy bool `json:"NoCopy,omitempty"`
	// Anonymous: made for this container (-v /path, an image's VOLUME), and
	// removed with it by --rm and rm -v.
	Anonymous bool `json:"Anonymous,omitempty"`
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ParseBind reads a -v SOURCE:TARGET[:OPTIONS] bind mount the way Docker
// does. The source must be an absolute host path (a bare name is a named
// volume, which comes with hako's volumes); a missing source directory is
// created, as `docker run -v` does.
func ParseBind(spec string) (MountPoint, error) {
	bad := func(why string) (MountPoint, error) {
		return MountPoint{}, errdefs.Errorf(errdefs.ErrInvalid, "invalid volume specification: '%s': %s", spec, why)
	}
	parts := strings.Split(spec, ":")
	if len(parts) == 1 && strings.HasPrefix(spec, "/") {
		// -v /path: an anonymous volume.
		if filepath.Clean(spec) == "/" {
			return bad("destination can't be '/'")
		}
		return MountPoint{Type: "volume", Destination: filepath.Clean(spec), RW: true, Driver: "local", Anonymous: true}, nil
	}
	if len(parts) < 2 || len(parts) > 3 {
		return bad("want SOURCE:TARGET[:OPTIONS]")
	}
	src, dst := parts[0], parts[1]
	m := MountPoint{Type: "bind", Source: src, Destination: dst, RW: true, Propagation: "rprivate"}
	if !filepath.IsAbs(src) {
		if volumeName.MatchString(src) && len(src) > 1 {
			m.Type, m.Name, m.Source, m.Driver, m.Propagation = "volume", src, "", "local", ""
		} else {
			return MountPoint{}, errdefs.Errorf(errdefs.ErrInvalid, "create %s: %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", src, src)
		}
	}
	if !filepath.IsAbs(dst) {
		return bad("invalid mount config for type \"bind\": invalid mount path: '" + dst + "' mount path must be absolute")
	}
	if filepath.Clean(dst) == "/" {
		return bad("invalid mount config for type \"bind\": invalid specification: destination can't be '/'")
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				m.RW = false
			case "rw":
				m.RW = true
			case "nocopy":
				m.NoCopy = true
			case "z", "Z", "consistent", "cached", "delegated":
			case "private", "rprivate", "shared", "rshared", "slave", "rslave":
				m.Propagation = o
			default:
				return bad("invalid mode: " + o)
			}
		}
		m.Mode = parts[2]
	}
	if m.Type == "bind" {
		m.Source = filepath.Clean(src)
	}
	m.Destination = filepath.Clean(dst)
	return m, nil
}

// PrepareBind creates a missing bind source directory, as `docker run -v` does.
func PrepareBind(m MountPoint) error {
	if _, err := os.Stat(m.Source); os.IsNotExist(err) {
		return os.MkdirAll(m.Source, 0o755)
	} else if err != nil {
		return err
	}
	return nil
}

// bindMounts turns the container's binds into OCI mounts. They are nodev (a
// device node made through a bind mount cannot be opened), unless the source
// is under /dev.
func (c *Container) bindMounts() []specs.Mount {
	var out []specs.Mount
	for _, m := range c.MountPoints {
		prop := m.Propagation
		if prop == "" {
			prop = "rprivate"
		}
		opts := []string{"rbind", prop}
		if m.Type == "volume" && !m.NoCopy {
			opts = append(opts, oci.CopyUpOption)
		}
		if !m.RW {
			opts = append(opts, "ro")
		}
		if !strings.HasPrefix(m.Source, "/dev") {
			opts = append(opts, "nodev")
		}
		out = append(out, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}
	return out
}

// TmpfsMounts are --tmpfs mounts: PATH[:OPTIONS].
func (c *Container) tmpfsMounts() []specs.Mount {
	var out []specs.Mount
	paths := make([]string, 0, len(c.HostConfig.Tmpfs))
	for p := range c.HostConfig.Tmpfs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		opts := []string{"nosuid", "nodev", "noexec"}
		if o := c.HostConfig.Tmpfs[p]; o != "" {
			opts = append(opts, strings.Split(o, ",")...)
		}
		out = append(out, specs.Mount{Destination: p, Type: "tmpfs", Source: "tmpfs", Options: opts})
	}
	return out
}

// ParseTmpfs reads --tmpfs PATH[:OPTIONS].
func ParseTmpfs(spec string) (string, string, error) {
	p, opts, _ := strings.Cut(spec, ":")
	if !filepath.IsAbs(p) || filepath.Clean(p) == "/" {
		return "", "", errdefs.Errorf(errdefs.ErrInvalid, "invalid tmpfs mount %q: the path must be absolute and not /", spec)
	}
	return filepath.Clean(p), opts, nil
}

// ParseMount reads --mount type=bind|volume|tmpfs,source=,target=,readonly
// (Docker's long form; src/source, dst/destination/target, ro/readonly).
// A tmpfs mount is returned with Type "tmpfs" for the caller to place.
func ParseMount(spec string) (MountPoint, error) {
	bad := func(why string) (MountPoint, error) {
		return MountPoint{}, errdefs.Errorf(errdefs.ErrInvalid, "invalid argument %q for \"--mount\" flag: %s", spec, why)
	}
	m := MountPoint{Type: "volume", RW: true}
	for _, field := range strings.Split(spec, ",") {
		k, v, hasV := strings.Cut(field, "=")
		switch strings.ToLower(k) {
		case "type":
			switch v {
			case "bind", "volume", "tmpfs":
				m.Type = v
			default:
				return bad("unknown mount type " + v)
			}
		case "source", "src":
			m.Source = v
		case "target", "dst", "destination":
			m.Destination = v
		case "readonly", "ro":
			m.RW = hasV && (v == "false" || v == "0")
		case "volume-nocopy":
			m.NoCopy = !hasV || v == "true" || v == "1"
		case "bind-propagation":
			m.Propagation = v
		case "consistency", "tmpfs-size", "tmpfs-mode", "volume-driver", "volume-opt", "bind-nonrecursive":
		default:
			return bad("unexpected key '" + k + "'")
		}
	}
	if m.Destination == "" {
		return bad("target is required")
	}
	if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) == "/" {
		return bad("the target must be an absolute path other than /")
	}
	m.Destination = filepath.Clean(m.Destination)
	switch m.Type {
	case "bind":
		if !filepath.IsAbs(m.Source) {
			return bad("the source of a bind mount must be an absolute host path")
		}
		// Unlike -v, --mount does not create a missing source.
		if _, err := os.Stat(m.Source); err != nil {
			return MountPoint{}, errdefs.Errorf(errdefs.ErrInvalid, "invalid mount config for type \"bind\": bind source path does not exist: %s", m.Source)
		}
		m.Source = filepath.Clean(m.Source)
		if m.Propagation == "" {
			m.Propagation = "rprivate"
		}
	case "volume":
		m.Driver = "local"
		if m.Source == "" {
			m.Anonymous = true
		} else if !volumeName.MatchString(m.Source) {
			return bad("invalid volume name " + m.Source)
		} else {
			m.Name, m.Source = m.Source, ""
		}
	}
	return m, nil
}
