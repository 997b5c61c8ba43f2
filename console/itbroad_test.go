package console

import (
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestManagedAllowNotTooBroad: an allow entry that would lift the group's
// blocks for far more than one site (a top-level name, a public suffix
// such as co.uk or github.io, however written, or an address range wider
// than a /16 or a /32) is refused with the reason and never stored, from
// the form and from an approval in the mis-block queue alike; a site's
// own name under such a suffix, a narrow range and a broad deny entry are
// taken.
func TestManagedAllowNotTooBroad(t *testing.T) {
	r, f := newITRig(t, nil)
	c := r.signInIT("it@school.example")
	managed := filepath.Join(f.dir, config.ManagedFileName)
	add := func(kind, entry string) page { t.Helper(); return c.addManaged(t, "students", kind, entry, "lesson") }
	for _, entry := range []string{"com", "*.com", "COM.", "example", "co.uk", "*.co.uk", "https://www.co.uk/", "co.uk/page",
		"uk", "sch.uk", "github.io", "blogspot.com", "0.0.0.0/0", "10.0.0.0/8", "1.2.3.4/0", "::/0", "2000::/3"} {
		p := add("allow", entry)
		if p.status != 400 || !strings.Contains(p.body, "far more than one site") {
			t.Errorf("allow %q: %d, want refused as too broad:\n%s", entry, p.status, p.body)
		}
		if d := f.decide("10.1.2.3", "bet.example"); d.Action != "block" {
			t.Fatalf("after allow %q: %+v", entry, d)
		}
	}
	// The queue's approval, its entry edited to the suffix: refused, the
	// report still waiting.
	recordMistakes(t, r.rep, reports.Event{Time: start, Client: netip.MustParseAddr("10.1.2.3"), Group: "students",
		Name: "bet.example", URL: "http://bet.example/odds", Category: "gambling", Ref: "GH-AAAA-1111", Note: "maths"})
	pending, _ := r.rep.PendingMistakes(0)
	if len(pending) != 1 {
		t.Fatalf("pending: %v", pending)
	}
	p := c.get("/it/queue")
	p = c.post("/it/queue/"+itoa(pending[0].ID), url.Values{"csrf": {csrf(t, p.body)}, "decision": {"approved"}, "reason": {"probability"}, "entry": {"example"}})
	if p.status != 400 || !strings.Contains(p.body, "far more than one site") {
		t.Errorf("approval with entry \"example\": %d\n%s", p.status, p.body)
	}
	if n, _ := r.rep.PendingMistakeCount(); n != 1 {
		t.Errorf("the refused approval decided the report: %d pending", n)
	}
	if b, err := os.ReadFile(managed); err == nil {
		t.Errorf("refused entries were stored:\n%s", b)
	}
	for _, tc := range []struct{ kind, entry string }{
		{"allow", "bbc.co.uk"}, {"allow", "maths.github.io"}, {"allow", "192.0.2.0/24"}, {"allow", "198.51.0.0/16"},
		{"allow", "2001:db8::/48"}, {"allow", "bet.example"}, {"deny", "co.uk"},
	} {
		if p := add(tc.kind, tc.entry); p.status != 200 {
			t.Errorf("%s %q: %d\n%s", tc.kind, tc.entry, p.status, p.body)
		}
	}
}
