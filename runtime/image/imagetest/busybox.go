// Package imagetest builds small images offline, for tests and demos: a
// busybox image made from Debian's busybox-static, written as `docker save`
// would write it. Its output is deterministic (fixed times, sorted entries),
// so the image ID is stable for a given busybox binary.
package imagetest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// Epoch is the time stamped on every file and on the image config.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// busyboxPaths are where Debian's busybox-static installs the binary.
var busyboxPaths = []string{"/bin/busybox", "/usr/bin/busybox"}

// BusyboxPath finds a statically linked busybox on this machine.
func BusyboxPath() (string, error) {
	for _, p := range busyboxPaths {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p, nil
		}
	}
	return "", fmt.Errorf("no static busybox in %s (install Debian's busybox-static)", strings.Join(busyboxPaths, " or "))
}

// File is one entry of a layer built by Layer.
type File struct {
	Name     string
	Mode     int64 // permission bits, plus tar's setuid/setgid/sticky bits
	Type     byte  // tar.TypeReg when zero
	Body     []byte
	Linkname string
	Uid, Gid int
}

// Layer writes files as a deterministic uncompressed tar.
func Layer(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{
			Typeflag: typ, Name: f.Name, Mode: f.Mode, Linkname: f.Linkname,
			Uid: f.Uid, Gid: f.Gid, ModTime: Epoch,
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(f.Body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"app:x:1000:1000:app:/home/app:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\n" +
		"app:x:1000:\n" +
		"nogroup:x:65534:\n"
	// DefaultPath is the PATH the image's config sets, as Docker's images do.
	DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// BusyboxLayer is the root filesystem of the busybox image as a tar.
func BusyboxLayer() ([]byte, error) {
	bin, err := BusyboxPath()
	if err != nil {
		return nil, err
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", bin, err)
	}
	applets := map[string]bool{"sh": true}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets[a] = true
		}
	}
	names := make([]string, 0, len(applets))
	for a := range applets {
		names = append(names, a)
	}
	sort.Strings(names)

	dir := func(name string, mode int64) File { return File{Name: name, Mode: mode, Type: tar.TypeDir} }
	files := []File{
		dir("bin/", 0o755),
		{Name: "bin/busybox", Mode: 0o755, Body: body},
	}
	for _, a := range names {
		files = append(files, File{Name: "bin/" + a, Mode: 0o777, Type: tar.TypeSymlink, Linkname: "busybox"})
	}
	files = append(files,
		dir("dev/", 0o755),
		dir("etc/", 0o755),
		File{Name: "etc/group", Mode: 0o644, Body: []byte(group)},
		File{Name: "etc/passwd", Mode: 0o644, Body: []byte(passwd)},
		dir("home/", 0o755),
		File{Name: "home/app/", Mode: 0o755, Type: tar.TypeDir, Uid: 1000, Gid: 1000},
		dir("proc/", 0o555),
		dir("root/", 0o700),
		dir("sys/", 0o555),
		dir("tmp/", 0o1777),
		dir("usr/", 0o755),
		dir("var/", 0o755),
	)
	return Layer(files)
}

// WriteBusybox writes a docker-archive (manifest.json, the config, one
// <id>/layer.tar) of a busybox image. ref (e.g. "busybox:latest") becomes its
// RepoTags; "" leaves it untagged.
func WriteBusybox(w io.Writer, ref string) error {
	layer, err := BusyboxLayer()
	if err != nil {
		return err
	}
	return WriteArchive(w, ref, [][]byte{layer}, []string{"sh"}, []string{DefaultPath})
}

// WriteArchive writes a docker-archive of an image made of the given
// uncompressed layer tars, base first, with cmd and env in its config.
func WriteArchive(w io.Writer, ref string, layers [][]byte, cmd, env []string) error {
	return writeArchive(w, ref, layers, imageConfig{Cmd: cmd, Env: env})
}

// imageConfig is the part of an image's config the fixtures set.
type imageConfig struct {
	Env          []string            `json:"Env"`
	Cmd          []string            `json:"Cmd"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
}

func writeArchive(w io.Writer, ref string, layers [][]byte, ic imageConfig) error {
	var tags []string
	if ref != "" {
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return fmt.Errorf("reference %q: %w", ref, err)
		}
		tags = []string{reference.FamiliarString(reference.TagNameOnly(named))}
	}
	type history struct {
		Created   time.Time `json:"created"`
		CreatedBy string    `json:"created_by"`
	}
	config := struct {
		Architecture string      `json:"architecture"`
		OS           string      `json:"os"`
		Created      time.Time   `json:"created"`
		Config       imageConfig `json:"config"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []history `json:"history"`
	}{Architecture: runtime.GOARCH, OS: "linux", Created: Epoch}
	config.Config = ic
	config.RootFS.Type = "layers"
	var layerNames []string
	for i, l := range layers {
		sum := sha256.Sum256(l)
		h := hex.EncodeToString(sum[:])
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, "sha256:"+h)
		config.History = append(config.History, history{Created: Epoch, CreatedBy: fmt.Sprintf("hako-mkfixture layer %d", i)})
		layerNames = append(layerNames, h+"/layer.tar")
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(sum[:]) + ".json"
	manifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: cfgName, RepoTags: tags, Layers: layerNames}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: Epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for i, l := range layers {
		dir := strings.TrimSuffix(layerNames[i], "layer.tar")
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: Epoch}); err != nil {
			return err
		}
		if err := put(layerNames[i], l); err != nil {
			return err
		}
	}
	if err := put(cfgName, cfg); err != nil {
		return err
	}
	if err := put("manifest.json", manifest); err != nil {
		return err
	}
	return tw.Close()
}
