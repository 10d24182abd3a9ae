// Package engine is the facade that the CLI and the lessons call. It joins the
// image store and the container store: a container is created from an image's
// configuration and layers, and an image cannot go while a container uses it.
//
// There is no daemon behind it: an Engine is a handle on the state root, cheap
// to open in every command.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"hako.dev/hako/runtime/container"
	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/image"
	"hako.dev/hako/runtime/network"
	"hako.dev/hako/runtime/rootfs"
	"hako.dev/hako/runtime/state"
	"hako.dev/hako/runtime/volume"
)

// Engine is a handle on one state root.
type Engine struct {
	Root       *state.Root
	Images     *image.Store
	Containers *container.Store
	Volumes    *volume.Store
	Networks   *network.Store
}

// RootFromEnv is the state root a command uses: --root, else HAKO_ROOT, else
// /var/lib/hako.
func RootFromEnv(flag string) string {
	if flag != "" {
		return flag
	}
	if r := os.Getenv("HAKO_ROOT"); r != "" {
		return r
	}
	return state.DefaultRoot
}

// Open opens (creating if needed) the state root at dir.
func Open(dir string) (*Engine, error) {
	root, err := state.Open(dir)
	if err != nil {
		return nil, err
	}
	images, err := image.Open(root.Path("image"))
	if err != nil {
		return nil, err
	}
	cs := container.NewStore(root)
	cs.CleanLeftovers()
	vs, err := volume.NewStore(root)
	if err != nil {
		return nil, err
	}
	ns, err := network.NewStore(root)
	if err != nil {
		return nil, err
	}
	return &Engine{Root: root, Images: images, Containers: cs, Volumes: vs, Networks: ns}, nil
}

// CreateOptions are what `create` and `run` take.
type CreateOptions struct {
	Name       string
	Config     container.Config // Image is the reference as typed; zero fields take the image's
	HostConfig container.HostConfig
	// EntrypointSet: --entrypoint was given (even empty): the image's CMD is dropped too.
	EntrypointSet bool
	// Pull is --pull: "missing" (Docker's default), "always" or "never".
	Pull string
	// PullProgress receives "Unable to find image ..." and the pull's lines.
	PullProgress io.Writer
	// Platform is --platform, for a pull.
	Platform string
	// Binds are -v mounts (binds, named and anonymous volumes), checked by
	// container.ParseBind.
	Binds []container.MountPoint
	// VolumesFrom are --volumes-from CONTAINER[:ro|:rw].
	VolumesFrom []string
	// NetworkAliases are --network-alias names on the container's network.
	NetworkAliases []string
}

// Offline reports HAKO_OFFLINE: pull only from loopback registries.
func Offline() bool { return os.Getenv("HAKO_OFFLINE") == "1" }

// ErrImageNotFound is wrapped by Create when the image is not in the store.
var ErrImageNotFound = errors.New("image not found")

