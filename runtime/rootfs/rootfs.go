// Package rootfs holds the Mount type that every stage of hako emits or consumes.
//
// A container's root filesystem is an overlay: the image's layers, each unpacked
// once into its own directory, are stacked read-only as overlayfs "lowerdirs"; the
// container gets a private writable "upperdir" (and the "workdir" overlayfs needs
// for atomic copy-up). Reading a file finds the topmost layer that has it;
// writing copies it up into the upperdir first; deleting leaves a "whiteout" (a
// 0:0 character device) in the upperdir that hides the lower file. So a hundred
// containers from one image share its layers and each pays only for what it
// changes.
//
// Images emit the overlay Mount, volumes and binds emit bind Mounts; the
// container runtime consumes them all the same way.
package rootfs

import (
	"fmt"
	"strings"
)

// Mount is one filesystem to mount: the arguments of mount(2), in the words of
// the OCI runtime spec.
type Mount struct {
	Type    string   `json:"type"`
	Source  string   `json:"source"`
	Target  string   `json:"target,omitempty"`
	Options []string `json:"options,omitempty"`
}

// Overlay returns the overlay Mount for a container root: lower lists the image's
// layer directories from the base up (overlayfs wants the topmost first, so the
// order is reversed here), upper and work belong to the container.
func Overlay(lower []string, upper, work string) (Mount, error) {
	if len(lower) == 0 {
		return Mount{}, fmt.Errorf("overlay: an image needs at least one layer")
	}
	ls := make([]string, len(lower))
	for i, l := range lower {
		if strings.ContainsAny(l, ":,") {
			return Mount{}, fmt.Errorf("overlay: layer path %q contains ':' or ','", l)
		}
		ls[len(lower)-1-i] = l
	}
	return Mount{
		Type:   "overlay",
		Source: "overlay",
		Options: []string{
			"lowerdir=" + strings.Join(ls, ":"),
			"upperdir=" + upper,
			"workdir=" + work,
		},
	}, nil
}
