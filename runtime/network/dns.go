package network

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The embedded DNS server of user-defined networks, as in Docker: every
// container attached to one gets a server on 127.0.0.11:53 in its own network
// namespace that answers the names of the containers on its networks and
// forwards everything else to the host's resolvers.
//
// The server is small on purpose (it lives in the per-container monitor): one
// goroutine reads UDP, one accepts TCP; a UDP query that must be forwarded gets
// a goroutine until its upstreams answer or time out, at most dnsMaxForwards
// at a time (more are dropped, the client retries); TCP gets a goroutine per
// connection, at most dnsMaxTCPConns at a time. Queries are answered from a
// single 1500-byte read buffer; forwarded ones are relayed byte for byte.
// Messages are decoded and encoded by the small codec of dnsmsg.go.

const (
	// dnsListenAddr is where the server listens inside the container.
	dnsListenAddr = "127.0.0.11:53"
	// dnsTTL is the TTL of the A records of containers (Docker's).
	dnsTTL = 600
	// dnsUpstreamTimeout bounds one exchange with one upstream.
	dnsUpstreamTimeout = 2 * time.Second
	// dnsTCPIdle bounds how long a TCP connection may sit idle.
	dnsTCPIdle = 10 * time.Second
	// dnsMaxForwards bounds the UDP queries being forwarded at a time.
	dnsMaxForwards = 64
	// dnsMaxTCPConns bounds the TCP connections served at a time.
	dnsMaxTCPConns = 16
	// dnsReadBuf is the size of the UDP read buffer: no query is bigger.
	dnsReadBuf = 1500
	// dnsEDNSSize is the UDP payload size the server advertises.
	dnsEDNSSize = 1232
	// dnsMaxUDPReply is the biggest upstream UDP answer relayed as is; a
	// bigger one becomes an empty truncated answer, so the client asks again
	// over TCP.
	dnsMaxUDPReply = 4096
)

// Resolver answers a name for one container: the IPv4 addresses of the
// containers (names, aliases, short or full IDs) on the networks it is attached
// to, or nil when the name is not one of them.
//
// The name is passed in lower case and without the trailing dot, exactly as
// asked otherwise: "web.example" is looked up as such, never as "web".
type Resolver func(name string) []net.IP

// DNSServer is the embedded DNS server of one container.
type DNSServer struct {
	resolve   Resolver
	upstreams []string

	udp *net.UDPConn
	tcp *net.TCPListener

	ctx    context.Context // done once Close is called
	cancel context.CancelFunc
	wg     sync.WaitGroup // the serving goroutines and their helpers

	forwards chan struct{} // a token per UDP query being forwarded
	tcpConns chan struct{} // a token per TCP connection being served

	closeOnce sync.Once
	closeErr  error
}

// StartDNS opens UDP and TCP sockets on 127.0.0.11:53 inside the network
// namespace of process pid and serves them from the host's network namespace.
//
// Names resolve knows (case-insensitive, with or without the trailing dot,
// exact names only) get A records with TTL 600; other types of query for them
// (AAAA included) get an empty NOERROR answer. Other names are forwarded, over
// the transport of the query, to upstreams ("IP:53" strings, tried in order,
// 2 s each) from the host's network namespace, so a host-loopback resolver
// such as 127.0.0.53 works; when none answers, the answer is SERVFAIL.
//
// The loopback interface of the namespace must be up.
func StartDNS(pid int, resolve Resolver, upstreams []string) (*DNSServer, error) {
	if resolve == nil {
		return nil, errors.New("dns: nil resolver")
	}
	udp, tcp, err := listenInNetns(pid)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &DNSServer{
		resolve:   resolve,
		upstreams: append([]string(nil), upstreams...),
		udp:       udp,
		tcp:       tcp,
		ctx:       ctx,
		cancel:    cancel,
		forwards:  make(chan struct{}, dnsMaxForwards),
		tcpConns:  make(chan struct{}, dnsMaxTCPConns),
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	return s, nil
}

// Close stops the server and closes its sockets. It waits for the queries in
// flight, which end at once since their connections are closed too.
func (s *DNSServer) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		errU := s.udp.Close()
		errT := s.tcp.Close()
		s.wg.Wait()
		s.closeErr = errors.Join(errU, errT)
	})
	return s.closeErr
}

