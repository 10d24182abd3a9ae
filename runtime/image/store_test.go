package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/image/imagetest"
)

var busybox = sync.OnceValues(func() ([]byte, error) {
	var buf bytes.Buffer
	err := imagetest.WriteBusybox(&buf, "busybox:latest")
	return buf.Bytes(), err
})

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func loadBusybox(t *testing.T, s *Store) *Image {
	t.Helper()
	data, err := busybox()
	if err != nil {
		t.Skip(err) // no busybox-static on this machine
	}
	lines, err := s.Load(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Loaded image: busybox:latest"}; !reflect.DeepEqual(lines, want) {
		t.Fatalf("Load printed %q, want %q", lines, want)
	}
	img, err := s.Get("busybox")
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// checkEmpty fails unless the store holds no image, layer, blob or work file.
func checkEmpty(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"layers", "blobs/sha256", "tmp"} {
		ents, err := os.ReadDir(s.path(d))
		if err != nil || len(ents) != 0 {
			t.Errorf("%s not empty: %v %v", d, ents, err)
		}
	}
	if imgs, err := s.List(); err != nil || len(imgs) != 0 {
		t.Errorf("List = %v, %v", imgs, err)
	}
}

func TestBusyboxLifecycle(t *testing.T) {
	s := newStore(t)
	img := loadBusybox(t, s)
	hexID := strings.TrimPrefix(img.ID, "sha256:")
	for _, ref := range []string{"busybox:latest", "docker.io/library/busybox:latest", img.ID, hexID, hexID[:12], hexID[:1], "sha256:" + hexID[:5]} {
		got, err := s.Get(ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("Get(%q) = %v, %v", ref, got, err)
		}
	}
	if !reflect.DeepEqual(img.RepoTags, []string{"busybox:latest"}) || img.Size < 1<<20 || !reflect.DeepEqual(img.Config.Config.Cmd, []string{"sh"}) {
		t.Errorf("image: tags %v size %d cmd %v", img.RepoTags, img.Size, img.Config.Config.Cmd)
	}
	if img.Config.Architecture != runtime.GOARCH || img.Config.OS != "linux" || len(img.DiffIDs) != 1 {
		t.Errorf("config: %+v", img.Config)
	}

	dirs, err := s.LayerDirs(img)
	if err != nil || len(dirs) != 1 {
		t.Fatalf("LayerDirs = %v, %v", dirs, err)
	}
	if l, err := os.Readlink(filepath.Join(dirs[0], "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh: %q %v", l, err)
	}
	if fi, err := os.Stat(filepath.Join(dirs[0], "bin/busybox")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/busybox: %v", err)
	}

	// The same archive again changes nothing.
	data, _ := busybox()
	if _, err := s.Load(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("busybox", "localhost:5000/app:v1"); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.List()
	if err != nil || len(imgs) != 1 {
		t.Fatalf("List = %v, %v", imgs, err)
	}
	if want := []string{"busybox:latest", "localhost:5000/app:v1"}; !reflect.DeepEqual(imgs[0].RepoTags, want) {
		t.Errorf("RepoTags = %v", imgs[0].RepoTags)
	}
	if imgs[0].LastTagTime.IsZero() {
		t.Error("LastTagTime not set")
	}

	// By ID with two names: refused without force.
	_, _, err = s.Remove(hexID[:12], false)
	if !errors.Is(err, errdefs.ErrConflict) || err.Error() != "conflict: unable to delete "+hexID[:12]+" (must be forced) - image is referenced in multiple repositories" {
		t.Errorf("Remove by ID: %v", err)
	}
	// By name: untag only.
	untagged, deleted, err := s.Remove("localhost:5000/app:v1", false)
	if err != nil || !reflect.DeepEqual(untagged, []string{"localhost:5000/app:v1"}) || len(deleted) != 0 {
		t.Errorf("Remove name = %v %v %v", untagged, deleted, err)
	}
	// The last name: untag and delete, layer included.
	untagged, deleted, err = s.Remove("busybox", false)
	if err != nil || !reflect.DeepEqual(untagged, []string{"busybox:latest"}) || !reflect.DeepEqual(deleted, []string{img.ID, img.DiffIDs[0]}) {
		t.Errorf("Remove last = %v %v %v", untagged, deleted, err)
	}
	if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("layer dir still there: %v", err)
	}
	checkEmpty(t, s)
	_, err = s.Get("busybox")
	if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "No such image: busybox" {
		t.Errorf("Get after rmi: %v", err)
	}
}

