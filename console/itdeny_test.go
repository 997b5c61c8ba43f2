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

// TestManagedAllowUnderDenyRefused: an allow entry the group's deny
// would still override (deny comes first) changes nothing, so the console
// does not take it and say it is in force: a deny entry in the config or
// on the managed list covering the name (its parent domain, the site of a
// page) refuses it with the deny that wins, from the form and from the
// mis-block queue, whose report stays waiting.
func TestManagedAllowUnderDenyRefused(t *testing.T) {
	r, f := newITRig(t, nil)
	c := r.signInIT("it@school.example")
	managed := filepath.Join(f.dir, config.ManagedFileName)
	add := func(kind, entry string) page { t.Helper(); return c.addManaged(t, "students", kind, entry, "lesson") }
	if p := add("deny", "wager.example"); p.status != 200 {
		t.Fatalf("deny: %d\n%s", p.status, p.body)
	}
	before, _ := os.ReadFile(managed)
	for _, tc := range []struct{ entry, deny string }{
		{"www.denied.example", "denied.example"},
		{"https://denied.example/homework", "denied.example"},
		{"maths.wager.example", "wager.example"},
	} {
		p := add("allow", tc.entry)
		if p.status != 400 || !strings.Contains(p.body, "comes before allow") || !strings.Contains(p.body, ", entry "+tc.deny+")") {
			t.Errorf("allow %q under deny %q: %d\n%s", tc.entry, tc.deny, p.status, p.body)
		}
	}
	if after, _ := os.ReadFile(managed); string(after) != string(before) {
		t.Errorf("the refused entries were stored:\n%s", after)
	}

	recordMistakes(t, r.rep, reports.Event{Time: start, Client: netip.MustParseAddr("10.1.2.3"), Group: "students",
		Name: "www.denied.example", URL: "http://www.denied.example/", Ref: "GH-AAAA-1111", Note: "homework"})
	pending, _ := r.rep.PendingMistakes(0)
	if len(pending) != 1 {
		t.Fatalf("pending: %v", pending)
	}
	p := c.get("/it/queue")
	p = c.post("/it/queue/"+itoa(pending[0].ID), url.Values{"csrf": {csrf(t, p.body)}, "decision": {"approved"}, "reason": {"homework site"}})
	if p.status != 400 || !strings.Contains(p.body, "comes before allow") {
		t.Errorf("approval under a deny: %d\n%s", p.status, p.body)
	}
	if n, _ := r.rep.PendingMistakeCount(); n != 1 {
		t.Errorf("an approval that allowed nothing decided the report: %d pending", n)
	}
	if d := f.decide("10.1.2.3", "www.denied.example"); d.Action != "block" {
		t.Errorf("www.denied.example: %+v", d)
	}
	// A narrower deny leaves the rest of an allowed site to the allow.
	if p := add("deny", "bet.example/adverts"); p.status != 200 {
		t.Fatalf("deny page: %d\n%s", p.status, p.body)
	}
	if p := add("allow", "bet.example"); p.status != 200 {
		t.Errorf("allow beside a narrower deny: %d\n%s", p.status, p.body)
	}
}
