package image

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// HistoryEntry is one row of `docker history`, top (newest) first.
type HistoryEntry struct {
	ID        string // the image ID on the top entry, "<missing>" on the others
	Created   time.Time
	CreatedBy string
	Size      int64 // of the layer the entry made; 0 for an empty-layer entry
	Comment   string
}

// History lists the build steps of img, newest first, as `docker history`
// shows them. A step that made a layer shows the layer's unpacked size. When
// the config records no history, there is one entry per layer.
func (s *Store) History(img *Image) []HistoryEntry {
	sizes := s.layerSizes(img.DiffIDs)
	var out []HistoryEntry
	hist := img.Config.History
	if len(hist) == 0 {
		for i := range img.DiffIDs {
			out = append(out, HistoryEntry{Created: img.Created, Size: sizes[i]})
		}
	} else {
		layer := 0
		for _, h := range hist {
			e := HistoryEntry{Created: h.Created, CreatedBy: h.CreatedBy, Comment: h.Comment}
			if !h.EmptyLayer {
				if layer < len(sizes) {
					e.Size = sizes[layer]
				}
				layer++
			}
			out = append(out, e)
		}
	}
	// newest first
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	for i := range out {
		out[i].ID = "<missing>"
	}
	if len(out) > 0 {
		out[0].ID = img.ID
	}
	return out
}

// layerSizes returns the unpacked size of each layer (0 when unknown).
func (s *Store) layerSizes(diffIDs []string) []int64 {
	sizes := make([]int64, len(diffIDs))
	chains, err := chainIDs(diffIDs)
	if err != nil {
		return sizes
	}
	for i, ch := range chains {
		sizes[i] = readSize(filepath.Join(s.layerPath(ch[len("sha256:"):]), "size"))
	}
	return sizes
}

func readSize(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return n
}
