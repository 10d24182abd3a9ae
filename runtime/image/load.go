package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/state"
)

// maxJSON bounds manifest, index and config documents read from an archive.
const maxJSON = 8 << 20

// pendingImage is an image read from an archive, not yet in the store.
type pendingImage struct {
	config []byte
	id     string
	cfg    Config
	layers []*pendingLayer
	refs   []string // normalized references to point at it
}

// pendingLayer is a layer to install: either a blob of the archive still to
// unpack (open), or one already unpacked in a work directory (unpacked).
type pendingLayer struct {
	diffID   string
	open     func() (io.ReadCloser, error)
	unpacked *unpackedLayer
	spooled  *spooledFile // the archive file open reads, if any
}

// unpackedLayer is a layer unpacked in a work directory, ready to be renamed
// into the store: dir holds diff/ and size; blob is its uncompressed tar.
type unpackedLayer struct {
	dir    string
	blob   string
	diffID string
}

// Load is `docker load`: it reads a docker-archive (what `docker save` writes,
// in both the <id>/layer.tar and the blobs/sha256 forms) or an OCI image layout
// tar, possibly gzip-compressed, and returns the lines Docker prints.
func (s *Store) Load(r io.Reader) (loaded []string, err error) {
	work, err := s.tempDir("load")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	arc, err := s.spool(r, work)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var imgs []*pendingImage
	switch {
	case arc.has("manifest.json"):
		imgs, err = arc.dockerArchive()
	case arc.has("index.json"):
		imgs, err = arc.ociLayout()
	default:
		err = errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: neither manifest.json nor index.json found")
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "load: the archive holds no image")
	}
	lines, err := s.install(work, imgs)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return lines, nil
}

// archive is an image archive spooled to disk: tar entries must be read in
// any order, and manifest.json usually comes last.
type archive struct {
	dir   string
	files map[string]*spooledFile
	links map[string]string // symlinks (old `docker save` links repeated layers)
}

type spooledFile struct {
	path   string
	digest string
	// layer is the file unpacked as a layer while it was read, when it was
	// a tar; taken (set to nil) by the first layer that uses it.
	layer *unpackedLayer
}

// minSpeculate is the size from which an archive file is unpacked as a layer
// while it is read: an empty tar is 1 KiB.
const minSpeculate = 1024

func (s *Store) spool(r io.Reader, work string) (*archive, error) {
	zr, err := decompress(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	a := &archive{dir: work, files: map[string]*spooledFile{}, links: map[string]string{}}
	tr := tar.NewReader(&limitReader{r: zr, max: s.MaxLayerSize})
	buf := make([]byte, copyBufSize)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name := archiveName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			// Spooled files are numbered: archive names never become paths.
			p := filepath.Join(work, "f"+strconv.Itoa(n))
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			h := sha256.New()
			w := newAsyncWriter(io.MultiWriter(f, h))
			// Layers are unpacked as they stream by, instead of being read
			// back from the spooled file: most archive files are layers. If
			// the file is no layer tar after all, the work is thrown away and
			// a layer naming it is unpacked from the spooled file as usual.
			var layer *unpackedLayer
			var plain bool
			if hdr.Size >= minSpeculate && !strings.HasSuffix(name, ".json") {
				var uerr error
				layer, plain, uerr = s.unpackRaw(work, io.TeeReader(tr, w), true)
				if uerr != nil {
					layer = nil
				}
			}
			_, err = io.CopyBuffer(w, onlyReader{tr}, buf)
			if werr := w.Close(); err == nil {
				err = werr
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, fmt.Errorf("read archive: %s: %w", hdr.Name, err)
			}
			sf := &spooledFile{path: p, digest: digestOf(h)}
			if layer != nil && plain {
				// An uncompressed layer is its own blob: link the spooled
				// file, hashed as it was written, rather than copy it.
				layer.diffID = sf.digest
				if err := os.Link(p, layer.blob); err != nil {
					return nil, err
				}
			}
			sf.layer = layer
			a.files[name] = sf
		case tar.TypeSymlink, tar.TypeLink:
			target := hdr.Linkname
			if hdr.Typeflag == tar.TypeSymlink {
				target = path.Join(path.Dir(name), target)
			}
			a.links[name] = archiveName(target)
		}
	}
}

