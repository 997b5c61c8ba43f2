package reports

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
)

// TestMailCarriesIncidentReference: alerts and digests give each
// incident's reference, and its console link when console.url is set;
// without it they say plainly there is no link.
func TestMailCarriesIncidentReference(t *testing.T) {
	for _, console := range []string{"", "https://filter.school.example:8080/"} {
		st := openTemp(t)
		t0 := time.Date(2026, 11, 24, 7, 30, 0, 0, london)
		clk := newClock(t0.Add(5 * time.Hour))
		p := testParts(t, MailConfig{Dir: t.TempDir()}, clk.Now)
		p.Options.ConsoleURL = console
		w, _ := NewWriter(st, p.Options)
		w.Record(ev(t0.Add(2*time.Hour), "10.0.0.5", "students", "self-harm", "harm.example"))
		w.Close()
		var id int64
		if err := st.db.QueryRow(`SELECT id FROM incidents`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		a := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
		if n, err := a.Check(context.Background()); n != 1 || err != nil {
			t.Fatalf("alert: %d %v", n, err)
		}
		var text, html string
		var inc int64
		if err := st.db.QueryRow(`SELECT text_body, html_body, incident_id FROM outbox WHERE kind = 'alert'`).Scan(&text, &html, &inc); err != nil {
			t.Fatal(err)
		}
		if inc != id || !strings.Contains(text, "Incident: #1\n") {
			t.Fatalf("alert for incident %d (outbox says %d):\n%s", id, inc, text)
		}
		st.db.Exec(`INSERT INTO digests (schedule, watermark) VALUES ('daily', ?)`, ms(t0))
		d, _ := NewDigester(st, p.Options, p.Roles, p.School, p.Loc, p.Schedules, true, nil)
		msgs, err := d.Preview(context.Background(), "daily")
		if err != nil || len(msgs) != 1 {
			t.Fatal(err, len(msgs))
		}
		dt, dh := msgs[0].Text, msgs[0].HTML
		if console == "" {
			for _, s := range []string{text, html} {
				if !strings.Contains(s, "no link, as console.url is not set: find #1 under Incidents in the console") || strings.Contains(s, "/incidents/") {
					t.Errorf("alert without console.url:\n%s", s)
				}
			}
			if !strings.Contains(dt, "  Ref:  #1\n") || !strings.Contains(dt, "console.url is not set") || strings.Contains(dh, "/incidents/") {
				t.Errorf("digest without console.url:\n%s", dt)
			}
			continue
		}
		link := "https://filter.school.example:8080/incidents/1"
		if !strings.Contains(text, "Open:     "+link+" (the console asks you to sign in)") || !strings.Contains(html, `<a href="`+link+`">`) {
			t.Errorf("alert with console.url:\n%s\n%s", text, html)
		}
		if !strings.Contains(dt, "  Ref:  #1, "+link+"\n") || !strings.Contains(dh, `<a href="`+link+`">#1</a>`) {
			t.Errorf("digest with console.url:\n%s\n%s", dt, dh)
		}
	}
}

// TestCaseRecordsRetention: an incident the DSL acted on is a case
// record: kept, with its attempts, past the breach retention, until
// case_records (keep: for ever); incidents nobody acted on go as before.
func TestCaseRecordsRetention(t *testing.T) {
	st := openTemp(t)
	t0 := time.Date(2024, 3, 4, 10, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	p := testParts(t, MailConfig{Dir: t.TempDir()}, clk.Now)
	w, _ := NewWriter(st, p.Options)
	w.Record(ev(t0, "10.0.0.5", "students", "self-harm", "harm.example"))
	w.Record(ev(t0, "10.0.0.6", "students", "gambling", "bet.example"))
	w.Close()
	var caseID int64
	st.db.QueryRow(`SELECT id FROM incidents WHERE category = 'self-harm'`).Scan(&caseID)
	if err := st.AddNote(caseID, "dsl@school.example", "Spoke to her; referred to CAMHS.", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SetState(caseID, "dsl@school.example", CaseClosed, "referred to MASH/police", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	later := t0.AddDate(2, 0, 0) // past the 365-day event retention
	if _, err := st.Purge(ctx, later, 365*24*time.Hour, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, `SELECT count(*) FROM incidents`); n != 1 {
		t.Fatalf("%d incidents after the event purge, want the case record only", n)
	}
	if n := count(t, st, `SELECT count(*) FROM events WHERE incident_id = ?`, caseID); n != 1 {
		t.Fatalf("the case's attempts went with the event purge (%d left)", n)
	}
	if n, _ := st.PurgeCases(ctx, t0.AddDate(40, 0, 0), 0); n != 0 || count(t, st, `SELECT count(*) FROM case_log`) != 2 {
		t.Fatalf("keep purged %d rows", n)
	}
	keep := 25 * 8766 * time.Hour
	if n, _ := st.PurgeCases(ctx, t0.AddDate(24, 0, 0), keep); n != 0 {
		t.Fatalf("a case record purged after 24 of 25 years (%d rows)", n)
	}
	if n, err := st.PurgeCases(ctx, t0.AddDate(25, 1, 0), keep); err != nil || n != 4 {
		t.Fatalf("after 25 years: %d rows purged (%v), want the incident, its event and 2 log rows", n, err)
	}
	if n := count(t, st, `SELECT count(*) FROM incidents`) + count(t, st, `SELECT count(*) FROM case_log`) + count(t, st, `SELECT count(*) FROM events`); n != 0 {
		t.Fatalf("%d rows left", n)
	}
}

// TestClosingNeedsOutcomeAndReopensLikeAcknowledge: closing marks the
// attempts so far as dealt with, exactly as Acknowledge does.
func TestClosingNeedsOutcomeAndReopensLikeAcknowledge(t *testing.T) {
	st := openTemp(t)
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	p := testParts(t, MailConfig{Dir: t.TempDir()}, clk.Now)
	w, _ := NewWriter(st, p.Options)
	defer w.Close()
	w.Record(ev(t0, "10.0.0.5", "students", "pornography", "p.example"))
	w.Flush()
	if _, _, err := st.SetState(1, "dsl", CaseClosed, "", t0); err == nil {
		t.Fatal("closed without an outcome")
	}
	if _, _, err := st.SetState(1, "dsl", CaseClosed, "because", t0); err == nil {
		t.Fatal("closed with an outcome not on the list")
	}
	before, after, err := st.SetState(1, "dsl", CaseClosed, "parents informed", t0)
	if err != nil || before != "open" || after != "closed: parents informed" {
		t.Fatalf("close: %q %q %v", before, after, err)
	}
	a := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
	if n, _ := a.Check(context.Background()); n != 0 {
		t.Fatalf("closed before any alert: %d alerts for attempts already dealt with", n)
	}
	clk.Add(time.Minute)
	w.Record(ev(clk.Now(), "10.0.0.5", "students", "pornography", "p.example"))
	w.Flush()
	if n, _ := a.Check(context.Background()); n != 1 {
		t.Fatalf("new attempt after closing: %d alerts, want 1", n)
	}
	c, _ := st.Case(1)
	if c.State() != CaseOpen || !c.Reopened() {
		t.Fatalf("case after a new attempt: %s reopened=%t", c.State(), c.Reopened())
	}
	if _, err := st.Case(99); err != ErrNoIncident {
		t.Fatalf("missing case: %v", err)
	}
}

// TestMigration7FillsAlertIncidents: alerts queued before migration 7
// are tied to their incidents by their Message-ID, so an incident page
// lists the alerts sent before the upgrade too.
func TestMigration7FillsAlertIncidents(t *testing.T) {
	path := t.TempDir() + "/old.db"
	db, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:5] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`PRAGMA user_version = 5`,
		`INSERT INTO incidents (id, who, category, severity, route, first_ts, last_ts, count) VALUES (42, 'user:a', 'vpn', 3, 'dsl', 1, 2, 1)`,
		`INSERT INTO outbox (kind, created_ts, role, recipients, subject, text_body, html_body, message_id) VALUES ('alert', 5, 'dsl', '[]', 's', 't', 'h', '<alert-42-3.abc@host>')`,
		`INSERT INTO outbox (kind, created_ts, role, recipients, subject, text_body, html_body, message_id) VALUES ('digest', 6, 'dsl', '[]', 's', 't', 'h', '<digest-daily-1.abc@host>')`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(q, err)
		}
	}
	db.Close()
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	alerts, err := st.Alerts(42)
	if err != nil || len(alerts) != 1 || alerts[0].Subject != "s" {
		t.Fatalf("alerts of incident 42 after the upgrade: %+v %v", alerts, err)
	}
	if n := count(t, st, `SELECT count(*) FROM outbox WHERE incident_id <> 0`); n != 1 {
		t.Fatalf("%d outbox rows tied to an incident, want the alert only", n)
	}
}
