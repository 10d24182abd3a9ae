package oci

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CopyUpOption marks a mount of a named volume: if the volume is empty, it is
// first filled with what the image has at the target, as Docker does.
const CopyUpOption = "hako-copyup"

// devices are bind-mounted from the host into the container's /dev. The /dev
// tmpfs itself is nodev, so these are the only device files that open.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

var devLinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"},
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// setupRootfs builds the container's filesystem and pivots into it. It returns
// the terminal's slave side if the process wants a terminal.
func setupRootfs(c channel, cfg *InitConfig) (*os.File, error) {
	spec := cfg.Spec
	// Nothing mounted from here on may propagate back to the host, while the
	// host's unmounts still reach us.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return nil, fmt.Errorf("make / rslave: %w", err)
	}
	root := cfg.Rootfs
	if cfg.Overlay != nil {
		o := cfg.Overlay
		if err := unix.Mount(o.Source, root, o.Type, unix.MS_NODEV, strings.Join(o.Options, ",")); err != nil {
			return nil, fmt.Errorf("mount the container's root filesystem (overlay): %w", err)
		}
	} else if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		// pivot_root wants the new root to be a mount point.
		return nil, fmt.Errorf("bind-mount root %s: %w", root, err)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	defer unix.Close(rootfd)

	cgroup2 := isCgroup2("/sys/fs/cgroup")
	for _, m := range spec.Mounts {
		if err := mountInRoot(rootfd, m, cgroup2); err != nil {
			return nil, err
		}
		if m.Destination == "/dev" && m.Type == "tmpfs" {
			if err := populateDev(rootfd); err != nil {
				return nil, err
			}
		}
	}
	var slave *os.File
	if spec.Process.Terminal {
		ptmx, err := openInRoot(rootfd, "/dev/pts/ptmx", kindExisting)
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		slave, err = newConsole(c, procFD(ptmx), "")
		unix.Close(ptmx)
		if err != nil {
			return nil, err
		}
		console, err := openInRoot(rootfd, "/dev/console", kindFile)
		if err != nil {
			return nil, fmt.Errorf("/dev/console: %w", err)
		}
		err = unix.Mount(procFD(int(slave.Fd())), procFD(console), "", unix.MS_BIND, "")
		unix.Close(console)
		if err != nil {
			return nil, fmt.Errorf("bind /dev/console: %w", err)
		}
	}
	if err := pivotRoot(root); err != nil {
		return nil, err
	}
	if spec.Linux != nil {
		for _, p := range spec.Linux.MaskedPaths {
			if err := maskPath(p); err != nil {
				return nil, err
			}
		}
		for _, p := range spec.Linux.ReadonlyPaths {
			if err := readonlyPath(p); err != nil {
				return nil, err
			}
		}
	}
	if spec.Root.Readonly {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
			return nil, fmt.Errorf("make root read-only: %w", err)
		}
	}
	return slave, nil
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

func mountInRoot(rootfd int, m specs.Mount, cgroup2 bool) error {
	flags, prop, data := parseMountOptions(m.Options)
	typ := m.Type
	bind := flags&unix.MS_BIND != 0 || typ == "bind"
	if typ == "cgroup" || typ == "cgroup2" {
		if !cgroup2 {
			// On cgroup v1 the container sees /sys/fs/cgroup empty (sysfs's own
			// directory); hako does not expose v1 hierarchies inside.
			return nil
		}
		typ = "cgroup2"
		data = ""
	}
	kind := kindDir
	if bind {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("mount %s: source: %w", m.Destination, err)
		}
		if !fi.IsDir() {
			kind = kindFile
		}
	}
	target, err := openInRoot(rootfd, m.Destination, kind)
	if err != nil {
		return fmt.Errorf("mount %s: %w", m.Destination, err)
	}
	defer unix.Close(target)
	dst := procFD(target)
	if bind && contains(m.Options, CopyUpOption) && kind == kindDir {
		if err := copyUp(dst, m.Source); err != nil {
			return fmt.Errorf("fill volume for %s: %w", m.Destination, err)
		}
	}
	if bind {
		if err := unix.Mount(m.Source, dst, "", unix.MS_BIND|(flags&unix.MS_REC), ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s: %w", m.Source, m.Destination, err)
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			// Bind mounts take their flags on a second, remounting call. The
			// target fd is the covered directory: reopen the new mount.
			nt, err := openInRoot(rootfd, m.Destination, kindExisting)
			if err != nil {
				return err
			}
			defer unix.Close(nt)
			if err := unix.Mount("", procFD(nt), "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
				return fmt.Errorf("remount %s: %w", m.Destination, err)
			}
		}
	} else if err := unix.Mount(m.Source, dst, typ, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s): %w", m.Destination, typ, err)
	}
	if prop != 0 {
		nt, err := openInRoot(rootfd, m.Destination, kindExisting)
		if err != nil {
			return err
		}
		defer unix.Close(nt)
		if err := unix.Mount("", procFD(nt), "", prop, ""); err != nil {
			return fmt.Errorf("set propagation of %s: %w", m.Destination, err)
		}
	}
	return nil
}