// listenInNetns creates the server's sockets in the network namespace of pid.
// The namespace is joined by one locked thread, only for socket(2) and
// bind(2); the thread then returns to its own namespace, and if it cannot it
// stays locked, so that it dies with its goroutine instead of running others.
func listenInNetns(pid int) (*net.UDPConn, *net.TCPListener, error) {
	type result struct {
		udp *net.UDPConn
		tcp *net.TCPListener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		defer func() { ch <- r }()

		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			r.err = fmt.Errorf("dns: own network namespace: %w", err)
			return
		}
		defer self.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			runtime.UnlockOSThread()
			r.err = fmt.Errorf("dns: network namespace of %d: %w", pid, err)
			return
		}
		defer target.Close()

		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			r.err = fmt.Errorf("dns: join network namespace of %d: %w", pid, err)
			return
		}
		addr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dnsListenAddr))
		r.udp, r.err = net.ListenUDP("udp4", addr)
		if r.err == nil {
			r.tcp, r.err = net.ListenTCP("tcp4", (*net.TCPAddr)(addr))
			if r.err != nil {
				r.udp.Close()
				r.udp = nil
			}
		}
		if r.err != nil {
			r.err = fmt.Errorf("dns: listen in network namespace of %d: %w", pid, r.err)
		}
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and exits with the goroutine. The
			// sockets are fine (they keep their namespace), but this is
			// not supposed to happen: give up.
			if r.udp != nil {
				r.udp.Close()
				r.tcp.Close()
				r.udp, r.tcp = nil, nil
			}
			r.err = fmt.Errorf("dns: return to own network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	r := <-ch
	return r.udp, r.tcp, r.err
}

// serveUDP answers the UDP queries until the socket is closed.
func (s *DNSServer) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, dnsReadBuf)
	out := make([]byte, 0, dnsMinUDPSize)
	var q dnsQuery
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		reply, act := s.handle(buf[:n], &q, out[:0], false)
		switch act {
		case dnsDrop:
			continue
		case dnsReply:
			s.udp.WriteToUDPAddrPort(reply, from)
			if cap(reply) <= dnsReadBuf {
				out = reply[:0]
			}
			continue
		}
		select {
		case s.forwards <- struct{}{}:
		default:
			continue // too many in flight: drop it, the client asks again
		}
		raw := append([]byte(nil), buf[:n]...)
		qc := q
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.forwards }()
			buf := udpBufs.Get().(*[]byte)
			defer udpBufs.Put(buf)
			out := s.forward("udp", raw, *buf)
			if out == nil {
				out = qc.appendReply(nil, dnsRcodeServFail, 0, nil, qc.limit(false))
			} else if len(out) > dnsMaxUDPReply {
				out = qc.appendReply(nil, dnsRcodeSuccess, dnsFlagTC, nil, qc.limit(false))
			}
			if s.ctx.Err() == nil {
				s.udp.WriteToUDPAddrPort(out, from)
			}
		}()
	}
}

// serveTCP accepts TCP connections until the listener is closed.
func (s *DNSServer) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like
			continue
		}
		select {
		case s.tcpConns <- struct{}{}:
		default:
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.tcpConns }()
			s.serveConn(c)
		}()
	}
}

