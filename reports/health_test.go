package reports

import (
	"context"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/health"
)

// problemSet is a settable health check for tests.
type problemSet struct {
	mu sync.Mutex
	p  []health.Problem
}

func (s *problemSet) set(p ...health.Problem) {
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
}

func (s *problemSet) get() []health.Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]health.Problem(nil), s.p...)
}

var upstreamDown = health.Problem{Key: "dns/upstreams/default", Part: "dns", Message: "every upstream DNS server of the default set is down (10.9.9.9:53)"}

// TestHealthNoticeLifecycle drives the notifier with a clock it controls
// and counts the mails a real SMTP server receives: nothing for a short
// problem, one notice once a problem has lasted notify_after, nothing more
// until the reminder a day later, one "resolved" once it is gone; and a
// restart (a new notifier on the same database) repeats nothing.
func TestHealthNoticeLifecycle(t *testing.T) {
	st := openTemp(t)
	srv := newTestSMTP(t)
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, london)
	clk := newClock(t0)
	p := testParts(t, srv.mailConfig(t.TempDir()), clk.Now)
	m := NewMailer(st, p.Mail, p.Options.Log, clk.Now)
	var probs problemSet
	newNotifier := func() *HealthNotifier {
		return NewHealthNotifier(st, p.Options, p.Roles, p.School, p.Loc, m, probs.get)
	}
	n := newNotifier()
	ctx := context.Background()
	mails := 0
	step := func(advance time.Duration, wantQueued int) {
		t.Helper()
		clk.Add(advance)
		q, err := n.Step(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if q != wantQueued {
			t.Fatalf("at +%s: %d notices queued, want %d", clk.Now().Sub(t0), q, wantQueued)
		}
		if _, err := m.DeliverDue(ctx); err != nil {
			t.Fatal(err)
		}
		mails += q
		if got := len(srv.messages()); got != mails {
			t.Fatalf("at +%s: server has %d mails, want %d", clk.Now().Sub(t0), got, mails)
		}
	}

	// A blip shorter than notify_after is never mailed.
	probs.set(upstreamDown)
	step(0, 0)
	step(3*time.Minute, 0)
	probs.set()
	step(30*time.Second, 0)
	step(3*time.Minute, 0) // cleared without a word
	if n := count(t, st, `SELECT count(*) FROM health_problems`); n != 0 {
		t.Fatalf("%d problems recorded after the blip cleared", n)
	}

	// A lasting problem: one notice after 5 minutes.
	probs.set(upstreamDown)
	step(0, 0)
	step(4*time.Minute, 0)
	step(time.Minute, 1)
	msg := srv.messages()[0]
	body := decoded(t, msg.Raw)
	if len(msg.To) != 1 || msg.To[0] != "it@school.example" || !strings.Contains(msg.Subj, "PROBLEM") ||
		!strings.Contains(body, upstreamDown.Message) || !strings.Contains(body, "Since: Tue 1 Dec 09:") {
		t.Errorf("notice to %v, subject %q:\n%s", msg.To, msg.Subj, body)
	}

	// A restart neither repeats the notice nor forgets it.
	n = newNotifier()
	for range 46 { // every 30 minutes, to 23 hours after the notice
		step(30*time.Minute, 0)
	}
	step(time.Hour, 1) // 24 hours after the notice: one reminder
	if s := srv.messages()[1].Subj; !strings.Contains(s, "STILL NOT WORKING") {
		t.Errorf("reminder subject %q", s)
	}
	step(time.Hour, 0)

	// Resolved: one mail once it has been gone for the clear time, even if
	// it flickers back in between.
	probs.set()
	step(time.Minute, 0)
	probs.set(upstreamDown)
	step(30*time.Second, 0)
	probs.set()
	step(30*time.Second, 0)
	step(time.Minute, 0)
	step(time.Minute, 1)
	if s := srv.messages()[2].Subj; !strings.Contains(s, "RESOLVED") {
		t.Errorf("resolved subject %q", s)
	}
	for range 10 {
		step(time.Hour, 0)
	}
	if got := len(srv.messages()); got != 3 {
		t.Errorf("%d mails in all, want 3 (problem, reminder, resolved)", got)
	}
}

