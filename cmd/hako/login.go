package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"hako.dev/hako/runtime/engine"
	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/image"
)

// plainError ends a command with exit 1 and Docker's client-side "Error: " prefix.
func plainError(msg string) error { return &exitError{code: 1, msg: "Error: " + msg} }

func (c *cli) loginCmd() *cobra.Command {
	var user, pass string
	var passStdin, insecure bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Long:  "Log in to a registry.\nIf no server is specified, the default is defined by the daemon.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			key := image.ServerKey(server)
			if pass != "" {
				fmt.Fprintln(c.err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
				if passStdin {
					return &exitError{code: 1, msg: "--password and --password-stdin are mutually exclusive"}
				}
			}
			if passStdin {
				if user == "" {
					return &exitError{code: 1, msg: "Must provide --username with --password-stdin"}
				}
				b, err := io.ReadAll(c.in)
				if err != nil {
					return fail1(err)
				}
				pass = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
			}
			if engine.Offline() && !image.LoopbackServer(key) {
				return fail1(errdefs.Errorf(errdefs.ErrUnsupported, "offline (HAKO_OFFLINE is set): not logging in to %s", key))
			}
			user = strings.TrimSpace(user)

			// Like Docker: with neither username nor password, try what is stored.
			if user == "" && pass == "" {
				if u, p, ok := image.StoredCredentials(key); ok {
					fmt.Fprintf(c.out, "Authenticating with existing credentials... [Username: %s]\n", u)
					err := image.Login(cmd.Context(), key, u, p, insecure)
					if err == nil {
						fmt.Fprintln(c.out, "Login Succeeded")
						return nil
					}
					fmt.Fprintf(c.err, "Login did not succeed, error: %v\n", err)
				}
			}
			if user == "" || pass == "" {
				var err error
				if user, pass, err = c.promptCredentials(key, user); err != nil {
					return err
				}
			}
			if err := image.Login(cmd.Context(), key, user, pass, insecure); err != nil {
				return fail1(err)
			}
			if err := image.SaveCredentials(key, user, pass); err != nil {
				return plainError("saving credentials: " + err.Error())
			}
			if path, err := image.ConfigPath(); err == nil {
				fmt.Fprintf(c.err, "\nWARNING! Your password will be stored unencrypted in %s.\nConfigure a credential helper to remove this warning. See\nhttps://docs.docker.com/go/credential-store/\n\n", path)
			}
			fmt.Fprintln(c.out, "Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "Username")
	cmd.Flags().StringVarP(&pass, "password", "p", "", "Password")
	cmd.Flags().BoolVar(&passStdin, "password-stdin", false, "Take the password from stdin")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "Allow plain HTTP to the registry (hako only; always allowed for localhost)")
	cmd.Flags().MarkHidden("insecure")
	return cmd
}

// promptCredentials asks for what is missing on the terminal, the password
// without echo, as Docker does; without a terminal it is Docker's error.
func (c *cli) promptCredentials(key, user string) (string, string, error) {
	f, ok := c.in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", "", plainError("Cannot perform an interactive login from a non TTY device")
	}
	r := bufio.NewReader(f)
	if user == "" {
		def, _, _ := image.StoredCredentials(key)
		if def != "" {
			fmt.Fprintf(c.out, "Username (%s): ", def)
		} else {
			fmt.Fprint(c.out, "Username: ")
		}
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return "", "", plainError("Non-null Username Required")
		}
		user = strings.TrimSpace(line)
		if user == "" {
			user = def
		}
		if user == "" {
			return "", "", plainError("Non-null Username Required")
		}
	}
	fmt.Fprint(c.out, "Password: ")
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.out)
	if err != nil {
		return "", "", plainError("reading password: " + err.Error())
	}
	if len(b) == 0 {
		return "", "", plainError("Password Required")
	}
	return user, string(b), nil
}

func (c *cli) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Long:  "Log out from a registry.\nIf no server is specified, the default is defined by the daemon.",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			key := image.ServerKey(server)
			fmt.Fprintf(c.out, "Removing login credentials for %s\n", key)
			if _, err := image.RemoveCredentials(server); err != nil {
				fmt.Fprintf(c.err, "WARNING: could not erase credentials:\n%s: %v\n", key, err)
			}
			return nil
		},
	}
}
