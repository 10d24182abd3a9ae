package engine

import (
	"os/exec"
	"strings"
	"testing"
)

// goListDeps lists the packages pkg imports, directly or not.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

// The boundaries of the layout: the runtime never reaches up into the CLI or
// the lessons, and the monitor, which every running container pays for, links
// only the runtime's low-level packages.
func TestDependencyBoundaries(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"hako.dev/hako/runtime/...", []string{"github.com/spf13/cobra", "github.com/charmbracelet/", "hako.dev/hako/lessons", "hako.dev/hako/cmd"}},
		{"hako.dev/hako/cmd/hako-monitor", []string{"github.com/spf13/", "hako.dev/hako/runtime/image", "hako.dev/hako/runtime/engine", "net/http", "crypto/", "text/template"}},
	}
	for _, r := range rules {
		for _, dep := range goListDeps(t, r.pkg) {
			for _, f := range r.forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s depends on %s", r.pkg, dep)
				}
			}
		}
	}
}
