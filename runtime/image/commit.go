package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"time"

	"hako.dev/hako/runtime/errdefs"
)

// CommitOptions describe the image `commit` makes.
type CommitOptions struct {
	Ref       string          // "" for an untagged image
	Config    ContainerConfig // the container's configuration
	Changes   []string        // -c: Dockerfile instructions applied on top
	Author    string
	Comment   string
	CreatedBy string // the history's "CREATED BY"
}

// Commit makes a new image of parent's layers plus one: the tar the changes
// reader yields (a container's upper layer, deletions as .wh. whiteouts). It
// is unpacked and committed like a loaded layer: verified, atomic.
func (s *Store) Commit(parent *Image, changes io.Reader, opt CommitOptions) (string, error) {
	var norm string
	if opt.Ref != "" {
		n, err := NormalizeRef(opt.Ref)
		if err != nil {
			return "", err
		}
		norm = n
	}
	cc := opt.Config
	for _, c := range opt.Changes {
		if err := applyChange(&cc, c); err != nil {
			return "", err
		}
	}
	work, err := s.tempDir("commit")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	top, err := s.unpack(work, changes, "")
	if err != nil {
		return "", err
	}
	cfg := parent.Config
	now := time.Now().UTC()
	cfg.Created, cfg.Author, cfg.Comment = now, opt.Author, opt.Comment
	cfg.Config = cc
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = append(append([]string{}, parent.DiffIDs...), top.diffID)
	cfg.History = append(append([]History{}, parent.Config.History...), History{
		Created: now, CreatedBy: opt.CreatedBy, Author: opt.Author, Comment: opt.Comment,
	})
	raw, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(raw)
	pi := &pendingImage{config: raw, id: "sha256:" + hex.EncodeToString(sum[:]), cfg: cfg}
	for _, d := range parent.DiffIDs {
		pi.layers = append(pi.layers, &pendingLayer{diffID: d, open: func() (io.ReadCloser, error) {
			return nil, errdefs.Errorf(errdefs.ErrConflict, "a layer of the committed container's image was removed meanwhile")
		}})
	}
	pi.layers = append(pi.layers, &pendingLayer{diffID: top.diffID, unpacked: top})
	if norm != "" {
		pi.refs = []string{norm}
	}
	if _, err := s.install(work, []*pendingImage{pi}); err != nil {
		return "", err
	}
	return pi.id, nil
}
