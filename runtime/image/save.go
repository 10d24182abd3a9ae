package image

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"hako.dev/hako/runtime/errdefs"
)

// saveEpoch stamps every entry Save writes, so that saving the same images
// twice gives the same bytes.
var saveEpoch = time.Unix(0, 0).UTC()

// savedImage is one image of an archive being written.
type savedImage struct {
	id      string
	refs    []string // familiar names, in the order given
	config  []byte
	diffIDs []string
}

// Save writes the images refs name (names or IDs) to w as a docker-archive in
// the classic form `docker save` wrote before Docker 25, which every `docker
// load` and our Load read: manifest.json, repositories, the config as
// <hex>.json and each layer as <diffid-hex>/layer.tar. An image named several
// times is written once with all the names; a layer shared by several images is
// written once. An image named by ID has no RepoTags. An unknown ref is
// errdefs.ErrNotFound ("No such image: ref") and nothing is written.
func (s *Store) Save(w io.Writer, refs []string) error {
	if len(refs) == 0 {
		return errdefs.Errorf(errdefs.ErrInvalid, "no image to save")
	}
	imgs, layers, err := s.openForSave(refs)
	defer func() {
		for _, f := range layers {
			f.Close()
		}
	}()
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	type manifestEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	manifest := make([]manifestEntry, 0, len(imgs))
	repositories := map[string]map[string]string{}
	written := map[string]bool{}
	for _, img := range imgs {
		cfgName := img.id[len("sha256:"):] + ".json"
		if err := writeTarFile(tw, cfgName, img.config); err != nil {
			return err
		}
		m := manifestEntry{Config: cfgName, RepoTags: img.refs, Layers: []string{}}
		for _, d := range img.diffIDs {
			dir := d[len("sha256:"):]
			name := dir + "/layer.tar"
			m.Layers = append(m.Layers, name)
			if written[d] {
				continue
			}
			written[d] = true
			if err := writeLayer(tw, dir, layers[d]); err != nil {
				return fmt.Errorf("save %s: layer %s: %w", img.id, d, err)
			}
		}
		manifest = append(manifest, m)
		if len(img.diffIDs) > 0 {
			top := img.diffIDs[len(img.diffIDs)-1][len("sha256:"):]
			for _, r := range img.refs {
				repo, tag := splitTag(r)
				if repositories[repo] == nil {
					repositories[repo] = map[string]string{}
				}
				repositories[repo][tag] = top
			}
		}
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := writeTarFile(tw, "manifest.json", data); err != nil {
		return err
	}
	if len(repositories) > 0 {
		data, err := json.Marshal(repositories)
		if err != nil {
			return err
		}
		if err := writeTarFile(tw, "repositories", data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// openForSave resolves refs and opens every layer blob under the store lock,
// so that a concurrent rmi cannot take them away mid-write (an open file stays
// readable after it is removed); the lock is released before anything is
// written, so `hako save x | hako load` cannot deadlock.
func (s *Store) openForSave(refs []string) ([]*savedImage, map[string]*os.File, error) {
	layers := map[string]*os.File{}
	unlock, err := s.lock()
	if err != nil {
		return nil, layers, err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return nil, layers, err
	}
	var imgs []*savedImage
	byID := map[string]*savedImage{}
	for _, ref := range refs {
		id, isID, err := s.resolve(idx, ref)
		if err != nil {
			return nil, layers, err
		}
		img := byID[id]
		if img == nil {
			data, cfg, err := s.readConfig(id)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, layers, notFound(ref)
			}
			if err != nil {
				return nil, layers, err
			}
			img = &savedImage{id: id, config: data, diffIDs: cfg.RootFS.DiffIDs, refs: []string{}}
			if _, err := chainIDs(img.diffIDs); err != nil {
				return nil, layers, fmt.Errorf("image %s: %w", id, err)
			}
			byID[id] = img
			imgs = append(imgs, img)
		}
		if !isID {
			norm, _ := NormalizeRef(ref) // resolve succeeded by name
			name := FamiliarRef(norm)
			if !isDigested(norm) && !contains(img.refs, name) {
				img.refs = append(img.refs, name)
			}
		}
		for _, d := range img.diffIDs {
			if layers[d] != nil {
				continue
			}
			f, err := os.Open(s.blobPath(d[len("sha256:"):]))
			if err != nil {
				return nil, layers, fmt.Errorf("image %s: layer %s: %w", shortHex(id), d, err)
			}
			layers[d] = f
		}
	}
	return imgs, layers, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// splitTag splits a familiar "name:tag" into name and tag.
func splitTag(familiar string) (string, string) {
	for i := len(familiar) - 1; i >= 0; i-- {
		switch familiar[i] {
		case ':':
			return familiar[:i], familiar[i+1:]
		case '/':
			return familiar, "latest"
		}
	}
	return familiar, "latest"
}

func writeTarFile(tw *tar.Writer, name string, data []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: saveEpoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func writeLayer(tw *tar.Writer, dir string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, ModTime: saveEpoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
		return err
	}
	hdr := &tar.Header{Name: dir + "/layer.tar", Mode: 0o644, Size: fi.Size(), ModTime: saveEpoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != fi.Size() {
		return fmt.Errorf("short read: %d of %d bytes", n, fi.Size())
	}
	return nil
}
