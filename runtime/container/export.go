package container

// `docker export`: a tar of a container's root filesystem as the container
// sees it (the image's layers plus the container's changes), for running and
// stopped containers alike.
//
// The CLI is a multithreaded Go process: it cannot unshare a mount namespace
// of its own. So Export re-executes the hako binary with a new mount namespace
// (CLONE_NEWNS) and the role EnvExport; ExportMain, in that child, mounts the
// container's overlay read-only on a temporary directory, using the
// container's upper directory as the topmost lowerdir (a read-only overlay
// needs no upper and no work directory), walks it and writes the tar to its
// stdout. overlayfs itself applies the whiteouts and opaque directories, so
// deleted files are simply not there. The mount is never visible on the host
// and vanishes with the child's namespace. The kernel filesystems a running
// container has (/proc, /sys, /dev) are mounts in the container's own
// namespace, so they are not in this view either.

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EnvExport marks the re-executed process that writes an export.
const EnvExport = "_HAKO_EXPORT"

// exportRequest is what the parent hands the child (as its only argument).
type exportRequest struct {
	// Lower are the overlay's lowerdirs, topmost first: the container's upper
	// directory, then the image's layers.
	Lower []string `json:"lower"`
	// CopyIn, if set, mounts the overlay writable (Options are the
	// container's own overlay options) and extracts the tar on stdin at
	// CopyIn instead of exporting.
	CopyIn    string   `json:"copyIn,omitempty"`
	Options   []string `json:"options,omitempty"`
	MustBeDir bool     `json:"mustBeDir,omitempty"`
	Name      string   `json:"name,omitempty"`
}

// exportLower returns the lowerdirs for a read-only view of the container's
// root: its upper directory on top of the image's layers.
func exportLower(c *Container) ([]string, error) {
	var lower []string
	var upper string
	for _, o := range c.Rootfs.Options {
		switch {
		case strings.HasPrefix(o, "lowerdir="):
			lower = strings.Split(strings.TrimPrefix(o, "lowerdir="), ":")
		case strings.HasPrefix(o, "upperdir="):
			upper = strings.TrimPrefix(o, "upperdir=")
		}
	}
	if c.Rootfs.Type != "overlay" || len(lower) == 0 {
		return nil, fmt.Errorf("container %s has no overlay root filesystem", c.ShortID())
	}
	if upper != "" {
		lower = append([]string{upper}, lower...)
	}
	return lower, nil
}

// Export writes a tar of the container's root filesystem to w.
func (s *Store) Export(id string, w io.Writer) error {
	c, err := s.Load(id)
	if err != nil {
		return err
	}
	lower, err := exportLower(c)
	if err != nil {
		return err
	}
	for _, d := range lower {
		if _, err := os.Stat(d); err != nil {
			return fmt.Errorf("export %s: %w", c.ShortID(), err)
		}
	}
	if err := runMountChild(exportRequest{Lower: lower}, nil, w); err != nil {
		return fmt.Errorf("export %s: %w", c.ShortID(), err)
	}
	return nil
}

