package container

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"hako.dev/hako/runtime/errdefs"
)

// `cp` works on a running container through an os.Root of /proc/PID/root:
// every path is resolved inside the container's root by the kernel, one
// component at a time, so no symbolic link, not even one swapped in while the
// copy runs, leads outside it (the CVE-2018-15664 class). A link that points
// out of the root is an error rather than followed.

func (s *Store) containerRoot(c *Container) (*os.Root, error) {
	cur, err := s.Load(c.ID)
	if err != nil {
		return nil, err
	}
	if !cur.State.Running || cur.State.Pid <= 0 {
		return nil, errdefs.Errorf(errdefs.ErrUnsupported, "hako copies files into a container only while it runs: start %s first", c.Name)
	}
	return os.OpenRoot("/proc/" + strconv.Itoa(cur.State.Pid) + "/root")
}

func relIn(p string) string {
	r := strings.TrimPrefix(path.Clean("/"+p), "/")
	if r == "" {
		return "."
	}
	return r
}

// CopyOut writes the file or tree at src in the container as a tar to w,
// entries named from the last element of src, as `docker cp C:SRC -` does.
func (s *Store) CopyOut(c *Container, src string, w io.Writer) error {
	if cur, err := s.Load(c.ID); err == nil && !cur.State.Running {
		return s.copyOutStopped(c, src, w)
	}
	root, err := s.containerRoot(c)
	if err != nil {
		return err
	}
	defer root.Close()
	rel := relIn(src)
	if _, err := root.Lstat(rel); err != nil {
		return errdefs.Errorf(errdefs.ErrNotFound, "Could not find the file %s in container %s", src, c.Name)
	}
	base := path.Base(rel)
	if rel == "." {
		base = "."
	}
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := root.Lstat(p)
		if err != nil {
			return err
		}
		name := base
		if p != rel {
			name = path.Join(base, strings.TrimPrefix(p, rel+"/"))
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() && fi.Mode()&fs.ModeSymlink == 0 {
			return nil // devices, fifos, sockets
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := root.OpenFile(p, os.O_RDONLY, 0)
			if err != nil {
				return err
			}
			// One buffer for every file (plain Read/Write: no per-file
			// allocation behind io.Copy's fast paths).
			_, err = io.CopyBuffer(struct{ io.Writer }{tw}, io.LimitReader(struct{ io.Reader }{f}, fi.Size()), buf)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy from %s:%s: %w", c.Name, src, err)
	}
	return tw.Close()
}

// CopyIn extracts the tar r into the container: into dst when it is a
// directory; otherwise its top entry takes dst's name (unless mustBeDir, as
// for a tar on stdin, when that is an error).
func (s *Store) CopyIn(c *Container, r io.Reader, dst string, mustBeDir bool) error {
	cur, err := s.Load(c.ID)
	if err != nil {
		return err
	}
	if !cur.State.Running {
		return s.copyInStopped(cur, r, dst, mustBeDir)
	}
	root, err := s.containerRoot(c)
	if err != nil {
		return err
	}
	defer root.Close()
	return extractInto(root, r, dst, mustBeDir, c.Name)
}

// copyInStopped mounts the stopped container's overlay writable in a mount
// namespace of its own (a child process: see copyInChild) and extracts there,
// under the container's lock.
func (s *Store) copyInStopped(c *Container, r io.Reader, dst string, mustBeDir bool) error {
	unlock, err := s.LockContainer(c.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if cur, err := s.Load(c.ID); err != nil || cur.State.Running || cur.State.Restarting {
		return errdefs.Errorf(errdefs.ErrConflict, "%s started meanwhile: copy again", c.Name)
	}
	err = runMountChild(exportRequest{CopyIn: dst, Options: c.Rootfs.Options, MustBeDir: mustBeDir, Name: c.Name}, r, nil)
	if err != nil && strings.Contains(err.Error(), "Could not find the file") {
		return errdefs.Errorf(errdefs.ErrNotFound, "%s", err)
	}
	if err != nil {
		return fmt.Errorf("copy to %s: %w", c.Name, err)
	}
	return nil
}

// extractInto extracts the tar r under dst in root: into dst when it is a
// directory; otherwise its top entry takes dst's name (unless mustBeDir, as
// for a tar on stdin, when that is an error).
func extractInto(root *os.Root, r io.Reader, dst string, mustBeDir bool, cname string) error {
	dir := relIn(dst)
	rename := ""
	if fi, err := root.Stat(dir); err != nil || !fi.IsDir() {
		if mustBeDir {
			return errdefs.Errorf(errdefs.ErrNotFound, "Could not find the file %s in container %s", dst, cname)
		}
		if _, err := root.Stat(relIn(path.Dir(dir))); err != nil {
			return errdefs.Errorf(errdefs.ErrNotFound, "Could not find the file %s in container %s", path.Dir("/"+dir), cname)
		}
		rename = dir
	}
	return ExtractTar(root, r, dir, rename, true, "copy to "+cname+":"+dst)
}

// ExtractTar writes the entries of the tar r under dir in root (every write
// through root, so neither the archive nor what it finds there can send a
// file outside it). With rename, the archive's top entry takes that name
// instead. Regular files and links replace what is there; with chown the
// entries keep the archive's owners. what names the copy in errors.
func ExtractTar(root *os.Root, r io.Reader, dir, rename string, chown bool, what string) error {
	tr := tar.NewReader(r)
	buf := make([]byte, 256<<10)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		name := path.Clean(hdr.Name)
		if name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return errdefs.Errorf(errdefs.ErrInvalid, "%s: entry %q leaves its directory", what, hdr.Name)
		}
		target := path.Join(dir, name)
		if rename != "" {
			_, rest, _ := strings.Cut(name, "/")
			target = path.Join(rename, rest)
		}
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			// Replace what is there, never write through it: it may be a
			// link. A parent the archive did not list is made on demand.
			f, err := root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if errors.Is(err, fs.ErrExist) {
				root.Remove(target)
				f, err = root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			} else if errors.Is(err, fs.ErrNotExist) {
				if err := root.MkdirAll(path.Dir(target), 0o755); err != nil {
					return err
				}
				f, err = root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			}
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(f, tr, buf)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			root.Remove(target)
			if err := root.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			continue
		}
		if chown {
			root.Lchown(target, hdr.Uid, hdr.Gid)
		}
	}
}

