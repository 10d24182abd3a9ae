package container

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"hako.dev/hako/runtime/errdefs"
	"hako.dev/hako/runtime/oci"
)

// The attach protocol runs over the monitor's unix socket. Every message is a
// frame: one type byte, a big-endian uint32 length, the payload.
//
// client to monitor: 'h' handshake (JSON attachHello, first), 'i' stdin bytes,
// 'c' stdin closed, 'r' terminal size (uint16 rows, uint16 cols).
// monitor to client: 'o' stdout, 'e' stderr, 'S' the container started,
// 'E' it failed to start (JSON startError), 'x' it exited (decimal code; sent
// after --rm removed it).
const (
	frameHello  = 'h'
	frameStdin  = 'i'
	frameClose  = 'c'
	frameResize = 'r'
	frameStdout = 'o'
	frameStderr = 'e'
	frameStart  = 'S'
	frameError  = 'E'
	frameExit   = 'x'
)

type attachHello struct {
	Stdin  bool `json:"stdin"`
	Stdout bool `json:"stdout"`
	Stderr bool `json:"stderr"`
}

type startError struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

func (e startError) err() error { return oci.NewProcessError(e.Error, e.Kind) }

func writeFrame(w io.Writer, typ byte, payload []byte) error {
	buf := make([]byte, 5+len(payload))
	buf[0] = typ
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("attach: frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// AttachOptions says which streams to connect.
type AttachOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// CloseStdin tells the container its stdin ended when Stdin does.
	CloseStdin bool
	// DetachKeys, if set, end the attachment (not the container) when read
	// from Stdin; Docker's default is ctrl-p ctrl-q.
	DetachKeys []byte
	// Resize delivers terminal sizes (rows, cols) to pass on.
	Resize <-chan [2]uint16
	// Started, if set, is called when the monitor reports that the container
	// started (`run` and `start -a` attach before the start).
	Started func()
}

// ErrDetached is returned by Attach when the detach keys were read.
var ErrDetached = errors.New("read escape sequence")

// Attach connects to a container's monitor and copies the streams until the
// container exits (returning its exit code) or the detach keys are typed.
func (s *Store) Attach(ctx context.Context, id string, opt AttachOptions) (int, error) {
	addr, done, err := socketAddr(s.SocketPath(id))
	if err != nil {
		return -1, err
	}
	conn, err := net.Dial("unix", addr)
	done()
	if err != nil {
		return -1, fmt.Errorf("attach %s: %w (is it running?)", id[:12], errdefs.ErrNotRunning)
	}
	defer conn.Close()
	return attachConn(ctx, conn, opt)
}

func attachConn(ctx context.Context, conn net.Conn, opt AttachOptions) (int, error) {
	hello, _ := json.Marshal(attachHello{Stdin: opt.Stdin != nil, Stdout: opt.Stdout != nil, Stderr: opt.Stderr != nil})
	var wmu sync.Mutex
	send := func(t byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(conn, t, p)
	}
	if err := send(frameHello, hello); err != nil {
		return -1, err
	}
	detached := make(chan struct{})
	if opt.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			var held []byte // a prefix of the detach keys, not yet sent
			for {
				n, err := opt.Stdin.Read(buf)
				if n > 0 {
					data := append(held, buf[:n]...)
					held = nil
					if len(opt.DetachKeys) > 0 {
						if i := bytes.Index(data, opt.DetachKeys); i >= 0 {
							if i > 0 {
								send(frameStdin, data[:i])
							}
							close(detached)
							conn.Close()
							return
						}
						// Keep back a trailing partial match of the keys.
						for k := len(opt.DetachKeys) - 1; k > 0; k-- {
							if len(data) >= k && bytes.Equal(data[len(data)-k:], opt.DetachKeys[:k]) {
								held = append([]byte{}, data[len(data)-k:]...)
								data = data[:len(data)-k]
								break
							}
						}
					}
					if len(data) > 0 && send(frameStdin, data) != nil {
						return
					}
				}
				if err != nil {
					if opt.CloseStdin {
						send(frameClose, nil)
					}
					return
				}
			}
		}()
	}
	if opt.Resize != nil {
		go func() {
			for sz := range opt.Resize {
				var p [4]byte
				binary.BigEndian.PutUint16(p[0:], sz[0])
				binary.BigEndian.PutUint16(p[2:], sz[1])
				if send(frameResize, p[:]) != nil {
					return
				}
			}
		}()
	}
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	for {
		t, p, err := readFrame(conn)
		if err != nil {
			select {
			case <-detached:
				return -1, ErrDetached
			default:
			}
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("attach: connection to the container's monitor lost: %w", err)
		}
		switch t {
		case frameStdout:
			if opt.Stdout != nil {
				opt.Stdout.Write(p)
			}
		case frameStderr:
			if opt.Stderr != nil {
				opt.Stderr.Write(p)
			}
		case frameStart:
			if opt.Started != nil {
				opt.Started()
			}
		case frameError:
			var se startError
			json.Unmarshal(p, &se)
			return -1, se.err()
		case frameExit:
			code, _ := strconv.Atoi(string(p))
			return code, nil
		}
	}
}

// client is one attached connection, as the monitor sees it.
type client struct {
	conn  net.Conn
	hello attachHello
	mu    sync.Mutex
}

func (c *client) send(t byte, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return writeFrame(c.conn, t, p)
}