// Create makes a container from an image, ready to start.
func (e *Engine) Create(ctx context.Context, opt CreateOptions) (*container.Container, error) {
	cfg := opt.Config
	if _, err := image.NormalizeRef(cfg.Image); err != nil && !looksLikeID(cfg.Image) {
		return nil, err
	}
	progress := opt.PullProgress
	if progress == nil {
		progress = io.Discard
	}
	// run = pull + create + start: pull when missing (or always), as Docker.
	pull := func() error {
		_, err := e.Images.Pull(ctx, cfg.Image, image.PullOptions{Progress: progress, Platform: opt.Platform, Offline: Offline()})
		return err
	}
	if opt.Pull == "always" && !looksLikeID(cfg.Image) {
		if err := pull(); err != nil {
			return nil, err
		}
	}
	img, err := e.Images.Get(cfg.Image)
	if errdefs.Is(err, errdefs.ErrNotFound) && !looksLikeID(cfg.Image) {
		ref := cfg.Image
		if n, nerr := image.NormalizeRef(ref); nerr == nil {
			ref = image.FamiliarRef(n)
		}
		if opt.Pull == "never" {
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "No such image: %s", ref)
		}
		fmt.Fprintf(progress, "Unable to find image '%s' locally\n", ref)
		if err := pull(); err != nil {
			return nil, err
		}
		img, err = e.Images.Get(cfg.Image)
	}
	if err != nil {
		return nil, err
	}
	ic := img.Config.Config
	if len(cfg.Env) == 0 {
		cfg.Env = append([]string{}, ic.Env...)
	} else {
		env := append([]string{}, ic.Env...)
		for _, kv := range cfg.Env {
			k, _, _ := strings.Cut(kv, "=")
			replaced := false
			for i, x := range env {
				if strings.HasPrefix(x, k+"=") {
					env[i], replaced = kv, true
				}
			}
			if !replaced {
				env = append(env, kv)
			}
		}
		cfg.Env = env
	}
	if !opt.EntrypointSet {
		cfg.Entrypoint = ic.Entrypoint
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = ic.Cmd
		}
	}
	if len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "no command specified")
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = ic.WorkingDir
	} else if !filepath.IsAbs(cfg.WorkingDir) {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "the working directory '%s' is invalid, it needs to be an absolute path", cfg.WorkingDir)
	}
	if cfg.User == "" {
		cfg.User = ic.User
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = ic.StopSignal
	}
	if cfg.StopSignal != "" {
		if _, err := container.ParseSignal(cfg.StopSignal); err != nil {
			return nil, err
		}
	}
	if len(ic.ExposedPorts) > 0 {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for p := range ic.ExposedPorts {
			cfg.ExposedPorts[p] = struct{}{}
		}
	}
	labels := map[string]string{}
	for k, v := range ic.Labels {
		labels[k] = v
	}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	cfg.Labels = labels
	if cfg.Volumes == nil && len(ic.Volumes) > 0 {
		cfg.Volumes = ic.Volumes
	}
	hc := opt.HostConfig
	networks, err := e.networksFor(&hc, opt.NetworkAliases)
	if err != nil {
		return nil, err
	}
	if hc.LogConfig.Type == "" {
		hc.LogConfig.Type = "json-file"
		hc.LogConfig.Config = map[string]string{}
	}
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = "no"
	}
	if hc.AutoRemove && hc.RestartPolicy.Name != "no" {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "conflicting options: cannot specify both --restart and --rm")
	}
	layers, err := e.Images.LayerDirs(img)
	if err != nil {
		return nil, err
	}

	id := container.NewID()
	if cfg.Hostname == "" {
		cfg.Hostname = id[:12]
	}
	// --volumes-from: the other container's mounts, at the same paths.
	for _, vf := range opt.VolumesFrom {
		ref, mode, _ := strings.Cut(vf, ":")
		if mode != "" && mode != "ro" && mode != "rw" {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid mode for volumes-from: %s", mode)
		}
		from, err := e.Containers.Find(ref)
		if err != nil {
			return nil, err
		}
		for _, m := range from.MountPoints {
			m.Anonymous = false // it belongs to the other container
			if mode != "" {
				m.RW = mode == "rw"
			}
			opt.Binds = append(opt.Binds, m)
		}
	}
	// The image's VOLUME paths without a mount get anonymous volumes.
	for p := range cfg.Volumes {
		covered := false
		for _, b := range opt.Binds {
			if b.Destination == filepath.Clean(p) {
				covered = true
			}
		}
		if !covered {
			opt.Binds = append(opt.Binds, container.MountPoint{Type: "volume", Destination: filepath.Clean(p), RW: true, Driver: "local", Anonymous: true})
		}
	}
	for i, b := range opt.Binds {
		if b.Type == "volume" {
			// -v NAME:/path makes the volume on first use; -v /path and
			// VOLUME make an anonymous one.
			var labels map[string]string
			if b.Anonymous && b.Name == "" {
				b.Name = randomName()
				opt.Binds[i].Name = b.Name
				labels = map[string]string{"com.docker.volume.anonymous": ""}
			}
			v, _, err := e.Volumes.Create(b.Name, labels)
			if err != nil {
				return nil, err
			}
			opt.Binds[i].Source = v.Mountpoint
			continue
		}
		if err := container.PrepareBind(b); err != nil {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid mount config for type \"bind\": bind source path %s: %v", b.Source, err)
		}
	}
	c := &container.Container{
		ID: id, Created: time.Now().UTC(), Image: img.ID, ImageRef: opt.Config.Image,
		Config: cfg, HostConfig: hc, MountPoints: opt.Binds, Networks: networks,
		State: container.State{Status: "created"},
	}
	dir := e.Containers.Dir(id)
	c.Rootfs, err = rootfs.Overlay(layers, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err != nil {
		return nil, err
	}
	unlock, err := e.Containers.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	name := strings.TrimPrefix(opt.Name, "/")
	if name != "" {
		if err := container.ValidateName(name); err != nil {
			return nil, err
		}
		if other, err := e.Containers.NameTaken(name); err != nil {
			return nil, err
		} else if other != nil {
			return nil, errdefs.Errorf(errdefs.ErrConflict, "Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, other.ID)
		}
	} else {
		for i := 0; ; i++ {
			name = container.RandomName(i)
			other, err := e.Containers.NameTaken(name)
			if err != nil {
				return nil, err
			}
			if other == nil {
				break
			}
		}
	}
	c.Name = name
	if err := e.Containers.Create(c); err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	return c, nil
}

// RemoveImage is `rmi`: it refuses an image that a container uses, unless
// forced (then only the tag goes, as Docker does).
func (e *Engine) RemoveImage(ref string, force bool) (untagged, deleted []string, err error) {
	img, err := e.Images.Get(ref)
	if err != nil {
		return nil, nil, err
	}
	cs, err := e.Containers.List()
	if err != nil {
		return nil, nil, err
	}
	byID := strings.HasPrefix(img.ID, "sha256:"+strings.TrimPrefix(ref, "sha256:")) && !strings.Contains(ref, ":") || strings.HasPrefix(ref, "sha256:")
	for _, c := range cs {
		if c.Image != img.ID {
			continue
		}
		lastTag := len(img.RepoTags) <= 1 || byID
		if !lastTag {
			break
		}
		if force {
			if c.State.Running {
				return nil, nil, errdefs.Errorf(errdefs.ErrConflict, "conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short(img.ID), c.ShortID())
			}
			if byID {
				return nil, nil, errdefs.Errorf(errdefs.ErrConflict, "conflict: unable to delete %s (cannot be forced) - image is being used by stopped container %s", short(img.ID), c.ShortID())
			}
			// forced removal by name: untag only, keep the image for the container
			if err := e.Images.Untag(ref); err != nil {
				return nil, nil, err
			}
			n, _ := image.NormalizeRef(ref)
			return []string{image.FamiliarRef(n)}, nil, nil
		}
		what := "stopped"
		if c.State.Running {
			what = "running"
		}
		if byID {
			return nil, nil, errdefs.Errorf(errdefs.ErrConflict, "conflict: unable to delete %s (must be forced) - image is being used by %s container %s", short(img.ID), what, c.ShortID())
		}
		n, _ := image.NormalizeRef(ref)
		return nil, nil, errdefs.Errorf(errdefs.ErrConflict, "conflict: unable to remove repository reference \"%s\" (must force) - container %s is using its referenced image %s", image.FamiliarRef(n), c.ShortID(), short(img.ID))
	}
	return e.Images.Remove(ref, force)
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// looksLikeID reports whether ref is an image ID or a prefix of one.
func looksLikeID(ref string) bool {
	ref = strings.TrimPrefix(ref, "sha256:")
	if ref == "" || len(ref) > 64 {
		return false
	}
	for _, r := range ref {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// CommitOptions are `docker commit` flags.
type CommitOptions struct {
	Ref     string
	Author  string
	Message string
	Changes []string
}

// Commit turns a container's changes into a new image on top of its image.
func (e *Engine) Commit(c *container.Container, opt CommitOptions) (string, error) {
	parent, err := e.Images.Get(c.Image)
	if err != nil {
		return "", fmt.Errorf("the image of %s: %w", c.Name, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(e.Containers.ChangesTar(c, pw)) }()
	defer pr.Close()
	cc := image.ContainerConfig{
		User: c.Config.User, ExposedPorts: c.Config.ExposedPorts, Env: c.Config.Env,
		Entrypoint: c.Config.Entrypoint, Cmd: c.Config.Cmd, Volumes: c.Config.Volumes,
		WorkingDir: c.Config.WorkingDir, Labels: c.Config.Labels, StopSignal: c.Config.StopSignal,
	}
	return e.Images.Commit(parent, pr, image.CommitOptions{
		Ref: opt.Ref, Config: cc, Changes: opt.Changes, Author: opt.Author, Comment: opt.Message,
		CreatedBy: strings.Join(c.Args(), " "),
	})
}

// VolumeUsers lists the containers (any state) that mount the named volume.
func (e *Engine) VolumeUsers(name string) ([]string, error) {
	list, err := e.Containers.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, c := range list {
		for _, m := range c.MountPoints {
			if m.Type == "volume" && m.Name == name {
				ids = append(ids, c.ID)
				break
			}
		}
	}
	return ids, nil
}

// RemoveVolume is `volume rm`: refused while a container uses the volume
// (even with force, as Docker does for a volume in use).
func (e *Engine) RemoveVolume(name string) error {
	users, err := e.VolumeUsers(name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return errdefs.Errorf(errdefs.ErrConflict, "remove %s: volume is in use - [%s]", name, strings.Join(users, ", "))
	}
	return e.Volumes.Remove(name)
}

// randomName is an anonymous volume's name: 64 hex digits, as Docker's.
func randomName() string { return container.NewID() }

// RemoveContainer is `rm`: with volumes (-v), the container's anonymous
// volumes go too, unless another container uses them.
func (e *Engine) RemoveContainer(ctx context.Context, c *container.Container, force, volumes bool) error {
	if err := e.Containers.Remove(ctx, c.ID, force); err != nil {
		return err
	}
	if volumes {
		e.removeAnonymousVolumes(c)
	}
	return nil
}

func (e *Engine) removeAnonymousVolumes(c *container.Container) {
	for _, m := range c.MountPoints {
		if m.Type == "volume" && m.Anonymous && m.Name != "" {
			if users, err := e.VolumeUsers(m.Name); err == nil && len(users) == 0 {
				e.Volumes.Remove(m.Name)
			}
		}
	}
}

// networksFor checks --network (a network's name or ID, host, none or
// container:NAME; the default bridge when empty) and returns the container's
// .NetworkSettings.Networks before its first start.
func (e *Engine) networksFor(hc *container.HostConfig, aliases []string) (map[string]*container.EndpointSettings, error) {
	mode := hc.NetworkMode
	if mode == "" || mode == "default" {
		mode = network.Bridge
	}
	if other, ok := strings.CutPrefix(mode, "container:"); ok {
		if _, err := e.Containers.Find(other); err != nil {
			return nil, err
		}
		if len(aliases) > 0 {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "conflicting options: network-scoped aliases and the network mode %s", mode)
		}
		hc.NetworkMode = mode
		return nil, nil
	}
	n, err := e.Networks.Find(mode)
	if err != nil {
		return nil, err
	}
	if (n.Default() || n.Driver != "bridge") && len(aliases) > 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "network-scoped alias is supported only for containers in user defined networks")
	}
	hc.NetworkMode = n.Name
	return map[string]*container.EndpointSettings{n.Name: {NetworkID: n.ID, Aliases: aliases}}, nil
}

// ReleaseStaleNetworks gives back what containers that no longer run still
// hold: leases and port rules left by a killed monitor or a reboot, and
// rules of containers that are gone.
func (e *Engine) ReleaseStaleNetworks() error {
	cs, err := e.Containers.List() // Load releases the leases of dead monitors
	if err != nil {
		return err
	}
	running := map[string]bool{}
	for _, c := range cs {
		if c.State.Running || c.State.Restarting {
			running[c.ID] = true
		}
	}
	tags, err := network.TaggedRules()
	if err != nil {
		return err
	}
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, "ctr:"); ok && !running[id] {
			if err := e.Networks.Release(id, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reset gives back everything this state root holds on the host: its
// containers are killed and removed (with their anonymous volumes), and its
// networks' bridges, veth pairs and nftables rules are deleted. Images,
// named volumes and the networks' definitions stay; a bridge comes back with
// the next container on it. A root about to be deleted (a test's, a course
// check's) is reset first, or its bridge would stay on the host.
func (e *Engine) Reset(ctx context.Context) error {
	cs, err := e.Containers.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if err := e.RemoveContainer(ctx, c, true, true); err != nil {
			errs = append(errs, err)
		}
	}
	if err := e.Networks.Teardown(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
