package container

import (
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"hako.dev/hako/runtime/oci"
)

// Args is the process a container runs: entrypoint, then command.
func (c *Container) Args() []string {
	return append(append([]string{}, c.Config.Entrypoint...), c.Config.Cmd...)
}

// ProcessEnv is the environment the process gets: the container's Env plus
// HOSTNAME, as under Docker (HOME is filled in from /etc/passwd by the init).
func (c *Container) ProcessEnv() []string {
	env := append([]string{}, c.Config.Env...)
	if !hasKey(env, "HOSTNAME") {
		env = append(env, "HOSTNAME="+c.Config.Hostname)
	}
	return env
}

func hasKey(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// Capabilities applies --cap-add and --cap-drop (and --privileged) to Docker's
// defaults.
func (c *Container) Capabilities() []string {
	if c.HostConfig.Privileged {
		return oci.AllCapabilities()
	}
	var out []string
	drop := map[string]bool{}
	dropAll := false
	for _, d := range c.HostConfig.CapDrop {
		if n, err := oci.NormalizeCap(d); err == nil {
			drop[n] = true
			dropAll = dropAll || n == "ALL"
		}
	}
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if !dropAll {
		for _, n := range oci.DefaultCapabilities {
			if !drop[n] {
				add(n)
			}
		}
	}
	for _, a := range c.HostConfig.CapAdd {
		n, err := oci.NormalizeCap(a)
		if err != nil {
			continue
		}
		if n == "ALL" {
			for _, x := range oci.AllCapabilities() {
				add(x)
			}
			continue
		}
		add(n)
	}
	return out
}

// NoNewPrivileges reports --security-opt no-new-privileges.
func (c *Container) NoNewPrivileges() bool {
	for _, o := range c.HostConfig.SecurityOpt {
		if o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true" {
			return true
		}
	}
	return false
}

// Spec builds the OCI runtime spec of the container's init.
func (s *Store) Spec(c *Container) *specs.Spec {
	dir := s.Dir(c.ID)
	caps := c.Capabilities()
	mounts := oci.DefaultMounts()
	for _, f := range []string{"resolv.conf", "hostname", "hosts"} {
		mounts = append(mounts, specs.Mount{
			Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(dir, f),
			Options: []string{"rbind", "rprivate"},
		})
	}
	mounts = append(mounts, c.bindMounts()...)
	mounts = append(mounts, c.tmpfsMounts()...)
	spec := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: filepath.Join(dir, "rootfs"), Readonly: c.HostConfig.ReadonlyRootfs},
		Hostname: c.Config.Hostname,
		Process: &specs.Process{
			Terminal: c.Config.Tty,
			Args:     c.Args(),
			Env:      c.ProcessEnv(),
			Cwd:      c.Config.WorkingDir,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: c.NoNewPrivileges(),
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 1048576, Soft: 1048576},
			},
		},
		Mounts: mounts,
		Linux: &specs.Linux{
			Namespaces:    oci.DefaultNamespaces(),
			MaskedPaths:   oci.MaskedPaths,
			ReadonlyPaths: oci.ReadonlyPaths,
		},
	}
	if c.HostConfig.Privileged {
		spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = nil, nil
	}
	if spec.Process.Cwd == "" {
		spec.Process.Cwd = "/"
	}
	return spec
}
