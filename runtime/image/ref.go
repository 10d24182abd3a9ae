package image

import (
	"regexp"
	"strings"

	"github.com/distribution/reference"

	"hako.dev/hako/runtime/errdefs"
)

func notFound(ref string) error {
	return errdefs.Errorf(errdefs.ErrNotFound, "No such image: %s", ref)
}

var (
	// fullID is an image ID or blob digest as it may become a file name.
	fullID = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	// shortID is what `docker rmi 3f57` accepts: a prefix of an ID's hex.
	shortID = regexp.MustCompile(`^[a-f0-9]{1,64}$`)
)

// validDigest checks that d is "sha256:" and 64 lowercase hex digits, and
// returns the hex part. Only a digest that passed here may become a path.
func validDigest(d string) (string, error) {
	if !fullID.MatchString(d) {
		return "", errdefs.Errorf(errdefs.ErrInvalid, "invalid digest %q", d)
	}
	return d[len("sha256:"):], nil
}

// NormalizeRef turns what a user typed into the fully qualified reference the
// store keys on: "busybox" => "docker.io/library/busybox:latest",
// "localhost:5000/app" => "localhost:5000/app:latest". A reference with a digest
// keeps it. A malformed reference is errdefs.ErrInvalid, with
// "invalid reference format" in the message as Docker prints it.
func NormalizeRef(s string) (string, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "invalid reference format") {
			msg = "invalid reference format: " + msg
		}
		return "", errdefs.Errorf(errdefs.ErrInvalid, "%s", msg)
	}
	return reference.TagNameOnly(named).String(), nil
}

// FamiliarRef is NormalizeRef's reverse, the form Docker shows:
// "docker.io/library/busybox:latest" => "busybox:latest". A string that is not a
// reference is returned unchanged.
func FamiliarRef(s string) string {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return s
	}
	return reference.FamiliarString(named)
}

// isDigested reports whether a normalized reference carries a digest
// (name@sha256:...), which hako cannot tag or store.
func isDigested(normalized string) bool {
	return strings.Contains(normalized, "@")
}
