package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry serves an in-memory v2 registry on 127.0.0.1 and counts blob
// downloads.
type testRegistry struct {
	host string
	mu   sync.Mutex
	gets int // GET .../blobs/sha256:... (layers and configs)
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.mu.Lock()
			tr.gets++
			tr.mu.Unlock()
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

func (tr *testRegistry) blobGets() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.gets
}

func TestPushPullRoundTrip(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	a := newStore(t)
	img := loadBusybox(t, a)
	ref := reg.host + "/app:v1"
	if err := a.Tag("busybox", ref); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := a.Push(ctx, ref, PushOptions{Progress: &out}); err != nil {
		t.Fatal(err)
	}
	t.Logf("push:\n%s", out.String())
	for _, want := range []string{"The push refers to repository [" + reg.host + "/app]\n", ": Pushed\n", "v1: digest: sha256:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("push output lacks %q:\n%s", want, out.String())
		}
	}
	// Pushing again uploads nothing.
	out.Reset()
	if err := a.Push(ctx, ref, PushOptions{Progress: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ": Layer already exists\n") || strings.Contains(out.String(), ": Pushed") {
		t.Errorf("second push:\n%s", out.String())
	}

	b := newStore(t)
	out.Reset()
	id, err := b.Pull(ctx, ref, PullOptions{Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pull:\n%s", out.String())
	if id != img.ID {
		t.Fatalf("pulled %s, pushed %s", id, img.ID)
	}
	got, err := b.Get(ref)
	if err != nil || got.ID != img.ID {
		t.Fatalf("Get(%s) = %v, %v", ref, got, err)
	}
	for _, want := range []string{": Pulling fs layer\n", ": Pull complete\n", "Digest: sha256:", "Status: Downloaded newer image for " + ref + "\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("pull output lacks %q:\n%s", want, out.String())
		}
	}
	// The pulled image saves like the loaded one (layer blobs are kept).
	var s1, s2 bytes.Buffer
	if err := a.Save(&s1, []string{ref}); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(&s2, []string{ref}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1.Bytes(), s2.Bytes()) {
		t.Error("save of pulled image differs from save of pushed image")
	}

	// Again: up to date, no blob fetched.
	before := reg.blobGets()
	out.Reset()
	if id, err := b.Pull(ctx, ref, PullOptions{Progress: &out}); err != nil || id != img.ID {
		t.Fatalf("second pull = %s, %v", id, err)
	}
	if !strings.Contains(out.String(), "Status: Image is up to date for "+ref+"\n") {
		t.Errorf("second pull:\n%s", out.String())
	}
	// Config fetched to learn the ID; no layer.
	if n := reg.blobGets() - before; n > 1 {
		t.Errorf("second pull fetched %d blobs", n)
	}

	// Another tag of the same content: layers already exist, only retagged.
	if err := a.Tag("busybox", reg.host+"/other:latest"); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, reg.host+"/other", PushOptions{}); err != nil {
		t.Fatal(err)
	}
	before = reg.blobGets()
	out.Reset()
	if _, err := b.Pull(ctx, reg.host+"/other", PullOptions{Progress: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ": Already exists\n") || strings.Contains(out.String(), "Pull complete") {
		t.Errorf("pull of other tag:\n%s", out.String())
	}
	if n := reg.blobGets() - before; n > 1 {
		t.Errorf("pull of other tag fetched %d blobs", n)
	}
	if got, err := b.Get(reg.host + "/other"); err != nil || got.ID != img.ID {
		t.Fatalf("Get(other) = %v, %v", got, err)
	}
}

func TestPullErrors(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	b := newStore(t)
	_, err := b.Pull(ctx, reg.host+"/nosuch:v1", PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "manifest unknown") && !strings.Contains(err.Error(), "pull access denied") {
		t.Fatalf("pull of missing image: %v", err)
	}
	a := newStore(t)
	loadBusybox(t, a)
	if err := a.Push(ctx, reg.host+"/nosuch:v1", PushOptions{}); err == nil || !strings.Contains(err.Error(), "An image does not exist locally with the tag: "+reg.host+"/nosuch") {
		t.Fatalf("push of missing tag: %v", err)
	}
}

// A pull cut off in the middle of a layer leaves nothing behind.
func TestPullInterrupted(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	a := newStore(t)
	loadBusybox(t, a)
	ref := reg.host + "/app:v1"
	if err := a.Tag("busybox", ref); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, ref, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	b := newStore(t)
	_, err := b.Pull(ctx, ref, PullOptions{Transport: cutTransport{http.DefaultTransport}})
	if err == nil {
		t.Fatal("pull with a cut layer succeeded")
	}
	t.Log(err)
	imgs, err := b.List()
	if err != nil || len(imgs) != 0 {
		t.Fatalf("List after failed pull = %v, %v", imgs, err)
	}
	for _, d := range []string{"tmp", "layers"} {
		ents, _ := os.ReadDir(b.path(d))
		if len(ents) != 0 {
			t.Errorf("%s/ after failed pull: %v", d, ents)
		}
	}
}

// cutTransport truncates large blob downloads (layers) halfway.
type cutTransport struct{ next http.RoundTripper }

func (c cutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || !strings.Contains(req.URL.Path, "/blobs/") || resp.ContentLength < 10000 {
		return resp, err
	}
	resp.Body = &cutBody{rc: resp.Body, left: resp.ContentLength / 2}
	return resp, nil
}

type cutBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection cut")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

// A manifest list resolves to the requested platform (linux/GOARCH by default).
func TestPullManifestList(t *testing.T) {
	reg := newTestRegistry(t)
	ctx := context.Background()
	a := newStore(t)
	bb := loadBusybox(t, a)
	if err := a.Tag("busybox", reg.host+"/app:single"); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx, reg.host+"/app:single", PushOptions{}); err != nil {
		t.Fatal(err)
	}
	single, err := name.ParseReference(reg.host+"/app:single", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	native, err := remote.Image(single)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	otherArch := "s390x"
	if runtime.GOARCH == otherArch {
		otherArch = "riscv64"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: native, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	multi, err := name.ParseReference(reg.host+"/app:multi", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(multi, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()

	b := newStore(t)
	var out bytes.Buffer
	id, err := b.Pull(ctx, reg.host+"/app:multi", PullOptions{Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	if id != bb.ID {
		t.Fatalf("pulled %s for linux/%s, want %s", id, runtime.GOARCH, bb.ID)
	}
	if !strings.Contains(out.String(), "Digest: "+idxDigest.String()+"\n") {
		t.Errorf("pull output does not give the list's digest %s:\n%s", idxDigest, out.String())
	}
	wantOther, _ := other.ConfigName()
	id, err = b.Pull(ctx, reg.host+"/app:multi", PullOptions{Platform: "linux/" + otherArch})
	if err != nil {
		t.Fatal(err)
	}
	if id != wantOther.String() {
		t.Fatalf("pulled %s for linux/%s, want %s", id, otherArch, wantOther)
	}
	if got, err := b.Get(reg.host + "/app:multi"); err != nil || got.ID != wantOther.String() {
		t.Fatalf("tag after second pull = %v, %v", got, err)
	}
	if _, err := b.Pull(ctx, reg.host+"/app:multi", PullOptions{Platform: "windows/arm"}); err == nil || !strings.Contains(err.Error(), "no matching manifest for windows/arm in the manifest list entries") {
		t.Fatalf("pull of a missing platform: %v", err)
	}
}
