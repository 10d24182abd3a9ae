package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/state"
)

// DefaultMaxLayerSize is the default bound on a layer's uncompressed size.
const DefaultMaxLayerSize int64 = 64 << 30

// Store is the local image store kept in one directory. Several hako processes
// may use the same directory at once: changes are made under a flock.
type Store struct {
	dir string
	// MaxLayerSize bounds the uncompressed size of one layer, and of one archive
	// given to Load. Over it, Load and Import fail and keep nothing.
	MaxLayerSize int64
}

// Image is what the store knows of one image.
type Image struct {
	ID          string   // "sha256:<hex>" of the config
	RepoTags    []string // familiar form: "busybox:latest", "localhost:5000/app:v1"
	Created     time.Time
	Size        int64 // sum of unpacked layer sizes
	Config      Config
	DiffIDs     []string
	LastTagTime time.Time // when a tag last pointed at this image (zero if never)
}

// Config is the subset of the Docker/OCI image config hako uses.
type Config struct {
	Architecture string          `json:"architecture"`
	Variant      string          `json:"variant,omitempty"`
	OS           string          `json:"os"`
	Created      time.Time       `json:"created,omitzero"`
	Author       string          `json:"author,omitempty"`
	Comment      string          `json:"comment,omitempty"`
	Config       ContainerConfig `json:"config"`
	RootFS       RootFS          `json:"rootfs"`
	History      []History       `json:"history,omitempty"`
}

// RootFS lists an image's layers by diffID, base first.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// ContainerConfig is the part of the image config that becomes a container's
// defaults. Field names are Docker's.
type ContainerConfig struct {
	User         string              `json:",omitempty"`
	ExposedPorts map[string]struct{} `json:",omitempty"`
	Env          []string            `json:",omitempty"`
	Entrypoint   []string            `json:",omitempty"`
	Cmd          []string            `json:",omitempty"`
	Volumes      map[string]struct{} `json:",omitempty"`
	WorkingDir   string              `json:",omitempty"`
	Labels       map[string]string   `json:",omitempty"`
	StopSignal   string              `json:",omitempty"`
}

// History is one build step, as `docker history` shows it.
type History struct {
	Created    time.Time `json:"created,omitzero"`
	CreatedBy  string    `json:"created_by,omitempty"`
	Author     string    `json:"author,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"empty_layer,omitempty"`
}

// index is repositories.json: which images exist, and the names pointing at them.
type index struct {
	Repositories map[string]string       `json:"Repositories"` // normalized reference -> image ID
	Images       map[string]*imageRecord `json:"Images"`       // image ID -> record
}

type imageRecord struct {
	LastTagTime time.Time `json:",omitzero"`
}

// Open opens (creating if needed) the store in dir, and clears work left in
// its tmp directory by hako processes that no longer exist.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image store %q: %w", dir, err)
	}
	for _, sub := range []string{"", "layers"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o711); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	for _, sub := range []string{"blobs/sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, sub), 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	s := &Store{dir: abs, MaxLayerSize: DefaultMaxLayerSize}
	s.reapTemp()
	return s, nil
}

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *Store) blobPath(hexDigest string) string { return s.path("blobs", "sha256", hexDigest) }
func (s *Store) layerPath(chainHex string) string { return s.path("layers", chainHex) }

func (s *Store) lock() (func(), error) { return state.Lock(s.path("lock")) }

// tempDir makes a work directory named after this process, so that a later
// Open can tell abandoned work from work in progress.
func (s *Store) tempDir(kind string) (string, error) {
	return os.MkdirTemp(s.path("tmp"), fmt.Sprintf("%d-%s-", os.Getpid(), kind))
}

// reapTemp removes tmp entries whose process is gone.
func (s *Store) reapTemp() {
	ents, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return
	}
	for _, e := range ents {
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			os.RemoveAll(s.path("tmp", e.Name()))
		}
	}
}

func (s *Store) readIndex() (*index, error) {
	idx := &index{}
	err := state.ReadJSON(s.path("repositories.json"), idx)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("image index: %w", err)
	}
	if idx.Repositories == nil {
		idx.Repositories = map[string]string{}
	}
	if idx.Images == nil {
		idx.Images = map[string]*imageRecord{}
	}
	return idx, nil
}

func (s *Store) writeIndex(idx *index) error {
	if err := state.WriteJSON(s.path("repositories.json"), idx); err != nil {
		return fmt.Errorf("image index: %w", err)
	}
	return nil
}

// readConfig reads and parses the config blob of image id.
func (s *Store) readConfig(id string) ([]byte, *Config, error) {
	h, err := validDigest(id)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		return nil, nil, err
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, nil, fmt.Errorf("image %s: config: %w", id, err)
	}
	return data, &c, nil
}

