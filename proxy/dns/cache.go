package dns

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// CacheOptions configures the shared answer cache.
type CacheOptions struct {
	Entries     int           // cap on entries (0 = no cache)
	MinTTL      time.Duration // clamp
	MaxTTL      time.Duration // clamp (default 24 h)
	NegativeTTL time.Duration // cap for NXDOMAIN / NODATA (default 1 h)
	ServeStale  time.Duration // RFC 8767 window past expiry (0 = never)
	Prefetch    bool
}

// cacheKey identifies an answer: the lower-cased name, type, and the
// EDNS shape of the question (which changes the packed answer).
type cacheKey struct {
	name  string
	qtype uint16
	do    bool  // DNSSEC OK
	edns  bool  // the client sent OPT
	cd    bool  // checking disabled
	noH3  bool  // HTTPS records without h3 (the client's group decrypts the name: ech.go)
	ups   uint8 // the upstream set (per group; 0 = default)
}

// entry is one cached answer, kept packed so that a hit is a copy, an ID,
// flag and TTL patch, and a write. Entries are small (64 bytes plus the
// message) because the cache holds tens of thousands: the key's name is
// not stored apart but checked against the packed question.
//
// wire and the TTL offsets share one allocation: the offsets (big-endian
// uint16s) follow the message, in wire[len(wire):cap(wire)].
type entry struct {
	wire    []byte    // packed response, ID 0, question in lower case; then the offsets of every RR's TTL (not OPT)
	chain   *[]string // CNAME/DNAME targets in the answer (lower case, no dot); nil if none
	expires int64     // unix nanos
	ttl     uint32
	used    atomic.Uint32 // unix seconds of the last hit
	hits    atomic.Uint32
	shape   uint8         // the key's shape (shapeDO, shapeEDNS, shapeCD, shapeNoH3)
	ups     uint8         // the key's upstream set
	addrs   bool          // the answer or additional section has A or AAAA records
	clean   atomic.Uint64 // the policy.Engine Gen under which no list holds an answer address (0: not known)
	fetch   atomic.Bool   // a prefetch is running
}

const (
	shapeDO = 1 << iota
	shapeEDNS
	shapeCD
	shapeNoH3
)

func (k *cacheKey) shape() uint8 {
	var s uint8
	if k.do {
		s |= shapeDO
	}
	if k.edns {
		s |= shapeEDNS
	}
	if k.cd {
		s |= shapeCD
	}
	if k.noH3 {
		s |= shapeNoH3
	}
	return s
}

// stored is when the answer was stored (unix nanos).
func (e *entry) stored() int64 { return e.expires - int64(e.ttl)*int64(time.Second) }

// targets returns the CNAME/DNAME targets of the answer.
func (e *entry) targets() []string {
	if e.chain == nil {
		return nil
	}
	return *e.chain
}

// is reports whether e answers k: the key's shape, upstream set, type and
// name (against the packed question).
func (e *entry) is(k *cacheKey) bool {
	if e.shape != k.shape() || e.ups != k.ups {
		return false
	}
	end, ok := wireNameIs(e.wire, 12, k.name)
	return ok && end+2 <= len(e.wire) && binary.BigEndian.Uint16(e.wire[end:]) == k.qtype
}

// wireNameIs reports whether the uncompressed wire name at off is name
// (lower case, no trailing dot, "" for the root), and where it ends.
func wireNameIs(b []byte, off int, name string) (int, bool) {
	for {
		if off >= len(b) {
			return 0, false
		}
		l := int(b[off])
		off++
		if l == 0 {
			return off, name == ""
		}
		if l&0xC0 != 0 || off+l > len(b) || len(name) < l || string(b[off:off+l]) != name[:l] {
			return 0, false
		}
		off += l
		name = name[l:]
		if name != "" {
			if name[0] != '.' {
				return 0, false
			}
			name = name[1:]
			if name == "" {
				return 0, false // "a." is not a key name
			}
		}
	}
}

const cacheShardBits = 5

