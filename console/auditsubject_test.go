package console

import (
	"fmt"
	"strings"
	"testing"
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
