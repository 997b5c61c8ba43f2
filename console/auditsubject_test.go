package console

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestListViewsAuditWhoIsShown: the incident list and the home page name
// people (who, what, outcome), so their audit rows must say whose records
// were on them: an auditor asked "who has seen alice's record?" finds
// every look. Before, the rows said only "incident list period=week" and
// "home page: today's incidents by severity", naming nobody.
func TestListViewsAuditWhoIsShown(t *testing.T) {
	r := newRig(t, false)
	pupil, iwf, staff := r.seed()
	dsl, _ := r.signedIn("dsl@school.example", RoleDSL) // the home page, first
	home := r.lastAudit()
	if home.Target != "incidents:today" {
		t.Fatalf("home page's audit row: %+v", home)
	}
	for _, who := range []string{fmt.Sprintf("#%d user:alice", pupil), fmt.Sprintf("#%d device:lab-pc-3", iwf), fmt.Sprintf("#%d user:mr.jones", staff)} {
		if !strings.Contains(home.Detail, who) {
			t.Errorf("home page's audit row does not name %q: %q", who, home.Detail)
		}
	}
	if p := r.get(dsl, "/incidents?period=today"); p.status != 200 || !strings.Contains(p.body, "alice, 10.0.0.5") {
		t.Fatalf("incident list: %d\n%s", p.status, p.body)
	}
	list := r.lastAudit()
	for _, who := range []string{fmt.Sprintf("#%d user:alice", pupil), fmt.Sprintf("#%d device:lab-pc-3", iwf), fmt.Sprintf("#%d user:mr.jones", staff)} {
		if !strings.Contains(list.Detail, who) {
			t.Errorf("incident list's audit row does not name %q: %q", who, list.Detail)
		}
	}
	// The headteacher's rows name only what they were shown: staff.
	head, _ := r.signedIn("head@school.example", RoleHeadteacher)
	home = r.lastAudit()
	if !strings.Contains(home.Detail, "user:mr.jones") || strings.Contains(home.Detail, "alice") {
		t.Errorf("headteacher's home page's audit row: %q", home.Detail)
	}
	r.get(head, "/incidents?period=today")
	if list := r.lastAudit(); !strings.Contains(list.Detail, "user:mr.jones") || strings.Contains(list.Detail, "alice") {
		t.Errorf("headteacher's incident list's audit row: %q", list.Detail)
	}
	// An empty page says so.
	r.get(dsl, "/incidents?period=today&severity=low")
	if list := r.lastAudit(); !strings.Contains(list.Detail, "nobody shown") {
		t.Errorf("empty list's audit row: %q", list.Detail)
	}
}

// TestAroundNamesOtherPeople: with full logging, an incident's page shows
// everything recorded for its address an hour either side, which on a
// shared PC includes other people's browsing. The page must say whose
// each row is (it was headed "Everything recorded for user:alice" and
// showed bob's queries as hers) and the look must be audited as a look
// at their records too (the row named only alice).
func TestAroundNamesOtherPeople(t *testing.T) {
	r := newRig(t, false)
	w := r.writer()
	now := r.clock.Now()
	ev := func(at time.Time, user, name string) reports.Event {
		return reports.Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr("10.0.0.5"), User: user, Group: "year9",
			Name: name, QType: "A", Action: "allow", Count: 1}
	}
	record(t, w,
		ev(now.Add(-40*time.Minute), "alice", "alice-own.example"),
		block(now.Add(-30*time.Minute), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", ""),
		ev(now.Add(-10*time.Minute), "bob", "bob-private.example"),
	)
	id := r.incidentID("user:alice", "self-harm")
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
	dsl, _ := r.signedIn("dsl@school.example", RoleDSL)
	p := r.get(dsl, fmt.Sprintf("/incidents/%d", id))
	if p.status != 200 || !strings.Contains(p.body, "bob-private.example") {
		t.Fatalf("incident page: %d\n%s", p.status, p.body)
	}
	rowOf := func(site string) string {
		for _, row := range strings.Split(p.body, "<tr>") {
			if strings.Contains(row, ">"+site+"<") {
				return row
			}
		}
		return ""
	}
	if row := rowOf("bob-private.example"); !strings.Contains(row, ">bob<") {
		t.Errorf("bob's query is not shown as bob's: %q", row)
	}
	if row := rowOf("alice-own.example"); !strings.Contains(row, ">alice<") {
		t.Errorf("alice's query is not shown as hers: %q", row)
	}
	a := r.lastAudit()
	if a.Action != "view" || a.Target != fmt.Sprintf("incident:%d", id) || !strings.Contains(a.Detail, "record of user:alice") || !strings.Contains(a.Detail, "user:bob") {
		t.Errorf("audit row of the look: %+v", a)
	}
	// The evidence is the incident's own attempts: nobody else's.
	if r.get(dsl, fmt.Sprintf("/incidents/%d/evidence.csv", id)); strings.Contains(r.lastAudit().Detail, "bob") {
		t.Errorf("evidence export's audit row names bob: %+v", r.lastAudit())
	}
}
