package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// dnsTestNetns starts a process in a new network namespace with lo up and
// returns its pid; the process is killed and reaped when the test ends.
func dnsTestNetns(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"nsenter", "ip", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper in a new netns: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	pid := cmd.Process.Pid
	if out, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-n", "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return pid
}

// dialInNetns connects to 127.0.0.11:53 over network ("udp" or "tcp") from
// inside the network namespace of pid.
func dialInNetns(t *testing.T, pid int, network string) (*dns.Conn, error) {
	t.Helper()
	type result struct {
		c   net.Conn
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
			r.err = err
			return
		}
		defer self.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			runtime.UnlockOSThread()
			r.err = err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			r.err = err
			return
		}
		r.c, r.err = net.DialTimeout(network+"4", "127.0.0.11:53", 2*time.Second)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			r.err = errors.Join(r.err, err) // the thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	return &dns.Conn{Conn: r.c}, nil
}

// queryInNetns asks 127.0.0.11 in the netns of pid about name/qtype.
func queryInNetns(t *testing.T, pid int, network, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	c, err := dialInNetns(t, pid, network)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	q := new(dns.Msg).SetQuestion(name, qtype)
	cl := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := cl.ExchangeWithConn(q, c)
	return r, err
}

// fakeUpstream is a DNS server on 127.0.0.1 of the host (UDP and TCP on the
// same port) answering example.test. A 192.0.2.7 and NXDOMAIN to all else.
type fakeUpstream struct {
	addr string
	mu   sync.Mutex
	seen []string // "udp name" / "tcp name"
}

func (f *fakeUpstream) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func startFakeUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no port free for UDP and TCP: %v", err)
		}
	}
	f := &fakeUpstream{addr: pc.LocalAddr().String()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		f.mu.Lock()
		f.seen = append(f.seen, w.LocalAddr().Network()+" "+q.Question[0].Name)
		f.mu.Unlock()
		m := new(dns.Msg).SetReply(q)
		if strings.EqualFold(q.Question[0].Name, "example.test.") && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 42},
				A:   net.IPv4(192, 0, 2, 7),
			})
		} else if strings.EqualFold(q.Question[0].Name, "big.test.") {
			// 300 records: bigger than dnsMaxUDPReply.
			for i := range 300 {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 42},
					A:   net.IPv4(198, 51, byte(i>>8), byte(i)),
				})
			}
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	us := &dns.Server{PacketConn: pc, Handler: h}
	ts := &dns.Server{Listener: ln, Handler: h}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	t.Cleanup(func() {
		us.Shutdown()
		ts.Shutdown()
	})
	return f
}

// deadUpstream returns an address on 127.0.0.1 where nothing listens (UDP
// gets port unreachable, TCP connection refused).
func deadUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// silentUpstream returns an address on 127.0.0.1 that takes UDP queries and
// never answers; closed when the test ends.
func silentUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

var dnsTestNames = map[string][]net.IP{
	"web":      {net.IPv4(10, 89, 0, 2)},
	"db":       {net.IPv4(10, 89, 0, 3), net.IPv4(10, 89, 0, 4)},
	"abc123de": {net.IPv4(10, 89, 0, 2)},
}

func dnsTestResolver(t *testing.T) (Resolver, func() []string) {
	var mu sync.Mutex
	var asked []string
	return func(name string) []net.IP {
			mu.Lock()
			asked = append(asked, name)
			mu.Unlock()
			return dnsTestNames[name]
		}, func() []string {
			mu.Lock()
			defer mu.Unlock()
			return append([]string(nil), asked...)
		}
}

