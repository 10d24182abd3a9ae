// Package image is hako's local image store: what `docker load`, `docker import`,
// `docker images`, `docker tag` and `docker rmi` read and change.
//
// # Content-addressable storage
//
// An image is a small JSON document, the image config, plus an ordered list of
// filesystem layers. Everything is named by the SHA-256 of its bytes, so a name
// is also a checksum: the image ID `sha256:<hex>` is the digest of the config
// blob, and two stores holding the same ID hold the same image. Names people
// type (`busybox`, `localhost:5000/app:v1`) are references, mutable pointers to
// an ID; `docker tag` adds one and `docker rmi busybox` removes one.
//
// # Layers, diffIDs and digests
//
// A layer is a tar archive of the files one build step added, changed or
// deleted. The config lists its layers by diffID: the digest of the
// *uncompressed* tar. Registries and OCI layouts ship layers gzip-compressed and
// name them by the digest of the *compressed* bytes, which depends on the
// compressor; the diffID does not, so the config (and thus the image ID) stays
// the same however the layer travelled. The store checks every layer it unpacks
// against its diffID.
//
// A layer's meaning depends on the layers under it, so a layer on disk is named
// by its chainID: chainID(L0) = diffID(L0) and
// chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)). Two images that share
// a base share its unpacked directories.
//
// # Whiteouts
//
// A tar can add files but cannot say "delete". Docker layers use AUFS-style
// marker files: `.wh.name` deletes `name` from the layers below, and
// `.wh..wh..opq` in a directory makes it opaque (hides everything the lower
// layers had in it). The store unpacks each layer once into its own directory,
// used read-only as an overlayfs lowerdir, so it translates the markers into
// overlayfs' own form: a whiteout is a character device 0:0 named `name`, an
// opaque directory carries the xattr `trusted.overlay.opaque=y`. The kernel then
// hides the right files when it stacks the layers.
//
// # Unpacking untrusted tars
//
// A layer is data from the internet. Every path is cleaned (a leading `/` is
// stripped, `..` may not climb above the layer), every directory on the way is
// opened with O_NOFOLLOW one component at a time, and every file is created
// relative to that directory's descriptor, so a layer holding `a -> /etc` and then
// `a/passwd` is refused instead of writing the host's /etc. Hard links must point
// at a file of the same layer, and the uncompressed size is bounded
// (Store.MaxLayerSize) so a gzip bomb is an error rather than a full disk. A
// layer is unpacked in a temporary directory and renamed into place only when
// complete.
//
// # On-disk layout
//
//	<dir>/lock                        flock(2) held around every change to the index, blobs and layers
//	<dir>/repositories.json           the index: references -> image ID, and the set of images
//	<dir>/blobs/sha256/<hex>          image configs, and each layer's uncompressed tar (named by its
//	                                  diffID) kept so that `save` can write the image back unchanged
//	<dir>/layers/<chainid-hex>/diff/  a layer unpacked once, shared by every image that uses it
//	<dir>/layers/<chainid-hex>/size   its size in bytes (sum of regular file sizes)
//	<dir>/tmp/<pid>-*                 work in progress; removed on error, reaped once <pid> is gone
//
// The index is the truth: an image exists when repositories.json lists it.
// Blobs and layers are written and renamed into place before the index names
// them, and the index forgets an image before its files are removed, so a
// command killed at any point leaves at worst some unreferenced files.
package image
