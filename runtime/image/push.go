package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"hako.dev/hako/runtime/errdefs"
)

// PushOptions tunes Store.Push.
type PushOptions struct {
	// Insecure allows plain HTTP to any registry (always allowed for loopback).
	Insecure bool
	// Progress, when set, receives Docker's plain progress lines.
	Progress io.Writer
	// Transport, when set, replaces the HTTP transport (tests).
	Transport http.RoundTripper
}

// Push is `docker push`: it sends the image tagged ref to its registry as a
// Docker v2 schema 2 manifest. The config blob goes unchanged, so the image ID
// stays the same; each layer is the stored uncompressed tar, gzip-compressed on
// the way. Blobs the registry already has are not sent again.
func (s *Store) Push(ctx context.Context, ref string, opt PushOptions) error {
	norm, err := NormalizeRef(ref)
	if err != nil {
		return err
	}
	if isDigested(norm) {
		return errdefs.Errorf(errdefs.ErrInvalid, "cannot push a digest reference")
	}
	r, err := remoteRef(norm, opt.Insecure)
	if err != nil {
		return err
	}
	progress := opt.Progress
	if progress == nil {
		progress = io.Discard
	}
	repo := norm[:strings.LastIndex(norm, ":")]
	tag := norm[len(repo)+1:]

	// Open everything under the lock: the open files survive a concurrent rmi.
	imgs, files, err := s.openPushed(norm)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		if errdefs.Is(err, errdefs.ErrNotFound) {
			return errdefs.Errorf(errdefs.ErrNotFound, "An image does not exist locally with the tag: %s", FamiliarRef(repo))
		}
		return err
	}
	saved := imgs[0]
	fmt.Fprintf(progress, "The push refers to repository [%s]\n", repo)

	pi := &pushImage{config: saved.config, layers: map[v1.Hash]v1.Layer{}}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2}
	cfgHash, err := v1.NewHash(saved.id)
	if err != nil {
		return err
	}
	pi.configHash = cfgHash
	m.Config = v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(saved.config)), Digest: cfgHash}
	var layers []v1.Layer
	for _, d := range saved.diffIDs {
		f := files[d]
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		size := fi.Size()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(f, 0, size)), nil
		})
		if err != nil {
			return err
		}
		if got, err := l.DiffID(); err != nil || got.String() != d {
			return errdefs.Errorf(errdefs.ErrInvalid, "layer %s: stored content has diff_id %v", d, got)
		}
		digest, err := l.Digest()
		if err != nil {
			return err
		}
		csize, err := l.Size()
		if err != nil {
			return err
		}
		mt, _ := l.MediaType()
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: mt, Size: csize, Digest: digest})
		pi.layers[digest] = l
		layers = append(layers, l)
	}
	if pi.manifest, err = json.Marshal(m); err != nil {
		return err
	}
	img, err := partial.CompressedToImage(pi)
	if err != nil {
		return err
	}

	// Layers one by one, bottom first, to tell Docker's "Pushed" from
	// "Layer already exists" (no upload was started).
	rec := &uploadRecorder{next: opt.Transport}
	if rec.next == nil {
		rec.next = remote.DefaultTransport
	}
	opts := remoteOptions(ctx, rec)
	for i := len(layers) - 1; i >= 0; i-- {
		fmt.Fprintf(progress, "%s: Preparing\n", shortHex(m.Layers[i].Digest.String()))
	}
	for i := len(layers) - 1; i >= 0; i-- {
		short := shortHex(m.Layers[i].Digest.String())
		rec.reset()
		if err := remote.WriteLayer(r.Context(), layers[i], opts...); err != nil {
			return pushError(repo, err)
		}
		if rec.uploaded() {
			fmt.Fprintf(progress, "%s: Pushed\n", short)
		} else {
			fmt.Fprintf(progress, "%s: Layer already exists\n", short)
		}
	}
	if err := remote.Write(r, img, opts...); err != nil {
		return pushError(repo, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "%s: digest: %s size: %d\n", tag, digest, len(pi.manifest))
	return nil
}

// openPushed resolves the tag norm (a name, never an ID) and opens its config
// and layer blobs under the lock.
func (s *Store) openPushed(norm string) ([]*savedImage, map[string]*os.File, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, nil, err
	}
	if _, ok := idx.Repositories[norm]; !ok {
		return nil, nil, notFound(norm)
	}
	imgs, files, err := s.openForSave([]string{norm})
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		err = notFound(norm)
	}
	return imgs, files, err
}

// pushImage is a stored image as go-containerregistry's compressed image core.
type pushImage struct {
	config     []byte
	configHash v1.Hash
	manifest   []byte
	layers     map[v1.Hash]v1.Layer
}

func (p *pushImage) RawConfigFile() ([]byte, error)      { return p.config, nil }
func (p *pushImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }
func (p *pushImage) RawManifest() ([]byte, error)        { return p.manifest, nil }

func (p *pushImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == p.configHash {
		return static.NewLayer(p.config, types.DockerConfigJSON), nil
	}
	if l, ok := p.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("blob %s is not part of the image", h)
}

// uploadRecorder notes whether a blob upload was started (POST .../blobs/uploads/).
type uploadRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	post bool
}

func (u *uploadRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.Contains(req.URL.Path, "/blobs/uploads/") && !req.URL.Query().Has("mount") {
		u.mu.Lock()
		u.post = true
		u.mu.Unlock()
	}
	return u.next.RoundTrip(req)
}

func (u *uploadRecorder) reset() {
	u.mu.Lock()
	u.post = false
	u.mu.Unlock()
}

func (u *uploadRecorder) uploaded() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.post
}

// pushError words registry errors as Docker does.
func pushError(repo string, err error) error {
	if e := pullError(FamiliarRef(repo), err); errdefs.Is(e, errdefs.ErrNotFound) && strings.Contains(e.Error(), "access denied") {
		return fmt.Errorf("denied: requested access to the resource is denied: %w", err)
	}
	return err
}
