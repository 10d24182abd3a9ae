package image

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"hako.dev/hako/runtime/errdefs"
)

// SearchResult is one repository found by Search, in the words of Docker
// Hub's search API.
type SearchResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	StarCount   int    `json:"star_count"`
	IsOfficial  bool   `json:"is_official"`
	IsAutomated bool   `json:"is_automated"`
}

// SearchFilter is Docker's `search --filter`.
type SearchFilter struct {
	Stars       int   // stars=N: at least N stars
	IsOfficial  *bool // is-official=true|false
	IsAutomated *bool // is-automated=true|false (deprecated by Docker)
}

// ParseSearchFilters reads `--filter` values.
func ParseSearchFilters(args []string) (SearchFilter, error) {
	var f SearchFilter
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return f, errdefs.Errorf(errdefs.ErrInvalid, "bad format of filter (expected name=value)")
		}
		switch strings.ToLower(k) {
		case "stars":
			n, err := strconv.Atoi(v)
			if err != nil {
				return f, errdefs.Errorf(errdefs.ErrInvalid, "invalid filter 'stars=%s'", v)
			}
			f.Stars = max(f.Stars, n)
		case "is-official", "is-automated":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return f, errdefs.Errorf(errdefs.ErrInvalid, "invalid filter '%s=%s'", k, v)
			}
			if strings.ToLower(k) == "is-official" {
				f.IsOfficial = &b
			} else {
				f.IsAutomated = &b
			}
		default:
			return f, errdefs.Errorf(errdefs.ErrInvalid, "invalid filter '%s'", k)
		}
	}
	return f, nil
}

// Match reports whether r passes the filter.
func (f SearchFilter) Match(r SearchResult) bool {
	if r.StarCount < f.Stars {
		return false
	}
	if f.IsOfficial != nil && r.IsOfficial != *f.IsOfficial {
		return false
	}
	if f.IsAutomated != nil && r.IsAutomated != *f.IsAutomated {
		return false
	}
	return true
}

// SearchOptions tunes Search.
type SearchOptions struct {
	// Limit is the most results to return, 1 to 100; 0 means 25, as Docker.
	Limit  int
	Filter SearchFilter
	// Offline refuses every registry but loopback ones (HAKO_OFFLINE).
	Offline bool
	// Insecure allows plain HTTP to any registry (always for loopback ones).
	Insecure bool
	// Transport, when set, replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// IndexURL replaces Docker Hub's search endpoint (tests).
	IndexURL string
}

// DefaultIndexSearch is Docker Hub's search endpoint (Docker's v1 API).
const DefaultIndexSearch = "https://index.docker.io/v1/search"

// SplitSearchTerm tells the registry part of a search term from the term
// itself, as Docker does: "127.0.0.1:5000/team" searches that registry for
// "team", "busybox" and "docker.io/busybox" search Docker Hub. registry is
// "" for Docker Hub.
func SplitSearchTerm(term string) (registry, q string) {
	first, rest, ok := strings.Cut(term, "/")
	if !ok || !(strings.ContainsAny(first, ".:") || first == "localhost") {
		return "", term
	}
	switch first {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "", rest
	}
	return first, rest
}

// Search is `docker search`: Docker Hub's search API for a plain term; for a
// term naming a registry ("host:port/term"), that registry's catalog
// (/v2/_catalog) filtered by the term, since v2 registries have no search.
func Search(ctx context.Context, term string, opt SearchOptions) ([]SearchResult, error) {
	limit := opt.Limit
	if limit == 0 {
		limit = 25
	}
	if limit < 1 || limit > 100 {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "limit %d is outside the range of [1, 100]", limit)
	}
	reg, q := SplitSearchTerm(term)
	if reg == "" {
		return searchHub(ctx, q, limit, opt)
	}
	return searchCatalog(ctx, reg, q, limit, opt)
}

func searchCatalog(ctx context.Context, reg, q string, limit int, opt SearchOptions) ([]SearchResult, error) {
	loop := loopbackRegistry(reg + "/")
	if opt.Offline && !loop {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "offline (HAKO_OFFLINE is set): not searching %s", reg)
	}
	var nopts []name.Option
	if opt.Insecure || loop || plainHTTP(reg+"/") {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRegistry(reg, nopts...)
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "invalid registry %q: %v", reg, err)
	}
	repos, err := remote.Catalog(ctx, r, remoteOptions(ctx, opt.Transport)...)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", reg, err)
	}
	q = strings.ToLower(q)
	var out []SearchResult
	for _, repo := range repos {
		if !strings.Contains(strings.ToLower(repo), q) {
			continue
		}
		res := SearchResult{Name: reg + "/" + repo}
		if !opt.Filter.Match(res) {
			continue
		}
		out = append(out, res)
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func searchHub(ctx context.Context, q string, limit int, opt SearchOptions) ([]SearchResult, error) {
	if opt.Offline {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "offline (HAKO_OFFLINE is set): not searching Docker Hub for %q", q)
	}
	if q == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalid, "search term cannot be empty")
	}
	base := opt.IndexURL
	if base == "" {
		base = DefaultIndexSearch
	}
	u := base + "?" + url.Values{"q": {q}, "n": {strconv.Itoa(limit)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "hako")
	client := http.DefaultClient
	if opt.Transport != nil {
		client = &http.Client{Transport: opt.Transport}
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("search Docker Hub: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("search Docker Hub: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("search Docker Hub: unexpected status %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var page struct {
		Results []SearchResult `json:"results"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("search Docker Hub: %w", err)
	}
	var out []SearchResult
	for _, r := range page.Results {
		if opt.Filter.Match(r) {
			out = append(out, r)
		}
		if len(out) == limit {
			break
		}
	}
	return out, nil
}