func TestRemoveKeepsSharedLayers(t *testing.T) {
	s := newStore(t)
	base := mkLayer(t, reg("base", "b"))
	var a, b bytes.Buffer
	imagetest.WriteArchive(&a, "a:1", [][]byte{base, mkLayer(t, reg("a", "a"))}, nil, nil)
	imagetest.WriteArchive(&b, "b:1", [][]byte{base, mkLayer(t, reg("b", "b"))}, nil, nil)
	for _, r := range []*bytes.Buffer{&a, &b} {
		if _, err := s.Load(r); err != nil {
			t.Fatal(err)
		}
	}
	imgB, _ := s.Get("b:1")
	_, deleted, err := s.Remove("a:1", false)
	if err != nil || len(deleted) != 2 { // the image and its top layer; base stays
		t.Fatalf("deleted %v, %v", deleted, err)
	}
	dirs, err := s.LayerDirs(imgB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], "base")); err != nil {
		t.Error(err)
	}
	// An untagged image is removed by ID without force.
	if err := s.Untag("b:1"); err != nil {
		t.Fatal(err)
	}
	if _, deleted, err := s.Remove(imgB.ID, false); err != nil || len(deleted) != 3 {
		t.Fatalf("deleted %v, %v", deleted, err)
	}
	checkEmpty(t, s)
}

func TestGetErrors(t *testing.T) {
	s := newStore(t)
	for _, ref := range []string{"nope", "abc", "sha256:abc", strings.Repeat("a", 64)} {
		_, err := s.Get(ref)
		if !errors.Is(err, errdefs.ErrNotFound) || err.Error() != "No such image: "+ref {
			t.Errorf("Get(%q) = %v", ref, err)
		}
	}
	if _, err := s.Get("Bad Ref"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Get(bad) = %v", err)
	}
	idx := &index{Images: map[string]*imageRecord{
		"sha256:ab" + strings.Repeat("0", 62): {},
		"sha256:ac" + strings.Repeat("0", 62): {},
	}}
	if _, err := byPrefix(idx, "a", "a"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if id, err := byPrefix(idx, "ab", "ab"); err != nil || !strings.HasPrefix(id, "sha256:ab") {
		t.Errorf("unique prefix: %v %v", id, err)
	}
}

func TestTagErrors(t *testing.T) {
	s := newStore(t)
	id := importSmall(t, s, "small:1")
	err := s.Tag(id, "Upper:case")
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "invalid reference format") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Tag invalid: %v", err)
	}
	if err := s.Tag("missing", "x:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Tag missing: %v", err)
	}
	if err := s.Untag("x:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Untag missing: %v", err)
	}
}

func importSmall(t *testing.T, s *Store, ref string) string {
	t.Helper()
	id, err := s.Import(bytes.NewReader(mkLayer(t, reg("hello", "hi"))), ref, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestInspectJSON(t *testing.T) {
	s := newStore(t)
	importSmall(t, s, "small:1")
	img, err := s.Get("small:1")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(s.InspectJSON(img))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	for _, k := range []string{"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Author", "Config", "Architecture", "Os", "Size", "RootFS", "Metadata", "GraphDriver"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no %s in %s", k, data)
		}
	}
	if m["Id"] != img.ID || fmt.Sprint(m["RepoTags"]) != "[small:1]" || fmt.Sprint(m["RepoDigests"]) != "[]" || m["Comment"] != "Imported from -" {
		t.Errorf("inspect: %s", data)
	}
	cfg := m["Config"].(map[string]any)
	for _, k := range []string{"Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "Volumes"} {
		if _, ok := cfg[k]; !ok {
			t.Errorf("no Config.%s", k)
		}
	}
	rootfs := m["RootFS"].(map[string]any)
	if rootfs["Type"] != "layers" || fmt.Sprint(rootfs["Layers"]) != fmt.Sprint(img.DiffIDs) {
		t.Errorf("RootFS %v", rootfs)
	}
	if _, ok := m["Metadata"].(map[string]any)["LastTagTime"]; !ok {
		t.Error("no Metadata.LastTagTime")
	}
}

func TestImportChanges(t *testing.T) {
	s := newStore(t)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(mkLayer(t, dirEnt("x/"), reg("x/f", "f")))
	zw.Close()
	changes := []string{`CMD ["/bin/sh"]`, "ENV A=b", "env C=\"d e\" F=g", "ENV OLD style value", "WORKDIR /x", "WORKDIR y",
		"ENTRYPOINT echo hi", "EXPOSE 80 53/udp", "LABEL k=v", "USER app", "VOLUME /data", "STOPSIGNAL SIGINT"}
	id, err := s.Import(&z, "", changes, "my message")
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	c := img.Config.Config
	want := ContainerConfig{
		Cmd:          []string{"/bin/sh"},
		Entrypoint:   []string{"/bin/sh", "-c", "echo hi"},
		Env:          []string{"A=b", "C=d e", "F=g", "OLD=style value"},
		WorkingDir:   "/x/y",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Labels:       map[string]string{"k": "v"},
		User:         "app",
		Volumes:      map[string]struct{}{"/data": {}},
		StopSignal:   "SIGINT",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config\n got %+v\nwant %+v", c, want)
	}
	if len(img.RepoTags) != 0 || img.Config.Comment != "my message" || img.Size != 1 {
		t.Errorf("tags %v comment %q size %d", img.RepoTags, img.Config.Comment, img.Size)
	}
	for _, bad := range []string{"RUN echo", "CMD", "EXPOSE 0", "LABEL novalue"} {
		if _, err := s.Import(bytes.NewReader(mkLayer(t)), "", []string{bad}, ""); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// ociArchive builds an OCI image layout tar with one gzip-compressed layer.
func ociArchive(t *testing.T, annotations map[string]string, layer []byte) (data []byte, diffID string) {
	t.Helper()
	blobs := map[string][]byte{}
	put := func(b []byte) string {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(layer)
	zw.Close()
	sum := sha256.Sum256(layer)
	diffID = "sha256:" + hex.EncodeToString(sum[:])
	layerDigest := put(z.Bytes())
	cfg, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux", "created": "2024-02-03T04:05:06Z",
		"config": map[string]any{"Cmd": []string{"hello"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	cfgDigest := put(cfg)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfgDigest, "size": len(cfg)},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layerDigest, "size": z.Len()}},
	})
	mDigest := put(manifest)
	// The manifest sits in a one-platform index, as `docker save` writes it.
	inner, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mDigest, "size": len(manifest),
			"platform": map[string]any{"os": "linux", "architecture": runtime.GOARCH}}},
	})
	iDigest := put(inner)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": iDigest, "size": len(inner),
			"annotations": annotations}},
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	for d, b := range blobs {
		file("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b)
	}
	file("index.json", index)
	tw.Close()
	return buf.Bytes(), diffID
}

