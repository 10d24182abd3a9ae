package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/image/imagetest"
)

func mkLayer(t testing.TB, files ...imagetest.File) []byte {
	t.Helper()
	b, err := imagetest.Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reg(name, body string) imagetest.File {
	return imagetest.File{Name: name, Mode: 0o644, Body: []byte(body)}
}
func dirEnt(name string) imagetest.File {
	return imagetest.File{Name: name, Mode: 0o755, Type: tar.TypeDir}
}
func symlink(name, target string) imagetest.File {
	return imagetest.File{Name: name, Mode: 0o777, Type: tar.TypeSymlink, Linkname: target}
}
func hardlink(name, target string) imagetest.File {
	return imagetest.File{Name: name, Mode: 0o644, Type: tar.TypeLink, Linkname: target}
}

// sandbox makes base/dst (where the layer goes) beside base/outside/sentinel,
// which nothing may touch.
func sandbox(t testing.TB) (base, dst string) {
	base = t.TempDir()
	dst = filepath.Join(base, "dst")
	if err := os.MkdirAll(filepath.Join(base, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "outside", "sentinel"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return base, dst
}

// checkConfined fails if anything beside dst changed: new entries in base or
// base/outside, or a hard link to the sentinel.
func checkConfined(t testing.TB, base string) {
	t.Helper()
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "dst" && e.Name() != "outside" {
			t.Errorf("written outside dst: %s", e.Name())
		}
	}
	ents, err = os.ReadDir(filepath.Join(base, "outside"))
	if err != nil || len(ents) != 1 {
		t.Errorf("outside changed: %v %v", ents, err)
	}
	var st unix.Stat_t
	p := filepath.Join(base, "outside", "sentinel")
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 1 || st.Size != 4 {
		t.Errorf("sentinel changed: nlink %d size %d", st.Nlink, st.Size)
	}
}

func TestApplyLayerBasics(t *testing.T) {
	base, dst := sandbox(t)
	layer := mkLayer(t,
		dirEnt("etc/"),
		reg("etc/hosts", "127.0.0.1 localhost\n"),
		reg("/abs", "stays inside"), // a leading slash is stripped
		symlink("etc/link", "/etc/hosts"),
		hardlink("etc/hard", "etc/hosts"),
		imagetest.File{Name: "fifo", Mode: 0o600, Type: tar.TypeFifo},
		imagetest.File{Name: "tmp/", Mode: 0o1777, Type: tar.TypeDir},
		reg("deep/er/file", "implicit parents"),
		imagetest.File{Name: "owned", Mode: 0o4755, Body: []byte("x"), Uid: 1000, Gid: 1000},
	)
	size, err := applyLayer(dst, bytes.NewReader(layer), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len("127.0.0.1 localhost\n") + len("stays inside") + len("implicit parents") + 1); size != want {
		t.Errorf("size = %d, want %d", size, want)
	}
	checkConfined(t, base)
	if b, err := os.ReadFile(filepath.Join(dst, "abs")); err != nil || string(b) != "stays inside" {
		t.Errorf("abs: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "etc/link")); err != nil || l != "/etc/hosts" {
		t.Errorf("link: %q %v", l, err)
	}
	var a, b unix.Stat_t
	unix.Lstat(filepath.Join(dst, "etc/hosts"), &a)
	unix.Lstat(filepath.Join(dst, "etc/hard"), &b)
	if a.Ino != b.Ino {
		t.Error("hard link is not the same inode")
	}
	fi, err := os.Lstat(filepath.Join(dst, "tmp"))
	if err != nil || fi.Mode()&fs.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp mode %v %v", fi.Mode(), err)
	}
	if !fi.ModTime().Equal(imagetest.Epoch) {
		t.Errorf("tmp mtime %v", fi.ModTime())
	}
	var st unix.Stat_t
	unix.Lstat(filepath.Join(dst, "owned"), &st)
	if os.Geteuid() == 0 && (st.Uid != 1000 || st.Mode&0o7777 != 0o4755) {
		t.Errorf("owned: uid %d mode %o", st.Uid, st.Mode&0o7777)
	}
	fi, _ = os.Lstat(filepath.Join(dst, "etc/link"))
	if !fi.ModTime().Equal(imagetest.Epoch) {
		t.Errorf("symlink mtime %v (followed?)", fi.ModTime())
	}
}

// hostile is a corpus of layers that try to reach outside their directory.
var hostile = map[string][]imagetest.File{
	"dotdot":            {reg("../escape", "x")},
	"dotdot-deep":       {reg("a/../../escape", "x")},
	"symlink-root":      {symlink("a", "/"), reg("a/etc/x", "x")},
	"symlink-dotdot":    {symlink("a", ".."), reg("a/escape", "x")},
	"symlink-dir-write": {symlink("a", "../outside"), reg("a/sentinel", "overwritten")},
	"hardlink-escape":   {hardlink("h", "../../etc/passwd")},
	"hardlink-via-link": {symlink("s", "../outside"), hardlink("h", "s/sentinel")},
	"hardlink-abs":      {hardlink("h", "/etc/passwd")},
	"bogus-whiteout":    {reg("d/.wh..wh.bogus", "")},
	"whiteout-escape":   {reg("../.wh.x", "")},
	"whiteout-dotdot":   {reg("d/.wh...", "")},
	"file-as-dir":       {reg("f", "x"), reg("f/g", "x")},
	"root-as-file":      {reg(".", "x")},
}

func TestApplyLayerHostile(t *testing.T) {
	for name, files := range hostile {
		t.Run(name, func(t *testing.T) {
			base, dst := sandbox(t)
			_, err := applyLayer(dst, bytes.NewReader(mkLayer(t, files...)), 1<<20)
			if err == nil {
				t.Error("hostile layer applied without error")
			}
			checkConfined(t, base)
			for _, p := range []string{"/escape", "/etc/x", "/.wh.x", "/x"} {
				if _, err := os.Lstat(p); err == nil && name != "root-as-file" {
					t.Errorf("%s exists on the host", p)
				}
			}
		})
	}
}

func TestApplyLayerSizeLimit(t *testing.T) {
	_, dst := sandbox(t)
	layer := mkLayer(t, reg("big", strings.Repeat("\x00", 64<<10)))
	_, err := applyLayer(dst, bytes.NewReader(layer), 16<<10)
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("err = %v, want size limit", err)
	}
}

// TestImportGzipBomb: a small gzip that inflates past MaxLayerSize is refused,
// and nothing is left in the store.
func TestImportGzipBomb(t *testing.T) {
	s := newStore(t)
	s.MaxLayerSize = 1 << 20
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(mkLayer(t, reg("bomb", strings.Repeat("\x00", 16<<20))))
	zw.Close()
	if z.Len() > 64<<10 {
		t.Fatalf("bomb is %d bytes compressed", z.Len())
	}
	_, err := s.Import(&z, "bomb:latest", nil, "")
	if !errors.Is(err, errTooLarge) || !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	checkEmpty(t, s)
}

// TestLoadHostileLayer: an archive whose layer escapes fails as a whole.
func TestLoadHostileLayer(t *testing.T) {
	s := newStore(t)
	for name, files := range hostile {
		var buf bytes.Buffer
		if err := imagetest.WriteArchive(&buf, "evil:"+strings.ReplaceAll(name, "-", ""), [][]byte{mkLayer(t, files...)}, nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(&buf); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	checkEmpty(t, s)
}

func TestWhiteoutsInOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for mknod, trusted xattrs and mount")
	}
	s := newStore(t)
	lower := mkLayer(t, dirEnt("d/"), reg("d/old", "old"), reg("d/keep", "keep"), reg("f", "f"), reg("g", "g"))
	upper := mkLayer(t, reg(".wh.f", ""), dirEnt("d/"), reg("d/.wh..wh..opq", ""), reg("d/new", "new"))
	var buf bytes.Buffer
	if err := imagetest.WriteArchive(&buf, "wh:test", [][]byte{lower, upper}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := s.Get("wh:test")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LayerDirs(img)
	if err != nil || len(dirs) != 2 {
		t.Fatalf("dirs %v %v", dirs, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dirs[1], "f"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout: mode %o rdev %d %v", st.Mode, st.Rdev, err)
	}
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+dirs[1]+":"+dirs[0]); err != nil {
		t.Skipf("overlay mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	for p, want := range map[string]bool{"f": false, "g": true, "d/old": false, "d/keep": false, "d/new": true} {
		_, err := os.Lstat(filepath.Join(mnt, p))
		if (err == nil) != want {
			t.Errorf("%s: present=%v, want %v", p, err == nil, want)
		}
	}
}

// scriptLayer builds a tar from lines "kind name [target]" (kind: f file,
// d dir, l symlink, h hard link, p fifo, c char device), so that the fuzzer
// mutates names and link targets instead of tar checksums.
func scriptLayer(t testing.TB, script string) []byte {
	var files []imagetest.File
	for _, line := range strings.Split(script, "\n") {
		w := strings.Fields(line)
		if len(w) < 2 {
			continue
		}
		f := imagetest.File{Name: w[1], Mode: 0o755}
		if len(w) > 2 {
			f.Linkname = w[2]
		}
		switch w[0] {
		case "f":
			f.Body = []byte(f.Linkname)
			f.Linkname = ""
		case "d":
			f.Type = tar.TypeDir
		case "l":
			f.Type = tar.TypeSymlink
		case "h":
			f.Type = tar.TypeLink
		case "p":
			f.Type = tar.TypeFifo
		case "c":
			f.Type = tar.TypeChar
		default:
			continue
		}
		if f.Type == tar.TypeDir && !strings.HasSuffix(f.Name, "/") {
			f.Name += "/"
		}
		files = append(files, f)
	}
	b, err := imagetest.Layer(files)
	if err != nil {
		return nil // a name tar cannot encode
	}
	return b
}

// FuzzApplyLayer checks that no layer, however malformed, writes outside its
// directory. The input is applied as a raw tar, and as a script for scriptLayer.
// Each run creates directories, so keep minimization short:
//
//	go test -run '^$' -fuzz FuzzApplyLayer -fuzzminimizetime 2s ./runtime/image
func FuzzApplyLayer(f *testing.F) {
	for _, files := range hostile {
		f.Add(mkLayer(f, files...))
	}
	for _, s := range []string{
		"l a /\nf a/etc/x data",
		"l a ../outside\nh b a/sentinel",
		"d d\nf d/.wh..wh..opq\nf .wh.d\nf d/x y",
		"f a x\nh b a\nf /c/../../d x\np e\nc f",
		"l a .\nl b a/a/a/..\nf b/x x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base, dst := sandbox(t)
		applyLayer(dst, bytes.NewReader(data), 1<<20)
		checkConfined(t, base)
		if layer := scriptLayer(t, string(data)); layer != nil {
			base, dst := sandbox(t)
			applyLayer(dst, bytes.NewReader(layer), 1<<20)
			checkConfined(t, base)
		}
	})
}