// HostTar writes the host file or tree at src as a tar (for CopyIn).
func HostTar(src string, w io.Writer) error {
	tw := tar.NewWriter(w)
	base := filepath.Base(filepath.Clean(src))
	err := filepath.Walk(src, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		name := filepath.ToSlash(filepath.Join(base, rel))
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
		hdr.Uid, hdr.Gid = 0, 0 // as Docker: copied files belong to root
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, fi.Size())
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

// copyOutStopped copies out of a container that does not run: its file
// system is exported (a read-only overlay in a mount namespace of its own,
// see Export) and the entries under src are kept, renamed from src's last
// element. A path through a symbolic link is not followed here.
func (s *Store) copyOutStopped(c *Container, src string, w io.Writer) error {
	rel := relIn(src)
	base := path.Base(rel)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(s.Export(c.ID, pw)) }()
	defer pr.Close()
	tr := tar.NewReader(pr)
	tw := tar.NewWriter(w)
	found := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("copy from %s:%s: %w", c.Name, src, err)
		}
		name := strings.TrimSuffix(path.Clean(hdr.Name), "/")
		switch {
		case rel == ".":
			// the whole root: every entry, under "."
		case name == rel:
			name = base
		case strings.HasPrefix(name, rel+"/"):
			name = path.Join(base, strings.TrimPrefix(name, rel+"/"))
		default:
			continue
		}
		found = true
		if hdr.Typeflag == tar.TypeLink {
			continue // hard links name entries that may lie outside src
		}
		if hdr.Typeflag == tar.TypeDir {
			name += "/"
		}
		hdr.Name = name
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
	// The archive's end comes before the exporting child's: wait for it to
	// unmount and clean up (it is killed when this process exits).
	io.Copy(io.Discard, pr)
	if !found {
		return errdefs.Errorf(errdefs.ErrNotFound, "Could not find the file %s in container %s", src, c.Name)
	}
	return tw.Close()
}
