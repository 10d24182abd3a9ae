package image

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestMain(m *testing.M) {
	// The child of TestPullKilled: a pull that is killed in the middle.
	if dir := os.Getenv("_HAKO_TEST_PULL_INTO"); dir != "" {
		s, err := Open(dir)
		if err == nil {
			_, err = s.Pull(context.Background(), os.Getenv("_HAKO_TEST_PULL_REF"), PullOptions{})
		}
		if err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A pull killed with SIGKILL while it downloads leaves the store consistent:
// no image, no tag pointing at missing blobs; and the next pull completes.
func TestPullKilledLeavesStoreConsistent(t *testing.T) {
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	started := make(chan struct{}, 64)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			reg.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		if len(body) <= 4096 { // the config: at once
			w.Write(body)
			return
		}
		// A layer: its first bytes, then nothing until released.
		w.Write(body[:1024])
		w.(http.Flusher).Flush()
		started <- struct{}{}
		select {
		case <-release:
			w.Write(body[1024:])
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/slow/img:1"

	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(nref, img); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for round := 0; round < 2; round++ {
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), "_HAKO_TEST_PULL_INTO="+dir, "_HAKO_TEST_PULL_REF="+ref)
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			child.Process.Kill()
			child.Wait()
			t.Fatal("the child never started downloading a layer")
		}
		time.Sleep(50 * time.Millisecond) // let it write some of the layer
		child.Process.Kill()
		child.Wait()

		s, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: the store does not open after a killed pull: %v", round, err)
		}
		list, err := s.List()
		if err != nil {
			t.Fatalf("round %d: list: %v", round, err)
		}
		if len(list) != 0 {
			t.Fatalf("round %d: a killed pull left images: %+v", round, list)
		}
		if _, err := s.Get(ref); err == nil {
			t.Fatalf("round %d: the tag of a killed pull resolves", round)
		}
	}

	// Pulling again completes.
	close(release)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	id, err := s.Pull(context.Background(), ref, PullOptions{Progress: &out})
	if err != nil {
		t.Fatalf("pull after the kills: %v\n%s", err, out.String())
	}
	got, err := s.Get(ref)
	if err != nil || got.ID != id {
		t.Fatalf("Get after pull: %v, %v", got, err)
	}
	dirs, err := s.LayerDirs(got)
	if err != nil || len(dirs) != 3 {
		t.Fatalf("layer dirs: %v, %v", dirs, err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing staged is left behind.
	if ents, _ := os.ReadDir(s.path("tmp")); len(ents) != 0 {
		t.Errorf("tmp/ holds %d entries after a completed pull", len(ents))
	}
}
