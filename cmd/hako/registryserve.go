package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/state"
)

// registryCmd is `hako registry serve`: a registry an instructor runs for a
// room with no internet. hako does not implement the distribution protocol
// itself: it runs the reference implementation (Debian's docker-registry,
// which `make` installs) with a configuration made from the flags, data on
// disk under --dir, and basic auth from an htpasswd (bcrypt) file.
func (c *cli) registryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Run a registry for a classroom"}
	var addr, htpasswd, dir string
	serve := &cobra.Command{
		Use:   "serve [--addr :5000] [--htpasswd FILE] [--dir DIR]",
		Short: "Serve a registry (the reference implementation) in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bin, err := exec.LookPath("docker-registry")
			if err != nil {
				return &exitError{code: 1, msg: "hako registry serve runs the reference registry: install Debian's docker-registry package (apt-get install docker-registry)"}
			}
			if strings.ContainsAny(addr, " \n\"'") || !strings.Contains(addr, ":") {
				return &exitError{code: 1, msg: fmt.Sprintf("invalid --addr %q: want HOST:PORT or :PORT", addr)}
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			if err := os.MkdirAll(filepath.Join(abs, "data"), 0o755); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			var auth string
			if htpasswd != "" {
				hp, err := filepath.Abs(htpasswd)
				if err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
				b, err := os.ReadFile(hp)
				if err != nil {
					return &exitError{code: 1, msg: fmt.Sprintf("--htpasswd: %v", err)}
				}
				if !strings.Contains(string(b), ":$2") {
					return &exitError{code: 1, msg: "--htpasswd: the file must hold bcrypt entries (htpasswd -B)"}
				}
				auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: hako\n    path: %q\n", hp)
			}
			cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %q\n  delete:\n    enabled: true\nhttp:\n  addr: %q\n%s",
				filepath.Join(abs, "data"), addr, auth)
			cfgPath := filepath.Join(abs, "config.yml")
			if err := state.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			fmt.Fprintf(c.err, "serving a registry on %s, data in %s\n", addr, filepath.Join(abs, "data"))
			// The registry takes over this process: signals reach it directly.
			err = unix.Exec(bin, []string{"docker-registry", "serve", cfgPath}, os.Environ())
			return &exitError{code: 1, msg: fmt.Sprintf("exec %s: %v", bin, err)}
		},
	}
	serve.Flags().StringVar(&addr, "addr", ":5000", "Address to listen on")
	serve.Flags().StringVar(&htpasswd, "htpasswd", "", "Basic auth from this htpasswd file (bcrypt)")
	serve.Flags().StringVar(&dir, "dir", "registry", "Directory for the registry's data and configuration")
	cmd.AddCommand(serve)
	return cmd
}
