package network

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// rawQuery builds a message by hand: a header with id 0x1234, flags and the
// four counts, then body.
func rawQuery(flags, qd, an, ns, ar uint16, body ...[]byte) []byte {
	b := []byte{0x12, 0x34}
	for _, v := range []uint16{flags, qd, an, ns, ar} {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

// wireName is the uncompressed wire form of the labels, root included.
func wireName(labels ...string) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// typeClass is a question's type and class, or the first four bytes of a
// record's fixed part.
func typeClass(typ, class uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, typ), class)
}

// rrFixed is the fixed part of a record after its name.
func rrFixed(typ, class uint16, ttl uint32, rdata []byte) []byte {
	b := typeClass(typ, class)
	b = binary.BigEndian.AppendUint32(b, ttl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rdata)))
	return append(b, rdata...)
}

// parseRcode parses msg and returns the rcode, or -1 when it is dropped.
func parseRcode(msg []byte) int {
	var q dnsQuery
	if !parseDNSQuery(msg, &q) {
		return -1
	}
	return q.rcode
}

// dnsSeedQueries are well-formed queries, packed by miekg/dns.
func dnsSeedQueries(t testing.TB) [][]byte {
	var msgs []*dns.Msg
	msgs = append(msgs, new(dns.Msg).SetQuestion("web.", dns.TypeA))
	msgs = append(msgs, new(dns.Msg).SetQuestion("Db.Example.", dns.TypeAAAA))
	m := new(dns.Msg).SetQuestion("example.test.", dns.TypeANY)
	m.SetEdns0(1232, true)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	msgs = append(msgs, m)
	m = new(dns.Msg).SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	msgs = append(msgs, m)
	m = new(dns.Msg).SetQuestion("web.", dns.TypeA)
	m.Opcode = dns.OpcodeNotify
	msgs = append(msgs, m)
	var out [][]byte
	for _, m := range msgs {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestParseDNSQuery(t *testing.T) {
	m := new(dns.Msg).SetQuestion("Web.Example.", dns.TypeAAAA)
	m.Id = 0xBEEF
	m.CheckingDisabled = true
	m.SetEdns0(4000, true)
	raw, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	var q dnsQuery
	if !parseDNSQuery(raw, &q) || q.rcode != 0 {
		t.Fatalf("parse: %+v", q)
	}
	if q.id != 0xBEEF || !q.hasQuestion || q.qtype != dns.TypeAAAA || q.qclass != dns.ClassINET || q.opcode() != 0 {
		t.Fatalf("parse: %+v", q)
	}
	if !bytes.Equal(q.qname(), wireName("Web", "Example")) {
		t.Fatalf("name %q", q.qname())
	}
	if !q.edns || q.udpSize != 4000 || !q.dnssecOK || q.ednsVersion != 0 || q.limit(false) != 4000 || q.limit(true) != 65535 {
		t.Fatalf("EDNS: %+v", q)
	}
	if name, ok := dnsLookupName(q.qname()); !ok || name != "web.example" {
		t.Fatalf("lookup name %q %v", name, ok)
	}

	// The answer, byte for byte.
	out := q.appendReply(nil, dnsRcodeSuccess, dnsFlagAA, []net.IP{net.IPv4(10, 89, 0, 2)}, q.limit(false))
	want := "beef" + "8590" + "0001" + "0001" + "0000" + "0001" + // CD copied; RD was not set
		hex.EncodeToString(wireName("Web", "Example")) + "001c0001" +
		"c00c" + "0001" + "0001" + "00000258" + "0004" + "0a590002" +
		"00" + "0029" + "04d0" + "00008000" + "0000" // OPT: 1232, DO
	if got := hex.EncodeToString(out); got != want {
		t.Fatalf("answer\n got %s\nwant %s", got, want)
	}

	// A small EDNS size counts as 512.
	m.IsEdns0().SetUDPSize(100)
	raw, _ = m.Pack()
	if !parseDNSQuery(raw, &q) || q.limit(false) != 512 {
		t.Fatalf("EDNS 100: limit %d", q.limit(false))
	}

	// Records in the answer and authority sections are skipped; bytes
	// after the last record ignored.
	raw = rawQuery(0x0100, 1, 1, 1, 1,
		wireName("web"), typeClass(1, 1),
		[]byte{0xC0, 12}, rrFixed(1, 1, 5, []byte{1, 2, 3, 4}),
		wireName("x", "web"), rrFixed(2, 1, 5, []byte{0xC0, 12}),
		[]byte{0}, rrFixed(dnsTypeOPT, 2048, 0, []byte{0, 10, 0, 2, 0xAB, 0xCD}),
		[]byte("trailing"))
	if !parseDNSQuery(raw, &q) || q.rcode != 0 || !q.edns || q.udpSize != 2048 || q.dnssecOK {
		t.Fatalf("with records: %+v", q)
	}
}

func TestParseDNSHeader(t *testing.T) {
	q := func(flags, qd uint16) []byte { return rawQuery(flags, qd, 0, 0, 0, wireName("web"), typeClass(1, 1)) }
	for _, c := range []struct {
		name string
		msg  []byte
		want int
	}{
		{"empty", nil, -1},
		{"short header", q(0, 1)[:11], -1},
		{"header only", q(0, 1)[:12], dnsRcodeFormErr},
		{"response", q(dnsFlagQR, 1), -1},
		{"query", q(0, 1), 0},
		{"no question", q(0, 0), dnsRcodeFormErr},
		{"two questions", rawQuery(0, 2, 0, 0, 0, wireName("web"), typeClass(1, 1), wireName("db"), typeClass(1, 1)), dnsRcodeFormErr},
		{"opcode status", q(2<<11, 1), dnsRcodeNotImp},
		{"opcode update, no question", q(5<<11, 0), dnsRcodeNotImp},
		{"opcode 15, malformed", q(15<<11, 1)[:14], dnsRcodeNotImp},
	} {
		if got := parseRcode(c.msg); got != c.want {
			t.Errorf("%s: rcode %d, want %d", c.name, got, c.want)
		}
	}
}

func TestParseDNSTruncated(t *testing.T) {
	for _, full := range dnsSeedQueries(t) {
		if parseRcode(full) == dnsRcodeNotImp {
			continue
		}
		if got := parseRcode(full); got != 0 {
			t.Fatalf("full message: rcode %d", got)
		}
		for n := range len(full) {
			want := dnsRcodeFormErr
			if n < dnsHeaderLen {
				want = -1
			}
			if got := parseRcode(full[:n]); got != want {
				t.Fatalf("%x cut at %d: rcode %d, want %d", full, n, got, want)
			}
		}
	}
}

func TestParseDNSCompressionPointers(t *testing.T) {
	web := wireName("web") // at offset 12, its root at 16
	tc := typeClass(1, 1)  // the question ends at 21
	for _, c := range []struct {
		name string
		msg  []byte
		want int
	}{
		{"question to itself", rawQuery(0, 1, 0, 0, 0, []byte{0xC0, 12}, tc), dnsRcodeFormErr},
		{"question into the header", rawQuery(0, 1, 0, 0, 0, []byte{0xC0, 0}, tc), dnsRcodeFormErr},
		{"question forward", rawQuery(0, 1, 0, 0, 0, []byte{1, 'a', 0xC0, 20}, tc, web), dnsRcodeFormErr},
		{"pointer cut", rawQuery(0, 1, 0, 0, 0, []byte{1, 'a', 0xC0}), dnsRcodeFormErr},
		{"record to the question", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{0xC0, 12}, rrFixed(1, 1, 0, nil)), 0},
		{"record to the question's tail", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{1, 'x', 0xC0, 16}, rrFixed(1, 1, 0, nil)), 0},
		{"record to itself", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{0xC0, 21}, rrFixed(1, 1, 0, nil)), dnsRcodeFormErr},
		{"record label then to itself", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{1, 'a', 0xC0, 21}, rrFixed(1, 1, 0, nil)), dnsRcodeFormErr},
		{"record to its own label", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{1, 'a', 1, 'b', 0xC0, 23}, rrFixed(1, 1, 0, nil)), dnsRcodeFormErr},
		// 21: a pointer to 23, which points back to 21.
		{"two-pointer loop", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{0xC0, 23, 0xC0, 21}, rrFixed(1, 1, 0, nil)), dnsRcodeFormErr},
		// 21: 'a' then a pointer to 25 ('b' then a pointer back to 21).
		{"label loop", rawQuery(0, 1, 2, 0, 0, web, tc, []byte{1, 'a', 0xC0, 25, 1, 'b', 0xC0, 21}, rrFixed(1, 1, 0, nil)), dnsRcodeFormErr},
		{"pointer past the end", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{0xC0, 0xFF}, rrFixed(1, 1, 0, nil)), dnsRcodeFormErr},
		{"label type 0x40", rawQuery(0, 1, 0, 0, 0, []byte{0x41, 'a', 0}, tc), dnsRcodeFormErr},
		{"label type 0x80", rawQuery(0, 1, 0, 0, 0, []byte{0x81, 'a', 0}, tc), dnsRcodeFormErr},
	} {
		if got := parseRcode(c.msg); got != c.want {
			t.Errorf("%s: rcode %d, want %d", c.name, got, c.want)
		}
	}

	// A chain of pointers, each to the one before: dnsMaxPointers of
	// them are fine, one more is not.
	msg := rawQuery(0, 0, 0, 0, 0, wireName("a")) // "a." at 12
	prev := 12
	for range dnsMaxPointers + 1 {
		at := len(msg)
		msg = append(msg, 0xC0|byte(prev>>8), byte(prev))
		prev = at
	}
	var name [dnsMaxNameLen]byte
	last := len(msg) - 2
	if n, next, err := readDNSName(msg, last-2, &name); err != nil || n != 3 || next != last || string(name[:n]) != "\x01a\x00" {
		t.Fatalf("%d pointers: %d %d %v", dnsMaxPointers, n, next, err)
	}
	if _, _, err := readDNSName(msg, last, &name); err == nil {
		t.Fatalf("%d pointers: no error", dnsMaxPointers+1)
	}
}

