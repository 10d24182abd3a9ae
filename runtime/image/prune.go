package image

import (
	"os"
	"path/filepath"
	"sort"
)

// Prune is `docker image prune`: it deletes every dangling (untagged) image,
// or with all every image, that inUse does not report as used by a container.
// deleted holds the deleted image IDs, then the chainIDs of the layers no
// remaining image uses; reclaimed is the unpacked size of those layers.
func (s *Store) Prune(all bool, inUse func(id string) bool) (deleted []string, reclaimed int64, err error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, 0, err
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	idx, err := s.readIndex()
	if err != nil {
		return nil, 0, err
	}
	var victims []string
	for id := range idx.Images {
		if !all && len(tagsOf(idx, id)) > 0 {
			continue
		}
		if inUse != nil && inUse(id) {
			continue
		}
		victims = append(victims, id)
	}
	if len(victims) == 0 {
		return nil, 0, nil
	}
	sort.Strings(victims)
	var mine []string
	for _, id := range victims {
		if _, cfg, err := s.readConfig(id); err == nil {
			if chains, err := chainIDs(cfg.RootFS.DiffIDs); err == nil {
				for i := len(chains) - 1; i >= 0; i-- {
					mine = append(mine, chains[i])
				}
			}
		}
		for _, t := range tagsOf(idx, id) {
			delete(idx.Repositories, t)
		}
		delete(idx.Images, id)
	}
	if err := s.writeIndex(idx); err != nil {
		return nil, 0, err
	}
	deleted = append(deleted, victims...)

	trash, gone, err := s.collect(idx)
	unlock()
	locked = false
	seen := map[string]bool{}
	for _, ch := range mine {
		if gone[ch] && !seen[ch] {
			seen[ch] = true
			deleted = append(deleted, ch)
			if trash != "" {
				reclaimed += readSize(filepath.Join(trash, "layer-"+ch[len("sha256:"):], "size"))
			}
		}
	}
	if trash != "" {
		os.RemoveAll(trash)
	}
	return deleted, reclaimed, err
}
