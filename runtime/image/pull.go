package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"hako.dev/hako/runtime/errdefs"
)

// PullOptions tunes Store.Pull.
type PullOptions struct {
	// Platform is "os/arch[/variant]" picked from a manifest list; empty
	// means linux/GOARCH.
	Platform string
	// Insecure allows plain HTTP (and unverified TLS) to any registry; it is
	// always allowed for localhost and 127.0.0.0/8, as Docker does.
	Insecure bool
	// Progress, when set, receives Docker's plain progress lines.
	Progress io.Writer
	// Transport, when set, replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// LayerBytes, when set, hears how many bytes of each layer (by its short
	// digest) have arrived, out of total, as they arrive.
	LayerBytes func(short string, done, total int64)
	// Offline refuses every registry but loopback ones: a classroom without
	// internet, and the tests (HAKO_OFFLINE=1 sets it for the CLI).
	Offline bool
}

// Pull is `docker pull`: it fetches ref's manifest from its registry (picking
// the platform from a manifest list), unpacks every layer the store lacks
// through the same staging code as Load, checks each against the config's
// diff_ids, and commits the config and the tag in one step under the lock. A
// pull killed at any point leaves at worst unreferenced files in tmp/.
func (s *Store) Pull(ctx context.Context, ref string, opt PullOptions) (string, error) {
	norm, err := NormalizeRef(ref)
	if err != nil {
		return "", err
	}
	familiar := FamiliarRef(norm)
	r, err := remoteRef(norm, opt.Insecure)
	if err != nil {
		return "", err
	}
	if opt.Offline && !loopbackRegistry(norm) {
		return "", errdefs.Errorf(errdefs.ErrNotFound, "offline (HAKO_OFFLINE is set): not pulling %s from %s; load it with `hako load -i FILE`", familiar, r.Context().RegistryStr())
	}
	plat := opt.Platform
	if plat == "" {
		plat = "linux/" + runtime.GOARCH
	}
	p, err := v1.ParsePlatform(plat)
	if err != nil {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "invalid platform %q: %v", plat, err)
	}
	progress := opt.Progress
	if progress == nil {
		progress = io.Discard
	}
	opts := remoteOptions(ctx, opt.Transport)
	opts = append(opts, remote.WithPlatform(*p))

	desc, err := remote.Get(r, opts...)
	if err != nil {
		return "", pullError(familiar, err)
	}
	fmt.Fprintf(progress, "%s: Pulling from %s\n", r.Identifier(), repoPath(norm))
	img, err := desc.Image()
	if err != nil {
		if strings.Contains(err.Error(), "no child with platform") {
			return "", errdefs.Errorf(errdefs.ErrNotFound, "no matching manifest for %s in the manifest list entries", p)
		}
		return "", pullError(familiar, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return "", pullError(familiar, err)
	}
	if len(raw) > maxJSON {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "image config too large")
	}
	sum := sha256.Sum256(raw)
	pi := &pendingImage{config: raw, id: "sha256:" + hex.EncodeToString(sum[:])}
	if cn, err := img.ConfigName(); err != nil || cn.String() != pi.id {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "image config has digest %s, manifest says %v", pi.id, cn)
	}
	if err := json.Unmarshal(raw, &pi.cfg); err != nil {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "image config: %v", err)
	}
	if t := pi.cfg.RootFS.Type; t != "layers" {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "image config rootfs type %q", t)
	}
	chains, err := chainIDs(pi.cfg.RootFS.DiffIDs)
	if err != nil {
		return "", err
	}
	if !isDigested(norm) {
		pi.refs = []string{norm}
	}
	done := func(status string) (string, error) {
		fmt.Fprintf(progress, "Digest: %s\n", desc.Digest)
		fmt.Fprintf(progress, "Status: %s for %s\n", status, familiar)
		return pi.id, nil
	}

	// Already there under this name: nothing to fetch.
	if idx, err := s.readIndex(); err == nil && idx.Images[pi.id] != nil && (isDigested(norm) || idx.Repositories[norm] == pi.id) && s.hasLayers(chains) {
		return done("Image is up to date")
	}

	layers, err := img.Layers()
	if err != nil {
		return "", pullError(familiar, err)
	}
	if len(layers) != len(chains) {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "manifest has %d layers for %d diff_ids", len(layers), len(chains))
	}
	shorts := make([]string, len(layers))
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return "", pullError(familiar, err)
		}
		shorts[i] = shortHex(d.String())
		l := l
		pi.layers = append(pi.layers, &pendingLayer{
			diffID: pi.cfg.RootFS.DiffIDs[i],
			// The compressed stream (digest-checked by the registry client);
			// unpack decompresses gzip or zstd itself, with faster decoders.
			open: func() (io.ReadCloser, error) {
				rc, err := l.Compressed()
				if err != nil || opt.LayerBytes == nil {
					return rc, err
				}
				size, _ := l.Size()
				return &countingReader{ReadCloser: rc, short: shorts[i], total: size, report: opt.LayerBytes}, nil
			},
		})
	}
	work, err := s.tempDir("pull")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	var fetch []int
	for i := range layers {
		if exists(s.layerPath(chains[i][len("sha256:"):])) {
			fmt.Fprintf(progress, "%s: Already exists\n", shorts[i])
			continue
		}
		fmt.Fprintf(progress, "%s: Pulling fs layer\n", shorts[i])
		fetch = append(fetch, i)
	}
	// Layers are fetched and unpacked three at a time (Docker's default
	// max-concurrent-downloads), each into a staging directory of its own.
	seen := map[string]bool{}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		slots    = make(chan struct{}, 3)
	)
	for _, i := range fetch {
		if seen[chains[i]] { // the same layer twice in one image
			continue
		}
		seen[chains[i]] = true
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			mu.Lock()
			stop := firstErr != nil
			mu.Unlock()
			if stop {
				return
			}
			err := ctx.Err()
			if err == nil {
				err = s.unpackPending(work, pi.layers[i])
				if err != nil {
					err = pullError(familiar, fmt.Errorf("layer %s: %w", shorts[i], err))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			fmt.Fprintf(progress, "%s: Pull complete\n", shorts[i])
		}(i)
	}
	wg.Wait()
	if firstErr != nil {
		return "", firstErr
	}
	// install unpacks whatever vanished meanwhile, then commits under the lock.
	if _, err := s.install(work, []*pendingImage{pi}); err != nil {
		return "", pullError(familiar, err)
	}
	return done("Downloaded newer image")
}

