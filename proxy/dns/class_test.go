package dns

import (
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestBlockedNameEveryClass: a question of class ANY (255), CHAOS or
// HESIOD for a blocked name is decided as class IN is, never forwarded: a
// recursive resolver that answers QCLASS ANY with the IN data (Unbound
// does) would hand the pupil the blocked name's address.
func TestBlockedNameEveryClass(t *testing.T) {
	ts := startServer(t, nil)
	for _, class := range []uint16{mdns.ClassANY, mdns.ClassCHAOS, mdns.ClassHESIOD} {
		c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second,
			Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(student)}, Timeout: 5 * time.Second}}
		m := new(mdns.Msg)
		m.SetQuestion("gamble.example.", mdns.TypeA)
		m.Question[0].Qclass = class
		r, _, err := c.Exchange(m, ts.udp)
		if err != nil {
			t.Fatalf("class %d: %v", class, err)
		}
		if a := firstA(r); a != "" {
			t.Errorf("class %s: blocked name answered with %s (rcode %s)", mdns.ClassToString[class], a, mdns.RcodeToString[r.Rcode])
		}
	}
	if n := ts.up.count("gamble.example."); n != 0 {
		t.Errorf("upstream was asked for the blocked name %d times", n)
	}
}