// TestHealthNoticeSurvivesMailOutage: the notice about mail failing is
// itself queued in the outbox and delivered once mail works again.
func TestHealthNoticeSurvivesMailOutage(t *testing.T) {
	st := openTemp(t)
	srv := newTestSMTP(t)
	srv.set(func(s *testSMTP) { s.down = true })
	clk := newClock(time.Date(2026, 12, 1, 9, 0, 0, 0, london))
	p := testParts(t, srv.mailConfig(t.TempDir()), clk.Now)
	svc, err := build(st, p)
	if err != nil {
		t.Fatal(err)
	}
	_, mailCheck := svc.HealthChecks()
	n := NewHealthNotifier(st, p.Options, p.Roles, p.School, p.Loc, svc.Mailer, mailCheck)
	ctx := context.Background()
	// Something to send, which fails.
	tx, _ := st.db.Begin()
	if err := enqueue(tx, &Message{Kind: "alert", Role: "dsl", Recipients: []string{"dsl@school.example"}, Subject: "x", Text: "x"}, "k1", clk.Now()); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	svc.Mailer.DeliverDue(ctx)
	probs := mailCheck()
	if len(probs) != 1 || probs[0].Key != "mail" || !strings.Contains(probs[0].Message, "1 message(s) waiting") {
		t.Fatalf("mail check while the server refuses: %+v", probs)
	}
	for range 12 {
		clk.Add(time.Minute)
		if _, err := n.Step(ctx); err != nil {
			t.Fatal(err)
		}
		svc.Mailer.DeliverDue(ctx)
	}
	if len(srv.messages()) != 0 {
		t.Fatal("server refused mail yet has messages")
	}
	srv.set(func(s *testSMTP) { s.down = false })
	clk.Add(time.Hour) // past every backoff
	svc.Mailer.DeliverDue(ctx)
	if got := mailCheck(); len(got) != 0 {
		t.Errorf("mail check after delivery: %+v", got)
	}
	var subjects []string
	for _, m := range srv.messages() {
		subj, _ := new(mime.WordDecoder).DecodeHeader(m.Subj)
		subjects = append(subjects, subj)
	}
	if len(subjects) != 2 || !strings.Contains(strings.Join(subjects, "|"), "PROBLEM: mail is failing") {
		t.Errorf("delivered %q; want the alert and the mail-failing notice", subjects)
	}
}