func TestParseDNSLongNames(t *testing.T) {
	l63 := strings.Repeat("a", 63)
	l61 := strings.Repeat("b", 61)
	tc := typeClass(1, 1)
	// 4*64 = 256 bytes of labels + the root.
	if got := parseRcode(rawQuery(0, 1, 0, 0, 0, wireName(l63, l63, l63, l63), tc)); got != dnsRcodeFormErr {
		t.Fatalf("257-byte name: rcode %d", got)
	}
	// 3*64 + 62 + 1 = 255: the longest name.
	raw := rawQuery(0, 1, 0, 0, 0, wireName(l63, l63, l63, l61), tc)
	var q dnsQuery
	if !parseDNSQuery(raw, &q) || q.rcode != 0 || q.nameLen != 255 {
		t.Fatalf("255-byte name: %d %d", q.rcode, q.nameLen)
	}
	if name, ok := dnsLookupName(q.qname()); !ok || len(name) != 253 {
		t.Fatalf("lookup name of 255 bytes: %d %v", len(name), ok)
	}
	// 256 through a pointer: one more label before the longest name.
	raw = rawQuery(0, 1, 1, 0, 0, wireName(l63, l63, l63, l61), tc, []byte{1, 'x', 0xC0, 12}, rrFixed(1, 1, 0, nil))
	if got := parseRcode(raw); got != dnsRcodeFormErr {
		t.Fatalf("256 bytes through a pointer: rcode %d", got)
	}
	// A 64-byte label does not exist: 0x40 is another label type.
	if got := parseRcode(rawQuery(0, 1, 0, 0, 0, wireName(l63+"a"), tc)); got != dnsRcodeFormErr {
		t.Fatalf("64-byte label: rcode %d", got)
	}
	// A label longer than the message.
	if got := parseRcode(rawQuery(0, 1, 0, 0, 0, []byte{10, 'a', 'b'})); got != dnsRcodeFormErr {
		t.Fatalf("label past the end: rcode %d", got)
	}
}

