package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// deadAddr is a loopback UDP port nobody listens on: exchanges fail at
// once (port unreachable).
func deadAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// TestUpstreamSetHealth: Health names every set (default, each group's,
// each zone's) and says which are wholly down.
func TestUpstreamSetHealth(t *testing.T) {
	dead := deadAddr(t)
	u, err := NewUpstreams([]UpstreamSpec{{Addr: dead}}, []Zone{{Name: "school.internal", Servers: []UpstreamSpec{{Addr: dead}}}}, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.AddGroup("guests", []UpstreamSpec{{Addr: dead}, {Addr: dead}}); err != nil {
		t.Fatal(err)
	}
	for _, h := range u.Health() {
		if h.AllDown() || len(h.Down) != 0 {
			t.Fatalf("down before any failure: %+v", h)
		}
	}
	q := new(mdns.Msg)
	q.SetQuestion("x.example.", mdns.TypeA)
	for range 3 {
		if _, err := u.Exchange(context.Background(), q, "x.example", u.Set("guests")); err == nil {
			t.Fatal("a dead upstream answered")
		}
	}
	got := map[string]SetHealth{}
	for _, h := range u.Health() {
		got[h.Name] = h
	}
	if len(got) != 3 {
		t.Fatalf("sets %v", got)
	}
	if g := got["group guests"]; !g.AllDown() || g.Total != 2 || len(g.Down) != 2 {
		t.Errorf("guests' set after 3 failures each: %+v", g)
	}
	if d, z := got["default"], got["zone school.internal"]; d.AllDown() || z.AllDown() || d.Total != 1 {
		t.Errorf("sets not asked are not down: %+v %+v", d, z)
	}
}
