package dns

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// TestRateLimiterBounded: a client making up addresses (here 300,000
// IPv6 addresses in one second, none idle) cannot grow the per-client map
// past rlBuckets, and a client over its rate is still refused afterwards
// if it stays busy.
func TestRateLimiterBounded(t *testing.T) {
	rl := newRateLimiter(10, 10, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	busy := netip.MustParseAddr("10.0.0.9")
	for range 10 {
		rl.allow(busy, now)
	}
	if rl.allow(busy, now) {
		t.Fatal("the 11th query in the same instant was allowed")
	}
	base := netip.MustParseAddr("fd00::").As16()
	var at time.Time
	for i := range 300_000 {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		at = now.Add(time.Duration(i) * time.Microsecond * 3) // all within a second
		rl.allow(netip.AddrFrom16(a), at)
		if i%1000 == 0 {
			rl.allow(busy, at) // keeps it recently seen
		}
	}
	if n := rl.len(); n > rlBuckets {
		t.Fatalf("%d buckets held, bound %d", n, rlBuckets)
	}
	if rl.allow(busy, at) {
		t.Error("the busy client was forgotten and let through")
	}
}

// TestRateLimiterSweep: once a flood of made-up addresses is over, the
// buckets that have filled up again are forgotten (as good as new ones)
// and the shards' maps rebuilt smaller; a client whose refusals are not
// yet logged keeps its bucket, and so their count for the next line.
func TestRateLimiterSweep(t *testing.T) {
	rl := newRateLimiter(10, 20, slog.New(slog.DiscardHandler))
	t0 := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	busy := netip.MustParseAddr("10.0.0.9")
	for range 21 { // 20 allowed, the first refusal logged
		rl.allow(busy, t0)
	}
	base := netip.MustParseAddr("fd00::").As16()
	addr := func(i int) netip.Addr {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		return netip.AddrFrom16(a)
	}
	for i := range 100_000 {
		at := t0.Add(time.Duration(i) * time.Microsecond)
		rl.allow(addr(i), at)
		if i%1000 == 0 {
			rl.allow(busy, at) // refused again: kept recently seen, its refusals counted
		}
	}
	if n := rl.len(); n != rlBuckets {
		t.Fatalf("%d buckets after the flood, want the bound %d", n, rlBuckets)
	}
	later := t0.Add(2 * time.Minute)
	asked := 0
	for i := 0; ; i++ { // new clients come until every shard has had a query
		swept := 0
		for j := range rl.shards {
			if rl.shards[j].swept == later.UnixNano() {
				swept++
			}
		}
		if swept == len(rl.shards) {
			break
		}
		if i == 100_000 {
			t.Fatalf("after %d new clients, %d of %d shards swept", i, swept, len(rl.shards))
		}
		rl.allow(addr(1_000_000+i), later)
		asked++
	}
	if n := rl.len(); n > asked+1 {
		t.Errorf("%d buckets after the sweep, want at most the %d clients since and the one with a refusal to log", n, asked+1)
	}
	room := 0
	for j := range rl.shards {
		room += rl.shards[j].peak
	}
	if room > 2*(asked+1) {
		t.Errorf("the shards' maps have room for %d after the sweep, want them rebuilt", room)
	}
	b16 := busy.As16()
	s := &rl.shards[maphash.Bytes(rl.seed, b16[:])%uint64(len(rl.shards))]
	if b := s.buckets[busy]; b == nil || b.limited == 0 {
		t.Errorf("the client with refusals not yet logged lost its bucket (%v)", b)
	}
}