func TestParseDNSOPT(t *testing.T) {
	web := wireName("web")
	tc := typeClass(1, 1)
	opt := func(class uint16, ttl uint32) []byte { return rrFixed(dnsTypeOPT, class, ttl, nil) }
	for _, c := range []struct {
		name string
		msg  []byte
		want int
	}{
		{"OPT", rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0}, opt(1232, 0)), 0},
		{"OPT owned by a pointer to the root", rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0xC0, 16}, opt(1232, 0)), 0},
		{"two OPT", rawQuery(0, 1, 0, 0, 2, web, tc, []byte{0}, opt(1232, 0), []byte{0}, opt(1232, 0)), dnsRcodeFormErr},
		{"OPT in the answer section", rawQuery(0, 1, 1, 0, 0, web, tc, []byte{0}, opt(1232, 0)), dnsRcodeFormErr},
		{"OPT in the authority section", rawQuery(0, 1, 0, 1, 0, web, tc, []byte{0}, opt(1232, 0)), dnsRcodeFormErr},
		{"OPT not owned by the root", rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0xC0, 12}, opt(1232, 0)), dnsRcodeFormErr},
		{"OPT cut", rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0}, opt(1232, 0)[:9]), dnsRcodeFormErr},
		{"OPT RDATA cut", rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0}, rrFixed(dnsTypeOPT, 1232, 0, []byte{0, 10, 0, 8, 1})[:12]), dnsRcodeFormErr},
		{"missing OPT", rawQuery(0, 1, 0, 0, 1, web, tc), dnsRcodeFormErr},
		{"EDNS version 1", rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0}, opt(1232, 1<<16)), dnsRcodeBadVers},
	} {
		if got := parseRcode(c.msg); got != c.want {
			t.Errorf("%s: rcode %d, want %d", c.name, got, c.want)
		}
	}

	// BADVERS: 0 in the header, 1 in the OPT record's extended rcode.
	var q dnsQuery
	parseDNSQuery(rawQuery(0, 1, 0, 0, 1, web, tc, []byte{0}, opt(1232, 1<<16)), &q)
	out := q.appendReply(nil, q.rcode, 0, nil, q.limit(false))
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil || r.Rcode != dns.RcodeBadVers || out[3]&0xF != 0 || len(r.Question) != 1 {
		t.Fatalf("BADVERS: %v %v", r, err)
	}
}

