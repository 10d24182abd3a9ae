package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"testing"
)

// tarOf builds a tar of name → content pairs.
func tarOf(tb testing.TB, files ...[2]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzLoad feeds arbitrary archives to Load: it must never panic, never write
// outside the store, and never leave a tag naming an image it cannot read.
func FuzzLoad(f *testing.F) {
	manifest, _ := json.Marshal([]map[string]any{{"Config": "c.json", "RepoTags": []string{"x:1"}, "Layers": []string{"l/layer.tar"}}})
	f.Add(tarOf(f, [2]string{"manifest.json", string(manifest)}))
	f.Add(tarOf(f, [2]string{"manifest.json", string(manifest)}, [2]string{"c.json", `{"rootfs":{"type":"layers","diff_ids":["sha256:00"]}}`}))
	f.Add(tarOf(f, [2]string{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, [2]string{"index.json", `{"manifests":[{"digest":"sha256:../../x"}]}`}))
	f.Add(tarOf(f, [2]string{"../escape", "x"}, [2]string{"manifest.json", "[]"}))
	f.Add([]byte("\x1f\x8b\x08\x00garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		base, dst := sandbox(t)
		s, err := Open(dst)
		if err != nil {
			t.Fatal(err)
		}
		s.MaxLayerSize = 1 << 20
		s.Load(bytes.NewReader(data))
		checkConfined(t, base)
		list, err := s.List()
		if err != nil {
			t.Fatalf("list after load: %v", err)
		}
		for _, img := range list {
			if _, err := s.LayerDirs(&img); err != nil {
				t.Fatalf("image %s listed without its layers: %v", img.ID, err)
			}
		}
	})
}
