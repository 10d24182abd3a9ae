package image

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"hako.dev/hako/runtime/errdefs"
)

// DefaultServer is the key Docker stores Docker Hub's credentials under.
const DefaultServer = "https://index.docker.io/v1/"

// ServerKey is the key a registry's credentials are stored under, as Docker
// chooses it: Docker Hub (by any of its names, or none) is DefaultServer, any
// other registry its host[:port] ("http://localhost:5000/v2/" => "localhost:5000").
func ServerKey(server string) string {
	switch server {
	case "", DefaultServer, "docker.io", "index.docker.io", "registry-1.docker.io":
		return DefaultServer
	}
	h := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return DefaultServer
	}
	return h
}

// registryHost is where a server key's registry answers.
func registryHost(key string) string {
	if key == DefaultServer {
		return "registry-1.docker.io"
	}
	return key
}

// LoopbackServer reports a server on localhost, 127.0.0.0/8 or ::1.
func LoopbackServer(server string) bool {
	return loopbackRegistry(registryHost(ServerKey(server)))
}

// Login checks user and pass against server's registry the way Docker does:
// it pings /v2/, fetches a token if the registry asks for one, and asks for
// /v2/ again with the credentials. Nothing is stored. Plain HTTP is used for
// loopback registries, and for any when insecure.
func Login(ctx context.Context, server, user, pass string, insecure bool) error {
	host := registryHost(ServerKey(server))
	var opts []name.Option
	if insecure || plainHTTP(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return errdefs.Errorf(errdefs.ErrInvalid, "invalid registry %q: %v", server, err)
	}
	url := reg.Scheme() + "://" + reg.RegistryStr() + "/v2/"
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})
	rt, err := transport.NewWithContext(ctx, reg, auth, http.DefaultTransport, nil)
	if err != nil {
		return loginError(url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return loginError(url, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return loginError(url, err)
	}
	io.Copy(io.Discard, resp.Body)
	return nil
}

// loginError words a failed login as Docker does:
// `Get "http://127.0.0.1:5000/v2/": unauthorized: authentication required`.
func loginError(url string, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		if strings.Contains(err.Error(), url) {
			return err
		}
		return fmt.Errorf("Get %q: %w", url, err)
	}
	var msgs []string
	for _, d := range te.Errors {
		m := strings.ToLower(string(d.Code))
		if d.Message != "" {
			m += ": " + d.Message
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		switch te.StatusCode {
		case http.StatusUnauthorized:
			msgs = append(msgs, "unauthorized: incorrect username or password")
		default:
			msgs = append(msgs, fmt.Sprintf("unexpected status code %d %s", te.StatusCode, http.StatusText(te.StatusCode)))
		}
	}
	return fmt.Errorf("Get %q: %s", url, strings.Join(msgs, "; "))
}

// ConfigPath is Docker's client configuration file: $DOCKER_CONFIG/config.json,
// else ~/.docker/config.json.
func ConfigPath() (string, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cannot find the Docker configuration directory: %w", err)
		}
		dir = filepath.Join(home, ".docker")
	}
	return filepath.Join(dir, "config.json"), nil
}

// readConfig reads the configuration file as raw keys, so that what hako does
// not know survives a rewrite. A missing or empty file is an empty one.
func readConfig(path string) (map[string]json.RawMessage, map[string]json.RawMessage, error) {
	cfg := map[string]json.RawMessage{}
	auths := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, auths, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return cfg, auths, nil
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, nil, fmt.Errorf("loading config file: %s: %w", path, err)
	}
	if raw, ok := cfg["auths"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return nil, nil, fmt.Errorf("loading config file: %s: auths: %w", path, err)
		}
	}
	return cfg, auths, nil
}

// writeConfig replaces the file atomically, mode 0600, following a symbolic
// link to the file it names as Docker does.
func writeConfig(path string, cfg, auths map[string]json.RawMessage) error {
	a, err := json.Marshal(auths)
	if err != nil {
		return err
	}
	cfg["auths"] = a
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".config.json.*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type authEntry struct {
	Auth string `json:"auth,omitempty"`
}

// SaveCredentials stores user and pass for server in the configuration file,
// under "auths" as Docker does: {"auth": base64("user:pass")}.
func SaveCredentials(server, user, pass string) error {
	path, err := ConfigPath()
	if err != nil {
		return err
	}
	cfg, auths, err := readConfig(path)
	if err != nil {
		return err
	}
	e, err := json.Marshal(authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))})
	if err != nil {
		return err
	}
	auths[ServerKey(server)] = e
	return writeConfig(path, cfg, auths)
}

// StoredCredentials returns what the configuration file holds for server,
// looking also under the old keys "http://HOST" and "https://HOST".
func StoredCredentials(server string) (user, pass string, ok bool) {
	path, err := ConfigPath()
	if err != nil {
		return "", "", false
	}
	_, auths, err := readConfig(path)
	if err != nil {
		return "", "", false
	}
	for _, k := range serverKeys(server) {
		var e authEntry
		if raw, found := auths[k]; found && json.Unmarshal(raw, &e) == nil && e.Auth != "" {
			b, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				continue
			}
			if u, p, found := strings.Cut(string(b), ":"); found {
				return u, p, true
			}
		}
	}
	return "", "", false
}

// serverKeys are the keys server's credentials may be stored under.
func serverKeys(server string) []string {
	key := ServerKey(server)
	if key == DefaultServer {
		return []string{key}
	}
	keys := []string{key, "http://" + key, "https://" + key}
	if server != key && server != keys[1] && server != keys[2] {
		keys = append(keys, server)
	}
	return keys
}

// RemoveCredentials removes server's credentials from the configuration file,
// under every key Docker may have stored them. It reports whether there were
// any; a file without them is left untouched.
func RemoveCredentials(server string) (bool, error) {
	path, err := ConfigPath()
	if err != nil {
		return false, err
	}
	cfg, auths, err := readConfig(path)
	if err != nil {
		return false, err
	}
	removed := false
	for _, k := range serverKeys(server) {
		if _, ok := auths[k]; ok {
			delete(auths, k)
			removed = true
		}
	}
	if !removed {
		return false, nil
	}
	return true, writeConfig(path, cfg, auths)
}
