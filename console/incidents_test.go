package console

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// writer is the rig's real event writer on its database and clock: the
// incidents the tests open are made as the DNS resolver and proxy make
// them.
func (r *rig) writer() *reports.Writer {
	r.t.Helper()
	if r.w != nil {
		return r.w
	}
	w, err := reports.NewWriter(r.rep, reports.Options{Now: r.clock.Now, StaffToHeadteacher: true, StaffGroups: []string{"staff"}})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(w.Close)
	r.w = w
	return w
}

// block is a blocked request by a client in a category.
func block(at time.Time, client, user, device, group, cat, name, rawURL, search string) reports.Event {
	c, err := bl.ParseCategory(cat)
	if err != nil {
		panic(err)
	}
	info := c.Info()
	e := reports.Event{Time: at, Source: "http", Protocol: "https", Client: netip.MustParseAddr(client), User: user, Device: device,
		Group: group, Name: name, URL: rawURL, SearchTerm: search, Action: "block", Reason: "category", Category: cat,
		Severity: info.Severity, Route: info.Route, Restricted: c.Restricted(), Bypass: c.Bypass(), List: "testlist", Count: 1}
	if c.Restricted() {
		e.Entry = name
		reports.Redact(&e)
	}
	return e
}

// record writes events and waits until they are stored.
func record(t testing.TB, w *reports.Writer, evs ...reports.Event) {
	t.Helper()
	for _, e := range evs {
		if !w.Record(e) {
			t.Fatalf("event dropped: %+v", e)
		}
	}
	w.Flush()
}

// incidentID finds the incident of who in a category.
func (r *rig) incidentID(who, cat string) int64 {
	r.t.Helper()
	var id int64
	if err := r.rep.DB().QueryRow(`SELECT max(id) FROM incidents WHERE who = ? AND category = ?`, who, cat).Scan(&id); err != nil || id == 0 {
		r.t.Fatalf("no incident for %s %s (err %v)", who, cat, err)
	}
	return id
}

// dsl signs a DSL in and returns its client and TOTP secret.
func (r *rig) signedIn(email, role string) (*http.Client, string) {
	r.t.Helper()
	secret := r.add(email, role, goodPass, TOTPRequired(role))
	c := r.client()
	p := r.signIn(c, email, goodPass, secret)
	if p.status != 200 || p.url != "/" {
		r.t.Fatalf("sign-in of %s: %d at %s\n%s", email, p.status, p.url, p.body)
	}
	return c, secret
}

// lastAudit is the audit log's newest entry.
func (r *rig) lastAudit() Entry {
	r.t.Helper()
	log, err := r.st.AuditLog()
	if err != nil || len(log) == 0 {
		r.t.Fatalf("audit log: %v (%d rows)", err, len(log))
	}
	return log[len(log)-1]
}

// seed opens three incidents: a pupil's self-harm searches (high), a
// device's attempt at a site on the IWF list (critical) and a member of
// staff's gambling (routed to the headteacher).
func (r *rig) seed() (pupil, iwf, staff int64) {
	r.t.Helper()
	w := r.writer()
	now := r.clock.Now()
	record(r.t, w,
		block(now.Add(-20*time.Minute), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "https://harm.example/how?q=x", "how to hurt myself"),
		block(now.Add(-19*time.Minute), "10.0.0.5", "alice", "", "year9", "self-harm", "harm2.example", "https://harm2.example/", ""),
		block(now.Add(-10*time.Minute), "10.0.0.9", "", "lab-pc-3", "year10", "iwf", "secret-bad.example", "", ""),
		block(now.Add(-5*time.Minute), "10.0.1.7", "mr.jones", "", "staff", "gambling", "bet.example", "https://bet.example/", ""),
	)
	return r.incidentID("user:alice", "self-harm"), r.incidentID("device:lab-pc-3", "iwf"), r.incidentID("user:mr.jones", "gambling")
}

