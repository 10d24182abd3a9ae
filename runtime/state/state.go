// Package state owns the layout of the state root and the two disciplines every
// record in it follows:
//
//   - A record is replaced atomically: written to a temporary file in the same
//     directory, fsynced, renamed over the old one, and the directory fsynced.
//     A command killed at any moment leaves either the old record or the new one,
//     never a torn file.
//   - A record that several processes may change is changed under an exclusive
//     flock(2) on a lock file beside it. flock locks die with their process, so a
//     killed command never leaves a stale lock behind.
//
// There is no daemon: every CLI call and every container monitor reads and writes
// these files directly.
package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where hako keeps its state unless HAKO_ROOT or --root says otherwise.
const DefaultRoot = "/var/lib/hako"

// Root is the state root: images, containers, and (later) volumes and networks.
type Root struct {
	Dir string
}

// Open makes sure the state root exists and returns it.
func Open(dir string) (*Root, error) {
	if dir == "" {
		dir = DefaultRoot
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state root %q: %w", dir, err)
	}
	for _, sub := range []string{"", "containers", "image", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o711); err != nil {
			return nil, fmt.Errorf("state root: %w", err)
		}
	}
	return &Root{Dir: abs}, nil
}

// Path joins elements under the root.
func (r *Root) Path(elem ...string) string {
	return filepath.Join(append([]string{r.Dir}, elem...)...)
}

// WriteFile replaces path atomically with data (temp file, fsync, rename, fsync dir).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that a rename in it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteVolatileJSON replaces path atomically with v but does not fsync: for
// records of live processes (a container's PID, its monitor), which a power
// loss ends anyway and which readers check against the running system. A
// killed writer still leaves the old record or the new one, never a torn file.
func WriteVolatileJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// WriteJSON replaces path atomically with v encoded as indented JSON.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(path, append(data, '\n'), 0o600)
}

// ReadJSON decodes the JSON record at path into v.
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Lock takes an exclusive flock on path (created if missing) and returns the
// function that releases it. It blocks until the lock is free.
func Lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