func populateDev(rootfd int) error {
	dev, err := openInRoot(rootfd, "/dev", kindExisting)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, d := range devices {
		t, err := openInRoot(rootfd, "/dev/"+d, kindFile)
		if err != nil {
			return fmt.Errorf("/dev/%s: %w", d, err)
		}
		err = unix.Mount("/dev/"+d, procFD(t), "", unix.MS_BIND, "")
		unix.Close(t)
		if err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for _, l := range devLinks {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// newConsole opens a new pseudo-terminal from the container's own devpts
// instance, hands the master side to the host over the socket, and returns the
// slave side. consoleTarget, if set, gets the slave bind-mounted on it.
func newConsole(c channel, ptmxPath, consoleTarget string) (*os.File, error) {
	master, err := unix.Open(ptmxPath, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open ptmx: %w", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return nil, fmt.Errorf("unlock pty: %w", err)
	}
	// TIOCGPTPEER opens the slave of this very master, whatever is mounted
	// where: no path to race.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return nil, fmt.Errorf("open pty slave: %w", errno)
	}
	sfd := int(r)
	slave := os.NewFile(uintptr(sfd), "pty-slave")
	if err := c.send(reply{Type: "console"}, master); err != nil {
		slave.Close()
		return nil, fmt.Errorf("send terminal: %w", err)
	}
	return slave, nil
}

func pivotRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir to root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one; detaching
	// it leaves the container's root alone, with no path back to the host.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount old root: %w", err)
	}
	return unix.Chdir("/")
}

func maskPath(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("", p, "", flags, ""); err != nil {
		return fmt.Errorf("read-only %s: %w", p, err)
	}
	return nil
}

type pathKind int

const (
	kindExisting pathKind = iota // must exist
	kindDir                      // created as a directory if missing
	kindFile                     // created as an empty file if missing
)

// openInRoot opens path inside the directory rootfd as an O_PATH descriptor,
// never leaving it: symlinks are resolved as if rootfd were "/" (openat2's
// RESOLVE_IN_ROOT), and missing components are created one at a time under a
// descriptor of their resolved parent, so a symlink swapped in meanwhile cannot
// redirect the mount (the CVE-2021-30465 class).
func openInRoot(rootfd int, path string, kind pathKind) (int, error) {
	clean := strings.TrimPrefix(filepath.Clean("/"+path), "/")
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	if clean == "" {
		return unix.Openat2(rootfd, ".", how)
	}
	fd, err := unix.Openat2(rootfd, clean, how)
	if err == nil || kind == kindExisting || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parts := strings.Split(clean, "/")
	cur, err := unix.Openat2(rootfd, ".", how)
	if err != nil {
		return -1, err
	}
	for i, name := range parts {
		next, err := unix.Openat2(rootfd, strings.Join(parts[:i+1], "/"), how)
		if errors.Is(err, unix.ENOENT) {
			last := i == len(parts)-1
			if last && kind == kindFile {
				f, e := unix.Openat(cur, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
				if e == nil {
					unix.Close(f)
				} else if !errors.Is(e, unix.EEXIST) {
					unix.Close(cur)
					return -1, e
				}
			} else if e := unix.Mkdirat(cur, name, 0o755); e != nil && !errors.Is(e, unix.EEXIST) {
				unix.Close(cur)
				return -1, e
			}
			next, err = unix.Openat2(cur, name, &unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
			})
			if errors.Is(err, unix.ELOOP) {
				err = fmt.Errorf("%s is a symbolic link to a path that does not exist in the container", "/"+strings.Join(parts[:i+1], "/"))
			}
		}
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// copyUp copies the tree at src (the image's content at a mount target) into
// dst (a volume's directory) when dst is empty. Symbolic links are copied as
// links and never followed: src lies in the container's root, whose links
// would resolve against the host's root here, before pivot_root. Every write
// goes through an os.Root of dst, so even a link swapped into the volume by
// another container that shares it cannot lead a write out of it.
func copyUp(src, dst string) error {
	ents, err := os.ReadDir(dst)
	if err != nil || len(ents) > 0 {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	// src is a /proc/self/fd link to the directory: the trailing slash makes
	// the walk start inside it.
	src += "/"
	return filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		switch {
		case rel == ".":
			err = root.Chmod(".", fi.Mode().Perm())
		case fi.IsDir():
			err = root.Mkdir(rel, fi.Mode().Perm())
		case fi.Mode()&os.ModeSymlink != 0:
			var link string
			if link, err = os.Readlink(path); err == nil {
				err = root.Symlink(link, rel)
			}
		case fi.Mode().IsRegular():
			err = copyFileInto(root, path, rel, fi.Mode().Perm())
		default:
			return nil // devices, fifos, sockets: not copied
		}
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			root.Lchown(rel, int(st.Uid), int(st.Gid))
		}
		return nil
	})
}

func copyFileInto(root *os.Root, from, rel string, perm os.FileMode) error {
	in, err := os.OpenFile(from, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
