package progress

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSaveLoad(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "state", "hako")}
	st, err := s.Load("c")
	if err != nil || len(st.Done) != 0 || st.Current != "" {
		t.Fatalf("fresh: %+v %v", st, err)
	}
	st.Current = "3/stop"
	st.Done["3/run"] = time.Unix(1, 0).UTC()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("c")
	if err != nil || got.Current != "3/stop" || !got.DoneSet()["3/run"] {
		t.Fatalf("loaded %+v %v", got, err)
	}
	ents, _ := os.ReadDir(s.Dir)
	if len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func TestDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if d, _ := Dir(); d != "/x/state/hako" {
		t.Fatal(d)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/l")
	if d, _ := Dir(); d != "/home/l/.local/state/hako" {
		t.Fatal(d)
	}
}

func TestCorruptIsAnError(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	os.WriteFile(filepath.Join(s.Dir, "progress-c.json"), []byte("{"), 0o600)
	if _, err := s.Load("c"); err == nil {
		t.Fatal("a corrupt file loaded")
	}
}