type cache struct {
	opts   CacheOptions
	seed   maphash.Seed
	per    int   // entries per shard
	bytes  int64 // bytes of entries per shard (cacheBytesPerEntry)
	shards [1 << cacheShardBits]cacheShard
	count  atomic.Int64
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[uint64]*entry // by hash of the key (see cache.hash); entry.is checks it
	bytes int64             // the entries' size (entry.size)
}

// cacheBytesPerEntry bounds the cache's bytes as well as its entries: on
// average an entry may hold this much (a typical answer is 100–300
// bytes), so dns.cache.entries (100,000) answers take at most about
// 49 MiB. Counting entries alone let ever new names whose answers are
// large (up to 64 KiB over TCP: a domain of the client's own) hold
// gigabytes. A shard holds at least cacheMinShardBytes, so that any one
// answer fits.
const (
	cacheBytesPerEntry = 512
	cacheMinShardBytes = 160 << 10
)

// size is what e holds: the entry, its message and TTL offsets, and its
// CNAME chain.
func (e *entry) size() int64 {
	n := int64(64 + cap(e.wire))
	if e.chain != nil {
		for _, t := range *e.chain {
			n += 16 + int64(len(t))
		}
	}
	return n
}

func newCache(o CacheOptions) *cache {
	if o.Entries <= 0 {
		return nil
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = 24 * time.Hour
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = time.Hour
	}
	c := &cache{opts: o, seed: maphash.MakeSeed()}
	c.per = (o.Entries + len(c.shards) - 1) / len(c.shards)
	c.bytes = max(int64(c.per)*cacheBytesPerEntry, cacheMinShardBytes)
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]*entry)
	}
	return c
}

// hash mixes the key into 64 bits: the name's hash with the type, shape
// and upstream set (an injective mix, so one name's keys never collide).
func (c *cache) hash(k *cacheKey) uint64 {
	x := uint64(k.qtype) | uint64(k.shape())<<16 | uint64(k.ups)<<24
	return maphash.String(c.seed, k.name) ^ (x+1)*0x9E3779B97F4A7C15
}

// shard picks by the top bits of h, which the type/shape mix reaches too.
func (c *cache) shard(h uint64) *cacheShard {
	return &c.shards[h>>(64-cacheShardBits)]
}

// get returns the entry for k, fresh or (within the stale window) expired.
func (c *cache) get(k cacheKey, now int64) *entry {
	h := c.hash(&k)
	s := c.shard(h)
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	if e == nil || !e.is(&k) {
		return nil
	}
	if now > e.expires+int64(c.opts.ServeStale) {
		return nil
	}
	e.used.Store(uint32(now / int64(time.Second)))
	return e
}

// put stores a packed answer (replacing any under the same hash).
func (c *cache) put(k cacheKey, e *entry) {
	e.shape, e.ups = k.shape(), k.ups
	h := c.hash(&k)
	s := c.shard(h)
	size := e.size()
	if size > c.bytes {
		return // larger than a shard may hold (not with a message of at most 64 KiB)
	}
	s.mu.Lock()
	if old, ok := s.m[h]; ok {
		delete(s.m, h)
		s.bytes -= old.size()
		c.count.Add(-1)
	}
	for len(s.m) > 0 && (len(s.m) >= c.per || s.bytes+size > c.bytes) {
		c.evictLocked(s, e.stored())
	}
	s.m[h] = e
	s.bytes += size
	c.count.Add(1)
	s.mu.Unlock()
}

// evictLocked removes one entry: among a few sampled (map iteration order
// is random), a dead one if any, else the least recently used.
func (c *cache) evictLocked(s *cacheShard, now int64) {
	var victim uint64
	var oldest uint32 = 1<<32 - 1
	n := 0
	for k, e := range s.m {
		if now > e.expires+int64(c.opts.ServeStale) {
			victim = k
			break
		}
		if u := e.used.Load(); u < oldest {
			oldest, victim = u, k
		}
		if n++; n >= 8 {
			break
		}
	}
	s.bytes -= s.m[victim].size()
	delete(s.m, victim)
	c.count.Add(-1)
}

func (c *cache) len() int {
	if c == nil {
		return 0
	}
	return int(c.count.Load())
}