func (s *Store) hasLayers(chains []string) bool {
	for _, c := range chains {
		if !exists(s.layerPath(c[len("sha256:"):])) {
			return false
		}
	}
	return true
}

// remoteRef parses a normalized reference for go-containerregistry, allowing
// plain HTTP for loopback registries (and any when insecure).
func remoteRef(norm string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure || plainHTTP(norm) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(norm, opts...)
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid reference format: %v", err)
	}
	return r, nil
}

// loopbackRegistry reports a registry host of localhost, 127.0.0.0/8 or ::1.
func loopbackRegistry(norm string) bool {
	host, _, _ := strings.Cut(norm, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// repoPath is the repository as Docker names it in "Pulling from": the
// path without the registry ("library/busybox", "app" for localhost:5000/app).
func repoPath(norm string) string {
	n, _, _ := strings.Cut(norm, "@")
	if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") {
		n = n[:i]
	}
	_, path, _ := strings.Cut(n, "/")
	return path
}

func remoteOptions(ctx context.Context, rt http.RoundTripper) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("hako"),
	}
	if rt != nil {
		opts = append(opts, remote.WithTransport(rt))
	}
	return opts
}

// pullError words registry errors as Docker does.
func pullError(familiar string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		repo := familiar
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden || hasCode(te, transport.NameUnknownErrorCode):
			return errdefs.Errorf(errdefs.ErrNotFound, "pull access denied for %s, repository does not exist or may require 'docker login': %v", repo, err)
		case hasCode(te, transport.ManifestUnknownErrorCode) || te.StatusCode == http.StatusNotFound:
			return errdefs.Errorf(errdefs.ErrNotFound, "manifest for %s not found: manifest unknown: manifest unknown", familiar)
		}
	}
	return err
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// countingReader reports the bytes read through it.
type countingReader struct {
	io.ReadCloser
	short  string
	done   int64
	total  int64
	report func(short string, done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.done += int64(n)
	c.report(c.short, c.done, c.total)
	return n, err
}