// image assembles the Image for id from the index and its config.
func (s *Store) image(idx *index, id string) (*Image, error) {
	_, c, err := s.readConfig(id)
	if err != nil {
		return nil, err
	}
	img := &Image{ID: id, Created: c.Created, Config: *c, DiffIDs: c.RootFS.DiffIDs, RepoTags: []string{}}
	if rec := idx.Images[id]; rec != nil {
		img.LastTagTime = rec.LastTagTime
	}
	for _, ref := range tagsOf(idx, id) {
		img.RepoTags = append(img.RepoTags, FamiliarRef(ref))
	}
	chains, err := chainIDs(c.RootFS.DiffIDs)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", id, err)
	}
	for _, ch := range chains {
		data, err := os.ReadFile(filepath.Join(s.layerPath(ch[len("sha256:"):]), "size"))
		if err != nil {
			continue // a missing layer shows as size 0 here; LayerDirs reports it
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		img.Size += n
	}
	return img, nil
}

// tagsOf returns the normalized references pointing at id, sorted.
func tagsOf(idx *index, id string) []string {
	var refs []string
	for ref, rid := range idx.Repositories {
		if rid == id {
			refs = append(refs, ref)
		}
	}
	sort.Strings(refs)
	return refs
}

// chainIDs computes the chainID of each layer from the diffIDs, base first.
func chainIDs(diffIDs []string) ([]string, error) {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if _, err := validDigest(d); err != nil {
			return nil, fmt.Errorf("diff_ids[%d]: %w", i, err)
		}
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out, nil
}

// resolve finds the image ID ref names, and whether ref named it by ID.
func (s *Store) resolve(idx *index, ref string) (id string, byID bool, err error) {
	if ref == "" {
		return "", false, errdefs.Errorf(errdefs.ErrInvalid, "invalid reference format")
	}
	if h, ok := strings.CutPrefix(ref, "sha256:"); ok {
		if !shortID.MatchString(h) {
			return "", false, notFound(ref)
		}
		id, err := byPrefix(idx, h, ref)
		return id, true, err
	}
	if len(ref) == 64 && shortID.MatchString(ref) {
		id, err := byPrefix(idx, ref, ref)
		return id, true, err
	}
	norm, nerr := NormalizeRef(ref)
	if nerr == nil {
		if id, ok := idx.Repositories[norm]; ok && idx.Images[id] != nil {
			return id, false, nil
		}
	}
	if shortID.MatchString(ref) {
		id, err := byPrefix(idx, ref, ref)
		return id, true, err
	}
	if nerr != nil {
		return "", false, nerr
	}
	return "", false, notFound(ref)
}

