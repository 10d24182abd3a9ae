package imagetest

import (
	"archive/tar"
	"io"
)

// httpdStart is the httpd fixture's command: it says, as Apache does, that it
// started (so `docker logs` shows a line per start), then serves the htdocs
// folder with busybox's httpd, logging each request, until SIGTERM.
const httpdStart = `#!/bin/sh
# As PID 1 a process without a handler ignores SIGTERM: the shell stays PID 1
# and stops the server when told to, as Apache does.
echo "[core:notice] AH00094: Command line: 'httpd -D FOREGROUND' (hako fixture: busybox httpd)"
httpd -f -vv -p 80 -h /usr/local/apache2/htdocs &
pid=$!
trap 'kill $pid; exit 0' TERM INT
echo "[mpm_event:notice] AH00489: Apache/2.4 (hako fixture) configured -- resuming normal operations"
wait $pid
`

// HTTPDIndex is the page the httpd fixture serves, as Apache's image does.
const HTTPDIndex = "<html><body><h1>It works!</h1></body></html>\n"

// HTTPDLayer is the layer the httpd fixture adds on busybox: Apache's htdocs
// folder, its default page and a start script.
func HTTPDLayer() ([]byte, error) {
	dir := func(name string) File { return File{Name: name, Mode: 0o755, Type: tar.TypeDir} }
	return Layer([]File{
		dir("usr/"),
		dir("usr/local/"),
		dir("usr/local/apache2/"),
		dir("usr/local/apache2/bin/"),
		{Name: "usr/local/apache2/bin/httpd-foreground", Mode: 0o755, Body: []byte(httpdStart)},
		dir("usr/local/apache2/htdocs/"),
		{Name: "usr/local/apache2/htdocs/index.html", Mode: 0o644, Body: []byte(HTTPDIndex)},
	})
}

// WriteHTTPD writes a docker-archive of an image that stands in for
// Docker Hub's httpd:2.4 offline: busybox plus a layer serving
// /usr/local/apache2/htdocs on port 80 (ExposedPorts 80/tcp), started by
// httpd-foreground as in the real image. It stops on SIGTERM (the real image
// uses SIGWINCH, Apache's graceful stop).
func WriteHTTPD(w io.Writer, ref string) error {
	base, err := BusyboxLayer()
	if err != nil {
		return err
	}
	layer, err := HTTPDLayer()
	if err != nil {
		return err
	}
	return writeArchive(w, ref, [][]byte{base, layer}, imageConfig{
		Cmd:          []string{"httpd-foreground"},
		Env:          []string{"PATH=/usr/local/apache2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HTTPD_PREFIX=/usr/local/apache2"},
		WorkingDir:   "/usr/local/apache2",
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
	})
}