// asyncWriter writes copies of what it is given to w on another goroutine,
// so that spooling and hashing the archive overlap with unpacking it. Close
// waits for the writes and returns the first error.
type asyncWriter struct {
	ch   chan []byte
	free chan []byte
	done chan error
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{ch: make(chan []byte, 4), free: make(chan []byte, 6), done: make(chan error, 1)}
	for range cap(a.free) {
		a.free <- make([]byte, 0, copyBufSize)
	}
	go func() {
		var err error
		for b := range a.ch {
			if err == nil {
				_, err = w.Write(b)
			}
			a.free <- b[:0]
		}
		a.done <- err
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		b := <-a.free
		k := min(len(p), cap(b))
		a.ch <- append(b, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

func (a *asyncWriter) Close() error {
	close(a.ch)
	return <-a.done
}

// archiveName is the form entries are looked up by: "./a//b" and "/a/b" are "a/b".
func archiveName(n string) string {
	return strings.TrimLeft(path.Clean("/"+n), "/")
}

func (a *archive) lookup(name string) (*spooledFile, bool) {
	name = archiveName(name)
	for range 16 {
		if f, ok := a.files[name]; ok {
			return f, true
		}
		next, ok := a.links[name]
		if !ok {
			break
		}
		name = next
	}
	return nil, false
}

func (a *archive) has(name string) bool {
	_, ok := a.lookup(name)
	return ok
}

func (a *archive) readJSON(name string, v any) ([]byte, error) {
	f, ok := a.lookup(name)
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %s is missing", name)
	}
	file, err := os.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxJSON+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJSON {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %s is too large", name)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %s: %v", name, err)
	}
	return data, nil
}

func (a *archive) opener(name string) (func() (io.ReadCloser, error), error) {
	f, ok := a.lookup(name)
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %s is missing", name)
	}
	return func() (io.ReadCloser, error) { return os.Open(f.path) }, nil
}

// dockerManifest is one element of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func (a *archive) dockerArchive() ([]*pendingImage, error) {
	var manifests []dockerManifest
	if _, err := a.readJSON("manifest.json", &manifests); err != nil {
		return nil, err
	}
	var out []*pendingImage
	for _, m := range manifests {
		img, err := a.pending(m.Config, "")
		if err != nil {
			return nil, err
		}
		if len(m.Layers) != len(img.cfg.RootFS.DiffIDs) {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %d layers for %d diff_ids", len(m.Layers), len(img.cfg.RootFS.DiffIDs))
		}
		for i, l := range m.Layers {
			open, err := a.opener(l)
			if err != nil {
				return nil, err
			}
			sf, _ := a.lookup(l)
			img.layers = append(img.layers, &pendingLayer{diffID: img.cfg.RootFS.DiffIDs[i], open: open, spooled: sf})
		}
		for _, t := range m.RepoTags {
			norm, err := NormalizeRef(t)
			if err != nil {
				return nil, fmt.Errorf("repo tag %q: %w", t, err)
			}
			img.refs = append(img.refs, norm)
		}
		out = append(out, img)
	}
	return out, nil
}

// pending reads the config at name; wantDigest, when set, must match it.
func (a *archive) pending(name, wantDigest string) (*pendingImage, error) {
	img := &pendingImage{}
	data, err := a.readJSON(name, &img.cfg)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	img.config, img.id = data, "sha256:"+hex.EncodeToString(sum[:])
	if wantDigest != "" && wantDigest != img.id {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: config %s has digest %s", wantDigest, img.id)
	}
	if t := img.cfg.RootFS.Type; t != "layers" {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: image config rootfs type %q", t)
	}
	if _, err := chainIDs(img.cfg.RootFS.DiffIDs); err != nil {
		return nil, err
	}
	return img, nil
}

