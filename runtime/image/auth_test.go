package image

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServerKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                              DefaultServer,
		"docker.io":                     DefaultServer,
		"index.docker.io":               DefaultServer,
		"https://index.docker.io/v1/":   DefaultServer,
		"https://registry-1.docker.io/": DefaultServer,
		"localhost:5000":                "localhost:5000",
		"http://localhost:5000/v2/":     "localhost:5000",
		"https://ghcr.io":               "ghcr.io",
	} {
		if got := ServerKey(in); got != want {
			t.Errorf("ServerKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(`{"auths":{"https://ghcr.io":{"auth":"eDp5"}},"psFormat":"{{.ID}}"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SaveCredentials("http://localhost:5000/", "bob", "pa:ss"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	var cfg struct {
		Auths    map[string]map[string]string `json:"auths"`
		PsFormat string                       `json:"psFormat"`
	}
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.PsFormat != "{{.ID}}" || cfg.Auths["https://ghcr.io"]["auth"] != "eDp5" {
		t.Errorf("other keys lost: %s", b)
	}
	if got := cfg.Auths["localhost:5000"]["auth"]; got != "Ym9iOnBhOnNz" {
		t.Errorf("auth = %q, want base64 of bob:pa:ss", got)
	}
	if u, p, ok := StoredCredentials("localhost:5000"); !ok || u != "bob" || p != "pa:ss" {
		t.Errorf("StoredCredentials = %q %q %v", u, p, ok)
	}
	// The old https:// form is found and removed too.
	if ok, err := RemoveCredentials("localhost:5000"); err != nil || !ok {
		t.Fatalf("RemoveCredentials = %v, %v", ok, err)
	}
	if ok, err := RemoveCredentials("ghcr.io"); err != nil || !ok {
		t.Fatalf("RemoveCredentials(ghcr.io) = %v, %v", ok, err)
	}
	if ok, err := RemoveCredentials("localhost:5000"); err != nil || ok {
		t.Fatalf("second RemoveCredentials = %v, %v", ok, err)
	}
	b, _ = os.ReadFile(path)
	if strings.Contains(string(b), "auth\"") || !strings.Contains(string(b), "psFormat") {
		t.Errorf("after logout: %s", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestCredentialsFollowSymlink(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	real := filepath.Join(dir, "real.json")
	os.WriteFile(real, []byte(`{}`), 0o600)
	os.Symlink(real, filepath.Join(dir, "config.json"))
	if err := SaveCredentials("localhost:5000", "a", "b"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "config.json")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced")
	}
	if b, _ := os.ReadFile(real); !strings.Contains(string(b), "YTpi") {
		t.Errorf("target not written: %s", b)
	}
}

func TestLoginBasic(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == "bob" && p == "pw" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`))
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	if err := Login(ctx, host, "bob", "pw", false); err != nil {
		t.Fatalf("good login: %v", err)
	}
	err := Login(ctx, host, "bob", "nope", false)
	want := `Get "http://` + host + `/v2/": unauthorized: authentication required`
	if err == nil || err.Error() != want {
		t.Fatalf("bad login: %v, want %s", err, want)
	}
}

func TestLoginBearer(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/token":
			if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "pw" {
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"details":"incorrect username or password"}`))
				return
			}
			w.Write([]byte(`{"token":"tok"}`))
		case "/v2/":
			if r.Header.Get("Authorization") == "Bearer tok" {
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token",service="test"`)
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if err := Login(context.Background(), "http://"+host, "bob", "pw", false); err != nil {
		t.Fatalf("good login: %v", err)
	}
	err := Login(context.Background(), host, "bob", "nope", false)
	if err == nil || !strings.Contains(err.Error(), `Get "http://`+host+`/v2/": unauthorized`) {
		t.Fatalf("bad login: %v", err)
	}
	t.Log(err)
}