func startTestDNS(t *testing.T, pid int, resolve Resolver, upstreams []string) *DNSServer {
	t.Helper()
	s, err := StartDNS(pid, resolve, upstreams)
	if err != nil {
		t.Fatalf("StartDNS: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// handleMsg packs q, runs it through the handler of s and unpacks the answer
// (nil unless the action is dnsReply).
func handleMsg(t *testing.T, s *DNSServer, q *dns.Msg, tcp bool) (*dns.Msg, dnsAction) {
	t.Helper()
	raw, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var dq dnsQuery
	out, act := s.handle(raw, &dq, nil, tcp)
	if act != dnsReply {
		if len(out) != 0 {
			t.Fatalf("action %v with an answer", act)
		}
		return nil, act
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("answer to %v does not unpack: %v\n%x", q.Question, err, out)
	}
	if r.Id != q.Id || !r.Response {
		t.Fatalf("answer header: %v", r.MsgHdr)
	}
	return r, act
}

func aRecords(t *testing.T, r *dns.Msg) []string {
	t.Helper()
	var ips []string
	for _, rr := range r.Answer {
		a, ok := rr.(*dns.A)
		if !ok {
			t.Fatalf("not an A record: %v", rr)
		}
		if a.Hdr.Ttl != dnsTTL && a.Hdr.Ttl != 42 {
			t.Errorf("TTL %d", a.Hdr.Ttl)
		}
		ips = append(ips, a.A.String())
	}
	return ips
}

func TestDNSLocalNames(t *testing.T) {
	pid := dnsTestNetns(t)
	resolve, asked := dnsTestResolver(t)
	up := startFakeUpstream(t)
	startTestDNS(t, pid, resolve, []string{up.addr})

	// Every thread of the process is back in the host's netns.
	assertThreadsInOwnNetns(t)

	// The handler itself, the message decoded by miekg/dns.
	for _, name := range []string{"web.", "WEB.", "Web."} {
		q := new(dns.Msg).SetQuestion(name, dns.TypeA)
		r, act := handleMsg(t, &DNSServer{resolve: resolve}, q, false)
		if act != dnsReply || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.89.0.2" {
			t.Fatalf("handler, %s: %v %v", name, act, r)
		}
		if !r.Authoritative || !r.RecursionAvailable || !r.RecursionDesired || r.Id != q.Id {
			t.Fatalf("handler, %s: header %v", name, r.MsgHdr)
		}
	}

	for _, name := range []string{"web.", "WEB.", "wEb.", "abc123de."} {
		r, err := queryInNetns(t, pid, "udp", name, dns.TypeA, 2*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: rcode %s", name, dns.RcodeToString[r.Rcode])
		}
		got := aRecords(t, r)
		if len(got) != 1 || got[0] != "10.89.0.2" {
			t.Fatalf("%s: answers %v", name, got)
		}
		if r.Answer[0].Header().Ttl != 600 {
			t.Fatalf("%s: TTL %d", name, r.Answer[0].Header().Ttl)
		}
		if want := dns.Fqdn(name); r.Answer[0].Header().Name != want {
			t.Fatalf("%s: owner %q, want %q", name, r.Answer[0].Header().Name, want)
		}
	}
	for _, n := range asked() {
		if n != "web" && n != "abc123de" {
			t.Fatalf("resolver asked %q: want lower case without the dot", n)
		}
	}

	// Several containers behind a name: all of them.
	r, err := queryInNetns(t, pid, "udp", "db.", dns.TypeA, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := aRecords(t, r); len(got) != 2 {
		t.Fatalf("db: %v", got)
	}

	// AAAA of a known name: empty NOERROR, not forwarded.
	r, err = queryInNetns(t, pid, "udp", "web.", dns.TypeAAAA, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("AAAA web: %v", r)
	}

	// TCP.
	r, err = queryInNetns(t, pid, "tcp", "Web.", dns.TypeA, 2*time.Second)
	if err != nil {
		t.Fatalf("tcp: %v", err)
	}
	if got := aRecords(t, r); len(got) != 1 || got[0] != "10.89.0.2" {
		t.Fatalf("tcp: %v", got)
	}

	if got := up.asked(); len(got) != 0 {
		t.Fatalf("known names went upstream: %v", got)
	}
}

func TestDNSForward(t *testing.T) {
	pid := dnsTestNetns(t)
	resolve, _ := dnsTestResolver(t)
	up := startFakeUpstream(t)
	startTestDNS(t, pid, resolve, []string{deadUpstream(t), up.addr})

	// Relayed over UDP, after a dead upstream.
	r, err := queryInNetns(t, pid, "udp", "example.test.", dns.TypeA, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := aRecords(t, r); r.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != "192.0.2.7" || r.Answer[0].Header().Ttl != 42 {
		t.Fatalf("forwarded udp: %v", r)
	}

	// Over TCP, the upstream is asked over TCP.
	r, err = queryInNetns(t, pid, "tcp", "example.test.", dns.TypeA, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := aRecords(t, r); len(got) != 1 || got[0] != "192.0.2.7" {
		t.Fatalf("forwarded tcp: %v", r)
	}

	// Only exact names are local: "web.corp" is not "web".
	r, err = queryInNetns(t, pid, "udp", "web.corp.", dns.TypeA, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("web.corp: %v", r)
	}

	// Too big for UDP: an empty truncated answer, then over TCP all of it.
	r, err = queryInNetns(t, pid, "udp", "big.test.", dns.TypeA, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Question) != 1 || r.Question[0].Name != "big.test." {
		t.Fatalf("big over udp: %v", r)
	}
	r, err = queryInNetns(t, pid, "tcp", "big.test.", dns.TypeA, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 300 {
		t.Fatalf("big over tcp: truncated %v, %d answers", r.Truncated, len(r.Answer))
	}

	want := []string{"udp example.test.", "tcp example.test.", "udp web.corp.", "udp big.test.", "tcp big.test."}
	if got := up.asked(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("upstream asked %v, want %v", got, want)
	}
}

func TestDNSTruncation(t *testing.T) {
	pid := dnsTestNetns(t)
	var many []net.IP
	for i := range 100 {
		many = append(many, net.IPv4(10, 89, 1, byte(i)))
	}
	many = append(many, net.ParseIP("2001:db8::1")) // not an A record
	resolve := func(name string) []net.IP {
		if name == "many" {
			return many
		}
		return nil
	}
	startTestDNS(t, pid, resolve, nil)

	// 512 bytes without EDNS: 12 header, 9 question, 16 per record.
	r, err := queryInNetns(t, pid, "udp", "many.", dns.TypeA, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated || len(r.Answer) != (512-12-10)/16 || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("udp: truncated %v, %d answers", r.Truncated, len(r.Answer))
	}

	// With EDNS, up to the client's size; the OPT record is echoed.
	c, err := dialInNetns(t, pid, "udp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := new(dns.Msg).SetQuestion("MANY.", dns.TypeANY)
	q.SetEdns0(1000, true)
	cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 1000}
	r, _, err = cl.ExchangeWithConn(q, c)
	if err != nil {
		t.Fatal(err)
	}
	opt := r.IsEdns0()
	if opt == nil || opt.UDPSize() != dnsEDNSSize || !opt.Do() || opt.Version() != 0 {
		t.Fatalf("OPT: %v", opt)
	}
	if !r.Truncated || len(r.Answer) != (1000-12-10-11)/16 || r.Answer[0].Header().Name != "MANY." {
		t.Fatalf("udp edns: truncated %v, %d answers", r.Truncated, len(r.Answer))
	}

	// TCP: all of them, in random order.
	seen := map[string]bool{}
	for range 5 {
		r, err = queryInNetns(t, pid, "tcp", "many.", dns.TypeA, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got := aRecords(t, r)
		if r.Truncated || len(got) != 100 {
			t.Fatalf("tcp: truncated %v, %d answers", r.Truncated, len(got))
		}
		seen[got[0]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("5 answers started with the same address %v: not shuffled?", seen)
	}
}

func TestDNSErrors(t *testing.T) {
	resolve, _ := dnsTestResolver(t)
	s := &DNSServer{resolve: resolve}

	// Not a query: dropped.
	q := new(dns.Msg).SetQuestion("web.", dns.TypeA)
	q.Response = true
	if _, act := handleMsg(t, s, q, false); act != dnsDrop {
		t.Fatalf("response: %v", act)
	}
	// Another opcode: NOTIMP, with the OPT record.
	q = new(dns.Msg).SetQuestion("web.", dns.TypeA)
	q.Opcode = dns.OpcodeNotify
	q.SetEdns0(4096, false)
	if r, _ := handleMsg(t, s, q, false); r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeNotify || len(r.Question) != 0 || r.IsEdns0() == nil {
		t.Fatalf("notify: %v", r)
	}
	// No question, two questions: FORMERR.
	q = new(dns.Msg)
	q.Id = 7
	if r, _ := handleMsg(t, s, q, false); r.Rcode != dns.RcodeFormatError {
		t.Fatalf("no question: %v", r)
	}
	q = new(dns.Msg).SetQuestion("web.", dns.TypeA)
	q.Question = append(q.Question, q.Question[0])
	if r, _ := handleMsg(t, s, q, true); r.Rcode != dns.RcodeFormatError || len(r.Answer) != 0 {
		t.Fatalf("two questions: %v", r)
	}
	// Two OPT records: FORMERR.
	q = new(dns.Msg).SetQuestion("web.", dns.TypeA)
	q.SetEdns0(4096, false)
	q.Extra = append(q.Extra, q.Extra[0])
	if r, _ := handleMsg(t, s, q, false); r.Rcode != dns.RcodeFormatError {
		t.Fatalf("two OPT: %v", r)
	}
	// EDNS version 1: BADVERS.
	q = new(dns.Msg).SetQuestion("web.", dns.TypeA)
	q.SetEdns0(4096, false)
	q.Extra[0].(*dns.OPT).SetVersion(1)
	if r, _ := handleMsg(t, s, q, false); r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 || len(r.Answer) != 0 {
		t.Fatalf("EDNS version 1: %v", r)
	}
	// Other classes, unknown names and odd bytes are forwarded.
	for _, qq := range []dns.Question{
		{Name: "web.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS},
		{Name: "web.corp.", Qtype: dns.TypeA, Qclass: dns.ClassINET},
		{Name: ".", Qtype: dns.TypeNS, Qclass: dns.ClassINET},
		{Name: `w\.eb.`, Qtype: dns.TypeA, Qclass: dns.ClassINET},
		{Name: `w\000eb.`, Qtype: dns.TypeA, Qclass: dns.ClassINET},
	} {
		q = new(dns.Msg)
		q.Question = []dns.Question{qq}
		if _, act := handleMsg(t, s, q, false); act != dnsForward {
			t.Fatalf("%v: %v", qq, act)
		}
	}
	// Other types of a known name: empty NOERROR; ANY is answered as A.
	q = new(dns.Msg).SetQuestion("db.", dns.TypeMX)
	if r, act := handleMsg(t, s, q, false); act != dnsReply || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !r.Authoritative {
		t.Fatalf("MX: %v", r)
	}
	q = new(dns.Msg).SetQuestion("db.", dns.TypeANY)
	if r, _ := handleMsg(t, s, q, false); len(aRecords(t, r)) != 2 {
		t.Fatalf("ANY: %v", r)
	}
}

func TestDNSForwardTimeout(t *testing.T) {
	pid := dnsTestNetns(t)
	resolve, _ := dnsTestResolver(t)
	up := startFakeUpstream(t)
	startTestDNS(t, pid, resolve, []string{silentUpstream(t), up.addr})

	start := time.Now()
	r, err := queryInNetns(t, pid, "udp", "example.test.", dns.TypeA, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := aRecords(t, r); len(got) != 1 || got[0] != "192.0.2.7" {
		t.Fatalf("forwarded: %v", r)
	}
	if d := time.Since(start); d < dnsUpstreamTimeout || d > dnsUpstreamTimeout+time.Second {
		t.Fatalf("answered after %v: want the 2 s timeout of the silent upstream", d)
	}
}

func TestDNSServfail(t *testing.T) {
	pid := dnsTestNetns(t)
	resolve, _ := dnsTestResolver(t)
	startTestDNS(t, pid, resolve, []string{deadUpstream(t), deadUpstream(t)})

	for _, network := range []string{"udp", "tcp"} {
		r, err := queryInNetns(t, pid, network, "example.test.", dns.TypeA, 3*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if r.Rcode != dns.RcodeServerFailure || len(r.Answer) != 0 {
			t.Fatalf("%s: %v", network, r)
		}
	}

	// No upstream at all: SERVFAIL too, and local names still work.
	s2pid := dnsTestNetns(t)
	startTestDNS(t, s2pid, resolve, nil)
	r, err := queryInNetns(t, s2pid, "udp", "example.test.", dns.TypeA, 2*time.Second)
	if err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("no upstreams: %v %v", r, err)
	}
	r, err = queryInNetns(t, s2pid, "udp", "db.", dns.TypeA, 2*time.Second)
	if err != nil || len(r.Answer) != 2 {
		t.Fatalf("no upstreams, local name: %v %v", r, err)
	}
}

func TestDNSClose(t *testing.T) {
	pid := dnsTestNetns(t)
	resolve, _ := dnsTestResolver(t)
	up := startFakeUpstream(t)

	// Warm up what stays (the Go runtime's threads, the test's helpers).
	s, err := StartDNS(pid, resolve, []string{up.addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queryInNetns(t, pid, "udp", "web.", dns.TypeA, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	s.Close()
	time.Sleep(50 * time.Millisecond)
	fds0, gs0 := countFDs(t), runtime.NumGoroutine()

	s, err = StartDNS(pid, resolve, []string{up.addr})
	if err != nil {
		t.Fatalf("StartDNS again after Close (sockets not gone?): %v", err)
	}
	// A UDP client connected before Close, a TCP connection open at Close,
	// and a forward in flight to a silent upstream.
	uc, err := dialInNetns(t, pid, "udp")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	cl := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	if r, _, err := cl.ExchangeWithConn(new(dns.Msg).SetQuestion("web.", dns.TypeA), uc); err != nil || len(r.Answer) != 1 {
		t.Fatalf("before Close: %v %v", r, err)
	}
	tc, err := dialInNetns(t, pid, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tcl := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	if r, _, err := tcl.ExchangeWithConn(new(dns.Msg).SetQuestion("web.", dns.TypeA), tc); err != nil || len(r.Answer) != 1 {
		t.Fatalf("tcp before Close: %v %v", r, err)
	}

	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// No more answers, over UDP or on the open TCP connection, and no one
	// listens any more.
	cl.Timeout = 300 * time.Millisecond
	if r, _, err := cl.ExchangeWithConn(new(dns.Msg).SetQuestion("web.", dns.TypeA), uc); err == nil {
		t.Fatalf("UDP answered after Close: %v", r)
	}
	tcl.Timeout = 300 * time.Millisecond
	if r, _, err := tcl.ExchangeWithConn(new(dns.Msg).SetQuestion("web.", dns.TypeA), tc); err == nil {
		t.Fatalf("TCP connection answered after Close: %v", r)
	}
	if c, err := dialInNetns(t, pid, "tcp"); err == nil {
		c.Close()
		t.Fatal("TCP connect after Close succeeded")
	}
	uc.Close()
	tc.Close()

	// Sockets and goroutines are back to what they were.
	deadline := time.Now().Add(2 * time.Second)
	for {
		fds, gs := countFDs(t), runtime.NumGoroutine()
		if fds <= fds0 && gs <= gs0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d fds (was %d), %d goroutines (was %d)", fds, fds0, gs, gs0)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The port is free again in the namespace.
	s, err = StartDNS(pid, resolve, nil)
	if err != nil {
		t.Fatalf("StartDNS after Close: %v", err)
	}
	s.Close()
}

func TestDNSCloseDuringForward(t *testing.T) {
	pid := dnsTestNetns(t)
	resolve, _ := dnsTestResolver(t)
	s := startTestDNS(t, pid, resolve, []string{silentUpstream(t)})
	done := make(chan struct{})
	go func() {
		defer close(done)
		queryInNetns(t, pid, "udp", "example.test.", dns.TypeA, time.Second)
	}()
	time.Sleep(300 * time.Millisecond) // the query waits on the silent upstream
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Close waited %v for a forward in flight", d)
	}
	<-done
}

func TestDNSStartErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := StartDNS(1<<30, func(string) []net.IP { return nil }, nil); err == nil {
		t.Fatal("StartDNS of a process that does not exist succeeded")
	}
	// The port is taken in the namespace.
	pid := dnsTestNetns(t)
	startTestDNS(t, pid, func(string) []net.IP { return nil }, nil)
	if s2, err := StartDNS(pid, func(string) []net.IP { return nil }, nil); err == nil {
		s2.Close()
		t.Fatal("second StartDNS in the same namespace succeeded")
	}
	assertThreadsInOwnNetns(t)
	// The first one still works.
	if r, err := queryInNetns(t, pid, "udp", "example.test.", dns.TypeA, 2*time.Second); err != nil || r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("after a failed StartDNS: %v %v", r, err)
	}
}

func TestHostUpstreams(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	conf := `# comment
nameserver 127.0.0.53
; other comment
search example.com
nameserver   2001:db8::1
nameserver fe80::1%eth0
nameserver not-an-ip
nameserver
options edns0 trust-ad
nameserver 10.0.0.1 # trailing
`
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got := HostUpstreams(p)
	want := []string{"127.0.0.53:53", "[2001:db8::1]:53", "[fe80::1%eth0]:53", "10.0.0.1:53"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := HostUpstreams(filepath.Join(t.TempDir(), "missing")); got != nil {
		t.Fatalf("missing file: %q", got)
	}
}

// assertThreadsInOwnNetns checks that every thread of the process is in the
// process's network namespace.
func assertThreadsInOwnNetns(t *testing.T) {
	t.Helper()
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // the thread just exited
		}
		if ns != own {
			t.Fatalf("thread %s is in %s, not %s", task.Name(), ns, own)
		}
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}
