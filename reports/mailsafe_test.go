package reports

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMailFieldsCannotAddLines: text a pupil controls (the note of a
// "report a mistake" form, a device name handed to the writer) cannot add
// lines of its own to a mail's plain-text part, such as a fake "What to
// do" or "Do:" telling the DSL that no action is needed: each stays on
// the line of its field, in the IT mail and in the DSL's digest (IT with
// no address, so the reports reach the DSL).
func TestMailFieldsCannotAddLines(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 7, 30, 0, 0, london)
	clk := newClock(t0.Add(2 * time.Hour))
	st := openTemp(t)
	p := testParts(t, MailConfig{}, clk.Now)
	delete(p.Roles, "it")
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	const inject = "\r\n\r\nWHAT TO DO\r\n- Do:   No action needed, a known filter fault\u2028  Do:   No action needed\u0085Do: No action needed"
	w.Record(mistakeEvent(t0.Add(time.Hour), "10.0.0.1", "http://a.example/x", "homework"+inject))
	sh := ev(t0.Add(time.Hour), "10.0.0.5", "students", "self-harm", "harm.example")
	sh.Device = "LAB-PC" + inject
	w.Record(sh)
	w.Close()

	a := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
	if _, err := a.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	rows, err := st.db.Query(`SELECT kind, subject, text_body FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var kind, subj, text string
		if err := rows.Scan(&kind, &subj, &text); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, kind+": "+subj+"\n"+text)
	}
	rows.Close()
	if _, err := st.db.Exec(`INSERT INTO digests (schedule, watermark) VALUES ('daily', ?)`, ms(t0)); err != nil {
		t.Fatal(err)
	}
	d, err := NewDigester(st, p.Options, p.Roles, p.School, p.Loc, p.Schedules, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := d.Preview(context.Background(), "daily")
	if err != nil || len(msgs) != 1 {
		t.Fatal(err, len(msgs))
	}
	bodies = append(bodies, "digest: "+msgs[0].Subject+"\n"+msgs[0].Text)
	if len(bodies) != 3 {
		t.Fatalf("%d mails, want an alert, a mistake mail and a digest", len(bodies))
	}
	for _, b := range bodies {
		if !strings.Contains(b, "No action needed") {
			t.Errorf("the field is missing from the mail:\n%s", b)
		}
		for _, line := range strings.FieldsFunc(b, func(r rune) bool { return r == '\n' || r == '\r' || r == '\u2028' || r == '\u0085' }) {
			if strings.Contains(line, "No action needed") && !strings.Contains(line, "homework") && !strings.Contains(line, "LAB-PC") {
				t.Errorf("the text made a line of its own: %q in\n%s", line, b)
			}
		}
	}
}

// TestSearchTermNotCrowdedOutOfSamples: an incident keeps a few samples
// of what was attempted. A pupil who first opened a self-harm site (its
// page asking for many blocked names) and then searched for "how to kill
// myself tonight" must have the search in the DSL's follow-up alert and
// digest: the search, not the site's fifth image server, is what says
// how serious it is.
func TestSearchTermNotCrowdedOutOfSamples(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 7, 30, 0, 0, london)
	clk := newClock(t0.Add(time.Hour))
	st := openTemp(t)
	p := testParts(t, MailConfig{}, clk.Now)
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
	for i, h := range []string{"harm.example", "cdn.harm.example", "img.harm.example", "api.harm.example", "fonts.harm.example", "ads.harm.example"} {
		e := ev(t0.Add(time.Hour+time.Duration(i)*time.Second), "10.0.0.5", "students", "self-harm", h)
		e.User = "pupil17"
		w.Record(e)
	}
	w.Flush()
	if n, err := a.Check(context.Background()); err != nil || n != 1 {
		t.Fatalf("first alert: %d, %v", n, err)
	}
	s := ev(t0.Add(time.Hour+time.Minute), "10.0.0.5", "students", "self-harm", "www.google.com")
	s.User, s.Action, s.Reason, s.SearchTerm, s.SearchEngine = "pupil17", "flag", "watchlist", "how to kill myself tonight", "Google"
	w.Record(s)
	w.Close()
	clk.Add(15 * time.Minute)
	if n, err := a.Check(context.Background()); err != nil || n != 1 {
		t.Fatalf("follow-up: %d, %v", n, err)
	}
	var followUp string
	if err := st.db.QueryRow(`SELECT text_body FROM outbox WHERE kind = 'alert' ORDER BY id DESC LIMIT 1`).Scan(&followUp); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(`INSERT INTO digests (schedule, watermark) VALUES ('daily', ?)`, ms(t0)); err != nil {
		t.Fatal(err)
	}
	d, err := NewDigester(st, p.Options, p.Roles, p.School, p.Loc, p.Schedules, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := d.Preview(context.Background(), "daily")
	if err != nil || len(msgs) != 1 {
		t.Fatal(err, len(msgs))
	}
	for name, body := range map[string]string{"follow-up alert": followUp, "digest": msgs[0].Text + msgs[0].HTML} {
		if !strings.Contains(body, "how to kill myself tonight") {
			t.Errorf("the %s lacks the search:\n%s", name, body)
		}
	}
}

// TestPupilTextNotLinked: a search term or a "report a mistake" note is
// typed by the pupil, so a link in it would reach the DSL's alert (or IT's
// mail) one click away, beside the console's real link: a sign-in page of
// the pupil's own. Mail programs make links of URLs and of names with
// dots, so neither is left as one; the blocked site an alert names is.
func TestPupilTextNotLinked(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 7, 30, 0, 0, london)
	clk := newClock(t0.Add(2 * time.Hour))
	st := openTemp(t)
	p := testParts(t, MailConfig{}, clk.Now)
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	sh := ev(t0.Add(time.Hour), "10.0.0.5", "students", "self-harm", "www.google.com")
	sh.SearchTerm, sh.SearchEngine = "how to kill myself https://console.school.example.evil.test/signin", "Google"
	w.Record(sh)
	w.Record(ev(t0.Add(time.Hour), "10.0.0.6", "students", "pornography", "porn.example"))
	w.Record(mistakeEvent(t0.Add(time.Hour), "10.0.0.1", "http://a.example/x", "my teacher said use HTTPS://Sign-In.evil.test instead"))
	w.Close()
	if _, err := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil).Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, err := st.db.Query(`SELECT text_body || html_body FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	var all string
	for rows.Next() {
		var b string
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		all += b
	}
	rows.Close()
	for _, bad := range []string{"https://console", "console.school.example.evil.test", "HTTPS://Sign", "Sign-In.evil.test"} {
		if strings.Contains(all, bad) {
			t.Errorf("the mail holds %q, a link a mail program would make", bad)
		}
	}
	for _, want := range []string{"hxxps://console[.]school[.]example[.]evil[.]test/signin", "HxxPS://Sign-In[.]evil[.]test", "porn.example"} {
		if !strings.Contains(all, want) {
			t.Errorf("the mail lacks %q:\n%s", want, all)
		}
	}
}
