package console

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestCloseFromAnOutOfDatePageKeepsNewAttempts: the DSL opens a pupil's
// incident (two attempts), the pupil tries again while the page is open,
// and the DSL closes it from that page. Before, closing marked every
// attempt so far as dealt with, the one the DSL never saw too: no reopen,
// no new alert, and the case record said the DSL had closed it with the
// attempt in it. Now the close is refused, saying there are new attempts,
// and the incident stays open until it is closed from a page showing them.
func TestCloseFromAnOutOfDatePageKeepsNewAttempts(t *testing.T) {
	r := newRig(t, false)
	pupil, _, _ := r.seed()
	c, _ := r.signedIn("dsl@school.example", RoleDSL)
	p := r.get(c, fmt.Sprintf("/incidents/%d", pupil))
	form := url.Values{"csrf": {csrf(t, p.body)}, "state": {"closed"}, "outcome": {"no further action"}}
	if seen, ok := hiddenField(p.body, "seen"); ok {
		form.Set("seen", seen)
	}
	// The pupil tries again while the page is open.
	r.clock.Add(time.Minute)
	record(t, r.writer(), block(r.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm3.example", "", "ways to end it"))
	p = r.post(c, fmt.Sprintf("/incidents/%d/state", pupil), form)
	cs, err := r.rep.Case(pupil)
	if err != nil {
		t.Fatal(err)
	}
	if cs.State() != reports.CaseOpen {
		t.Fatalf("closed from a page that did not show the newest attempt (status %s, count %d)", cs.Status, cs.Count)
	}
	if p.status != 409 || !strings.Contains(p.body, "new attempt") {
		t.Fatalf("refusal: %d\n%s", p.status, p.body)
	}
	// From the page as it is now, it closes.
	if p := r.act(c, pupil, "state", url.Values{"state": {"closed"}, "outcome": {"no further action"}}); p.status != 200 {
		t.Fatalf("close: %d\n%s", p.status, p.body)
	}
	if cs, _ := r.rep.Case(pupil); cs.State() != reports.CaseClosed {
		t.Fatalf("not closed: %s", cs.Status)
	}
}

// hiddenField finds a hidden form field's value in a page.
func hiddenField(body, name string) (string, bool) {
	_, rest, ok := strings.Cut(body, `name="`+name+`" value="`)
	if !ok {
		return "", false
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v, true
}