func TestIncidentListAndPage(t *testing.T) {
	r := newRig(t, false)
	pupil, iwf, staff := r.seed()
	c, _ := r.signedIn("dsl@school.example", RoleDSL)

	p := r.get(c, "/incidents?period=today")
	if p.status != 200 {
		t.Fatalf("list: %d\n%s", p.status, p.body)
	}
	for _, id := range []int64{pupil, iwf, staff} {
		if !strings.Contains(p.body, fmt.Sprintf(`href="/incidents/%d"`, id)) {
			t.Errorf("list lacks incident %d:\n%s", id, p.body)
		}
	}
	if strings.Contains(p.body, "secret-bad.example") {
		t.Fatal("the list names a restricted site")
	}
	// Filters: severity and state.
	p = r.get(c, "/incidents?period=today&severity=critical")
	if !strings.Contains(p.body, fmt.Sprintf(`/incidents/%d"`, iwf)) || !strings.Contains(p.body, fmt.Sprintf(`/incidents/%d"`, pupil)) ||
		strings.Contains(p.body, fmt.Sprintf(`/incidents/%d"`, staff)) {
		t.Fatalf("critical filter:\n%s", p.body)
	}
	p = r.get(c, "/incidents?period=today&state=closed")
	if !strings.Contains(p.body, "0 incident(s)") {
		t.Fatalf("closed filter should be empty:\n%s", p.body)
	}

	// The pupil's incident: who, sites, URLs, search terms, attempts.
	p = r.get(c, fmt.Sprintf("/incidents/%d", pupil))
	for _, want := range []string{"alice", "10.0.0.5", "year9", "harm.example", "https://harm.example/how?q=x", "how to hurt myself", "harm2.example", "Timeline of attempts"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("incident page lacks %q", want)
		}
	}
	if e := r.lastAudit(); e.Action != "view" || e.Target != fmt.Sprintf("incident:%d", pupil) || !strings.Contains(e.Detail, "user:alice") || e.Actor != "dsl@school.example" {
		t.Fatalf("view not audited: %+v", e)
	}
	// The IWF attempt: the list's description, never the name or its hash
	// (the hash is for the evidence export).
	p = r.get(c, fmt.Sprintf("/incidents/%d", iwf))
	if p.status != 200 || !strings.Contains(p.body, "a site on the IWF list") || !strings.Contains(p.body, "lab-pc-3") {
		t.Fatalf("restricted incident page: %d\n%s", p.status, p.body)
	}
	if strings.Contains(p.body, "secret-bad") {
		t.Fatal("restricted site named on the incident page")
	}
	if p := r.get(c, "/incidents/999999"); p.status != 404 {
		t.Fatalf("missing incident: %d", p.status)
	}
}

func TestIncidentListPaginates(t *testing.T) {
	r := newRig(t, false)
	w := r.writer()
	var evs []reports.Event
	for i := range pageSize + 5 {
		evs = append(evs, block(r.clock.Now().Add(-time.Duration(i)*time.Minute), "10.0.2.1", fmt.Sprintf("pupil%d", i), "", "year7", "pornography", "p.example", "", ""))
	}
	record(t, w, evs...)
	c, _ := r.signedIn("dsl@school.example", RoleDSL)
	p1 := r.get(c, "/incidents?period=week")
	if n := strings.Count(p1.body, `<tr>`) - 1; n != pageSize || !strings.Contains(p1.body, "Page 1 of 2") || !strings.Contains(p1.body, "Next page") {
		t.Fatalf("page 1: %d rows\n%s", n, p1.body)
	}
	p2 := r.get(c, "/incidents?period=week&page=2")
	if n := strings.Count(p2.body, `<tr>`) - 1; n != 5 || !strings.Contains(p2.body, "Previous page") {
		t.Fatalf("page 2: %d rows\n%s", n, p2.body)
	}
}

// form is a POST to an incident with the page's token.
func (r *rig) act(c *http.Client, id int64, what string, v url.Values) page {
	r.t.Helper()
	p := r.get(c, fmt.Sprintf("/incidents/%d", id))
	v.Set("csrf", csrf(r.t, p.body))
	if seen, ok := hiddenField(p.body, "seen"); ok && !v.Has("seen") {
		v.Set("seen", seen) // the attempts the page showed (closing)
	}
	return r.post(c, fmt.Sprintf("/incidents/%d/%s", id, what), v)
}

