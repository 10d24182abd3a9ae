package image

import (
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// zstd layers (OCI's application/vnd.oci.image.layer.v1.tar+zstd) unpack like gzip ones.
func TestDecompressZstd(t *testing.T) {
	layer := mkLayer(t, reg("etc/motd", "hello zstd\n"))
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(layer)
	zw.Close()
	rc, compressed, err := decompressKind(bytes.NewReader(buf.Bytes()))
	if err != nil || !compressed {
		t.Fatalf("decompress: %v (compressed %v)", err, compressed)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, layer) {
		t.Fatalf("zstd round trip: %v, %d bytes, want %d", err, len(got), len(layer))
	}
	base, dst := sandbox(t)
	if _, err := applyLayer(dst, mustDecompress(t, buf.Bytes()), 1<<20); err != nil {
		t.Fatal(err)
	}
	checkConfined(t, base)
}

func mustDecompress(t *testing.T, b []byte) io.Reader {
	t.Helper()
	rc, err := decompress(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}
