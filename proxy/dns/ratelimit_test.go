package dns

import (
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
