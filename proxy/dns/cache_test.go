package dns

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestCacheKeys: the cache keeps entries by a hash of the key and checks
// the key against the packed question, so keys differing only in type,
// EDNS shape or upstream set never answer for each other, and an entry
// found under another key's hash is a miss.
func TestCacheKeys(t *testing.T) {
	c := newCache(CacheOptions{Entries: 1000})
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC).UnixNano()
	mk := func(k cacheKey, ip string) *entry {
		m := new(mdns.Msg)
		m.SetQuestion(k.name+".", k.qtype)
		m.Response = true
		rr, _ := mdns.NewRR(k.name + ". 300 IN A " + ip)
		m.Answer = append(m.Answer, rr)
		e, err := newEntry(m, 300, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	keys := []cacheKey{
		{name: "www.example.org", qtype: mdns.TypeA},
		{name: "www.example.org", qtype: mdns.TypeAAAA},
		{name: "www.example.org", qtype: mdns.TypeA, edns: true},
		{name: "www.example.org", qtype: mdns.TypeA, edns: true, do: true},
		{name: "www.example.org", qtype: mdns.TypeA, cd: true},
		{name: "www.example.org", qtype: mdns.TypeA, ups: 1},
		{name: "example.org", qtype: mdns.TypeA},
		{name: "", qtype: mdns.TypeNS},
	}
	entries := map[cacheKey]*entry{}
	for i, k := range keys {
		e := mk(k, "192.0.2."+string(rune('1'+i)))
		entries[k] = e
		c.put(k, e)
	}
	for _, k := range keys {
		if got := c.get(k, now); got != entries[k] {
			t.Fatalf("%+v: got another key's entry", k)
		}
	}
	if c.len() != len(keys) {
		t.Fatalf("len %d, want %d", c.len(), len(keys))
	}
	// An entry stored under k's hash but for another name is not k's.
	k, other := keys[0], cacheKey{name: "www.example.net", qtype: mdns.TypeA}
	h := c.hash(&k)
	c.shard(h).m[h] = mk(other, "198.51.100.1")
	if c.get(k, now) != nil {
		t.Fatal("an entry for another name answered")
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"www.example.org", true}, {"www.example.or", false}, {"www.example.orgx", false}, {"ww.example.org", false},
		{"www.example", false}, {"www.example.org.", false}, {"", false}} {
		m := new(mdns.Msg)
		m.SetQuestion("www.example.org.", mdns.TypeA)
		b, _ := m.Pack()
		if _, ok := wireNameIs(b, 12, tc.name); ok != tc.ok {
			t.Errorf("wireNameIs(www.example.org, %q) = %v", tc.name, ok)
		}
	}
}

// TestCacheBytesBounded: ever new names whose answers are large (up to
// 64 KiB over TCP, from a domain of the client's own) must not make the
// cache hold more than its byte bound, however few entries that is; a
// small answer put after them is cached and found.
func TestCacheBytesBounded(t *testing.T) {
	c := newCache(CacheOptions{Entries: 32 * 100}) // 100 entries a shard
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC).UnixNano()
	big := make([]string, 240)
	for i := range big {
		big[i] = strings.Repeat("x", 250)
	}
	for i := range 2000 {
		name := fmt.Sprintf("n%d.big.example", i)
		m := new(mdns.Msg)
		m.SetQuestion(name+".", mdns.TypeTXT)
		m.Response = true
		m.Answer = append(m.Answer, &mdns.TXT{Hdr: mdns.RR_Header{Name: name + ".", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 300}, Txt: big})
		e, err := newEntry(m, 300, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		c.put(cacheKey{name: name, qtype: mdns.TypeTXT}, e)
	}
	limit := int64(len(c.shards)) * max(100*cacheBytesPerEntry, cacheMinShardBytes)
	var held, n int64
	for i := range c.shards {
		for _, e := range c.shards[i].m {
			held += int64(cap(e.wire))
			n++
		}
	}
	if held > limit {
		t.Fatalf("%d answers of about 60 KiB hold %d bytes, bound %d", n, held, limit)
	}
	if int64(c.len()) != n {
		t.Fatalf("len %d, %d entries held", c.len(), n)
	}
	k := cacheKey{name: "www.example.org", qtype: mdns.TypeA}
	m := new(mdns.Msg)
	m.SetQuestion(k.name+".", k.qtype)
	m.Response = true
	rr, _ := mdns.NewRR(k.name + ". 300 IN A 192.0.2.1")
	m.Answer = append(m.Answer, rr)
	e, err := newEntry(m, 300, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	c.put(k, e)
	if c.get(k, now) != e {
		t.Fatal("a small answer after the flood was not cached")
	}
}