func TestIncidentActionsRecordedAndAudited(t *testing.T) {
	r := newRig(t, false)
	pupil, _, _ := r.seed()
	r.add("deputy@school.example", RoleDSL, goodPass, true)
	c, _ := r.signedIn("dsl@school.example", RoleDSL)

	p := r.act(c, pupil, "assign", url.Values{"assignee": {"deputy@school.example"}})
	if p.status != 200 || p.url != fmt.Sprintf("/incidents/%d", pupil) || !strings.Contains(p.body, "Assigned to: deputy@school.example") {
		t.Fatalf("assign: %d at %s\n%s", p.status, p.url, p.body)
	}
	if e := r.lastAudit(); e.Action != "view" { // the page after the redirect
		t.Fatalf("last: %+v", e)
	}
	r.clock.Add(time.Minute)
	p = r.act(c, pupil, "note", url.Values{"note": {"Spoke to Alice with her form tutor; she is safe."}})
	if !strings.Contains(p.body, "Spoke to Alice with her form tutor; she is safe.") {
		t.Fatalf("note not shown:\n%s", p.body)
	}
	// Closing needs an outcome.
	p = r.act(c, pupil, "state", url.Values{"state": {"closed"}})
	if p.status != 400 {
		t.Fatalf("close without outcome: %d", p.status)
	}
	p = r.act(c, pupil, "state", url.Values{"state": {"closed"}, "outcome": {"spoken to pupil"}})
	if !strings.Contains(p.body, "Status: <strong>closed</strong>") || !strings.Contains(p.body, "outcome: spoken to pupil") {
		t.Fatalf("close:\n%s", p.body)
	}
	// Each change: author and time in the case log, before/after in the audit log.
	log, err := r.rep.CaseLog(pupil)
	if err != nil || len(log) != 3 {
		t.Fatalf("case log %+v %v", log, err)
	}
	if log[0].Kind != "assign" || log[0].Author != "dsl@school.example" || log[0].After != "deputy@school.example" || !log[0].Time.Equal(start) {
		t.Errorf("assign row %+v", log[0])
	}
	if log[2].Kind != "status" || log[2].Before != "open" || log[2].After != "closed: spoken to pupil" {
		t.Errorf("status row %+v", log[2])
	}
	var changes []string
	all, _ := r.st.AuditLog()
	for _, e := range all {
		if strings.HasPrefix(e.Action, "incident.") {
			changes = append(changes, e.Action+" "+e.Target+" "+e.Detail)
		}
	}
	want := []string{
		fmt.Sprintf(`incident.assign incident:%d before="" after="deputy@school.example"; record of user:alice`, pupil),
		fmt.Sprintf(`incident.note incident:%d note added: 48 characters, sha256:%x; record of user:alice`, pupil, sha256.Sum256([]byte("Spoke to Alice with her form tutor; she is safe."))),
		fmt.Sprintf(`incident.status incident:%d before="open" after="closed: spoken to pupil"; record of user:alice`, pupil),
	}
	if !slices.Equal(changes, want) {
		t.Fatalf("audited changes\n%q\nwant\n%q", changes, want)
	}
	if bad, err := r.st.VerifyAudit(); err != nil || bad != 0 {
		t.Fatalf("audit chain broken at %d (%v)", bad, err)
	}
	// Assigning to someone who is not a DSL account is refused.
	r.add("tech@school.example", RoleIT, goodPass, true)
	if p := r.act(c, pupil, "assign", url.Values{"assignee": {"tech@school.example"}}); p.status != 400 {
		t.Fatalf("assign to IT: %d", p.status)
	}
	// A change without the form's token is refused.
	if p := r.post(c, fmt.Sprintf("/incidents/%d/note", pupil), url.Values{"note": {"x"}}); p.status != 403 {
		t.Fatalf("note without token: %d", p.status)
	}
	// The note goes with the case record when retention purges it: the
	// audit log, kept for good, never held its text.
	if n, err := r.rep.PurgeCases(context.Background(), r.clock.Now().AddDate(2, 0, 0), 365*24*time.Hour); err != nil || n == 0 {
		t.Fatalf("purge: %d %v", n, err)
	}
	all, _ = r.st.AuditLog()
	for _, e := range all {
		if strings.Contains(e.Target+e.Detail, "form tutor") {
			t.Errorf("the audit log keeps the purged note's text: %s %s %q", e.Action, e.Target, e.Detail)
		}
	}
}

