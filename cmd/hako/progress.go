package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	units "github.com/docker/go-units"
)

// termProgress draws a pull's progress on a terminal as Docker does: one line
// per layer, redrawn in place, with a bar while it downloads. It takes the
// plain progress lines the image store writes ("<layer>: <status>") and the
// byte counts of the downloads; any other line is printed below the layers.
type termProgress struct {
	mu       sync.Mutex
	w        io.Writer
	order    []string
	status   map[string]string
	done     map[string][2]int64
	drawn    int
	lastDraw time.Time
	partial  []byte
}

var layerLine = regexp.MustCompile(`^([0-9a-f]{12}): (.*)$`)

func newTermProgress(w io.Writer) *termProgress {
	return &termProgress{w: w, status: map[string]string{}, done: map[string][2]int64{}}
}

func (p *termProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if m := layerLine.FindStringSubmatch(line); m != nil {
			if _, ok := p.status[m[1]]; !ok {
				p.order = append(p.order, m[1])
			}
			p.status[m[1]] = m[2]
			p.redraw()
			continue
		}
		// Another line ("Digest: ...", "Status: ..."): below the layers,
		// which are final by then.
		fmt.Fprintln(p.w, line)
		p.order, p.drawn = nil, 0
		p.status, p.done = map[string]string{}, map[string][2]int64{}
	}
	return len(b), nil
}

// LayerBytes is the image store's byte counter.
func (p *termProgress) LayerBytes(short string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.status[short]; !ok {
		p.order = append(p.order, short)
	}
	p.status[short] = "Downloading"
	p.done[short] = [2]int64{done, total}
	if time.Since(p.lastDraw) > 80*time.Millisecond || done == total {
		p.redraw()
	}
}

func (p *termProgress) clear() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
}

func (p *termProgress) redraw() {
	p.clear()
	for _, short := range p.order {
		st := p.status[short]
		line := short + ": " + st
		if d, ok := p.done[short]; ok && st == "Downloading" && d[1] > 0 {
			const width = 40
			n := int(float64(width) * float64(d[0]) / float64(d[1]))
			n = min(max(n, 0), width)
			bar := strings.Repeat("=", n)
			if n < width {
				bar += ">" + strings.Repeat(" ", width-n-1)
			}
			line += fmt.Sprintf(" [%s] %s/%s", bar, units.HumanSizeWithPrecision(float64(d[0]), 3), units.HumanSizeWithPrecision(float64(d[1]), 3))
		}
		fmt.Fprintf(p.w, "\x1b[2K%s\n", line)
	}
	p.drawn = len(p.order)
	p.lastDraw = time.Now()
}