func byPrefix(idx *index, hexPrefix, ref string) (string, error) {
	var found []string
	for id := range idx.Images {
		if strings.HasPrefix(id[len("sha256:"):], hexPrefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", notFound(ref)
	case 1:
		return found[0], nil
	}
	return "", errdefs.Errorf(errdefs.ErrInvalid, "multiple IDs found with provided prefix: %s", ref)
}

// Get finds an image by name ("busybox", "busybox:latest",
// "docker.io/library/busybox:latest"), by ID ("sha256:<hex>", "<hex>"), or by a
// unique prefix of its ID. Not found is errdefs.ErrNotFound ("No such image: ref").
func (s *Store) Get(ref string) (*Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	id, _, err := s.resolve(idx, ref)
	if err != nil {
		return nil, err
	}
	img, err := s.image(idx, id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(ref) // removed by another process meanwhile
	}
	return img, err
}

// List returns every image, newest first, as `docker images` does.
func (s *Store) List() ([]Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []Image
	for id := range idx.Images {
		img, err := s.image(idx, id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *img)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Tag makes dst another name of the image src names. A name already in use
// moves to the new image, as in Docker.
func (s *Store) Tag(src, dst string) error {
	norm, err := NormalizeRef(dst)
	if err != nil {
		return errdefs.Errorf(errdefs.ErrInvalid, "Error parsing reference: %q is not a valid repository/tag: %v", dst, err)
	}
	if isDigested(norm) {
		return errdefs.Errorf(errdefs.ErrInvalid, "refusing to create a tag with a digest reference")
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	id, _, err := s.resolve(idx, src)
	if err != nil {
		return err
	}
	idx.Repositories[norm] = id
	idx.Images[id].LastTagTime = time.Now().UTC()
	return s.writeIndex(idx)
}

// Untag removes the name ref. The image stays, untagged if that was its last name.
func (s *Store) Untag(ref string) error {
	norm, err := NormalizeRef(ref)
	if err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if _, ok := idx.Repositories[norm]; !ok {
		return notFound(ref)
	}
	delete(idx.Repositories, norm)
	return s.writeIndex(idx)
}

// Remove is `docker rmi`. By name it untags, and deletes the image when that
// was its last name. By ID it deletes the image, untagging every name, but
// refuses (errdefs.ErrConflict) an image with several names unless force.
// Layers no remaining image uses are deleted with it. untagged holds familiar
// names; deleted holds the image ID, then the chainIDs of deleted layers, top
// first. The caller checks that no container uses the image.
func (s *Store) Remove(ref string, force bool) (untagged, deleted []string, err error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, nil, err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	idx, err := s.readIndex()
	if err != nil {
		return nil, nil, err
	}
	id, byID, err := s.resolve(idx, ref)
	if err != nil {
		return nil, nil, err
	}
	tags := tagsOf(idx, id)
	if !byID {
		norm, _ := NormalizeRef(ref) // resolve succeeded by name, so ref is valid
		delete(idx.Repositories, norm)
		untagged = append(untagged, FamiliarRef(norm))
		if len(tags) > 1 {
			return untagged, nil, s.writeIndex(idx)
		}
	} else {
		if len(tags) > 1 && !force {
			return nil, nil, errdefs.Errorf(errdefs.ErrConflict,
				"conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", shortHex(id))
		}
		for _, t := range tags {
			delete(idx.Repositories, t)
			untagged = append(untagged, FamiliarRef(t))
		}
	}
	_, cfg, cfgErr := s.readConfig(id)
	delete(idx.Images, id)
	if err := s.writeIndex(idx); err != nil {
		return nil, nil, err
	}
	deleted = append(deleted, id)

	// The image is gone from the index; now collect what nothing uses.
	var mine []string
	if cfgErr == nil {
		mine, _ = chainIDs(cfg.RootFS.DiffIDs)
	}
	trash, gone, err := s.collect(idx)
	unlock()
	locked = false
	if trash != "" {
		os.RemoveAll(trash)
	}
	for i := len(mine) - 1; i >= 0; i-- {
		if gone[mine[i]] {
			deleted = append(deleted, mine[i])
		}
	}
	return untagged, deleted, err
}

func shortHex(id string) string {
	h := strings.TrimPrefix(id, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// collect moves every layer and blob that no image in idx uses into a trash
// directory (renames are quick, so the lock is held briefly) and returns it for
// the caller to remove after unlocking. Called with the lock held; anything a
// concurrent Load commits is named by the index before the lock is released,
// so what is unreferenced here is garbage: the removed image's files and any
// leftovers of a killed process. gone reports the chainIDs of moved layers.
func (s *Store) collect(idx *index) (trash string, gone map[string]bool, err error) {
	usedLayers := map[string]bool{}
	usedBlobs := map[string]bool{}
	for id := range idx.Images {
		usedBlobs[id] = true
		_, c, err := s.readConfig(id)
		if err != nil {
			return "", nil, fmt.Errorf("image %s: %w", id, err)
		}
		chains, err := chainIDs(c.RootFS.DiffIDs)
		if err != nil {
			return "", nil, fmt.Errorf("image %s: %w", id, err)
		}
		for i, ch := range chains {
			usedLayers[ch] = true
			usedBlobs[c.RootFS.DiffIDs[i]] = true
		}
	}
	gone = map[string]bool{}
	move := func(from, name string) error {
		if trash == "" {
			t, err := s.tempDir("trash")
			if err != nil {
				return err
			}
			trash = t
		}
		return os.Rename(from, filepath.Join(trash, name))
	}
	layers, err := os.ReadDir(s.path("layers"))
	if err != nil {
		return trash, gone, err
	}
	for _, e := range layers {
		ch := "sha256:" + e.Name()
		if usedLayers[ch] {
			continue
		}
		if err := move(s.layerPath(e.Name()), "layer-"+e.Name()); err != nil {
			return trash, gone, err
		}
		gone[ch] = true
	}
	blobs, err := os.ReadDir(s.path("blobs", "sha256"))
	if err != nil {
		return trash, gone, err
	}
	for _, e := range blobs {
		if usedBlobs["sha256:"+e.Name()] {
			continue
		}
		if err := move(s.blobPath(e.Name()), "blob-"+e.Name()); err != nil {
			return trash, gone, err
		}
	}
	return trash, gone, nil
}

// LayerDirs returns the absolute paths of the image's unpacked layer
// directories, base first: the overlay lowerdirs (which overlayfs lists top
// first).
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	chains, err := chainIDs(img.DiffIDs)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.ID, err)
	}
	dirs := make([]string, len(chains))
	for i, ch := range chains {
		d := filepath.Join(s.layerPath(ch[len("sha256:"):]), "diff")
		if _, err := os.Stat(d); err != nil {
			return nil, fmt.Errorf("image %s: layer %s: %w", shortHex(img.ID), ch, errdefs.ErrNotFound)
		}
		dirs[i] = d
	}
	return dirs, nil
}
