package network

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
)

// A compact codec of DNS messages (RFC 1035, RFC 6891), just what the
// embedded DNS server needs: parse a query (header, its one question, an OPT
// record) and build the server's own answers (A records, error codes, the
// empty truncated answer). Forwarded queries and answers are relayed as they
// are and never decoded. It replaces github.com/miekg/dns, which would bring
// crypto/tls, math/big and golang.org/x/net into the monitor.
//
// The parser reads nothing out of range, follows compression pointers only
// backwards past where the current run of labels began (so no loop is
// possible) and at most dnsMaxPointers of them, and keeps names within 255
// bytes. It allocates nothing.

const (
	dnsHeaderLen   = 12
	dnsMaxNameLen  = 255 // wire form, root label included
	dnsMaxLabelLen = 63
	dnsMaxPointers = 126 // a name has at most 127 labels
	dnsMinUDPSize  = 512
	dnsMaxMsgSize  = 65535
	dnsOPTLen      = 11 // root name, type, class, TTL, empty RDATA
	dnsARecordLen  = 16 // compressed owner, type, class, TTL, RDLENGTH, address

	dnsTypeA   = 1
	dnsTypeOPT = 41
	dnsTypeANY = 255
	dnsClassIN = 1

	dnsOpcodeQuery = 0

	dnsRcodeSuccess  = 0
	dnsRcodeFormErr  = 1
	dnsRcodeServFail = 2
	dnsRcodeNotImp   = 4
	dnsRcodeBadVers  = 16 // extended: its upper bits go in the OPT record

	// Header flags.
	dnsFlagQR = 1 << 15
	dnsFlagAA = 1 << 10
	dnsFlagTC = 1 << 9
	dnsFlagRD = 1 << 8
	dnsFlagRA = 1 << 7
	dnsFlagCD = 1 << 4
	// The DNSSEC OK bit, in the TTL field of the OPT record.
	dnsFlagDO = 1 << 15
)

// errDNSFormat reports a malformed message.
var errDNSFormat = errors.New("dns: malformed message")

// dnsQuery is a parsed query. It holds no reference to the message it was
// parsed from, so it may be copied and kept after the buffer is reused.
type dnsQuery struct {
	id    uint16
	flags uint16 // the query's header flags

	// rcode is 0 for a well-formed query, else the rcode of its answer:
	// FORMERR, NOTIMP or BADVERS.
	rcode int

	// The question, when hasQuestion. name is the uncompressed wire form,
	// root label included, with the case as asked.
	hasQuestion bool
	nameLen     int
	name        [dnsMaxNameLen]byte
	qtype       uint16
	qclass      uint16

	// The OPT record (EDNS0), when edns.
	edns        bool
	udpSize     uint16
	ednsVersion uint8
	dnssecOK    bool
}

// opcode returns the query's opcode.
func (q *dnsQuery) opcode() int { return int(q.flags>>11) & 0xF }

// qname returns the question's name in wire form.
func (q *dnsQuery) qname() []byte { return q.name[:q.nameLen] }

// parseDNSQuery parses the query msg into q. It returns false when msg is to
// be dropped: too short for a header, or a response. Otherwise q.rcode tells
// whether the query can be answered or forwarded (0) or is to be answered with
// an error.
func parseDNSQuery(msg []byte, q *dnsQuery) bool {
	*q = dnsQuery{}
	if len(msg) < dnsHeaderLen {
		return false
	}
	q.id = binary.BigEndian.Uint16(msg[0:])
	q.flags = binary.BigEndian.Uint16(msg[2:])
	if q.flags&dnsFlagQR != 0 {
		return false
	}
	err := q.parseBody(msg)
	switch {
	case q.opcode() != dnsOpcodeQuery:
		// Not echoed, whatever the question section of another opcode
		// means.
		q.rcode = dnsRcodeNotImp
		q.hasQuestion = false
		if err != nil {
			q.edns = false
		}
	case err != nil:
		q.rcode = dnsRcodeFormErr
		q.hasQuestion = false
		q.edns = false
	case q.edns && q.ednsVersion != 0:
		q.rcode = dnsRcodeBadVers
	}
	return true
}

