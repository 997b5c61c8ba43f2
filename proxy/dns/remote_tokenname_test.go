package dns

import (
	"net/netip"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestTokenNameNotForwarded: a device whose DoT server name is
// <token>.HOST (Android's Private DNS) first looks that name up with the
// network's resolver: on the school's network, Gatehouse. The name is
// answered as HOST's address (a CNAME to HOST, then HOST's records), and
// the token reaches neither an upstream nor an event of the query log nor
// a log line. Before, <token>.HOST was resolved as any name: sent to the
// upstreams (public resolvers, passive DNS) and, with dns.query_log on,
// stored in the events the console shows and exports.
func TestTokenNameNotForwarded(t *testing.T) {
	rt := startRemote(t, func(o *Options) {
		o.ACL = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		o.QueryLog = true
		o.Remote.Host = "dns.test"
	})
	for _, tok := range []string{rt.student, strings.ToUpper(rt.staff)} {
		m := ask(t, "udp", rt.udp, "127.0.0.1", tok+".dns.test", mdns.TypeA, true)
		if m.Rcode != mdns.RcodeSuccess || len(m.Question) != 1 || m.Question[0].Name != tok+".dns.test." {
			t.Fatalf("%s.dns.test: %v", tok, m)
		}
		// The answer leads from the name asked to HOST's address.
		var cname, a bool
		for _, rr := range m.Answer {
			switch v := rr.(type) {
			case *mdns.CNAME:
				cname = strings.EqualFold(v.Hdr.Name, tok+".dns.test.") && v.Target == "dns.test."
			case *mdns.A:
				a = v.Hdr.Name == "dns.test." && v.A.String() == "192.0.2.1"
			}
		}
		if !cname || !a {
			t.Errorf("%s.dns.test answered %v, want a CNAME to dns.test. and its A record", tok, m)
		}
	}
	for _, tok := range []string{rt.student, rt.staff} {
		if n := rt.up.count(tok + ".dns.test."); n != 0 {
			t.Errorf("the token's name was sent upstream %d times", n)
		}
	}
	if n := rt.up.count("dns.test."); n != 1 {
		t.Errorf("dns.test. asked upstream %d times, want 1 (then cached)", n)
	}
	evs := waitEvents(t, rt.testServer, 2)
	for _, ev := range evs {
		if ev.Name != "dns.test" {
			t.Errorf("query log event for %q, want dns.test", ev.Name)
		}
	}
	rt.noTokenIn(t)
}
