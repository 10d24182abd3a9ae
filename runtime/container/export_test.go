package container

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"hako.dev/hako/runtime/rootfs"
)

func TestExportLower(t *testing.T) {
	m, err := rootfs.Overlay([]string{"/l/base", "/l/top"}, "/c/upper", "/c/work")
	if err != nil {
		t.Fatal(err)
	}
	got, err := exportLower(&Container{ID: "0123456789abcdef", Rootfs: m})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/c/upper", "/l/top", "/l/base"}; !reflect.DeepEqual(got, want) {
		t.Errorf("lower = %v, want %v", got, want)
	}
	if p := commonParent([]string{"/a/b/c", "/a/b/d", "/a/e"}); p != "/a" {
		t.Errorf("commonParent = %q", p)
	}
}

func TestWriteTree(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "f"), []byte("hi"), 0o640)
	os.Link(filepath.Join(dir, "etc", "f"), filepath.Join(dir, "etc", "g"))
	os.Symlink("/outside", filepath.Join(dir, "link"))
	var buf bytes.Buffer
	if err := writeTree(&buf, dir); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	got := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if h := got["etc/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("etc/: %+v", h)
	}
	if h := got["etc/f"]; h == nil || h.Typeflag != tar.TypeReg || h.Size != 2 || h.Mode != 0o640 {
		t.Errorf("etc/f: %+v", h)
	}
	if h := got["etc/g"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "etc/f" {
		t.Errorf("etc/g: %+v", h)
	}
	if h := got["link"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/outside" {
		t.Errorf("link: %+v", h)
	}
}