// TestWriterHealth: a failing commit is reported with its error, and
// cleared once commits succeed again.
func TestWriterHealth(t *testing.T) {
	st := openTemp(t)
	p := testParts(t, MailConfig{}, nil)
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	svc := &Service{Store: st, Writer: w, Mailer: NewMailer(st, MailConfig{}, nil, nil)}
	events, _ := svc.HealthChecks()
	if got := events(); len(got) != 0 {
		t.Fatalf("healthy writer reports %+v", got)
	}
	if _, err := st.db.Exec(`ALTER TABLE events RENAME TO events_away`); err != nil {
		t.Fatal(err)
	}
	w.Record(ev(time.Now(), "10.0.0.1", "students", "tor", "tor.example"))
	deadline := time.Now().Add(20 * time.Second)
	for len(events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := events()
	if ok, why := w.Healthy(); len(got) != 1 || got[0].Key != "events/writer" || !strings.Contains(got[0].Message, "events") || ok {
		t.Fatalf("failing writer: %+v (Healthy: %v)", got, why)
	}
	if _, err := st.db.Exec(`ALTER TABLE events_away RENAME TO events`); err != nil {
		t.Fatal(err)
	}
	// The writer retries after its backoff and replays the spilled event.
	deadline = time.Now().Add(30 * time.Second)
	for ok, _ := w.Healthy(); !ok && time.Now().Before(deadline); ok, _ = w.Healthy() {
		time.Sleep(20 * time.Millisecond)
	}
	if ok, why := w.Healthy(); !ok || len(events()) != 0 {
		t.Errorf("after recovery: %v, %+v", why, events())
	}
}

// TestDigestNeverSaysAllWellWhileBroken: with a current health problem,
// an empty digest lists it instead of "running and filtering".
func TestDigestNeverSaysAllWellWhileBroken(t *testing.T) {
	st := openTemp(t)
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, london) // a Monday
	clk := newClock(t0.Add(-time.Hour))
	p := testParts(t, MailConfig{}, clk.Now)
	var probs problemSet
	probs.set(upstreamDown, health.Problem{Key: "lists/iwf", Part: "lists", Message: "list iwf is not loaded"})
	n := NewHealthNotifier(st, p.Options, p.Roles, p.School, p.Loc, nil, probs.get)
	if _, err := n.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(time.Minute))
	d, err := NewDigester(st, p.Options, p.Roles, p.School, p.Loc, p.Schedules, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := d.Preview(context.Background(), "weekly")
	if err != nil || len(msgs) != 3 {
		t.Fatal(err, len(msgs))
	}
	for _, m := range msgs {
		for _, part := range []string{m.Text, m.HTML} {
			if strings.Contains(part, "running and filtering") || !strings.Contains(part, upstreamDown.Message) ||
				!strings.Contains(part, "list iwf is not loaded") || !strings.Contains(strings.ToLower(part), "not fully working") {
				t.Errorf("%s digest does not tell the truth:\n%s", m.Role, part)
			}
		}
		if strings.Contains(m.Subject, " OK ") || !strings.Contains(m.Subject, "2 filter health problems") {
			t.Errorf("subject %q", m.Subject)
		}
	}
	// Once resolved, the usual reassurance comes back.
	probs.set()
	clk.Add(10 * time.Minute)
	if _, err := n.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs, _ = d.Preview(context.Background(), "weekly")
	if len(msgs) == 0 || !strings.Contains(msgs[0].Text, "running and filtering") {
		t.Errorf("healthy digest lacks the reassurance: %v", msgs)
	}
}

// TestReportRouteMatchesWriter: what `gatehouse check` says about where a
// breach is reported is what the writer stores and the mailer resolves.
func TestReportRouteMatchesWriter(t *testing.T) {
	st := openTemp(t)
	cfg := config.Default()
	cfg.Reports.Recipients = map[string][]string{"dsl": {"dsl@school.example"}, "it": {"it@school.example"}}
	p := testParts(t, MailConfig{}, nil)
	p.Options.StaffToHeadteacher, p.Options.StaffGroups = cfg.Reports.StaffToHeadteacher, cfg.Reports.StaffGroups
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ group, cat string }{{"staff", "gambling"}, {"students", "gambling"}, {"staff", "malware"}, {"staff", "iwf"}, {"guests", "self-harm"}}
	for i, c := range cases {
		w.Record(ev(time.Now(), fmt.Sprintf("10.0.0.%d", i+1), c.group, c.cat, "x.example"))
	}
	w.Close()
	roles := Roles(cfg.Reports.Recipients)
	for i, c := range cases {
		var stored string
		if err := st.db.QueryRow(`SELECT route FROM events WHERE client = ?`, fmt.Sprintf("10.0.0.%d", i+1)).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		cat, _ := bl.ParseCategory(c.cat)
		route, role := ReportRoute(cfg, c.group, cat.Info().Route, cat.Restricted())
		if string(route) != stored || role != roles.resolve(stored) {
			t.Errorf("%s/%s: ReportRoute says %s → %s; the writer stored %s → %s", c.group, c.cat, route, role, stored, roles.resolve(stored))
		}
	}
	if route, role := ReportRoute(cfg, "staff", bl.RouteDSL, false); route != bl.RouteHeadteacher || role != "dsl" {
		t.Errorf("staff breach with no headteacher address: %s → %s", route, role)
	}
}