// parseBody parses the sections of msg after the header: the one question,
// then the resource records, skipped except for an OPT record in the
// additional section. Bytes after the last record are ignored.
func (q *dnsQuery) parseBody(msg []byte) error {
	qd := binary.BigEndian.Uint16(msg[4:])
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	if qd != 1 {
		return errDNSFormat
	}
	n, off, err := readDNSName(msg, dnsHeaderLen, &q.name)
	if err != nil {
		return err
	}
	if off+4 > len(msg) {
		return errDNSFormat
	}
	q.nameLen = n
	q.qtype = binary.BigEndian.Uint16(msg[off:])
	q.qclass = binary.BigEndian.Uint16(msg[off+2:])
	off += 4
	q.hasQuestion = true

	// Every record takes at least 11 bytes, so this ends within
	// len(msg)/11 rounds whatever the counts say.
	for i := 0; i < an+ns+ar; i++ {
		n, next, err := readDNSName(msg, off, nil)
		if err != nil {
			return err
		}
		off = next
		if off+10 > len(msg) {
			return errDNSFormat
		}
		typ := binary.BigEndian.Uint16(msg[off:])
		class := binary.BigEndian.Uint16(msg[off+2:])
		ttl := binary.BigEndian.Uint32(msg[off+4:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10
		if off+rdlen > len(msg) {
			return errDNSFormat
		}
		off += rdlen
		if typ != dnsTypeOPT {
			continue
		}
		// RFC 6891: one OPT at most, in the additional section, owned
		// by the root.
		if i < an+ns || q.edns || n != 1 {
			return errDNSFormat
		}
		q.edns = true
		q.udpSize = class
		q.ednsVersion = uint8(ttl >> 16)
		q.dnssecOK = ttl&dnsFlagDO != 0
	}
	return nil
}

// readDNSName reads the name at off in msg, copying its uncompressed wire
// form into dst unless dst is nil. It returns the length of that form (root
// label included) and the offset after the name as it is in msg.
//
// A compression pointer must point into the message after the header and
// before the start of the run of labels it ends: jumps only go backwards, so
// they cannot loop, and there are at most dnsMaxPointers of them.
func readDNSName(msg []byte, off int, dst *[dnsMaxNameLen]byte) (n, next int, err error) {
	next = -1
	start := off // where the current run of labels began
	ptrs := 0
	for {
		if off >= len(msg) {
			return 0, 0, errDNSFormat
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00: // a label of c bytes; the root when c is 0
			if n+1+c > dnsMaxNameLen || off+1+c > len(msg) {
				return 0, 0, errDNSFormat
			}
			if dst != nil {
				dst[n] = byte(c)
				copy(dst[n+1:], msg[off+1:off+1+c])
			}
			n += 1 + c
			off += 1 + c
			if c == 0 {
				if next < 0 {
					next = off
				}
				return n, next, nil
			}
		case 0xC0: // a compression pointer
			if off+2 > len(msg) || ptrs == dnsMaxPointers {
				return 0, 0, errDNSFormat
			}
			p := (c&0x3F)<<8 | int(msg[off+1])
			if p < dnsHeaderLen || p >= start {
				return 0, 0, errDNSFormat
			}
			ptrs++
			if next < 0 {
				next = off + 2
			}
			off, start = p, p
		default: // 0x40 and 0x80: extended label types, none in use
			return 0, 0, errDNSFormat
		}
	}
}

// dnsLookupName returns the name, in wire form, as a Resolver takes it: in
// lower case (ASCII), labels joined by dots, without the trailing dot. It
// returns false for the root and for names with a byte that a zone file would
// escape (a dot within a label, spaces, controls, non-ASCII and the like):
// no container is named so.
func dnsLookupName(wire []byte) (string, bool) {
	var buf [dnsMaxNameLen]byte
	out := buf[:0]
	for i := 0; i < len(wire); {
		c := int(wire[i])
		if c == 0 {
			break
		}
		if c > dnsMaxLabelLen || i+1+c > len(wire) {
			return "", false
		}
		if len(out) > 0 {
			out = append(out, '.')
		}
		for _, b := range wire[i+1 : i+1+c] {
			switch {
			case 'A' <= b && b <= 'Z':
				b += 'a' - 'A'
			case b <= ' ' || b >= 0x7F:
				return "", false
			}
			switch b {
			case '.', '\\', '"', '(', ')', ';', '@', '$', '\'':
				return "", false
			}
			out = append(out, b)
		}
		i += 1 + c
	}
	if len(out) == 0 {
		return "", false
	}
	return string(out), true
}

// limit returns the biggest answer the client takes over UDP: 512 bytes, or
// the payload size of its OPT record if bigger.
func (q *dnsQuery) limit(tcp bool) int {
	if tcp {
		return dnsMaxMsgSize
	}
	if q.edns && int(q.udpSize) > dnsMinUDPSize {
		return int(q.udpSize)
	}
	return dnsMinUDPSize
}

// appendReply appends to b the answer to q with rcode and the header flags
// flags (AA, TC): the question unless rcode is FORMERR or NOTIMP, A records
// with TTL dnsTTL for the IPv4 addresses among ips, in random order, as many
// as fit in limit bytes (TC is set when some do not), and an OPT record
// advertising dnsEDNSSize when the query had one.
func (q *dnsQuery) appendReply(b []byte, rcode int, flags uint16, ips []net.IP, limit int) []byte {
	start := len(b)
	hf := dnsFlagQR | q.flags&(0xF<<11) | flags | dnsFlagRA | uint16(rcode&0xF)
	if q.opcode() == dnsOpcodeQuery {
		hf |= q.flags & (dnsFlagRD | dnsFlagCD)
	}
	question := q.hasQuestion && rcode != dnsRcodeFormErr && rcode != dnsRcodeNotImp
	var qd, ar uint16
	if question {
		qd = 1
	}
	if q.edns {
		ar = 1
	}
	b = binary.BigEndian.AppendUint16(b, q.id)
	b = binary.BigEndian.AppendUint16(b, hf)
	b = binary.BigEndian.AppendUint16(b, qd)
	b = binary.BigEndian.AppendUint16(b, 0) // ANCOUNT, set below
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, ar)
	if question {
		b = append(b, q.qname()...)
		b = binary.BigEndian.AppendUint16(b, q.qtype)
		b = binary.BigEndian.AppendUint16(b, q.qclass)
	}

	answers := len(b)
	count := 0
	if question {
		for _, ip := range ips {
			ip4 := ip.To4()
			if ip4 == nil {
				continue
			}
			// The owner is the question's name, at offset 12.
			b = append(b, 0xC0, dnsHeaderLen, 0, dnsTypeA, 0, dnsClassIN)
			b = binary.BigEndian.AppendUint32(b, dnsTTL)
			b = append(b, 0, 4)
			b = append(b, ip4...)
			count++
		}
	}
	if count > 1 {
		// Round robin among the containers of an alias, like Docker.
		rand.Shuffle(count, func(i, j int) {
			x := b[answers+i*dnsARecordLen+12 : answers+(i+1)*dnsARecordLen]
			y := b[answers+j*dnsARecordLen+12 : answers+(j+1)*dnsARecordLen]
			var t [4]byte
			copy(t[:], x)
			copy(x, y)
			copy(y, t[:])
		})
	}
	optLen := 0
	if q.edns {
		optLen = dnsOPTLen
	}
	if len(b)-start+optLen > limit {
		fit := max(0, (limit-optLen-(answers-start))/dnsARecordLen)
		if fit < count {
			count = fit
			b = b[:answers+fit*dnsARecordLen]
			binary.BigEndian.PutUint16(b[start+2:], hf|dnsFlagTC)
		}
	}
	binary.BigEndian.PutUint16(b[start+6:], uint16(count))

	if q.edns {
		ttl := uint32(rcode>>4) << 24 // extended rcode; version 0
		if q.dnssecOK {
			ttl |= dnsFlagDO // RFC 3225: copied from the query
		}
		b = append(b, 0) // the root
		b = binary.BigEndian.AppendUint16(b, dnsTypeOPT)
		b = binary.BigEndian.AppendUint16(b, dnsEDNSSize)
		b = binary.BigEndian.AppendUint32(b, ttl)
		b = binary.BigEndian.AppendUint16(b, 0)
	}
	return b
}
