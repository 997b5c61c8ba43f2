package console

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// recordMistakes stores "report a mistake" forms as the block page does.
func recordMistakes(t *testing.T, rep *reports.Store, evs ...reports.Event) {
	t.Helper()
	w, err := reports.NewWriter(rep, reports.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		e.Source, e.Protocol, e.Action, e.Reason, e.Count = "http", "http", reports.ActionReport, "mistake-report", 1
		w.Record(e)
	}
	w.Close()
}

func TestMisblockQueue(t *testing.T) {
	r, f := newITRig(t, nil)
	recordMistakes(t, r.rep,
		reports.Event{Time: start, Client: netip.MustParseAddr("10.1.2.3"), User: "pupil17", Device: "laptop-9", Group: "students",
			Name: "bet.example", URL: "http://bet.example/odds", Category: "gambling", Ref: "GH-AAAA-1111", Note: "maths homework on probability"},
		reports.Event{Time: start, Client: netip.MustParseAddr("10.1.2.4"), Group: "students", Name: "wager.example", URL: "http://wager.example/",
			Category: "gambling", Ref: "GH-BBBB-2222", Note: "please"},
		reports.Event{Time: start, Client: netip.MustParseAddr("10.1.2.5"), Group: "students", Name: "abuse.example", URL: "http://abuse.example/x",
			Category: "iwf", Restricted: true, Ref: "GH-CCCC-3333", Note: "abuse.example is fine"},
	)
	c := r.signInIT("it@school.example")
	if p := c.get("/"); !strings.Contains(p.body, "Mis-block queue</a>: 3 waiting") {
		t.Errorf("IT's home page lacks the queue's count:\n%s", p.body)
	}
	p := c.get("/it/queue")
	for _, want := range []string{"GH-AAAA-1111", "maths homework on probability", "http://bet.example/odds", "<dd>students</dd>",
		"GH-CCCC-3333", "a site on the IWF list", "3 waiting"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("queue lacks %q", want)
		}
	}
	// Not who sent them, and never a restricted site.
	for _, no := range []string{"pupil17", "laptop-9", "10.1.2.3", "abuse.example"} {
		if strings.Contains(p.body, no) {
			t.Errorf("queue shows %q:\n%s", no, p.body)
		}
	}
	pending, _ := r.rep.PendingMistakes(0)
	ids := map[string]int64{}
	for _, m := range pending {
		ids[m.Ref] = m.ID
	}
	decide := func(ref, decision, reason, entry string) page {
		t.Helper()
		p := c.get("/it/queue")
		form := url.Values{"csrf": {csrf(t, p.body)}, "decision": {decision}, "reason": {reason}}
		if entry != "" {
			form.Set("entry", entry)
		}
		return c.post("/it/queue/"+itoa(ids[ref]), form)
	}

	// A reason is needed; a restricted site cannot be approved.
	if p := decide("GH-AAAA-1111", "approved", "", ""); p.status != 400 || !strings.Contains(p.body, "Give a reason") {
		t.Errorf("no reason: %d", p.status)
	}
	if p := decide("GH-CCCC-3333", "approved", "looks fine", ""); p.status != 400 || !strings.Contains(p.body, "cannot be allowed") {
		t.Errorf("restricted approval: %d\n%s", p.status, p.body)
	}
	if d := f.decide("10.1.2.3", "abuse.example"); d.Action != "block" {
		t.Errorf("restricted after the attempt: %+v", d)
	}

	// Approve: the site is allowed for the group at once.
	if d := f.decide("10.1.2.3", "bet.example"); d.Action != "block" {
		t.Fatalf("before: %+v", d)
	}
	p = decide("GH-AAAA-1111", "approved", "used in maths", "")
	if p.status != 200 || !strings.Contains(p.body, "approved") {
		t.Fatalf("approve: %d\n%s", p.status, p.body)
	}
	if d := f.decide("10.1.2.3", "bet.example"); d.Action != "allow" || d.Reason != "group-allow" {
		t.Errorf("after approval: %+v", d)
	}
	if d := f.decide("10.2.3.4", "bet.example"); d.Action != "block" {
		t.Errorf("another group after approval: %+v", d)
	}
	if p := decide("GH-AAAA-1111", "rejected", "again", ""); p.status != 400 || !strings.Contains(p.body, "already") {
		t.Errorf("second decision: %d", p.status)
	}
	// Reject: recorded, nothing allowed.
	if p := decide("GH-BBBB-2222", "rejected", "gambling site", ""); p.status != 200 {
		t.Errorf("reject: %d", p.status)
	}
	if d := f.decide("10.1.2.3", "wager.example"); d.Action != "block" {
		t.Errorf("after rejection: %+v", d)
	}
	_, rev, err := r.rep.MistakeByID(ids["GH-BBBB-2222"])
	if err != nil || rev == nil || rev.Status != "rejected" || rev.Reason != "gambling site" || rev.Actor != "it@school.example" {
		t.Errorf("rejection stored: %+v %v", rev, err)
	}
	if n, _ := r.rep.PendingMistakeCount(); n != 1 {
		t.Errorf("pending after two decisions: %d", n)
	}
	var got []string
	for _, a := range r.actions() {
		if strings.HasPrefix(a, "it.mistake") || strings.HasPrefix(a, "it.allow") {
			got = append(got, a)
		}
	}
	want := "it.allow.add group students: bet.example|it.mistake.approved mistake " + itoa(ids["GH-AAAA-1111"]) + " (ref GH-AAAA-1111)|it.mistake.rejected mistake " +
		itoa(ids["GH-BBBB-2222"]) + " (ref GH-BBBB-2222)"
	if strings.Join(got, "|") != want {
		t.Errorf("audit: %q\nwant %q", strings.Join(got, "|"), want)
	}
}

func TestStatusPage(t *testing.T) {
	r, f := newITRig(t, nil)
	c := r.signInIT("it@school.example")
	p := c.get("/it/status")
	for _, want := range []string{`<th scope="row" data-label="List">bets</th><td data-label="Entries">2</td>`, `<th scope="row" data-label="List">iwf</th><td data-label="Entries">1</td>`, "1 of 2 down (192.0.2.53:53)",
		"4096 bytes", "console (console-cert.pem): expires", "in 20 days", "No problems"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	// Update now: the lists' own update re-reads the files.
	if err := writeFile(f.dir, "bets.txt", "bet.example\nwager.example\nstake.example\n"); err != nil {
		t.Fatal(err)
	}
	p = c.post("/it/status/update", url.Values{"csrf": {csrf(t, p.body)}})
	if p.status != 200 || !strings.Contains(p.body, "The update has started") {
		t.Fatalf("update: %d\n%s", p.status, p.body)
	}
	for range 2000 { // the update runs in the background: wait for it, bounded
		if !r.srv.it.updating.Load() {
			break
		}
		sleepBriefly()
	}
	if p := c.get("/it/status"); !strings.Contains(p.body, `<th scope="row" data-label="List">bets</th><td data-label="Entries">3</td>`) {
		t.Errorf("after the update:\n%s", p.body)
	}
	if d := f.decide("10.1.2.3", "stake.example"); d.Action != "block" {
		t.Errorf("the update was not published: %+v", d)
	}
	if acts := strings.Join(r.actions(), "|"); !strings.Contains(acts, "it.lists.update lists") {
		t.Errorf("update not audited: %s", acts)
	}
}