// TestMailHealthWithoutSMTP: without SMTP the .eml file is the delivery:
// when it cannot be written mail is failing, and once it can, it is not
// (the failing metric used to stay at 1 for good).
func TestMailHealthWithoutSMTP(t *testing.T) {
	st := openTemp(t)
	dir := filepath.Join(t.TempDir(), "outbox")
	if err := os.WriteFile(dir, []byte("a file where the directory should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock(time.Date(2026, 12, 1, 9, 0, 0, 0, london))
	m := NewMailer(st, MailConfig{Dir: dir, Backoff: time.Second}, nil, clk.Now)
	tx, _ := st.db.Begin()
	if err := enqueue(tx, &Message{Kind: "alert", Role: "dsl", Subject: "x", Text: "x"}, "k1", clk.Now()); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	ctx := context.Background()
	m.DeliverDue(ctx)
	if _, err := m.Healthy(); err == nil || !mailFailing(m) {
		t.Fatalf("outbox directory unusable: failing %v, %v", mailFailing(m), err)
	}
	os.Remove(dir)
	clk.Add(time.Minute)
	m.DeliverDue(ctx)
	if _, err := m.Healthy(); err != nil || mailFailing(m) || len(readEMLs(t, dir)) != 1 {
		t.Errorf("after the directory is fixed: failing %v, %v, %d files", mailFailing(m), err, len(readEMLs(t, dir)))
	}
}

// TestMailHealthSeesOneRoleRefused: the relay takes IT's mail but refuses
// the DSL's address (a typo in reports.recipients.dsl: 550 at RCPT TO).
// Mail is failing for as long as the DSL's alert waits, whatever else is
// delivered meanwhile: the check says so and names the role, IT gets one
// notice and never a "resolved" while the alert is stuck (the check used
// to follow the last attempt, so IT's own notice cleared it, and IT was
// told PROBLEM and RESOLVED in turn while the DSL heard nothing).
func TestMailHealthSeesOneRoleRefused(t *testing.T) {
	st := openTemp(t)
	srv := newTestSMTP(t)
	srv.set(func(s *testSMTP) { s.badRcpt = map[string]bool{"dsl@school.example": true} })
	clk := newClock(time.Date(2026, 12, 1, 9, 0, 0, 0, london))
	p := testParts(t, srv.mailConfig(t.TempDir()), clk.Now)
	svc, err := build(st, p)
	if err != nil {
		t.Fatal(err)
	}
	_, mailCheck := svc.HealthChecks()
	n := NewHealthNotifier(st, p.Options, p.Roles, p.School, p.Loc, svc.Mailer, mailCheck)
	ctx := context.Background()
	tx, _ := st.db.Begin()
	if err := enqueue(tx, &Message{Kind: "alert", Role: "dsl", Recipients: p.Roles["dsl"], Subject: "x", Text: "x"}, "k1", clk.Now()); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	svc.Mailer.DeliverDue(ctx)
	for i := range 120 { // two hours, a check a minute
		probs := mailCheck()
		if len(probs) != 1 || !strings.Contains(probs[0].Message, "dsl") || !strings.Contains(probs[0].Message, "no such user") {
			t.Fatalf("at +%dm, the DSL's alert still waiting: mail check %+v", i, probs)
		}
		if _, err := svc.Mailer.Healthy(); err == nil {
			t.Fatalf("at +%dm: the mailer says mail is healthy", i)
		}
		clk.Add(time.Minute)
		if _, err := n.Step(ctx); err != nil {
			t.Fatal(err)
		}
		svc.Mailer.DeliverDue(ctx)
	}
	var subjects []string
	for _, m := range srv.messages() {
		subj, _ := new(mime.WordDecoder).DecodeHeader(m.Subj)
		subjects = append(subjects, subj)
	}
	if len(subjects) != 1 || !strings.Contains(subjects[0], "PROBLEM: mail") {
		t.Errorf("IT got %q; want one PROBLEM notice about mail", subjects)
	}
	// The address is corrected (here: the relay accepts it): delivered,
	// healthy, and IT hears it is resolved.
	srv.set(func(s *testSMTP) { s.badRcpt = nil })
	clk.Add(time.Hour)
	svc.Mailer.DeliverDue(ctx)
	if got := mailCheck(); len(got) != 0 {
		t.Fatalf("mail check after delivery: %+v", got)
	}
	for range 5 {
		clk.Add(time.Minute)
		if _, err := n.Step(ctx); err != nil {
			t.Fatal(err)
		}
		svc.Mailer.DeliverDue(ctx)
	}
	last, _ := new(mime.WordDecoder).DecodeHeader(srv.messages()[len(srv.messages())-1].Subj)
	if len(srv.messages()) != 3 || !strings.Contains(last, "RESOLVED") {
		t.Errorf("after the fix the server has %d mails, the last %q; want the alert and RESOLVED", len(srv.messages()), last)
	}
}

// TestMailHealthNoDSLAddress: with a relay configured but no address for
// the DSL (here the role is mistyped "dls", which is a valid custom role),
// a critical alert can only be written to the outbox directory, where
// nobody reads it. The mail check says so from the start, so /healthz is
// degraded and IT is told, instead of all being well while the DSL's
// alerts reach nobody.
func TestMailHealthNoDSLAddress(t *testing.T) {
	srv := newTestSMTP(t)
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	p := testParts(t, srv.mailConfig(outbox), nil)
	p.Roles = Roles{"dls": {"dsl@school.example"}, "it": {"it@school.example"}}
	svc, err := Start(context.Background(), filepath.Join(dir, "g.db"), p)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	_, mailCheck := svc.HealthChecks()
	svc.Record(ev(time.Now().UTC(), "10.0.0.5", "students", "self-harm", "harm.example"))
	deadline := time.Now().Add(30 * time.Second)
	for len(readEMLs(t, outbox)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(readEMLs(t, outbox)) != 1 || len(srv.messages()) != 0 {
		t.Fatalf("%d .eml files, %d mails: want the alert as a file only", len(readEMLs(t, outbox)), len(srv.messages()))
	}
	probs := mailCheck()
	if len(probs) != 1 || probs[0].Warning || !strings.Contains(probs[0].Message, "reports.recipients.dsl") ||
		!strings.Contains(probs[0].Message, outbox) {
		t.Fatalf("mail check with no DSL address while a critical alert went to a file: %+v", probs)
	}
}

// TestMailHealthCopiesNotWritten: while the relay refuses mail, IT relies
// on the .eml copies in the outbox directory to pass alerts on by hand.
// When the directory cannot take them (here a file stands in its place;
// a full disk is the same), the mail check must not say copies are
// written there: it says they could not be, and why (it used to say
// "copies of failing mail are written to" the directory regardless).
func TestMailHealthCopiesNotWritten(t *testing.T) {
	st := openTemp(t)
	srv := newTestSMTP(t)
	srv.set(func(s *testSMTP) { s.down = true })
	dir := filepath.Join(t.TempDir(), "outbox")
	if err := os.WriteFile(dir, []byte("a file where the directory should be"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock(time.Date(2026, 12, 1, 9, 0, 0, 0, london))
	p := testParts(t, srv.mailConfig(dir), clk.Now)
	svc, err := build(st, p)
	if err != nil {
		t.Fatal(err)
	}
	_, mailCheck := svc.HealthChecks()
	tx, _ := st.db.Begin()
	if err := enqueue(tx, &Message{Kind: "alert", Role: "dsl", Recipients: p.Roles["dsl"], Subject: "x", Text: "x"}, "k1", clk.Now()); err != nil {
		t.Fatal(err)
	}
	tx.Commit()
	ctx := context.Background()
	for range p.Mail.FallbackAfter + 1 {
		svc.Mailer.DeliverDue(ctx)
		clk.Add(time.Hour)
	}
	probs := mailCheck()
	if len(probs) != 1 || strings.Contains(probs[0].Message, "are written to") || !strings.Contains(probs[0].Message, "could not be written") ||
		!strings.Contains(probs[0].Message, "not a directory") {
		t.Fatalf("mail check with no copy written: %+v", probs)
	}
	// The directory works again: the next failure writes the copy, and
	// the check says where it is.
	os.Remove(dir)
	svc.Mailer.DeliverDue(ctx)
	probs = mailCheck()
	if len(readEMLs(t, dir)) != 1 || len(probs) != 1 || strings.Contains(probs[0].Message, "could not be written") ||
		!strings.Contains(probs[0].Message, "1 of them in "+dir) {
		t.Fatalf("%d copies; mail check %+v", len(readEMLs(t, dir)), probs)
	}
}