func TestClosedIncidentReopensOnNewAttemptAndAlertsAgain(t *testing.T) {
	r := newRig(t, false)
	pupil, _, _ := r.seed()
	alerter := reports.NewAlerter(r.rep, reports.Options{Now: r.clock.Now}, reports.Roles{"dsl": {"dsl@school.example"}}, "Test Primary", nil, nil)
	if n, err := alerter.Check(context.Background()); err != nil || n == 0 {
		t.Fatalf("first alerts: %d %v", n, err)
	}
	alerts := func(id int64) int {
		a, err := r.rep.Alerts(id)
		if err != nil {
			t.Fatal(err)
		}
		return len(a)
	}
	if alerts(pupil) != 1 {
		t.Fatalf("alerts before closing: %d", alerts(pupil))
	}
	c, _ := r.signedIn("dsl@school.example", RoleDSL)
	r.act(c, pupil, "state", url.Values{"state": {"closed"}, "outcome": {"no further action"}})
	// Closed: nothing more to alert.
	r.clock.Add(5 * time.Minute)
	if _, err := alerter.Check(context.Background()); err != nil || alerts(pupil) != 1 {
		t.Fatalf("closed incident alerted again without a new attempt: %d %v", alerts(pupil), err)
	}
	// A new attempt inside the incident window: the same incident reopens
	// and is alerted again.
	w := r.writer()
	record(t, w, block(r.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm3.example", "", "ways to end it"))
	if id := r.incidentID("user:alice", "self-harm"); id != pupil {
		t.Fatalf("attempt opened incident %d, want %d reopened", id, pupil)
	}
	if _, err := alerter.Check(context.Background()); err != nil || alerts(pupil) != 2 {
		t.Fatalf("reopened incident alerts: %d %v", alerts(pupil), err)
	}
	p := r.get(c, fmt.Sprintf("/incidents/%d", pupil))
	if !strings.Contains(p.body, "Status: <strong>open</strong> (reopened after it was closed)") || !strings.Contains(p.body, "new attempt(s) after it was closed") ||
		!strings.Contains(p.body, "ways to end it") {
		t.Fatalf("reopened incident page:\n%s", p.body)
	}
	// After the window, a new attempt opens a new incident, alerted too.
	r.act(c, pupil, "state", url.Values{"state": {"closed"}, "outcome": {"spoken to pupil"}})
	r.clock.Add(2 * time.Hour)
	record(t, w, block(r.clock.Now(), "10.0.0.5", "alice", "", "year9", "self-harm", "harm4.example", "", ""))
	next := r.incidentID("user:alice", "self-harm")
	if next == pupil {
		t.Fatal("an attempt hours later joined the closed incident")
	}
	if _, err := alerter.Check(context.Background()); err != nil || alerts(next) != 1 {
		t.Fatalf("new incident alerts: %d %v", alerts(next), err)
	}
}

func TestIncidentRoleRules(t *testing.T) {
	r := newRig(t, false)
	pupil, _, staff := r.seed()

	// The headteacher: staff incidents only, on the home page too.
	head, _ := r.signedIn("head@school.example", RoleHeadteacher)
	if p := r.get(head, "/"); !strings.Contains(p.body, "Staff incidents") || strings.Contains(p.body, "alice") || strings.Contains(p.body, "lab-pc-3") {
		t.Fatalf("headteacher's home:\n%s", p.body)
	}
	p := r.get(head, "/incidents?period=today")
	if !strings.Contains(p.body, fmt.Sprintf(`/incidents/%d"`, staff)) || strings.Contains(p.body, fmt.Sprintf(`/incidents/%d"`, pupil)) {
		t.Fatalf("headteacher's list:\n%s", p.body)
	}
	if p := r.get(head, fmt.Sprintf("/incidents/%d", staff)); p.status != 200 || !strings.Contains(p.body, "mr.jones") {
		t.Fatalf("headteacher on a staff incident: %d", p.status)
	}
	p = r.get(head, fmt.Sprintf("/incidents/%d", pupil))
	if e := r.lastAudit(); p.status != 403 || strings.Contains(p.body, "alice") || e.Action != "denied" || e.Target != fmt.Sprintf("incident:%d", pupil) || e.Actor != "head@school.example" {
		t.Fatalf("headteacher on a pupil's incident: %d %+v\n%s", p.status, e, p.body)
	}
	if p := r.get(head, "/history?who=user:alice"); strings.Contains(p.body, "harm.example") {
		t.Fatalf("headteacher sees a pupil's attempts in history:\n%s", p.body)
	}

	// IT: counts on the home page, no incident details.
	it, _ := r.signedIn("tech@school.example", RoleIT)
	if p := r.get(it, "/"); !strings.Contains(p.body, "Counts only") || strings.Contains(p.body, "alice") {
		t.Fatalf("IT home:\n%s", p.body)
	}
	for _, path := range []string{fmt.Sprintf("/incidents/%d", pupil), "/incidents", "/history?who=user:alice", fmt.Sprintf("/incidents/%d/evidence.csv", pupil)} {
		p := r.get(it, path)
		e := r.lastAudit()
		if p.status != 403 || strings.Contains(p.body, "alice") || e.Action != "denied" || e.Actor != "tech@school.example" {
			t.Fatalf("IT at %s: %d, audit %+v", path, p.status, e)
		}
	}
	if e := r.lastAudit(); e.Target != "person:user:alice" && e.Target != fmt.Sprintf("incident:%d", pupil) {
		t.Fatalf("denied target %q", e.Target)
	}

	// The auditor reads (audited) but cannot change.
	aud, _ := r.signedIn("audit@school.example", RoleAuditor)
	if p := r.get(aud, fmt.Sprintf("/incidents/%d", pupil)); p.status != 200 || strings.Contains(p.body, "Add note") {
		t.Fatalf("auditor's view: %d", p.status)
	}
	if e := r.lastAudit(); e.Action != "view" || e.Actor != "audit@school.example" {
		t.Fatalf("auditor's view not audited: %+v", e)
	}
	p = r.act(aud, pupil, "note", url.Values{"note": {"auditor was here"}})
	if e := r.lastAudit(); p.status != 403 || e.Action != "denied" {
		t.Fatalf("auditor's note: %d %+v", p.status, e)
	}
	if log, _ := r.rep.CaseLog(pupil); len(log) != 0 {
		t.Fatalf("auditor changed the case: %+v", log)
	}
}

func TestHistoryAndEvidenceExport(t *testing.T) {
	r := newRig(t, false)
	pupil, iwf, _ := r.seed()
	w := r.writer()
	// An attempt by alice last month, outside the default range.
	record(t, w, block(start.AddDate(0, 0, -40), "10.0.0.5", "alice", "", "year9", "gambling", "old-bet.example", "", ""))
	c, _ := r.signedIn("dsl@school.example", RoleDSL)

	p := r.get(c, "/history?who=user:alice")
	if p.status != 200 || !strings.Contains(p.body, "harm.example") || strings.Contains(p.body, "old-bet.example") {
		t.Fatalf("history, last 30 days: %d\n%s", p.status, p.body)
	}
	if e := r.lastAudit(); e.Action != "view" || e.Target != "person:user:alice" || e.Detail != "history 2026-11-02 to 2026-12-02" {
		t.Fatalf("history view audit: %+v", e)
	}
	p = r.get(c, "/history?who=user:alice&from=2026-10-01&to=2026-12-02")
	if !strings.Contains(p.body, "old-bet.example") {
		t.Fatalf("history over a range:\n%s", p.body)
	}
	if p := r.get(c, "/history?who=user:alice&from=2020-01-01&to=2026-12-02"); p.status != 400 {
		t.Fatalf("a range over a year: %d", p.status)
	}
	if p := r.get(c, "/history?who=device:lab-pc-3"); !strings.Contains(p.body, "a site on the IWF list") || strings.Contains(p.body, "secret-bad") {
		t.Fatalf("device history:\n%s", p.body)
	}

	// Evidence: the restricted attempt as the list's name and the entry's
	// hash, never the name; the export is audited.
	p = r.get(c, fmt.Sprintf("/incidents/%d/evidence.csv", iwf))
	hash := bl.EntryHash("secret-bad.example")
	if p.status != 200 || !strings.Contains(p.body, hash) || !strings.Contains(p.body, "IWF child sexual abuse content list") || strings.Contains(p.body, "secret-bad") {
		t.Fatalf("restricted evidence CSV: %d\n%s", p.status, p.body)
	}
	if cd := p.header.Get("Content-Disposition"); !strings.Contains(cd, fmt.Sprintf("gatehouse-incident-%d.csv", iwf)) {
		t.Fatalf("Content-Disposition %q", cd)
	}
	if e := r.lastAudit(); e.Action != "export" || e.Target != fmt.Sprintf("incident:%d", iwf) || !strings.Contains(e.Detail, "CSV") {
		t.Fatalf("export audit: %+v", e)
	}
	p = r.get(c, fmt.Sprintf("/incidents/%d/evidence", iwf))
	if !strings.Contains(p.body, hash) || strings.Contains(p.body, "secret-bad") || !strings.Contains(p.body, "Exported") {
		t.Fatalf("restricted evidence HTML:\n%s", p.body)
	}
	p = r.get(c, fmt.Sprintf("/incidents/%d/evidence.csv", pupil))
	rows := strings.Split(strings.TrimSpace(p.body), "\n")
	if len(rows) != 3 || !strings.Contains(p.body, "how to hurt myself") || !strings.HasPrefix(rows[1], "#"+strconv.FormatInt(pupil, 10)+",") {
		t.Fatalf("evidence CSV:\n%s", p.body)
	}
}

func TestIncidentShowsBrowsingAroundWithFullLogging(t *testing.T) {
	r := newRig(t, false)
	w := r.writer()
	now := r.clock.Now()
	allowed := func(at time.Time, name string) reports.Event {
		return reports.Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr("10.0.0.5"), User: "alice", Group: "year9",
			Name: name, QType: "A", Action: "allow", Count: 1}
	}
	record(t, w, allowed(now.Add(-50*time.Minute), "before.example"), allowed(now.Add(-3*time.Hour), "long-before.example"),
		block(now.Add(-20*time.Minute), "10.0.0.5", "alice", "", "year9", "self-harm", "harm.example", "", ""),
		allowed(now.Add(-10*time.Minute), "after.example"))
	id := r.incidentID("user:alice", "self-harm")
	c, _ := r.signedIn("dsl@school.example", RoleDSL)
	p := r.get(c, fmt.Sprintf("/incidents/%d", id))
	if strings.Contains(p.body, "before.example") || !strings.Contains(p.body, "Full logging is off") {
		t.Fatalf("without full logging:\n%s", p.body)
	}
	r.mu.Lock()
	r.full = true
	r.mu.Unlock()
	p = r.get(c, fmt.Sprintf("/incidents/%d", id))
	if !strings.Contains(p.body, "before.example") || !strings.Contains(p.body, "after.example") || strings.Contains(p.body, "long-before.example") {
		t.Fatalf("with full logging:\n%s", p.body)
	}
}

func TestDSLHome(t *testing.T) {
	r := newRig(t, false)
	pupil, iwf, _ := r.seed()
	w := r.writer()
	record(t, w, block(start.AddDate(0, 0, -1), "10.0.3.3", "bob", "", "year8", "vpn", "vpn.example", "", ""))
	c, _ := r.signedIn("dsl@school.example", RoleDSL)
	p := r.get(c, "/")
	for _, want := range []string{"Needs attention now", fmt.Sprintf(`href="/incidents/%d"`, pupil), fmt.Sprintf(`href="/incidents/%d"`, iwf),
		"<svg", `role="img"`, "a site on the IWF list: 1", "self-harm", "Bypass attempts", "0 today</a>", "1 this week</a>",
		"No mail has been sent yet"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("home lacks %q", want)
		}
	}
	if strings.Contains(p.body, "<script") || strings.Contains(p.body, "style=") {
		t.Fatal("home has script or inline style (CSP forbids them)")
	}
	// Critical first in "needs attention".
	if i, j := strings.Index(p.body, fmt.Sprintf(`href="/incidents/%d"`, iwf)), strings.Index(p.body, fmt.Sprintf(`href="/incidents/%d"`, pupil)); i > j {
		t.Fatal("critical incident not first")
	}
	// Mail stuck: said plainly.
	if _, err := r.rep.DB().Exec(`INSERT INTO outbox (kind, created_ts, role, recipients, subject, text_body, html_body, message_id, attempts, last_error)
		VALUES ('alert', ?, 'dsl', '[]', 's', 't', 'h', '<x@y>', 2, 'connection refused')`, start.Add(-time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if p := r.get(c, "/"); !strings.Contains(p.body, "Alert mail is NOT being delivered") || !strings.Contains(p.body, "connection refused") {
		t.Fatalf("stuck mail not shown:\n%s", p.body)
	}
}

func TestThemeChartCountsDays(t *testing.T) {
	london, _ := time.LoadLocation("Europe/London")
	from := time.Date(2026, 10, 10, 0, 0, 0, 0, london) // the clocks go back on 25 Oct
	var counts []reports.DayCount
	for d := range 30 {
		counts = append(counts, reports.DayCount{Day: from.AddDate(0, 0, d), Theme: "games", N: d + 1})
	}
	svg, rows := themeChart(counts, from, 30)
	if len(rows) != 1 || rows[0].Total != 465 || rows[0].Days[29] != 30 || rows[0].Days[16] != 17 {
		t.Fatalf("rows %+v", rows)
	}
	if n := len(regexp.MustCompile(`<rect `).FindAllString(string(svg), -1)); n != 30 {
		t.Fatalf("%d bars, want 30", n)
	}
}