func TestParseDNSLookupName(t *testing.T) {
	for _, c := range []struct {
		wire []byte
		want string
	}{
		{wireName("web"), "web"},
		{wireName("WeB", "Example"), "web.example"},
		{wireName("my_app-1", "x"), "my_app-1.x"},
		{wireName(), ""},
		{wireName("a.b"), ""},
		{wireName("a b"), ""},
		{wireName("a\\b"), ""},
		{wireName("a\x00b"), ""},
		{wireName("\xc3\xa9t\xc3\xa9"), ""},
		{wireName("a@b"), ""},
	} {
		got, ok := dnsLookupName(c.wire)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%q: %q %v, want %q", c.wire, got, ok, c.want)
		}
	}
}

// FuzzParseDNSQuery parses anything and checks the parse against miekg/dns and
// the answers built from it.
func FuzzParseDNSQuery(f *testing.F) {
	for _, b := range dnsSeedQueries(f) {
		f.Add(b)
	}
	f.Add(rawQuery(0, 1, 0, 0, 0, []byte{0xC0, 12}, typeClass(1, 1)))
	f.Add(rawQuery(0, 1, 2, 0, 0, wireName("web"), typeClass(1, 1), []byte{1, 'a', 0xC0, 25, 1, 'b', 0xC0, 21}, rrFixed(1, 1, 0, nil)))
	f.Add(rawQuery(0, 1, 1, 0, 1, wireName("web"), typeClass(1, 1), []byte{1, 'x', 0xC0, 12}, rrFixed(1, 1, 0, []byte{1, 2, 3, 4}), []byte{0}, rrFixed(dnsTypeOPT, 1232, 1<<15, nil)))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var q dnsQuery
		if !parseDNSQuery(msg, &q) {
			if len(msg) >= dnsHeaderLen && msg[2]&0x80 == 0 {
				t.Fatal("query dropped")
			}
			return
		}
		if q.hasQuestion {
			// The name is a well-formed uncompressed name.
			if q.nameLen < 1 || q.nameLen > dnsMaxNameLen {
				t.Fatalf("name of %d bytes", q.nameLen)
			}
			alone := append(make([]byte, dnsHeaderLen), q.qname()...)
			if n, next, err := readDNSName(alone, dnsHeaderLen, nil); err != nil || n != q.nameLen || next != len(alone) {
				t.Fatalf("name %x: %d %d %v", q.qname(), n, next, err)
			}
			name, ok := dnsLookupName(q.qname())
			if ok && (name == "" || strings.HasSuffix(name, ".") || strings.ToLower(name) != name || len(name) > 253) {
				t.Fatalf("lookup name %q", name)
			}
		}
		// What miekg/dns makes of the same message, when it takes it.
		m := new(dns.Msg)
		if m.Unpack(msg) == nil && q.rcode == 0 {
			if len(m.Question) != 1 || m.Question[0].Qtype != q.qtype || m.Question[0].Qclass != q.qclass {
				t.Fatalf("question: miekg %v, here %+v", m.Question, q)
			}
			if name, _, err := dns.UnpackDomainName(append(make([]byte, 0, q.nameLen), q.qname()...), 0); err != nil || name != m.Question[0].Name {
				t.Fatalf("name: miekg %q, here %q %v", m.Question[0].Name, name, err)
			}
			if opt := m.IsEdns0(); (opt != nil) != q.edns || opt != nil && (opt.UDPSize() != q.udpSize || opt.Do() != q.dnssecOK) {
				t.Fatalf("EDNS: miekg %v, here %+v", opt, q)
			}
		}
		// Every answer fits and is well-formed.
		ips := []net.IP{net.IPv4(10, 0, 0, 1), net.ParseIP("2001:db8::1"), net.IPv4(10, 0, 0, 2)}
		for range 40 {
			ips = append(ips, net.IPv4(10, 0, 1, 1))
		}
		for _, rcode := range []int{q.rcode, dnsRcodeServFail} {
			for _, limit := range []int{q.limit(false), q.limit(true)} {
				out := q.appendReply(nil, rcode, dnsFlagAA, ips, limit)
				if len(out) > limit {
					t.Fatalf("answer of %d bytes for %d", len(out), limit)
				}
				r := new(dns.Msg)
				if err := r.Unpack(out); err != nil {
					t.Fatalf("answer %x: %v", out, err)
				}
				if r.Id != q.id || !r.Response || r.Rcode != rcode || r.Opcode != q.opcode() {
					t.Fatalf("answer header %v for %+v", r.MsgHdr, q)
				}
				if (r.IsEdns0() != nil) != q.edns {
					t.Fatalf("OPT %v for %+v", r.IsEdns0(), q)
				}
				if len(r.Answer) > 0 && (len(r.Question) != 1 || r.Answer[0].Header().Name != r.Question[0].Name) {
					t.Fatalf("answer %v", r)
				}
			}
		}
	})
}

