package dns

import (
	"context"
	"errors"
	"net/netip"
	"testing"
)

// TestLookupNetIP: the proxy's lookups share the resolver's cache and its
// CNAME-chain policy, and record no events.
func TestLookupNetIP(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	addrs, err := ts.LookupNetIP(ctx, netip.MustParseAddr(student), "WWW.Lookup.example.")
	if err != nil || len(addrs) != 2 || addrs[0].String() != "192.0.2.1" && addrs[1].String() != "192.0.2.1" {
		t.Fatalf("LookupNetIP = %v, %v", addrs, err)
	}
	if _, err := ts.LookupNetIP(ctx, netip.MustParseAddr(student), "www.lookup.example"); err != nil {
		t.Fatal(err)
	}
	if n := ts.up.count("www.lookup.example."); n != 2 { // one A, one AAAA; the second lookup is cached
		t.Errorf("upstream asked %d times, want 2", n)
	}
	if _, err := ts.LookupNetIP(ctx, netip.MustParseAddr(staff), "cdn.example"); !errors.Is(err, ErrBlocked) {
		t.Errorf("CNAME to a blocked target: err = %v", err)
	}
	if addrs, err := ts.LookupNetIP(ctx, netip.MustParseAddr(student), "192.0.2.55"); err != nil || addrs[0].String() != "192.0.2.55" {
		t.Errorf("IP literal: %v %v", addrs, err)
	}
	if evs := ts.sink.events(); len(evs) != 0 {
		t.Errorf("LookupNetIP recorded events: %+v", evs)
	}
}
