package container

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"hako.dev/hako/runtime/errdefs"
)

// PortBinding is one host address a container port is published on (Docker's
// HostConfig.PortBindings and NetworkSettings.Ports entries).
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

// ParsePublish reads Docker's -p forms: CONTAINER, HOST:CONTAINER,
// IP:HOST:CONTAINER and IP::CONTAINER, each with an optional /tcp. It returns
// the container port ("80/tcp") and its binding (an empty HostPort: any free one).
func ParsePublish(spec string) (string, PortBinding, error) {
	bad := func(why string) (string, PortBinding, error) {
		return "", PortBinding{}, errdefs.Errorf(errdefs.ErrInvalid, "invalid publish spec %q: %s", spec, why)
	}
	body, proto, hasProto := strings.Cut(spec, "/")
	if !hasProto {
		proto = "tcp"
	}
	switch proto {
	case "tcp", "udp":
	case "sctp":
		return bad(proto + " ports are not supported by hako")
	default:
		return bad("unknown protocol " + proto)
	}
	var ip, host, ctr string
	if strings.HasPrefix(body, "[") { // [::1]:8080:80
		end := strings.Index(body, "]")
		if end < 0 {
			return bad("unclosed [")
		}
		ip, body = body[1:end], strings.TrimPrefix(body[end+1:], ":")
		parts := strings.Split(body, ":")
		if len(parts) != 2 {
			return bad("want [IP]:HOST:CONTAINER")
		}
		host, ctr = parts[0], parts[1]
	} else {
		parts := strings.Split(body, ":")
		switch len(parts) {
		case 1:
			ctr = parts[0]
		case 2:
			host, ctr = parts[0], parts[1]
		case 3:
			ip, host, ctr = parts[0], parts[1], parts[2]
		default:
			return bad("too many colons")
		}
	}
	if ip != "" && net.ParseIP(ip) == nil {
		return bad("invalid IP address " + ip)
	}
	checkPort := func(p string) error {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("invalid port %q (1-65535)", p)
		}
		return nil
	}
	if err := checkPort(ctr); err != nil {
		return bad(err.Error())
	}
	if host != "" {
		if err := checkPort(host); err != nil {
			return bad(err.Error())
		}
	}
	return ctr + "/" + proto, PortBinding{HostIP: ip, HostPort: host}, nil
}

// FormatPorts is the PORTS column of `ps`: "0.0.0.0:8080->80/tcp".
func FormatPorts(ports map[string][]PortBinding) string {
	var out []string
	for cport, bs := range ports {
		for _, b := range bs {
			ip := b.HostIP
			if ip == "" {
				ip = "0.0.0.0"
			}
			out = append(out, net.JoinHostPort(ip, b.HostPort)+"->"+cport)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// publisher forwards published ports into a running container: it listens on
// the host, and for each connection opens a socket inside the container's
// network namespace (a network namespace belongs to a thread, so a locked
// thread joins it for the moment of socket(2) and connect(2)) to the same
// port on the container's loopback, then copies both ways. Until hako's
// networks give containers an address, this is how -p reaches them.
type publisher struct {
	listeners []net.Listener
	packets   []net.PacketConn // UDP ports held
	ports     []string         // container port of each listener ("80")
	wg        sync.WaitGroup
}

// listen binds every published port before the container starts, so that a
// port in use fails the start cleanly.
func listen(bindings map[string][]PortBinding) (*publisher, map[string][]PortBinding, error) {
	p := &publisher{}
	actual := map[string][]PortBinding{}
	keys := make([]string, 0, len(bindings))
	for k := range bindings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, cport := range keys {
		for _, b := range bindings[cport] {
			addr := net.JoinHostPort(b.HostIP, b.HostPort)
			if b.HostPort == "" {
				addr = net.JoinHostPort(b.HostIP, "0")
			}
			if strings.HasSuffix(cport, "/udp") {
				// The kernel forwards UDP; the socket only holds the port.
				pc, err := net.ListenPacket("udp", addr)
				if err != nil {
					p.close()
					return nil, nil, fmt.Errorf("driver failed programming external connectivity: Bind for %s/udp failed: port is already allocated (%v)", net.JoinHostPort(hostIPShown(b.HostIP), b.HostPort), err)
				}
				_, hp, _ := net.SplitHostPort(pc.LocalAddr().String())
				actual[cport] = append(actual[cport], PortBinding{HostIP: hostIPShown(b.HostIP), HostPort: hp})
				p.packets = append(p.packets, pc)
				continue
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				p.close()
				shown := b.HostIP
				if shown == "" {
					shown = "0.0.0.0"
				}
				return nil, nil, fmt.Errorf("driver failed programming external connectivity: Bind for %s failed: port is already allocated (%v)", net.JoinHostPort(shown, b.HostPort), err)
			}
			_, hp, _ := net.SplitHostPort(ln.Addr().String())
			actual[cport] = append(actual[cport], PortBinding{HostIP: hostIPShown(b.HostIP), HostPort: hp})
			p.listeners = append(p.listeners, ln)
			p.ports = append(p.ports, strings.TrimSuffix(cport, "/tcp"))
		}
	}
	return p, actual, nil
}

func hostIPShown(ip string) string {
	if ip == "" {
		return "0.0.0.0"
	}
	return ip
}

// serve forwards connections to the container through dial.
func (p *publisher) serve(dial func(port string) (net.Conn, error)) {
	for i, ln := range p.listeners {
		p.wg.Add(1)
		go func(ln net.Listener, port string) {
			defer p.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go forward(c, dial, port)
			}
		}(ln, p.ports[i])
	}
}

func (p *publisher) close() {
	if p == nil {
		return
	}
	for _, ln := range p.listeners {
		ln.Close()
	}
	for _, pc := range p.packets {
		pc.Close()
	}
	p.wg.Wait()
}

func forward(c net.Conn, dial func(string) (net.Conn, error), port string) {
	defer c.Close()
	up, err := dial(port)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// dialInNetns connects to addr from inside the network namespace of pid.
func dialInNetns(pid int, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// This goroutine's thread changes namespace; if it cannot change
		// back, it stays locked and the thread ends with the goroutine.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, err}
			return
		}
		c, err := net.Dial("tcp", addr)
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// PublishedPorts is what the container publishes: -p, and with -P every
// exposed port on a free host port.
func (c *Container) PublishedPorts() map[string][]PortBinding {
	out := map[string][]PortBinding{}
	for k, v := range c.HostConfig.PortBindings {
		out[k] = append([]PortBinding{}, v...)
	}
	if c.HostConfig.PublishAllPorts {
		for p := range c.Config.ExposedPorts {
			if _, ok := out[p]; !ok {
				out[p] = []PortBinding{{}}
			}
		}
	}
	return out
}