// Annotations naming an image in an OCI layout's index.json.
const (
	annotationRefName    = "org.opencontainers.image.ref.name"
	annotationContainerd = "io.containerd.image.name"
)

func (a *archive) ociLayout() ([]*pendingImage, error) {
	var idx ocispec.Index
	if _, err := a.readJSON("index.json", &idx); err != nil {
		return nil, err
	}
	var out []*pendingImage
	byID := map[string]*pendingImage{}
	for _, desc := range idx.Manifests {
		img, err := a.ociImage(desc, 0)
		if err != nil {
			return nil, err
		}
		if img == nil {
			continue
		}
		if prev := byID[img.id]; prev != nil {
			img = prev
		} else {
			byID[img.id] = img
			out = append(out, img)
		}
		if ref := ociRefName(desc.Annotations); ref != "" {
			norm, err := NormalizeRef(ref)
			if err != nil {
				return nil, fmt.Errorf("image name %q: %w", ref, err)
			}
			img.refs = append(img.refs, norm)
		}
	}
	return out, nil
}

// ociRefName is the name an index entry gives its image. The containerd
// annotation is a full name; ref.name may be a full name or only a tag
// ("latest"), which names no repository and is ignored.
func ociRefName(ann map[string]string) string {
	if n := ann[annotationContainerd]; n != "" {
		return n
	}
	if n := ann[annotationRefName]; strings.ContainsAny(n, ":/") {
		return n
	}
	return ""
}

// ociImage follows a descriptor to an image: a manifest, or an index in which
// it picks this machine's platform. nil means the blob is not in the archive.
func (a *archive) ociImage(desc ocispec.Descriptor, depth int) (*pendingImage, error) {
	h, err := validDigest(string(desc.Digest))
	if err != nil {
		return nil, err
	}
	blob := "blobs/sha256/" + h
	f, ok := a.lookup(blob)
	if !ok {
		return nil, nil
	}
	if f.digest != string(desc.Digest) {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %s has digest %s", blob, f.digest)
	}
	switch desc.MediaType {
	case ocispec.MediaTypeImageIndex, "application/vnd.docker.distribution.manifest.list.v2+json":
		if depth > 4 {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: indexes nested too deep")
		}
		var idx ocispec.Index
		if _, err := a.readJSON(blob, &idx); err != nil {
			return nil, err
		}
		for _, d := range idx.Manifests {
			if p := d.Platform; p != nil && (p.OS != "linux" || p.Architecture != runtime.GOARCH) {
				continue
			}
			img, err := a.ociImage(d, depth+1)
			if err != nil || img != nil {
				return img, err
			}
		}
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "no image for linux/%s in the archive", runtime.GOARCH)
	case ocispec.MediaTypeImageManifest, "application/vnd.docker.distribution.manifest.v2+json", "":
	default:
		return nil, errdefs.Errorf(errdefs.ErrUnsupported, "unsupported media type %q", desc.MediaType)
	}
	var m ocispec.Manifest
	if _, err := a.readJSON(blob, &m); err != nil {
		return nil, err
	}
	ch, err := validDigest(string(m.Config.Digest))
	if err != nil {
		return nil, err
	}
	img, err := a.pending("blobs/sha256/"+ch, string(m.Config.Digest))
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != len(img.cfg.RootFS.DiffIDs) {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: %d layers for %d diff_ids", len(m.Layers), len(img.cfg.RootFS.DiffIDs))
	}
	for i, l := range m.Layers {
		lh, err := validDigest(string(l.Digest))
		if err != nil {
			return nil, err
		}
		lf, ok := a.lookup("blobs/sha256/" + lh)
		if !ok {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: layer %s is missing", l.Digest)
		}
		if lf.digest != string(l.Digest) {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid archive: layer %s has digest %s", l.Digest, lf.digest)
		}
		img.layers = append(img.layers, &pendingLayer{
			diffID:  img.cfg.RootFS.DiffIDs[i],
			open:    func() (io.ReadCloser, error) { return os.Open(lf.path) },
			spooled: lf,
		})
	}
	return img, nil
}

