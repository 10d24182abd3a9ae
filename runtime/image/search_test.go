package image

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSplitSearchTerm(t *testing.T) {
	for _, tc := range []struct{ in, reg, q string }{
		{"busybox", "", "busybox"},
		{"library/busybox", "", "library/busybox"},
		{"docker.io/busybox", "", "busybox"},
		{"127.0.0.1:5000/", "127.0.0.1:5000", ""},
		{"localhost/team", "localhost", "team"},
		{"reg.example.com/a/b", "reg.example.com", "a/b"},
	} {
		reg, q := SplitSearchTerm(tc.in)
		if reg != tc.reg || q != tc.q {
			t.Errorf("SplitSearchTerm(%q) = %q, %q; want %q, %q", tc.in, reg, q, tc.reg, tc.q)
		}
	}
}

func TestSearchFilters(t *testing.T) {
	f, err := ParseSearchFilters([]string{"stars=3", "is-official=true"})
	if err != nil {
		t.Fatal(err)
	}
	if f.Match(SearchResult{StarCount: 5}) || !f.Match(SearchResult{StarCount: 3, IsOfficial: true}) {
		t.Errorf("filter %+v matches wrongly", f)
	}
	for _, bad := range []string{"stars=x", "is-official=maybe", "color=red", "stars"} {
		if _, err := ParseSearchFilters([]string{bad}); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
}

func TestSearchHub(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("q") != "box" || r.URL.Query().Get("n") != "25" {
			http.Error(w, "bad query "+r.URL.RawQuery, 400)
			return
		}
		w.Write([]byte(`{"num_results":2,"query":"box","results":[
{"name":"busybox","description":"Busybox base image.","star_count":3000,"is_official":true},
{"name":"someone/box","description":"x","star_count":1}]}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	res, err := Search(ctx, "box", SearchOptions{IndexURL: srv.URL, Filter: SearchFilter{Stars: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Name != "busybox" || !res[0].IsOfficial || res[0].StarCount != 3000 {
		t.Errorf("results %+v", res)
	}
	if _, err := Search(ctx, "box", SearchOptions{IndexURL: srv.URL, Offline: true}); err == nil || !strings.Contains(err.Error(), "offline") {
		t.Errorf("offline search: %v", err)
	}
	if _, err := Search(ctx, "box", SearchOptions{IndexURL: srv.URL, Limit: 101}); err == nil {
		t.Error("limit 101 accepted")
	}
}