// ttlFor works out how long m may be cached, or false if it may not.
func (c *cache) ttlFor(m *mdns.Msg) (uint32, bool) {
	switch m.Rcode {
	case mdns.RcodeSuccess, mdns.RcodeNameError:
	default:
		return 0, false
	}
	if m.Truncated {
		return 0, false
	}
	neg := m.Rcode == mdns.RcodeNameError || len(m.Answer) == 0
	var ttl uint32
	if neg {
		ttl = 30 // no SOA: a short negative TTL
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				ttl = min(soa.Hdr.Ttl, soa.Minttl)
			}
		}
		ttl = min(ttl, uint32(c.opts.NegativeTTL/time.Second))
	} else {
		ttl = ^uint32(0)
		for _, rr := range m.Answer {
			ttl = min(ttl, rr.Header().Ttl)
		}
	}
	ttl = max(ttl, uint32(c.opts.MinTTL/time.Second))
	ttl = min(ttl, uint32(c.opts.MaxTTL/time.Second))
	return ttl, ttl > 0
}

// clampTTLs applies the min/max clamps to every RR of m (not OPT).
func (c *cache) clampTTLs(m *mdns.Msg) {
	lo, hi := uint32(c.opts.MinTTL/time.Second), uint32(c.opts.MaxTTL/time.Second)
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Rrtype == mdns.TypeOPT {
				continue
			}
			h.Ttl = min(max(h.Ttl, lo), hi)
		}
	}
}

// packBufs are scratch buffers for packing answers before they are copied
// into an entry of the exact size.
var packBufs = sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}

// newEntry packs m (a complete response with ID 0) for the cache.
func newEntry(m *mdns.Msg, ttl uint32, chain []string, now int64) (*entry, error) {
	bp := packBufs.Get().(*[]byte)
	defer packBufs.Put(bp)
	packed, err := m.PackBuffer(*bp)
	if err != nil {
		return nil, err
	}
	if cap(packed) > cap(*bp) && cap(packed) <= mdns.MaxMsgSize {
		*bp = packed[:cap(packed)] // keep the larger buffer
	}
	offs, ok := ttlOffsets(packed)
	if !ok {
		return nil, errBadWire
	}
	data := make([]byte, len(packed), len(packed)+2*len(offs))
	copy(data, packed)
	for _, o := range offs {
		data = binary.BigEndian.AppendUint16(data, o)
	}
	e := &entry{wire: data[:len(packed)], ttl: ttl, expires: now + int64(ttl)*int64(time.Second)}
	if len(chain) > 0 {
		e.chain = &chain
	}
	e.addrs = hasAddrs(m.Answer) || hasAddrs(m.Extra)
	e.used.Store(uint32(now / int64(time.Second)))
	return e, nil
}

// hasAddrs reports whether rrs holds an A or AAAA record.
func hasAddrs(rrs []mdns.RR) bool {
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == mdns.TypeA || t == mdns.TypeAAAA {
			return true
		}
	}
	return false
}

type wireError string

func (e wireError) Error() string { return string(e) }

