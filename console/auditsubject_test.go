package console

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
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

// TestChangeAndRefusalRowsNameWhose: an incident's number is not whose it
// is (retention deletes incidents, and the next one takes a deleted
// number: incident:1 is alice's this year and bob's the next), so every
// audit row about an incident names whose record it is, not only the
// page view's: the assignment, the note, the closing, and a refused look
// or change. Before, those rows said only "incident:1".
func TestChangeAndRefusalRowsNameWhose(t *testing.T) {
	r := newRig(t, false)
	pupil, _, _ := r.seed()
	r.add("deputy@school.example", RoleDSL, goodPass, true)
	dsl, _ := r.signedIn("dsl@school.example", RoleDSL)
	head, _ := r.signedIn("head@school.example", RoleHeadteacher)
	it, _ := r.signedIn("tech@school.example", RoleIT)
	aud, _ := r.signedIn("audit@school.example", RoleAuditor)
	whose := "record of user:alice"
	last := func(action string) Entry {
		t.Helper()
		log, _ := r.st.AuditLog()
		for i := len(log) - 1; i >= 0; i-- {
			if log[i].Action == action {
				return log[i]
			}
		}
		t.Fatalf("no %s row in the audit log", action)
		return Entry{}
	}
	r.act(dsl, pupil, "assign", url.Values{"assignee": {"deputy@school.example"}})
	r.act(dsl, pupil, "note", url.Values{"note": {"Spoke to her form tutor."}})
	r.act(dsl, pupil, "state", url.Values{"state": {"closed"}, "outcome": {"spoken to pupil"}})
	for _, a := range []string{"incident.assign", "incident.note", "incident.status"} {
		if e := last(a); e.Target != fmt.Sprintf("incident:%d", pupil) || !strings.Contains(e.Detail, whose) {
			t.Errorf("%s row does not say whose: %+v", a, e)
		}
	}
	for _, c := range []struct {
		name   string
		client *http.Client
		path   string
	}{
		{"headteacher's look", head, fmt.Sprintf("/incidents/%d", pupil)},
		{"IT's look", it, fmt.Sprintf("/incidents/%d", pupil)},
		{"IT's export", it, fmt.Sprintf("/incidents/%d/evidence.csv", pupil)},
	} {
		p := r.get(c.client, c.path)
		if e := r.lastAudit(); p.status != 403 || e.Action != "denied" || !strings.Contains(e.Detail, whose) {
			t.Errorf("%s: %d, audit row %+v", c.name, p.status, e)
		}
		if strings.Contains(p.body, "alice") {
			t.Errorf("%s: the refusal names the pupil:\n%s", c.name, p.body)
		}
	}
	if p := r.act(aud, pupil, "note", url.Values{"note": {"auditor was here"}}); p.status != 403 {
		t.Fatalf("auditor's note: %d", p.status)
	}
	if e := r.lastAudit(); e.Action != "denied" || !strings.Contains(e.Detail, whose) {
		t.Errorf("auditor's refused change: %+v", e)
	}
	// IT is refused alike whether the incident exists or not.
	if p := r.get(it, "/incidents/999"); p.status != 403 {
		t.Errorf("IT on a missing incident: %d, want 403 as for one that exists", p.status)
	}
}