// serveConn answers the queries of one TCP connection, one at a time, until
// the client closes it, stays idle too long, sends something that is not a
// query, or the server is closed.
func (s *DNSServer) serveConn(c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	var hdr [2]byte
	var q dnsQuery
	for {
		c.SetReadDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint16(hdr[:])
		if n < dnsHeaderLen {
			return
		}
		raw := make([]byte, n)
		if _, err := io.ReadFull(c, raw); err != nil {
			return
		}
		// The answer goes after its 2-byte length.
		msg, act := s.handle(raw, &q, make([]byte, 2, 2+dnsMinUDPSize), true)
		switch act {
		case dnsDrop:
			return
		case dnsForward:
			out := s.forward("tcp", raw, nil)
			if out == nil {
				out = q.appendReply(nil, dnsRcodeServFail, 0, nil, q.limit(true))
			}
			msg = append(msg, out...)
		}
		if len(msg)-2 > dnsMaxMsgSize {
			return
		}
		binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
		c.SetWriteDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// dnsAction is what to do with a query.
type dnsAction int

const (
	dnsDrop    dnsAction = iota // ignore it: not a query
	dnsReply                    // send the answer built
	dnsForward                  // relay it to the upstreams
)

// handle parses the query msg into q and, when the server answers it itself,
// appends its answer to out; tcp tells the transport (for UDP the answer is
// truncated to what the client takes).
func (s *DNSServer) handle(msg []byte, q *dnsQuery, out []byte, tcp bool) ([]byte, dnsAction) {
	if !parseDNSQuery(msg, q) {
		return out, dnsDrop
	}
	if q.rcode != dnsRcodeSuccess {
		return q.appendReply(out, q.rcode, 0, nil, q.limit(tcp)), dnsReply
	}
	if q.qclass != dnsClassIN {
		return out, dnsForward
	}
	name, ok := dnsLookupName(q.qname())
	if !ok {
		return out, dnsForward
	}
	ips := s.resolve(name)
	if ips == nil {
		return out, dnsForward
	}
	if q.qtype != dnsTypeA && q.qtype != dnsTypeANY {
		ips = nil // the name exists, with no record of this type
	}
	return q.appendReply(out, dnsRcodeSuccess, dnsFlagAA, ips, q.limit(tcp)), dnsReply
}

// forward sends the query raw to the upstreams in order over network ("udp"
// or "tcp") and returns the first answer, or nil. A UDP answer is read into
// buf (dnsMaxUDPReply+1 bytes; a longer answer fills it).
func (s *DNSServer) forward(network string, raw, buf []byte) []byte {
	for _, up := range s.upstreams {
		if s.ctx.Err() != nil {
			return nil
		}
		if out := s.exchange(network, up, raw, buf); out != nil {
			return out
		}
	}
	return nil
}

// exchange sends the query raw to upstream up and returns its answer, or nil
// after dnsUpstreamTimeout, on error, or when the server is closed.
func (s *DNSServer) exchange(network, up string, raw, buf []byte) []byte {
	deadline := time.Now().Add(dnsUpstreamTimeout)
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(s.ctx, network, up)
	if err != nil {
		return nil
	}
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	c.SetDeadline(deadline)
	id := raw[:2]

	if network == "tcp" {
		msg := make([]byte, 2+len(raw))
		binary.BigEndian.PutUint16(msg, uint16(len(raw)))
		copy(msg[2:], raw)
		if _, err := c.Write(msg); err != nil {
			return nil
		}
		var hdr [2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil
		}
		n := binary.BigEndian.Uint16(hdr[:])
		if n < 12 {
			return nil
		}
		out := make([]byte, n)
		if _, err := io.ReadFull(c, out); err != nil {
			return nil
		}
		if out[0] != id[0] || out[1] != id[1] || out[2]&0x80 == 0 {
			return nil
		}
		return out
	}

	if _, err := c.Write(raw); err != nil {
		return nil
	}
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil
		}
		// A connected socket only gets the upstream's datagrams; skip
		// the malformed ones.
		if n >= 12 && buf[0] == id[0] && buf[1] == id[1] && buf[2]&0x80 != 0 {
			return buf[:n]
		}
	}
}

// udpBufs holds the buffers of upstream UDP answers.
var udpBufs = sync.Pool{New: func() any {
	b := make([]byte, dnsMaxUDPReply+1)
	return &b
}}

// HostUpstreams reads the host's resolvers from a resolv.conf-format file
// (nameserver lines, IPv4 and IPv6, as "IP:53" / "[IPv6]:53"). It returns nil
// when the file cannot be read or names none.
func HostUpstreams(resolvConfPath string) []string {
	f, err := os.Open(resolvConfPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var ups []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		addr, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue
		}
		ups = append(ups, netip.AddrPortFrom(addr.Unmap(), 53).String())
	}
	return ups
}