const errBadWire = wireError("malformed packed message")

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(b []byte, off int) (int, bool) {
	for off < len(b) {
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xC0 == 0xC0:
			return off + 2, off+2 <= len(b)
		case l&0xC0 != 0:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

// ttlOffsets finds the TTL field of every RR in a packed message.
func ttlOffsets(b []byte) ([]uint16, bool) {
	if len(b) < 12 || len(b) > 65535 {
		return nil, false
	}
	qd := int(binary.BigEndian.Uint16(b[4:]))
	rrs := int(binary.BigEndian.Uint16(b[6:])) + int(binary.BigEndian.Uint16(b[8:])) + int(binary.BigEndian.Uint16(b[10:]))
	off := 12
	var ok bool
	for i := 0; i < qd; i++ {
		if off, ok = skipName(b, off); !ok || off+4 > len(b) {
			return nil, false
		}
		off += 4
	}
	offs := make([]uint16, 0, rrs)
	for i := 0; i < rrs; i++ {
		if off, ok = skipName(b, off); !ok || off+10 > len(b) {
			return nil, false
		}
		if binary.BigEndian.Uint16(b[off:]) != mdns.TypeOPT {
			offs = append(offs, uint16(off+4))
		}
		off += 10 + int(binary.BigEndian.Uint16(b[off+8:]))
		if off > len(b) {
			return nil, false
		}
	}
	return offs, true
}

// answerAddrs appends to dst the A and AAAA addresses in the answer and
// additional sections of e (a client may use the additional ones: RFC 9460
// puts an HTTPS or SVCB target's addresses there; the authority section's
// glue is for resolvers), read from the packed message (each RR's TYPE is
// 4 bytes before its TTL, RDLENGTH and RDATA follow it), skipping the
// first address records, until dst is full. It returns them and how many
// to skip next time (0 when all are read).
func (e *entry) answerAddrs(dst []netip.Addr, first int) ([]netip.Addr, int) {
	w := e.wire
	an := int(binary.BigEndian.Uint16(w[6:]))
	ns := int(binary.BigEndian.Uint16(w[8:]))
	offs := w[len(w):cap(w)] // every RR's but OPT's, which comes last if at all
	n := 0
	for i := 0; 2*i+1 < len(offs); i++ {
		if i == an && ns > 0 {
			i += ns // past the authority section
			if 2*i+1 >= len(offs) {
				break
			}
		}
		off := int(binary.BigEndian.Uint16(offs[2*i:]))
		if off < 4 || off+6 > len(w) {
			break
		}
		size := int(binary.BigEndian.Uint16(w[off+4:]))
		var a netip.Addr
		switch t := binary.BigEndian.Uint16(w[off-4:]); {
		case t == mdns.TypeA && size == 4 && off+10 <= len(w):
			a = netip.AddrFrom4([4]byte(w[off+6 : off+10]))
		case t == mdns.TypeAAAA && size == 16 && off+22 <= len(w):
			a = netip.AddrFrom16([16]byte(w[off+6 : off+22]))
		default:
			continue
		}
		if n++; n <= first {
			continue
		}
		if len(dst) == cap(dst) {
			return dst, n - 1
		}
		dst = append(dst, a)
	}
	return dst, 0
}

// render writes e into dst for a query with id and flags, ages the TTLs by
// now and caps them at maxTTL (0: no cap), and returns the message.
func (e *entry) render(dst []byte, id uint16, rd, cd bool, qname string, now int64, maxTTL uint32) ([]byte, bool) {
	dst = append(dst[:0], e.wire...)
	binary.BigEndian.PutUint16(dst, id)
	if rd {
		dst[2] |= 0x01
	} else {
		dst[2] &^= 0x01
	}
	if cd {
		dst[3] |= 0x10
	} else {
		dst[3] &^= 0x10
	}
	// Echo the question name exactly as asked (0x20 case randomisation).
	if !putName(dst, 12, qname) {
		return nil, false
	}
	age := uint32(0)
	if st := e.stored(); now > st {
		age = uint32((now - st) / int64(time.Second))
	}
	offs := e.wire[len(e.wire):cap(e.wire)]
	for i := 0; i+1 < len(offs); i += 2 {
		off := binary.BigEndian.Uint16(offs[i:])
		t := uint32(0)
		if orig := binary.BigEndian.Uint32(e.wire[off:]); orig > age {
			t = orig - age
		}
		if maxTTL != 0 && t > maxTTL {
			t = maxTTL
		}
		binary.BigEndian.PutUint32(dst[off:], t)
	}
	return dst, true
}

// staleTTL is the TTL of a stale answer (RFC 8767 recommends 30 s).
const staleTTL = 30

// putName overwrites the uncompressed name at off with qname, which must
// have the same wire length (the lower-cased form is what is stored).
func putName(b []byte, off int, qname string) bool {
	if qname == "." {
		return off < len(b) && b[off] == 0
	}
	start := 0
	for i := 0; i <= len(qname); i++ {
		if i < len(qname) && qname[i] != '.' {
			if qname[i] == '\\' {
				return false
			}
			continue
		}
		l := i - start
		if l == 0 {
			break
		}
		if off+1+l > len(b) || int(b[off]) != l {
			return false
		}
		copy(b[off+1:], qname[start:i])
		off += 1 + l
		start = i + 1
	}
	return off < len(b) && b[off] == 0
}
