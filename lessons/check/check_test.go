package check

import "testing"

// A check only looks: docker verbs that change the state are refused.
func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"ps", "-a"}, true},
		{[]string{"inspect", "-f", "{{.State.Status}}", "web"}, true},
		{[]string{"image", "ls"}, true},
		{[]string{"container", "inspect", "web"}, true},
		{[]string{"--root", "/x", "logs", "web"}, false}, // flags with values are not parsed: refuse rather than guess
		{[]string{"run", "-d", "busybox"}, false},
		{[]string{"rm", "-f", "web"}, false},
		{[]string{"image", "rm", "httpd:2.4"}, false},
		{[]string{"container", "stop", "web"}, false},
		{[]string{"exec", "web", "rm", "-rf", "/"}, false},
		{[]string{"volume", "prune", "-f"}, false},
		{[]string{}, false},
	} {
		if got := allowed(tc.args); got != tc.ok {
			t.Errorf("allowed(%q) = %v, want %v", tc.args, got, tc.ok)
		}
	}
}
