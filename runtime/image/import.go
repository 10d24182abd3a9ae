package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"

	"hako.dev/hako/runtime/errdefs"
)

// Import is `docker import`: the root filesystem tarball r (gzip, bzip2 or
// plain) becomes a one-layer image. changes are Dockerfile instructions applied
// to its config (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME,
// STOPSIGNAL); message is the commit message ("Imported from -" when empty).
// ref may be "" for an untagged image. It returns the new image ID.
func (s *Store) Import(r io.Reader, ref string, changes []string, message string) (id string, err error) {
	var norm string
	if ref != "" {
		if norm, err = NormalizeRef(ref); err != nil {
			return "", err
		}
		if isDigested(norm) {
			return "", errdefs.Errorf(errdefs.ErrInvalid, "refusing to create a tag with a digest reference")
		}
	}
	var cc ContainerConfig
	for _, c := range changes {
		if err := applyChange(&cc, c); err != nil {
			return "", err
		}
	}
	if message == "" {
		message = "Imported from -"
	}

	work, err := s.tempDir("import")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	layer, err := s.unpack(work, r, "")
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}

	now := time.Now().UTC()
	cfg := Config{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      now,
		Comment:      message,
		Config:       cc,
		RootFS:       RootFS{Type: "layers", DiffIDs: []string{layer.diffID}},
		History:      []History{{Created: now, Comment: message}},
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	img := &pendingImage{
		config: data,
		id:     "sha256:" + hex.EncodeToString(sum[:]),
		cfg:    cfg,
		layers: []*pendingLayer{{diffID: layer.diffID, unpacked: layer}},
	}
	if norm != "" {
		img.refs = []string{norm}
	}
	if _, err := s.install(work, []*pendingImage{img}); err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	return img.id, nil
}

// applyChange applies one Dockerfile instruction to c, as `docker import
// --change` and `docker commit --change` do.
func applyChange(c *ContainerConfig, line string) error {
	line = strings.TrimSpace(line)
	instr, rest := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		instr, rest = line[:i], strings.TrimSpace(line[i+1:])
	}
	instr = strings.ToUpper(instr)
	switch instr {
	case "CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL":
	default:
		return errdefs.Errorf(errdefs.ErrInvalid, "%s is not a valid change command", instr)
	}
	if rest == "" {
		return errdefs.Errorf(errdefs.ErrInvalid, "%s requires at least one argument", instr)
	}
	switch instr {
	case "CMD":
		c.Cmd = commandForm(rest)
	case "ENTRYPOINT":
		c.Entrypoint = commandForm(rest)
	case "ENV":
		pairs, err := keyValues(instr, rest, true)
		if err != nil {
			return err
		}
		for _, kv := range pairs {
			c.Env = setEnv(c.Env, kv[0], kv[1])
		}
	case "LABEL":
		pairs, err := keyValues(instr, rest, false)
		if err != nil {
			return err
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range pairs {
			c.Labels[kv[0]] = kv[1]
		}
	case "WORKDIR":
		w := rest
		if !path.IsAbs(w) {
			w = path.Join("/", c.WorkingDir, w)
		}
		c.WorkingDir = path.Clean(w)
	case "USER":
		c.User = rest
	case "STOPSIGNAL":
		c.StopSignal = rest
	case "EXPOSE":
		for _, p := range strings.Fields(rest) {
			ports, err := exposedPorts(p)
			if err != nil {
				return err
			}
			if c.ExposedPorts == nil {
				c.ExposedPorts = map[string]struct{}{}
			}
			for _, port := range ports {
				c.ExposedPorts[port] = struct{}{}
			}
		}
	case "VOLUME":
		vols := jsonArray(rest)
		if vols == nil {
			vols = strings.Fields(rest)
		}
		if c.Volumes == nil {
			c.Volumes = map[string]struct{}{}
		}
		for _, v := range vols {
			if v == "" {
				return errdefs.Errorf(errdefs.ErrInvalid, "VOLUME specified can not be an empty string")
			}
			c.Volumes[v] = struct{}{}
		}
	}
	return nil
}

// commandForm reads CMD/ENTRYPOINT arguments: a JSON array is the exec form;
// anything else is the shell form, run by /bin/sh -c.
func commandForm(s string) []string {
	if a := jsonArray(s); a != nil {
		return a
	}
	return []string{"/bin/sh", "-c", s}
}

func jsonArray(s string) []string {
	if !strings.HasPrefix(s, "[") {
		return nil
	}
	var a []string
	if json.Unmarshal([]byte(s), &a) != nil {
		return nil
	}
	if a == nil {
		a = []string{}
	}
	return a
}

// keyValues parses `k=v k2="v 2"`; for ENV the legacy form `k the value` is allowed too.
func keyValues(instr, s string, legacy bool) ([][2]string, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "%s: %v", instr, err)
	}
	if legacy && len(words) > 0 && !strings.Contains(words[0], "=") {
		// ENV key value: the value is the rest of the line, as written.
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "%s must have two arguments", instr)
		}
		return [][2]string{{s[:i], strings.TrimSpace(s[i+1:])}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, errdefs.Errorf(errdefs.ErrInvalid, "%s names can not be blank or lack '=': %q", instr, w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// splitWords splits on blanks, honouring single quotes, double quotes and backslashes.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func setEnv(env []string, key, value string) []string {
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = key + "=" + value
			return env
		}
	}
	return append(env, key+"="+value)
}

// exposedPorts expands "80", "53/udp" or "8000-8002/tcp" into Docker's keys ("80/tcp").
func exposedPorts(spec string) ([]string, error) {
	ports, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid proto: %s", proto)
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	start, err1 := strconv.ParseUint(lo, 10, 16)
	end := start
	var err2 error
	if isRange {
		end, err2 = strconv.ParseUint(hi, 10, 16)
	}
	if err1 != nil || err2 != nil || start == 0 || end < start {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid containerPort: %s", ports)
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}
