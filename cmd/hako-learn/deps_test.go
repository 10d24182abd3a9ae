package main

import (
	"os/exec"
	"strings"
	"testing"
)

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

// The lessons' weight stays out of the hako CLI (every `docker ...` a learner
// types pays hako's start-up), and the lessons reach the runtime only through
// runtime/engine.
func TestDependencyBoundaries(t *testing.T) {
	for _, dep := range goList(t, "-deps", "hako.dev/hako/cmd/hako") {
		for _, f := range []string{"github.com/charmbracelet/", "github.com/alecthomas/chroma", "github.com/yuin/goldmark", "hako.dev/hako/lessons", "hako.dev/hako/chapters", "github.com/rogpeppe/go-internal/testscript"} {
			if strings.HasPrefix(dep, f) {
				t.Errorf("cmd/hako depends on %s", dep)
			}
		}
	}
	for _, imp := range goList(t, "-f", "{{join .Imports \" \"}}", "hako.dev/hako/lessons/...") {
		if strings.HasPrefix(imp, "hako.dev/hako/runtime/") && imp != "hako.dev/hako/runtime/engine" || strings.HasPrefix(imp, "hako.dev/hako/cmd") {
			t.Errorf("lessons import %s", imp)
		}
	}
}