// FuzzDNSHandle runs anything through the server's handler.
func FuzzDNSHandle(f *testing.F) {
	for _, b := range dnsSeedQueries(f) {
		f.Add(b, false)
		f.Add(b, true)
	}
	many := new(dns.Msg).SetQuestion("MANY.", dns.TypeA)
	b, _ := many.Pack()
	f.Add(b, false)
	var ips []net.IP
	for i := range 200 {
		ips = append(ips, net.IPv4(10, 1, byte(i>>8), byte(i)))
	}
	s := &DNSServer{resolve: func(name string) []net.IP {
		switch name {
		case "web":
			return []net.IP{net.IPv4(10, 89, 0, 2)}
		case "many":
			return ips
		case "empty":
			return []net.IP{}
		}
		return nil
	}}
	f.Fuzz(func(t *testing.T, msg []byte, tcp bool) {
		var q dnsQuery
		out, act := s.handle(msg, &q, nil, tcp)
		switch act {
		case dnsDrop:
			if len(out) != 0 {
				t.Fatal("answer to a dropped query")
			}
			if len(msg) >= dnsHeaderLen && msg[2]&0x80 == 0 {
				t.Fatal("query dropped")
			}
		case dnsForward:
			if len(out) != 0 || q.rcode != 0 || !q.hasQuestion {
				t.Fatalf("forwarded %+v", q)
			}
		case dnsReply:
			if len(out) > q.limit(tcp) {
				t.Fatalf("answer of %d bytes for %d", len(out), q.limit(tcp))
			}
			r := new(dns.Msg)
			if err := r.Unpack(out); err != nil {
				t.Fatalf("answer %x: %v", out, err)
			}
			if r.Id != binary.BigEndian.Uint16(msg) || !r.Response {
				t.Fatalf("answer header %v", r.MsgHdr)
			}
		}
	})
}
