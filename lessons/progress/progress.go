// Package progress keeps a learner's progress: which exercises are done,
// which one is current, which checks failed (so the solution may be shown).
// It lives in the learner's XDG state directory, one file per course, and is
// written atomically (a temp file, fsync, rename, fsync of the directory), so
// a crash leaves either the old file or the new one, never half of one.
package progress

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// State is one course's progress.
type State struct {
	Course  string               `json:"course"`
	Current string               `json:"current,omitempty"` // exercise key, "3/run"
	Done    map[string]time.Time `json:"done,omitempty"`
	Failed  map[string]int       `json:"failed,omitempty"` // failed checks per exercise
}

// Dir is where progress is kept: $XDG_STATE_HOME/hako, else ~/.local/state/hako.
func Dir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "hako"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("progress: no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "hako"), nil
}

// Store reads and writes the progress of courses in one directory.
type Store struct{ Dir string }

func (s Store) path(course string) string { return filepath.Join(s.Dir, "progress-"+course+".json") }

// Load returns the course's progress; a missing file is a fresh start.
func (s Store) Load(course string) (*State, error) {
	st := &State{Course: course}
	b, err := os.ReadFile(s.path(course))
	if errors.Is(err, os.ErrNotExist) {
		st.Done, st.Failed = map[string]time.Time{}, map[string]int{}
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("progress %s: %w", s.path(course), err)
	}
	if st.Done == nil {
		st.Done = map[string]time.Time{}
	}
	if st.Failed == nil {
		st.Failed = map[string]int{}
	}
	return st, nil
}

// Save writes st atomically.
func (s Store) Save(st *State) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(s.path(st.Course), append(b, '\n'), 0o600)
}

// WriteFile writes data to name atomically: a temp file in the same
// directory, synced, renamed over name, and the directory synced.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// DoneSet is the set of finished exercises.
func (st *State) DoneSet() map[string]bool {
	m := map[string]bool{}
	for k := range st.Done {
		m[k] = true
	}
	return m
}