func TestLoadOCILayout(t *testing.T) {
	s := newStore(t)
	layer := mkLayer(t, reg("hello", "world"))
	data, diffID := ociArchive(t, map[string]string{
		"io.containerd.image.name":          "docker.io/library/ocitest:v1",
		"org.opencontainers.image.ref.name": "v1",
	}, layer)
	// The whole archive gzip-compressed.
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(data)
	zw.Close()
	lines, err := s.Load(&z)
	if err != nil || !reflect.DeepEqual(lines, []string{"Loaded image: ocitest:v1"}) {
		t.Fatalf("Load = %q, %v", lines, err)
	}
	img, err := s.Get("ocitest:v1")
	if err != nil || !reflect.DeepEqual(img.DiffIDs, []string{diffID}) || !reflect.DeepEqual(img.Config.Config.Cmd, []string{"hello"}) {
		t.Fatalf("Get = %+v, %v", img, err)
	}
	// Only a tag in ref.name: no repository, so untagged.
	data, _ = ociArchive(t, map[string]string{"org.opencontainers.image.ref.name": "latest"}, mkLayer(t, reg("other", "x")))
	lines, err = s.Load(bytes.NewReader(data))
	if err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "Loaded image ID: sha256:") {
		t.Fatalf("Load untagged = %q, %v", lines, err)
	}
	// The uncompressed layer tar is kept, named by its diffID, for save.
	if b, err := os.ReadFile(s.blobPath(strings.TrimPrefix(diffID, "sha256:"))); err != nil || !bytes.Equal(b, layer) {
		t.Errorf("layer blob: %v", err)
	}
}

// TestLoadDockerArchiveForms loads gzip layers in the <id>/layer.tar form, and
// the blobs/sha256 form of newer `docker save`.
func TestLoadDockerArchiveForms(t *testing.T) {
	s := newStore(t)
	layer := mkLayer(t, reg("a", "a"))
	sum := sha256.Sum256(layer)
	diffHex := hex.EncodeToString(sum[:])
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(layer)
	zw.Close()
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:` + diffHex + `"]}}`)
	cs := sha256.Sum256(cfg)
	cfgHex := hex.EncodeToString(cs[:])
	build := func(cfgName, layerName string, layerData []byte, tags string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		file := func(name string, b []byte) {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
			tw.Write(b)
		}
		file(layerName, layerData)
		file(cfgName, cfg)
		file("manifest.json", []byte(`[{"Config":"`+cfgName+`","RepoTags":`+tags+`,"Layers":["`+layerName+`"]}]`))
		tw.Close()
		return buf.Bytes()
	}
	lines, err := s.Load(bytes.NewReader(build(cfgHex+".json", "x/layer.tar", z.Bytes(), `["old:1"]`)))
	if err != nil || !reflect.DeepEqual(lines, []string{"Loaded image: old:1"}) {
		t.Fatalf("old form: %q %v", lines, err)
	}
	lines, err = s.Load(bytes.NewReader(build("blobs/sha256/"+cfgHex, "blobs/sha256/"+diffHex, layer, `["new:1"]`)))
	if err != nil || !reflect.DeepEqual(lines, []string{"Loaded image: new:1"}) {
		t.Fatalf("new form: %q %v", lines, err)
	}
	img, err := s.Get("new:1")
	if err != nil || img.ID != "sha256:"+cfgHex || !reflect.DeepEqual(img.RepoTags, []string{"new:1", "old:1"}) {
		t.Fatalf("Get = %+v %v", img, err)
	}
	// A layer that does not match its diff_id is refused, and nothing stays.
	s2 := newStore(t)
	if _, err := s2.Load(bytes.NewReader(build(cfgHex+".json", "x/layer.tar", mkLayer(t, reg("b", "b")), `["bad:1"]`))); err == nil {
		t.Fatal("diff_id mismatch loaded")
	}
	checkEmpty(t, s2)
}

