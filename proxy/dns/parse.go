package dns

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// queryBuf is a UDP worker's reusable request: the message, its question
// and its OPT record, filled again for every datagram by parseQuery, so
// that a query allocates at most its name, and not that when the name is
// in names. miekg/dns's Unpack allocates a new question slice and OPT each
// time, which with the message itself was about 40% of the resolver's
// garbage at 10,000 queries a second.
type queryBuf struct {
	msg   mdns.Msg
	q     [1]mdns.Question
	extra [1]mdns.RR
	opt   mdns.OPT
	names *nameTable // nil: every name is unpacked anew
}

// nameTable holds the question names of recent queries, keyed by their
// bytes on the wire, so that a name asked again is not a new string: the
// name was about half of what an answered query left for the collector,
// and a school asks the same few thousand names all day. It is shared by
// the UDP workers. A shard holds at most nameShardMax names; a full shard
// takes no more until nameRefresh has passed since it was last emptied,
// then starts again empty, so the names asked often are the ones it holds
// (the first asked after a refresh are mostly those), a flood of new
// names costs no more than it did without the table, and at most
// nameShards × nameShardMax names are held (about 100 bytes each).
type nameTable struct {
	seed   maphash.Seed
	shards [nameShards]nameShard
}

const (
	nameShards   = 8
	nameShardMax = 1024
	nameRefresh  = time.Minute
)

type nameShard struct {
	mu      sync.Mutex
	m       map[string]string // wire form → the name as UnpackDomainName reads it
	emptied int64             // unix nanoseconds
	_       [40]byte          // a cache line each
}

func newNameTable() *nameTable { return &nameTable{seed: maphash.MakeSeed()} }

// name returns the name whose wire form (labels without compression, and
// the root) starts pkt[off:], and the offset after it, as
// mdns.UnpackDomainName(pkt, off) does.
func (t *nameTable) name(pkt []byte, off int) (string, int, error) {
	end := off
	for end < len(pkt) && end-off < 255 {
		l := int(pkt[end])
		if l == 0 {
			break
		}
		if l&0xC0 != 0 {
			end = -1 // a pointer or an extended label: as it comes
			break
		}
		end += 1 + l
	}
	if t == nil || end < 0 || end >= len(pkt) || end-off >= 255 {
		return mdns.UnpackDomainName(pkt, off)
	}
	wire := pkt[off : end+1]
	sh := &t.shards[maphash.Bytes(t.seed, wire)%nameShards]
	sh.mu.Lock()
	n, ok := sh.m[string(wire)]
	full, emptied := len(sh.m) >= nameShardMax, sh.emptied
	sh.mu.Unlock()
	if ok {
		return n, end + 1, nil
	}
	n, next, err := mdns.UnpackDomainName(pkt, off)
	if err != nil || next != end+1 {
		return n, next, err
	}
	now := time.Now().UnixNano()
	if full && now-emptied < int64(nameRefresh) {
		return n, next, nil
	}
	both := string(wire) + n // one allocation for the key and the name
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil || len(sh.m) >= nameShardMax {
		if sh.m != nil && now-sh.emptied < int64(nameRefresh) {
			return n, next, nil // another worker filled it meanwhile
		}
		sh.m, sh.emptied = make(map[string]string, nameShardMax), now
	}
	sh.m[both[:len(wire)]] = both[len(wire):]
	return both[len(wire):], next, nil
}

// parseQuery reads pkt into b.msg when it has the shape of an ordinary
// query: one question, no answer or authority records, and at most one
// additional record, an OPT without options, owned by the root; nothing
// after them. It returns the message, or nil for any other datagram,
// which the caller gives to miekg/dns's Unpack. For every datagram it
// takes, the message equals what Unpack makes of it (FuzzParseQuery).
func (b *queryBuf) parseQuery(pkt []byte) *mdns.Msg {
	if len(pkt) < 12+1+4 {
		return nil
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(pkt[4:]), binary.BigEndian.Uint16(pkt[6:]),
		binary.BigEndian.Uint16(pkt[8:]), binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return nil
	}
	name, off, err := b.names.name(pkt, 12)
	if err != nil || off+4 > len(pkt) {
		return nil
	}
	q := mdns.Question{Name: name, Qtype: binary.BigEndian.Uint16(pkt[off:]), Qclass: binary.BigEndian.Uint16(pkt[off+2:])}
	off += 4
	m := &b.msg
	m.Extra = nil
	if ar == 1 {
		// root name, type, class (UDP size), TTL (extended rcode, version,
		// flags), RDLENGTH 0
		if len(pkt) != off+11 || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != mdns.TypeOPT ||
			binary.BigEndian.Uint16(pkt[off+9:]) != 0 {
			return nil
		}
		b.opt = mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT,
			Class: binary.BigEndian.Uint16(pkt[off+3:]), Ttl: binary.BigEndian.Uint32(pkt[off+5:])}}
		b.extra[0] = &b.opt
		m.Extra = b.extra[:]
	} else if len(pkt) != off {
		return nil
	}
	bits := binary.BigEndian.Uint16(pkt[2:])
	m.MsgHdr = mdns.MsgHdr{
		Id:                 binary.BigEndian.Uint16(pkt),
		Response:           bits&(1<<15) != 0,
		Opcode:             int(bits>>11) & 0xF,
		Authoritative:      bits&(1<<10) != 0,
		Truncated:          bits&(1<<9) != 0,
		RecursionDesired:   bits&(1<<8) != 0,
		RecursionAvailable: bits&(1<<7) != 0,
		Zero:               bits&(1<<6) != 0,
		AuthenticatedData:  bits&(1<<5) != 0,
		CheckingDisabled:   bits&(1<<4) != 0,
		Rcode:              int(bits & 0xF),
	}
	if m.Extra != nil {
		m.Rcode |= b.opt.ExtendedRcode() // as Unpack does
	}
	m.Compress = false
	b.q[0] = q
	m.Question = b.q[:]
	m.Answer, m.Ns = nil, nil
	return m
}