// unpack unpacks one layer blob (gzip, bzip2 or plain) into a new directory
// under work, checks it against diffID, and keeps its uncompressed tar for save.
func (s *Store) unpack(work string, raw io.Reader, diffID string) (*unpackedLayer, error) {
	l, _, err := s.unpackRaw(work, raw, false)
	if err != nil {
		return nil, err
	}
	if diffID != "" && l.diffID != diffID {
		os.RemoveAll(l.dir)
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "layer content %s does not match its diff_id %s", l.diffID, diffID)
	}
	return l, nil
}

// unpackRaw unpacks one layer blob (gzip, bzip2 or plain) into a new
// directory under work. plain reports an uncompressed blob; then, if
// rawKept, the caller keeps raw's bytes and hashes them: neither the blob
// file nor diffID is written, and the caller sets both. Otherwise the
// uncompressed tar is written to blob and its digest is diffID.
func (s *Store) unpackRaw(work string, raw io.Reader, rawKept bool) (_ *unpackedLayer, plain bool, err error) {
	dir, err := os.MkdirTemp(work, "layer-")
	if err != nil {
		return nil, false, err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	l := &unpackedLayer{dir: dir, blob: filepath.Join(dir, "layer.tar")}
	if err := os.Mkdir(filepath.Join(dir, "diff"), 0o755); err != nil {
		return nil, false, err
	}
	zr, compressed, err := decompressKind(raw)
	if err != nil {
		return nil, false, err
	}
	defer zr.Close()
	plain = !compressed
	var size int64
	if plain && rawKept {
		size, err = applyLayer(filepath.Join(dir, "diff"), zr, s.MaxLayerSize)
		if err != nil {
			return nil, false, fmt.Errorf("layer: %w", err)
		}
	} else {
		blob, err := os.OpenFile(l.blob, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, false, err
		}
		defer blob.Close()
		h := sha256.New()
		size, err = applyLayer(filepath.Join(dir, "diff"), io.TeeReader(zr, io.MultiWriter(h, blob)), s.MaxLayerSize)
		if err != nil {
			return nil, false, fmt.Errorf("layer: %w", err)
		}
		if err := blob.Close(); err != nil {
			return nil, false, err
		}
		l.diffID = digestOf(h)
	}
	if err := os.WriteFile(filepath.Join(dir, "size"), []byte(strconv.FormatInt(size, 10)+"\n"), 0o600); err != nil {
		return nil, false, err
	}
	ok = true
	return l, plain, nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// install puts pending images into the store. Layers are unpacked without the
// lock (the slow part, and several loads may run at once); then, under the
// lock, layers and blobs are renamed into place and the index is written, in
// one go so that a concurrent Remove never sees a layer nobody names yet. A
// layer found present before unpacking may have been removed meanwhile; then
// the loop unpacks it and tries again.
func (s *Store) install(work string, imgs []*pendingImage) ([]string, error) {
	for attempt := 0; ; attempt++ {
		for _, img := range imgs {
			chains, err := chainIDs(img.cfg.RootFS.DiffIDs)
			if err != nil {
				return nil, err
			}
			for i, l := range img.layers {
				if l.unpacked != nil || exists(s.layerPath(chains[i][len("sha256:"):])) || unpackedChains(imgs)[chains[i]] {
					continue
				}
				if err := s.unpackPending(work, l); err != nil {
					return nil, err
				}
			}
		}
		lines, retry, err := s.commit(imgs)
		if err != nil || !retry {
			return lines, err
		}
		if attempt == 3 {
			return nil, errdefs.Errorf(errdefs.ErrConflict, "layers keep being removed while loading; try again")
		}
	}
}

// unpackedChains is the set of layers (by chainID) unpacked and waiting for commit.
func unpackedChains(imgs []*pendingImage) map[string]bool {
	have := map[string]bool{}
	for _, img := range imgs {
		chains, _ := chainIDs(img.cfg.RootFS.DiffIDs)
		for i, l := range img.layers {
			if l.unpacked != nil {
				have[chains[i]] = true
			}
		}
	}
	return have
}

func (s *Store) unpackPending(work string, l *pendingLayer) error {
	if sf := l.spooled; sf != nil && sf.layer != nil && sf.layer.diffID == l.diffID {
		// Unpacked while the archive was read, and checked against diffID.
		l.unpacked, sf.layer = sf.layer, nil
		return nil
	}
	rc, err := l.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	u, err := s.unpack(work, rc, l.diffID)
	if err != nil {
		return err
	}
	l.unpacked = u
	return nil
}

// commit makes pending images visible. retry reports a layer that vanished
// since it was seen.
func (s *Store) commit(imgs []*pendingImage) (lines []string, retry bool, err error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	have := unpackedChains(imgs)
	for _, img := range imgs {
		chains, _ := chainIDs(img.cfg.RootFS.DiffIDs)
		for i, l := range img.layers {
			if l.unpacked == nil && !have[chains[i]] && !exists(s.layerPath(chains[i][len("sha256:"):])) {
				return nil, true, nil
			}
		}
	}
	// One syncfs makes every unpacked file durable before the renames publish them.
	if fd, err := unix.Open(s.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
		err = unix.Syncfs(fd)
		unix.Close(fd)
		if err != nil {
			return nil, false, fmt.Errorf("syncfs: %w", err)
		}
	}
	for _, img := range imgs {
		chains, _ := chainIDs(img.cfg.RootFS.DiffIDs)
		for i, l := range img.layers {
			if l.unpacked == nil {
				continue
			}
			dst := s.layerPath(chains[i][len("sha256:"):])
			blobDst := s.blobPath(l.diffID[len("sha256:"):])
			if !exists(blobDst) {
				if err := os.Rename(l.unpacked.blob, blobDst); err != nil {
					return nil, false, err
				}
			}
			if !exists(dst) {
				os.Remove(l.unpacked.blob)
				if err := os.Rename(l.unpacked.dir, dst); err != nil {
					return nil, false, err
				}
			}
			l.unpacked = nil
		}
		if err := s.putBlob(img.config, img.id); err != nil {
			return nil, false, err
		}
	}
	for _, d := range []string{s.path("layers"), s.path("blobs", "sha256")} {
		if err := state.SyncDir(d); err != nil {
			return nil, false, err
		}
	}

	idx, err := s.readIndex()
	if err != nil {
		return nil, false, err
	}
	now := time.Now().UTC()
	for _, img := range imgs {
		rec := idx.Images[img.id]
		if rec == nil {
			rec = &imageRecord{}
			idx.Images[img.id] = rec
		}
		for _, ref := range img.refs {
			if old, ok := idx.Repositories[ref]; ok && old != img.id {
				lines = append(lines, fmt.Sprintf("The image %s already exists, renaming the old one with ID %s to empty string", FamiliarRef(ref), old))
			}
			idx.Repositories[ref] = img.id
			rec.LastTagTime = now
			lines = append(lines, "Loaded image: "+FamiliarRef(ref))
		}
		if len(img.refs) == 0 {
			lines = append(lines, "Loaded image ID: "+img.id)
		}
	}
	return lines, false, s.writeIndex(idx)
}

// putBlob stores data as blobs/sha256/<hex>: written to a temporary file,
// fsynced, checked against id, and renamed into place.
func (s *Store) putBlob(data []byte, id string) error {
	h, err := validDigest(id)
	if err != nil {
		return err
	}
	dst := s.blobPath(h)
	if exists(dst) {
		return nil
	}
	f, err := os.CreateTemp(s.path("tmp"), fmt.Sprintf("%d-blob-", os.Getpid()))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	hs := sha256.New()
	_, err = io.MultiWriter(f, hs).Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", id, err)
	}
	if got := digestOf(hs); got != id {
		return errdefs.Errorf(errdefs.ErrInvalid, "blob %s has digest %s", id, got)
	}
	return os.Rename(f.Name(), dst)
}
