package dns

import (
	"bytes"
	"fmt"
	"net"
	"reflect"
	"testing"
	"unsafe"

	mdns "github.com/miekg/dns"
)

// packed returns m on the wire.
func packed(t testing.TB, m *mdns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parseSeeds are datagrams parseQuery takes and ones it leaves to Unpack.
func parseSeeds(t testing.TB) [][]byte {
	plain := new(mdns.Msg)
	plain.SetQuestion("www.Example.org.", mdns.TypeA)
	plain.CheckingDisabled, plain.AuthenticatedData, plain.Zero = true, true, true
	edns := new(mdns.Msg)
	edns.SetQuestion("mail.example.org.", mdns.TypeAAAA)
	edns.SetEdns0(4096, true)
	cookie := edns.Copy() // an option: left to Unpack
	cookie.IsEdns0().Option = append(cookie.IsEdns0().Option, &mdns.EDNS0_COOKIE{Code: mdns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	two := new(mdns.Msg)
	two.SetQuestion("a.example.org.", mdns.TypeA)
	two.Question = append(two.Question, mdns.Question{Name: "b.example.org.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET})
	resp := plain.Copy()
	resp.Response = true
	resp.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: "www.Example.org.", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: net.IPv4(192, 0, 2, 1)}}
	p := packed(t, plain)
	trailing := append(append([]byte{}, p...), 0)
	// The question's name as a pointer back to the header's first byte:
	// with ID 0, the root.
	pointer := append(append([]byte{0, 0}, p[2:12]...), 0xC0, 0x00, 0, 1, 0, 1)
	return [][]byte{p, packed(t, edns), packed(t, cookie), packed(t, two), packed(t, resp), trailing, pointer,
		p[:len(p)-1], {0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}}
}

// FuzzParseQuery: whatever parseQuery takes, it reads as miekg/dns's
// Unpack does, with the reused buffer holding a different query before,
// and its name read once from the datagram and once from the name table.
func FuzzParseQuery(f *testing.F) {
	for _, b := range parseSeeds(f) {
		f.Add(b)
	}
	qb := &queryBuf{names: newNameTable()}
	other := new(mdns.Msg)
	other.SetQuestion("before.example.net.", mdns.TypeMX)
	other.SetEdns0(1232, true)
	prev := packed(f, other)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if qb.parseQuery(prev) == nil {
			t.Fatal("the ordinary EDNS query was not taken")
		}
		m := qb.parseQuery(pkt)
		if m == nil {
			return
		}
		want := new(mdns.Msg)
		if err := want.Unpack(pkt); err != nil {
			t.Fatalf("taken but Unpack fails (%v): %x", err, pkt)
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("%x:\nparseQuery %#v\nUnpack     %#v", pkt, m, want)
		}
		if m = qb.parseQuery(pkt); !reflect.DeepEqual(m, want) { // the name from the table
			t.Fatalf("%x again:\nparseQuery %#v\nUnpack     %#v", pkt, m, want)
		}
	})
}

// TestParseQueryShapes: ordinary queries, with and without EDNS, are
// taken; options, two questions, answers, trailing bytes and short
// datagrams go to Unpack.
func TestParseQueryShapes(t *testing.T) {
	s := parseSeeds(t)
	want := []bool{true, true, false, false, false, false, true, false, true}
	qb := new(queryBuf)
	for i, b := range s {
		if got := qb.parseQuery(b) != nil; got != want[i] {
			t.Errorf("seed %d (%x): taken %v, want %v", i, b, got, want[i])
		}
	}
}

// TestServePacketAllocs: an ordinary cached query read through a worker's
// buffer allocates nothing once its name is in the name table (miekg/dns's
// Unpack: the message, the question slice, the name and, with EDNS, the
// OPT and its slice too).
func TestServePacketAllocs(t *testing.T) {
	ts := startServer(t, nil)
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	qb := &queryBuf{names: ts.names}
	for _, edns := range []bool{false, true} {
		m := new(mdns.Msg)
		m.SetQuestion("www.example.org.", mdns.TypeA)
		if edns {
			m.SetEdns0(1232, false)
		}
		pkt := packed(t, m)
		ts.servePacket(w, pkt, qb) // fills the cache
		n := w.n
		allocs := testing.AllocsPerRun(200, func() { ts.servePacket(w, pkt, qb) })
		if w.n != n+201 {
			t.Fatalf("edns %v: %d answers for 201 queries", edns, w.n-n)
		}
		if allocs > 0 {
			t.Errorf("edns %v: %.1f allocations per cached query, want none", edns, allocs)
		}
	}
}

// TestWorkerBufferNoCarryOver: one client's queries reach one worker, so
// they share its buffer: an answer never carries the EDNS of the query
// before it.
func TestWorkerBufferNoCarryOver(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.udpClient(t)
	ex := func(edns bool) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion("www.example.org.", mdns.TypeA)
		if edns {
			m.SetEdns0(1232, true)
		}
		co := &mdns.Conn{Conn: c}
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 4 {
		edns := i%2 == 0
		r := ex(edns)
		if got := r.IsEdns0() != nil; got != edns {
			t.Fatalf("query %d (EDNS %v): answer has EDNS %v", i, edns, got)
		}
		if edns && !r.IsEdns0().Do() {
			t.Fatalf("query %d: DO not echoed", i)
		}
	}
}

// TestNameTableBounded: names are read as UnpackDomainName reads them,
// the same string is returned for a name asked again, however many
// different names are asked the table holds at most nameShards ×
// nameShardMax, and a full shard starts again once nameRefresh has passed.
func TestNameTableBounded(t *testing.T) {
	nt := newNameTable()
	query := func(i int) []byte {
		m := new(mdns.Msg)
		m.SetQuestion(fmt.Sprintf("Host-%d.Example.ORG.", i), mdns.TypeA)
		return packed(t, m)
	}
	ask := func(pkt []byte) string {
		t.Helper()
		want, wantOff, err := mdns.UnpackDomainName(pkt, 12)
		if err != nil {
			t.Fatal(err)
		}
		got, off, err := nt.name(pkt, 12)
		if err != nil || got != want || off != wantOff {
			t.Fatalf("%q: got %q, %d, %v; want %q, %d", want, got, off, err, want, wantOff)
		}
		return got
	}
	for i := range 1000 { // room for all: asked again, the same string
		pkt := query(i)
		if first := ask(pkt); unsafe.StringData(ask(pkt)) != unsafe.StringData(first) {
			t.Fatalf("%q asked again: a new string", first)
		}
	}
	for i := range 3 * nameShards * nameShardMax {
		ask(query(1000 + i))
		ask(query(1000 + i))
	}
	held := func() int {
		n := 0
		for i := range nt.shards {
			n += len(nt.shards[i].m)
		}
		return n
	}
	if n := held(); n != nameShards*nameShardMax {
		t.Errorf("%d names held, want %d (every shard full, none emptied within nameRefresh)", n, nameShards*nameShardMax)
	}
	pkt := query(-1)
	first := ask(pkt)
	if unsafe.StringData(ask(pkt)) == unsafe.StringData(first) {
		t.Fatal("a new name went into a full shard")
	}
	for i := range nt.shards {
		nt.shards[i].emptied -= int64(nameRefresh)
	}
	first = ask(pkt)
	if unsafe.StringData(ask(pkt)) != unsafe.StringData(first) {
		t.Fatal("a full shard did not start again after nameRefresh")
	}
	if n := held(); n > (nameShards-1)*nameShardMax+1 {
		t.Errorf("%d names held after one shard started again", n)
	}
	// Escaped, pointer and over-long names are read as they come.
	for _, pkt := range [][]byte{
		append([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 3, 'a', '.', 'b', 0, 0, 1, 0, 1),
		append([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 0xC0, 12, 0, 1, 0, 1),
		append(append([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0}, bytes.Repeat([]byte{63}, 1)...), make([]byte, 300)...),
	} {
		want, wantOff, wantErr := mdns.UnpackDomainName(pkt, 12)
		for range 2 {
			got, off, err := nt.name(pkt, 12)
			if got != want || off != wantOff || (err == nil) != (wantErr == nil) {
				t.Fatalf("%x: got %q, %d, %v; want %q, %d, %v", pkt, got, off, err, want, wantOff, wantErr)
			}
		}
	}
}
