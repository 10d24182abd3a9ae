package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
)

// Whiteout markers in a layer tar (the AUFS convention Docker layers use).
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	// opaqueXattr marks an overlayfs directory whose lower contents are hidden.
	opaqueXattr = "trusted.overlay.opaque"
)

// errTooLarge is returned when a layer or archive goes over Store.MaxLayerSize.
var errTooLarge = errors.New("exceeds the size limit")

// limitReader fails, instead of stopping quietly, once more than max bytes
// were read: a gzip bomb becomes an error, not a truncated layer.
type limitReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n > l.max {
		return 0, fmt.Errorf("uncompressed data %w of %d bytes: %w", errTooLarge, l.max, errdefs.ErrInvalid)
	}
	if rem := l.max - l.n + 1; rem > 0 && int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return n, fmt.Errorf("uncompressed data %w of %d bytes: %w", errTooLarge, l.max, errdefs.ErrInvalid)
	}
	return n, err
}

// decompress looks at the first bytes of r and undoes gzip or bzip2; anything
// else is returned as is (a plain tar). The caller closes the result.
func decompress(r io.Reader) (io.ReadCloser, error) {
	zr, _, err := decompressKind(r)
	return zr, err
}

// copyBufSize is the buffer of the copies that move layer and file data.
const copyBufSize = 1 << 20

// decompressKind is decompress that also reports whether the data was
// compressed (false: the result reads r's bytes unchanged).
func decompressKind(r io.Reader) (io.ReadCloser, bool, error) {
	br := bufio.NewReaderSize(r, copyBufSize)
	magic, _ := br.Peek(10)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, true, fmt.Errorf("gzip: %w", err)
		}
		return zr, true, nil
	case len(magic) == 10 && bytes.HasPrefix(magic, []byte("BZh")) && magic[3] >= '1' && magic[3] <= '9' &&
		bytes.Equal(magic[4:], []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}):
		return io.NopCloser(bzip2.NewReader(br)), true, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, true, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), true, nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return nil, true, fmt.Errorf("xz-compressed data: %w", errdefs.ErrUnsupported)
	}
	return io.NopCloser(br), false, nil
}

// cleanName turns a tar entry name into a slash-separated path relative to the
// layer root, as Docker does: a leading "/" is dropped, "a/../b" becomes "b",
// and a name that climbs above the root is an error.
func cleanName(name string) (string, error) {
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("%q escapes the layer: %w", name, errdefs.ErrInvalid)
	}
	p = strings.TrimLeft(p, "/")
	if p == "" {
		p = "."
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%q: NUL in name: %w", name, errdefs.ErrInvalid)
	}
	return p, nil
}

// unpacker applies one layer tar onto an empty directory. Every path is
// resolved from the directory's descriptor one component at a time with
// O_NOFOLLOW, and every change is made with a *at system call relative to the
// parent's descriptor, so no symlink is ever followed, not even one the layer
// itself planted.
type unpacker struct {
	root   int      // the layer directory, opened O_RDONLY|O_DIRECTORY
	rootFS *os.Root // the same directory, for RemoveAll
	isRoot bool     // device nodes and chown need root
	size   int64
	dirs   []dirTime
	buf    []byte // for copying file data

	// The parent directory of the previous entry, kept open because most
	// entries share their parent with the one before. It is dropped whenever
	// anything is removed, so it always is what walking the path would give.
	cacheRel string
	cacheFd  int // -1 when nothing is cached
}

type dirTime struct {
	rel   string
	times [2]unix.Timespec
}

// applyLayer unpacks the uncompressed layer tar r into dst, an existing empty
// directory, and returns the sum of its regular files' sizes. At most max bytes
// are read from r. r is read to its end, so a caller hashing r sees the whole
// stream. On error dst holds a partial layer: the caller throws dst away.
func applyLayer(dst string, r io.Reader, max int64) (size int64, err error) {
	lr := &limitReader{r: r, max: max}
	fd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open layer dir: %w", err)
	}
	defer unix.Close(fd)
	rootFS, err := os.OpenRoot(dst)
	if err != nil {
		return 0, err
	}
	defer rootFS.Close()
	u := &unpacker{root: fd, rootFS: rootFS, isRoot: os.Geteuid() == 0, buf: make([]byte, copyBufSize), cacheFd: -1}
	defer u.dropCache()

	tr := tar.NewReader(lr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read layer: %w", err)
		}
		if err := u.apply(hdr, tr); err != nil {
			return 0, err
		}
	}
	// Directory times last: creating entries inside a directory changes its mtime.
	for _, d := range u.dirs {
		if err := u.setTimes(d.rel, d.times); err != nil {
			return 0, err
		}
	}
	// The tar may be padded past its end marker; the digest covers the padding.
	if _, err := io.CopyBuffer(io.Discard, onlyReader{lr}, u.buf); err != nil {
		return 0, fmt.Errorf("read layer: %w", err)
	}
	return u.size, nil
}

