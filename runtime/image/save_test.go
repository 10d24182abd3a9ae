package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"

	"hako.dev/hako/runtime/errdefs"
)

func tarNames(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[hdr.Name] = b
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	s := newStore(t)
	img := loadBusybox(t, s)
	mini := importSmall(t, s, "mini:v1")
	if err := s.Tag("busybox", "bb:two"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Save(&buf, []string{"busybox", "bb:two", mini[:19]}); err != nil {
		t.Fatal(err)
	}
	files := tarNames(t, buf.Bytes())
	var manifest []dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 2 || !reflect.DeepEqual(manifest[0].RepoTags, []string{"busybox:latest", "bb:two"}) || len(manifest[1].RepoTags) != 0 {
		t.Fatalf("manifest = %+v", manifest)
	}
	if _, ok := files["repositories"]; !ok {
		t.Fatal("no repositories file")
	}

	s2 := newStore(t)
	lines, err := s2.Load(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Loaded image: busybox:latest", "Loaded image: bb:two", "Loaded image ID: " + mini}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("Load printed %q, want %q", lines, want)
	}
	got, err := s2.Get("bb:two")
	if err != nil || got.ID != img.ID {
		t.Fatalf("Get = %v, %v; want %s", got, err, img.ID)
	}
	if got, err := s2.Get(mini); err != nil || got.ID != mini || got.Size == 0 {
		t.Fatalf("Get(mini) = %+v, %v", got, err)
	}

	err = s.Save(io.Discard, []string{"busybox", "nosuch"})
	if !errdefs.Is(err, errdefs.ErrNotFound) || err.Error() != "No such image: nosuch" {
		t.Fatalf("Save(nosuch) = %v", err)
	}
}

func TestHistory(t *testing.T) {
	s := newStore(t)
	id := importSmall(t, s, "")
	img, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	h := s.History(img)
	if len(h) != 1 || h[0].ID != id || h[0].Size != 2 || h[0].Comment != "Imported from -" {
		t.Fatalf("History = %+v", h)
	}
	img.Config.History = []History{{CreatedBy: "base"}, {CreatedBy: "env", EmptyLayer: true}}
	h = s.History(img)
	if len(h) != 2 || h[0].ID != id || h[0].CreatedBy != "env" || h[0].Size != 0 ||
		h[1].ID != "<missing>" || h[1].CreatedBy != "base" || h[1].Size != 2 {
		t.Fatalf("History = %+v", h)
	}
	img.Config.History = nil
	if h = s.History(img); len(h) != 1 || h[0].Size != 2 || h[0].ID != id {
		t.Fatalf("synthesized History = %+v", h)
	}
}

func TestPrune(t *testing.T) {
	s := newStore(t)
	dangling, err := s.Import(bytes.NewReader(mkLayer(t, reg("a", "one"))), "", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	used, err := s.Import(bytes.NewReader(mkLayer(t, reg("b", "two"))), "", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	tagged := importSmall(t, s, "mini:v1")
	inUse := func(id string) bool { return id == used }

	deleted, reclaimed, err := s.Prune(false, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 || deleted[0] != dangling || reclaimed != 3 {
		t.Fatalf("Prune = %q, %d", deleted, reclaimed)
	}
	for _, id := range []string{used, tagged} {
		if _, err := s.Get(id); err != nil {
			t.Fatalf("%s was pruned: %v", id, err)
		}
	}
	deleted, _, err = s.Prune(true, inUse)
	if err != nil || len(deleted) != 2 || deleted[0] != tagged {
		t.Fatalf("Prune(all) = %q, %v", deleted, err)
	}
	deleted, _, err = s.Prune(true, nil)
	if err != nil || len(deleted) != 2 || deleted[0] != used {
		t.Fatalf("Prune(all, nil) = %q, %v", deleted, err)
	}
	checkEmpty(t, s)
}
