package console

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestHeadteacherAroundShowsOnlyStaff: with full logging on, a staff
// incident's page shows the browsing around it. For the headteacher (staff
// incidents only) that must be the member of staff's own, not a pupil's
// from the same address (a classroom PC both use, or an address handed
// on): before, the headteacher read the pupil's searches and blocked
// attempts there, audited only as a look at the teacher's record.
func TestHeadteacherAroundShowsOnlyStaff(t *testing.T) {
	r := newRig(t, false)
	w := r.writer()
	now := r.clock.Now()
	ev := func(at time.Time, user, group, name, action string) reports.Event {
		return reports.Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr("10.0.1.7"), User: user, Group: group,
			Name: name, QType: "A", Action: action, Count: 1}
	}
	record(t, w,
		ev(now.Add(-40*time.Minute), "alice", "year9", "pupil-private-search.example", "allow"),
		block(now.Add(-30*time.Minute), "10.0.1.7", "alice", "", "year9", "self-harm", "pupil-harm.example", "", "pupil search words"),
		ev(now.Add(-20*time.Minute), "mr.jones", "staff", "teacher-own.example", "allow"),
		block(now.Add(-5*time.Minute), "10.0.1.7", "mr.jones", "", "staff", "gambling", "bet.example", "https://bet.example/", ""),
	)
	staff := r.incidentID("user:mr.jones", "gambling")
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
	head, _ := r.signedIn("head@school.example", RoleHeadteacher)
	p := r.get(head, fmt.Sprintf("/incidents/%d", staff))
	if p.status != 200 || !strings.Contains(p.body, "teacher-own.example") {
		t.Fatalf("headteacher's staff incident: %d\n%s", p.status, p.body)
	}
	for _, leak := range []string{"alice", "pupil-private-search.example", "pupil-harm.example", "pupil search words"} {
		if strings.Contains(p.body, leak) {
			t.Errorf("the headteacher sees a pupil's %q on a staff incident's page", leak)
		}
	}
	// The DSL sees everyone's, as before.
	dsl, _ := r.signedIn("dsl@school.example", RoleDSL)
	if p := r.get(dsl, fmt.Sprintf("/incidents/%d", staff)); !strings.Contains(p.body, "pupil-private-search.example") {
		t.Fatalf("DSL's view lost the browsing around:\n%s", p.body)
	}
}