// TestConcurrentStores: several Store values (as several processes would)
// tagging and loading at once keep a consistent index.
func TestConcurrentStores(t *testing.T) {
	dir := t.TempDir()
	s0, _ := Open(dir)
	id := importSmall(t, s0, "base:1")
	layer := mkLayer(t, reg("same", "same"))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			if err := s.Tag(id, fmt.Sprintf("t%d:1", i)); err != nil {
				t.Error(err)
			}
			var buf bytes.Buffer
			imagetest.WriteArchive(&buf, fmt.Sprintf("l%d:1", i), [][]byte{layer}, nil, nil)
			if _, err := s.Load(&buf); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	img, err := s0.Get(id)
	if err != nil || len(img.RepoTags) != 9 {
		t.Fatalf("tags %v %v", img, err)
	}
	other, err := s0.Get("l0:1")
	if err != nil || len(other.RepoTags) != 8 {
		t.Fatalf("loaded %v %v", other, err)
	}
}

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                 "docker.io/library/busybox:latest",
		"busybox:1.36":            "docker.io/library/busybox:1.36",
		"localhost:5000/app":      "localhost:5000/app:latest",
		"ghcr.io/a/b:c":           "ghcr.io/a/b:c",
		"docker.io/library/x:1.0": "docker.io/library/x:1.0",
	} {
		got, err := NormalizeRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v", in, got, err)
		}
		if f := FamiliarRef(got); f != strings.TrimPrefix(strings.TrimPrefix(got, "docker.io/"), "library/") {
			t.Errorf("FamiliarRef(%q) = %q", got, f)
		}
	}
	for _, bad := range []string{"", "Busybox", "a b", ":tag", strings.Repeat("a", 64)} {
		if _, err := NormalizeRef(bad); !errors.Is(err, errdefs.ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid reference format") {
			t.Errorf("NormalizeRef(%q) = %v", bad, err)
		}
	}
}

func FuzzNormalizeRef(f *testing.F) {
	for _, s := range []string{"busybox", "localhost:5000/a/b:c", "x@sha256:" + strings.Repeat("a", 64), "A", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeRef(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("%q: error kind %v", s, err)
			}
			return
		}
		if again, err := NormalizeRef(n); err != nil || again != n {
			t.Fatalf("%q -> %q -> %q, %v", s, n, again, err)
		}
		if back, err := NormalizeRef(FamiliarRef(n)); err != nil || back != n {
			t.Fatalf("%q -> %q -> familiar %q -> %q, %v", s, n, FamiliarRef(n), back, err)
		}
	})
}

func TestFixtureDeterministicAndRetag(t *testing.T) {
	first, err := busybox()
	if err != nil {
		t.Skip(err)
	}
	var again bytes.Buffer
	if err := imagetest.WriteBusybox(&again, "busybox"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again.Bytes()) {
		t.Fatal("WriteBusybox is not deterministic")
	}
	s := newStore(t)
	old := importSmall(t, s, "busybox:latest")
	var buf bytes.Buffer
	imagetest.WriteArchive(&buf, "busybox", [][]byte{mkLayer(t, reg("other", "x"))}, nil, nil)
	lines, err := s.Load(&buf)
	want := []string{"The image busybox:latest already exists, renaming the old one with ID " + old + " to empty string", "Loaded image: busybox:latest"}
	if err != nil || !reflect.DeepEqual(lines, want) {
		t.Fatalf("Load = %q, %v", lines, err)
	}
	if img, err := s.Get(old); err != nil || len(img.RepoTags) != 0 {
		t.Errorf("old image: %v %v", img, err)
	}
}