func (u *unpacker) apply(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide PAX records, not a file
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := path.Split(rel)
	dir = path.Clean(dir) // "" becomes "."

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(rel, dir, base)
	}

	parent, err := u.parentDir(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	if rel == "." {
		base = "."
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%q: the layer root must be a directory: %w", hdr.Name, errdefs.ErrInvalid)
		}
	}

	mode := uint32(hdr.Mode) & 0o7777
	if hdr.Typeflag == tar.TypeReg && rel != "." {
		// Most regular files are new: try to create first, and only look at
		// what is there when something is.
		ffd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			return u.regular(ffd, parent, base, rel, hdr, r, mode)
		}
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}

	// An entry replaces whatever an earlier entry of this layer put there,
	// except that a directory over a directory merges.
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if !(hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			if err := u.remove(rel, parent, base, st.Mode); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	if u.cacheFd < 0 {
		// remove dropped the cached parent: open it again.
		if parent, err = u.parentDir(dir); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if rel != "." {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		}
		dfd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		err = u.fileMeta(dfd, hdr, mode)
		unix.Close(dfd)
		if err != nil {
			return err
		}
		u.dirs = append(u.dirs, dirTime{rel: rel, times: tarTimes(hdr)})
		return nil

	case tar.TypeReg: // the reader turns the legacy TypeRegA into TypeReg
		ffd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		return u.regular(ffd, parent, base, rel, hdr, r, mode)

	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return fmt.Errorf("%s: empty symlink target: %w", hdr.Name, errdefs.ErrInvalid)
		}
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if err := u.chown(parent, base, hdr); err != nil {
			return err
		}

	case tar.TypeLink:
		return u.hardlink(hdr, parent, base)

	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		kind := map[byte]uint32{tar.TypeFifo: unix.S_IFIFO, tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK}[hdr.Typeflag]
		if kind != unix.S_IFIFO && !u.isRoot {
			return nil // device nodes need CAP_MKNOD; skip them, as rootless Docker does
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(parent, base, kind|mode, int(dev)); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if err := u.chown(parent, base, hdr); err != nil {
			return err
		}
		// mknod applied the umask; set the exact mode. The node was just
		// created by us, so it is not a symlink and chmod cannot be redirected.
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}

	default:
		return fmt.Errorf("%s: unsupported tar entry type %q: %w", hdr.Name, hdr.Typeflag, errdefs.ErrInvalid)
	}
	return u.setTimesAt(parent, base, tarTimes(hdr), hdr.Name)
}

// regular fills the regular file just created as ffd, and sets its metadata.
func (u *unpacker) regular(ffd, parent int, base, rel string, hdr *tar.Header, r io.Reader, mode uint32) error {
	f := os.NewFile(uintptr(ffd), rel)
	n, err := io.CopyBuffer(onlyWriter{f}, onlyReader{r}, u.buf)
	if err == nil {
		err = u.fileMeta(ffd, hdr, mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	u.size += n
	return u.setTimesAt(parent, base, tarTimes(hdr), hdr.Name)
}

// onlyReader and onlyWriter hide ReadFrom and WriteTo, so that
// io.CopyBuffer uses the buffer it is given.
type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

// parentDir is openDir(rel, true) through the one-entry cache: the caller
// must not close the descriptor, valid until the next parentDir or remove.
func (u *unpacker) parentDir(rel string) (int, error) {
	if u.cacheFd >= 0 && u.cacheRel == rel {
		return u.cacheFd, nil
	}
	u.dropCache()
	fd, err := u.openDir(rel, true)
	if err != nil {
		return -1, err
	}
	u.cacheRel, u.cacheFd = rel, fd
	return fd, nil
}

func (u *unpacker) dropCache() {
	if u.cacheFd >= 0 {
		unix.Close(u.cacheFd)
		u.cacheFd = -1
	}
}

// whiteout turns an AUFS marker into its overlayfs form.
func (u *unpacker) whiteout(rel, dir, base string) error {
	if base == whiteoutOpaque {
		dfd, err := u.openDir(dir, true)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		defer unix.Close(dfd)
		// openDir returns an O_PATH descriptor; xattrs need a real one.
		fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		defer unix.Close(fd)
		if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("%s: mark opaque: %w", rel, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return fmt.Errorf("%q: unknown whiteout marker: %w", rel, errdefs.ErrInvalid)
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("%q: bad whiteout: %w", rel, errdefs.ErrInvalid)
	}
	parent, err := u.openDir(dir, true)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(parent)
	target := path.Join(dir, name)
	u.dropCache()
	var st unix.Stat_t
	if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if err := u.remove(target, parent, name, st.Mode); err != nil {
			return err
		}
	}
	// overlayfs whiteout: a character device with device number 0:0.
	if err := unix.Mknodat(parent, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("%s: create whiteout: %w", rel, err)
	}
	return nil
}

// hardlink links base to an earlier entry of the same layer. The target is
// resolved like any other path, so it cannot be outside the layer nor reached
// through a symlink.
func (u *unpacker) hardlink(hdr *tar.Header, parent int, base string) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("%s: link target: %w", hdr.Name, err)
	}
	if target == "." {
		return fmt.Errorf("%s: hard link to the layer root: %w", hdr.Name, errdefs.ErrInvalid)
	}
	tdir, tbase := path.Split(target)
	tparent, err := u.openDir(path.Clean("./"+tdir), false)
	if err != nil {
		return fmt.Errorf("%s: link target %q: %w", hdr.Name, hdr.Linkname, err)
	}
	defer unix.Close(tparent)
	var st unix.Stat_t
	if err := unix.Fstatat(tparent, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: link target %q: %w", hdr.Name, hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%s: hard link to a directory: %w", hdr.Name, errdefs.ErrInvalid)
	}
	// Flags 0: if the target is a symlink, link the symlink itself.
	if err := unix.Linkat(tparent, tbase, parent, base, 0); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	return nil
}