// ExportMain runs the export child when the environment says so, and then
// exits; it returns false (at once) in any other process. Call it first
// thing in main, next to oci.Main.
func ExportMain() bool {
	if os.Getenv(EnvExport) != "1" {
		return false
	}
	os.Unsetenv(EnvExport)
	// A reader that stops early must not kill this child by SIGPIPE before
	// it unmounts and removes its mount point.
	signal.Ignore(unix.SIGPIPE)
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "export: bad arguments")
		os.Exit(2)
	}
	var req exportRequest
	if err := json.Unmarshal([]byte(os.Args[1]), &req); err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		os.Exit(2)
	}
	if req.CopyIn != "" {
		if err := copyInChild(req, os.Stdin); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if err := exportChild(req, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "export:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// exportChild runs in a fresh mount namespace: it mounts the read-only view
// and streams it as a tar to w.
func exportChild(req exportRequest, w io.Writer) error {
	// Nothing mounted here may propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / rprivate: %w", err)
	}
	if len(req.Lower) == 0 {
		return errors.New("no layers")
	}
	for _, l := range req.Lower {
		if l == "" || strings.ContainsAny(l, ":,") {
			return fmt.Errorf("bad layer path %q", l)
		}
	}
	mnt, err := os.MkdirTemp("", "hako-export-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	// Mount data is limited to a page: with many layers, name them relative
	// to their common parent directory, as other runtimes do.
	lower := req.Lower
	data := "lowerdir=" + strings.Join(lower, ":")
	if len(data) > 4000 {
		if parent := commonParent(lower); parent != "" && parent != "/" {
			if err := os.Chdir(parent); err != nil {
				return err
			}
			rel := make([]string, len(lower))
			for i, l := range lower {
				r, err := filepath.Rel(parent, l)
				if err != nil {
					return err
				}
				rel[i] = r
			}
			data = "lowerdir=" + strings.Join(rel, ":")
		}
	}
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, data); err != nil {
		return fmt.Errorf("mount the container's root filesystem: %w", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	return writeTree(w, mnt)
}

// commonParent is the longest directory that contains every path.
func commonParent(paths []string) string {
	p := filepath.Dir(paths[0])
	for _, q := range paths[1:] {
		for p != "/" && p != "." && !strings.HasPrefix(q, p+"/") {
			p = filepath.Dir(p)
		}
	}
	return p
}

type inodeKey struct{ dev, ino uint64 }

// writeTree writes the tree under root as a tar to w, entries named relative
// to root, as `docker export` names them. Symlinks are stored, never
// followed; hardlinks are stored once and linked after.
func writeTree(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	links := map[inodeKey]string{}
	// Files are opened through an os.Root: a running container may swap a
	// directory for a symlink meanwhile, and no read may follow it out.
	rt, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer rt.Close()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: time.Unix(st.Mtim.Unix()).Truncate(time.Second),
		}
		// Keep the file's capabilities, as image layers carry them.
		if v, err := getXattr(path, "security.capability"); err == nil && len(v) > 0 {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(v)}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case unix.S_IFLNK:
			hdr.Typeflag = tar.TypeSymlink
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			hdr.Linkname = target
		case unix.S_IFREG:
			key := inodeKey{uint64(st.Dev), st.Ino}
			if st.Nlink > 1 {
				if first, ok := links[key]; ok {
					hdr.Typeflag = tar.TypeLink
					hdr.Linkname = first
					hdr.PAXRecords = nil
					return tw.WriteHeader(hdr)
				}
				links[key] = rel
			}
			hdr.Typeflag = tar.TypeReg
			hdr.Size = st.Size
			f, err := rt.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			n, err := io.Copy(tw, io.LimitReader(f, st.Size))
			if err != nil {
				return err
			}
			if n < st.Size { // shrank meanwhile (a running container): pad
				if _, err := io.CopyN(tw, zeroReader{}, st.Size-n); err != nil {
					return err
				}
			}
			return nil
		case unix.S_IFCHR:
			hdr.Typeflag = tar.TypeChar
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
		case unix.S_IFBLK:
			hdr.Typeflag = tar.TypeBlock
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
		case unix.S_IFIFO:
			hdr.Typeflag = tar.TypeFifo
		default: // sockets are not archived, as tar does
			return nil
		}
		return tw.WriteHeader(hdr)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if err == unix.ERANGE {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// copyInChild runs in a fresh mount namespace: it mounts the container's
// overlay writable (the container does not run) and extracts r at
// req.CopyIn, every write confined by an os.Root of the mount.
func copyInChild(req exportRequest, r io.Reader) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / rprivate: %w", err)
	}
	for _, o := range req.Options {
		if strings.Contains(o, ",") {
			return fmt.Errorf("bad overlay option %q", o)
		}
	}
	mnt, err := os.MkdirTemp("", "hako-cp-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_NODEV|unix.MS_NOSUID, strings.Join(req.Options, ",")); err != nil {
		return fmt.Errorf("mount the container's root filesystem: %w", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	root, err := os.OpenRoot(mnt)
	if err != nil {
		return err
	}
	defer root.Close()
	return extractInto(root, r, req.CopyIn, req.MustBeDir, req.Name)
}

// runMountChild runs the hako binary again as the export child (a mount
// namespace of its own, killed if this process dies) with req, and returns
// the child's own one-line error when it fails.
func runMountChild(req exportRequest, stdin io.Reader, stdout io.Writer) error {
	arg, err := json.Marshal(req)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	var stderr bytes.Buffer
	cmd := &exec.Cmd{
		Path:        exe,
		Args:        []string{"hako-export", string(arg)},
		Env:         []string{EnvExport + "=1"},
		Stdin:       stdin,
		Stdout:      stdout,
		Stderr:      &stderr,
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL},
	}
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return err
	}
	return nil
}
