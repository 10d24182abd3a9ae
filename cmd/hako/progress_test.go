package main

import (
	"bytes"
	"strings"
	"testing"
)

// The terminal progress keeps one line per layer and redraws it in place.
func TestTermProgressRedrawsLayers(t *testing.T) {
	var out bytes.Buffer
	p := newTermProgress(&out)
	p.Write([]byte("latest: Pulling from library/busybox\n"))
	p.Write([]byte("0123456789ab: Pulling fs layer\n"))
	p.LayerBytes("0123456789ab", 512, 1024)
	p.LayerBytes("0123456789ab", 1024, 1024)
	p.Write([]byte("0123456789ab: Pull complete\n"))
	p.Write([]byte("Digest: sha256:00\n"))
	s := out.String()
	for _, want := range []string{
		"latest: Pulling from library/busybox\n",
		"0123456789ab: Downloading [========================================] 1.02kB/1.02kB\n",
		"\x1b[1A",
		"\x1b[2K0123456789ab: Pull complete\nDigest: sha256:00\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%q", want, s)
		}
	}
}
