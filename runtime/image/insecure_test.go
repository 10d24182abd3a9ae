package image

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPlainHTTP(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	os.WriteFile(cfg, []byte(`{"insecure-registries": ["10.1.2.3:5000"]}`), 0o644)
	t.Setenv("HAKO_CONFIG", cfg)
	t.Setenv("HAKO_INSECURE_REGISTRIES", "room.local:5000, other:80")
	for ref, want := range map[string]bool{
		"localhost:5000/app:1":             true,
		"127.0.0.9:5000/app:1":             true,
		"10.1.2.3:5000/app:1":              true,
		"room.local:5000/app:1":            true,
		"other:80/x/y:1":                   true,
		"10.1.2.3:5001/app:1":              false,
		"docker.io/library/busybox:latest": false,
	} {
		if got := plainHTTP(ref); got != want {
			t.Errorf("plainHTTP(%s) = %v, want %v", ref, got, want)
		}
	}
}
