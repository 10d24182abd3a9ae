// Package volume keeps named volumes: storage the engine manages, outside any
// container, so that data outlives the containers that use it.
//
// A volume is a directory <root>/volumes/<name>/_data (the "local" driver:
// what a container mounts) beside a record volume.json. Containers bind-mount
// _data; a new, empty volume is first filled with what the image has at the
// mount path, as Docker does, by the container's init (it sees both).
package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/state"
)

// Volume is Docker's `volume inspect` shape.
type Volume struct {
	CreatedAt  time.Time         `json:"CreatedAt"`
	Driver     string            `json:"Driver"`
	Labels     map[string]string `json:"Labels"`
	Mountpoint string            `json:"Mountpoint"`
	Name       string            `json:"Name"`
	Options    map[string]string `json:"Options"`
	Scope      string            `json:"Scope"`
}

// Store holds the volumes of a state root.
type Store struct{ dir string }

// NewStore returns the volume store under <root>/volumes.
func NewStore(root *state.Root) (*Store, error) {
	dir := root.Path("volumes")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	return &Store{dir: dir}, nil
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidName reports whether name can name a volume (Docker's rule).
func ValidName(name string) bool { return validName.MatchString(name) }

func (s *Store) lock() (func(), error) { return state.Lock(filepath.Join(s.dir, ".lock")) }

// Create makes a volume, or returns the existing one of that name (Docker's
// `volume create` of an existing name succeeds). created says which.
func (s *Store) Create(name string, labels map[string]string) (v *Volume, created bool, err error) {
	if !ValidName(name) {
		return nil, false, errdefs.Errorf(errdefs.ErrInvalid, "create %s: %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed", name, name)
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if v, err := s.get(name); err == nil {
		return v, false, nil
	}
	tmp, err := os.MkdirTemp(s.dir, ".creating-")
	if err != nil {
		return nil, false, err
	}
	if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, false, err
	}
	if labels == nil {
		labels = map[string]string{}
	}
	v = &Volume{
		CreatedAt: time.Now().UTC().Truncate(time.Second), Driver: "local", Labels: labels,
		Mountpoint: filepath.Join(s.dir, name, "_data"), Name: name, Options: map[string]string{}, Scope: "local",
	}
	if err := state.WriteJSON(filepath.Join(tmp, "volume.json"), v); err != nil {
		os.RemoveAll(tmp)
		return nil, false, err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		os.RemoveAll(tmp)
		return nil, false, err
	}
	return v, true, nil
}

func (s *Store) get(name string) (*Volume, error) {
	var v Volume
	if err := state.ReadJSON(filepath.Join(s.dir, name, "volume.json"), &v); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "get %s: no such volume", name)
	}
	return &v, nil
}

// Get returns a volume by name.
func (s *Store) Get(name string) (*Volume, error) {
	if !ValidName(name) {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "get %s: no such volume", name)
	}
	return s.get(name)
}

// List returns every volume, by name.
func (s *Store) List() ([]*Volume, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []*Volume
	for _, e := range ents {
		if !e.IsDir() || !ValidName(e.Name()) {
			continue
		}
		if v, err := s.get(e.Name()); err == nil {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes a volume and its data. The caller checks that no container
// uses it. The directory is renamed aside first, so a killed removal leaves
// no half-deleted volume.
func (s *Store) Remove(name string) error {
	if _, err := s.Get(name); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	aside := filepath.Join(s.dir, ".removing-"+name)
	if err := os.Rename(filepath.Join(s.dir, name), aside); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return os.RemoveAll(aside)
}