// openDir opens the directory rel beneath the root, one component at a time
// and never through a symlink, creating missing components (mode 0755, as
// Docker does for parents a tar leaves out) when create is set. It returns an
// O_PATH descriptor for use as the dirfd of *at calls.
func (u *unpacker) openDir(rel string, create bool) (int, error) {
	fd, err := unix.Openat(u.root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return fd, nil
	}
	comps := strings.Split(rel, "/")
	for i, c := range comps {
		next, err := unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			return -1, fmt.Errorf("%s is not a directory (symlinks are not followed): %w", strings.Join(comps[:i+1], "/"), errdefs.ErrInvalid)
		}
		if err != nil {
			return -1, fmt.Errorf("%s: %w", strings.Join(comps[:i+1], "/"), err)
		}
		fd = next
	}
	return fd, nil
}

// remove deletes an earlier entry at parent/base (rel from the root).
func (u *unpacker) remove(rel string, parent int, base string, mode uint32) error {
	if base == "." {
		return fmt.Errorf("cannot replace the layer root: %w", errdefs.ErrInvalid)
	}
	// What a cached path resolves to may change: walk again next time
	// (parent itself stays open until this returns).
	defer u.dropCache()
	if mode&unix.S_IFMT == unix.S_IFDIR {
		// os.Root confines RemoveAll to the layer; rel's parents were checked to be real directories.
		if err := u.rootFS.RemoveAll(rel); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	}
	if err := unix.Unlinkat(parent, base, 0); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// fileMeta sets owner, mode and xattrs on an open file or directory. Owner
// first: chown clears the setuid and setgid bits.
func (u *unpacker) fileMeta(fd int, hdr *tar.Header, mode uint32) error {
	if u.isRoot {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		// Only file capabilities and user attributes: trusted.overlay.* from a
		// layer would steer overlayfs, security.selinux is the host's business.
		if name != "security.capability" && !strings.HasPrefix(name, "user.") {
			continue
		}
		_ = unix.Fsetxattr(fd, name, []byte(v), 0) // best effort: the filesystem may not support it
	}
	return nil
}

func (u *unpacker) chown(parent int, base string, hdr *tar.Header) error {
	if !u.isRoot {
		return nil
	}
	if err := unix.Fchownat(parent, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	return nil
}

// setTimes sets a directory's times at the end of the layer. A later entry
// may have replaced or removed it; then there is nothing to do.
func (u *unpacker) setTimes(rel string, ts [2]unix.Timespec) error {
	dir, base := path.Split(rel)
	if rel == "." {
		dir, base = ".", "."
	}
	parent, err := u.openDir(path.Clean("./"+dir), false)
	if err != nil {
		return nil
	}
	defer unix.Close(parent)
	err = unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: set times: %w", rel, err)
	}
	return nil
}

func (u *unpacker) setTimesAt(parent int, base string, ts [2]unix.Timespec, name string) error {
	if err := unix.UtimesNanoAt(parent, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: set times: %w", name, err)
	}
	return nil
}

func tarTimes(hdr *tar.Header) [2]unix.Timespec {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	return [2]unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return unix.NsecToTimespec(t.UnixNano())
}
