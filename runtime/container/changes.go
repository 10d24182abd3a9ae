package container

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The container's changes are its overlay's upper directory: new and modified
// files as they are, a deleted one as a whiteout (a 0:0 character device) and
// a directory whose lower content is hidden as "opaque" (an xattr). These are
// what `diff` lists and what `commit` turns into a layer, whiteouts written
// the way image layers carry them: .wh.NAME and .wh..wh..opq.

func (s *Store) upperDir(id string) string { return filepath.Join(s.Dir(id), "upper") }

// mountPoints are files the runtime bind-mounts over (and creates in the
// upper layer when the image lacks them): not the container's changes.
var mountPoints = map[string]bool{"etc/hostname": true, "etc/hosts": true, "etc/resolv.conf": true}

// skipEntry reports an upper entry that is a mount point hako made: an empty
// regular file at one of the bind-mounted paths.
func skipEntry(rel string, fi fs.FileInfo) bool {
	return mountPoints[rel] && fi.Mode().IsRegular() && fi.Size() == 0
}

func isWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

func isOpaque(path string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(path, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// Change is one line of `docker diff`.
type Change struct {
	Kind string // "A", "C" or "D"
	Path string
}

// Diff lists what the container changed, as `docker diff` does.
func (s *Store) Diff(c *Container) ([]Change, error) {
	upper := s.upperDir(c.ID)
	lowers := lowerDirs(c)
	inLower := func(rel string) bool {
		for _, l := range lowers {
			if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
				return true
			}
		}
		return false
	}
	var out []Change
	err := filepath.Walk(upper, func(path string, fi fs.FileInfo, err error) error {
		if err != nil || path == upper {
			return err
		}
		rel, _ := filepath.Rel(upper, path)
		if skipEntry(rel, fi) {
			return nil
		}
		switch {
		case isWhiteout(fi):
			out = append(out, Change{"D", "/" + rel})
		case inLower(rel):
			out = append(out, Change{"C", "/" + rel})
		default:
			out = append(out, Change{"A", "/" + rel})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, err
}

// lowerDirs are the image's layer directories, from the overlay's options.
func lowerDirs(c *Container) []string {
	for _, o := range c.Rootfs.Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			return strings.Split(v, ":")
		}
	}
	return nil
}

// ChangesTar writes the container's changes as an image layer (tar).
func (s *Store) ChangesTar(c *Container, w io.Writer) error {
	upper := s.upperDir(c.ID)
	// A running container may swap a directory for a symlink while this
	// walks: files are opened through an os.Root of the upper directory.
	rt, err := os.OpenRoot(upper)
	if err != nil {
		return err
	}
	defer rt.Close()
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err = filepath.Walk(upper, func(path string, fi fs.FileInfo, err error) error {
		if err != nil || path == upper {
			return err
		}
		rel, _ := filepath.Rel(upper, path)
		if skipEntry(rel, fi) {
			return nil
		}
		if isWhiteout(fi) {
			dir, base := filepath.Split(rel)
			return tw.WriteHeader(&tar.Header{Name: dir + ".wh." + base, Typeflag: tar.TypeReg, Mode: 0o600, ModTime: fi.ModTime()})
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = rel
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() && isOpaque(path) {
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: fi.ModTime()}); err != nil {
				return err
			}
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := rt.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, hdr.Size)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
