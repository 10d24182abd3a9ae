package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// logEntry is one line of Docker's json-file log.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// logWriter appends a container's output to its json-file log, one entry per
// line (a partial line is written as it comes, so nothing waits for a newline).
type logWriter struct {
	mu sync.Mutex
	f  *os.File
}

func openLog(path string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f}, nil
}

func (l *logWriter) write(stream string, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UTC()
	var buf bytes.Buffer
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		var line []byte
		if i < 0 {
			line, p = p, nil
		} else {
			line, p = p[:i+1], p[i+1:]
		}
		b, _ := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: now})
		buf.Write(b)
		buf.WriteByte('\n')
	}
	l.f.Write(buf.Bytes())
}

func (l *logWriter) close() { l.f.Close() }

// LogOptions are `docker logs` flags.
type LogOptions struct {
	Follow     bool
	Tail       int // -1: all
	Timestamps bool
	Since      time.Time
	Until      time.Time
}

// Logs writes a container's log to stdout and stderr. With Follow it keeps
// going while the container runs.
func (s *Store) Logs(ctx context.Context, id string, opt LogOptions, stdout, stderr io.Writer) error {
	f, err := os.Open(s.LogPath(id))
	if errors.Is(err, os.ErrNotExist) {
		if _, err := s.Load(id); err != nil {
			return err
		}
		if !opt.Follow {
			return nil
		}
		f, err = os.OpenFile(s.LogPath(id), os.O_RDONLY|os.O_CREATE, 0o640)
	}
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	defer f.Close()
	emit := func(e logEntry) {
		if !opt.Since.IsZero() && e.Time.Before(opt.Since) {
			return
		}
		if !opt.Until.IsZero() && e.Time.After(opt.Until) {
			return
		}
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		if opt.Timestamps {
			io.WriteString(w, e.Time.Format(time.RFC3339Nano)+" ")
		}
		io.WriteString(w, e.Log)
	}
	r := bufio.NewReader(f)
	var entries []logEntry
	readAll := func(keep bool) {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				// a line still being written: read it again next time
				if len(line) > 0 {
					f.Seek(-int64(len(line)), io.SeekCurrent)
					r.Reset(f)
				}
				return
			}
			var e logEntry
			if json.Unmarshal(line, &e) != nil {
				continue
			}
			if keep {
				entries = append(entries, e)
			} else {
				emit(e)
			}
		}
	}
	readAll(true)
	start := 0
	if opt.Tail >= 0 {
		// count lines (entries ending in a newline) from the end
		lines := 0
		start = len(entries)
		for start > 0 {
			if e := entries[start-1]; len(e.Log) > 0 && e.Log[len(e.Log)-1] == '\n' {
				if lines == opt.Tail {
					break
				}
				lines++
			}
			start--
		}
	}
	for _, e := range entries[start:] {
		emit(e)
	}
	if !opt.Follow {
		return nil
	}
	for {
		c, err := s.Load(id)
		running := err == nil && (c.State.Running || c.State.Restarting)
		readAll(false)
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
