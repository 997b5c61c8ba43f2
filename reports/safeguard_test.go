package reports

import (
	"context"
	"database/sql"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// alertOnce stores one self-harm attempt in a fresh database, queues its
// alert and delivers it to srv; it returns the delivered Message-ID and the
// database path.
func alertOnce(t *testing.T, srv *testSMTP, at time.Time) (string, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "g.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p := testParts(t, srv.mailConfig(dir), func() time.Time { return at })
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	w.Record(ev(at, "10.0.0.5", "students", "self-harm", "harm.example"))
	w.Close()
	if n, err := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil).Check(context.Background()); err != nil || n != 1 {
		t.Fatalf("alerts %d, %v", n, err)
	}
	before := len(srv.messages())
	if _, err := NewMailer(st, p.Mail, nil, nil).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.wait(t, before+1, 10*time.Second)
	st.Close()
	return msgs[before].ID, path
}

// TestMessageIDsUniqueAcrossInstalls: two Gatehouse installs alerting on
// the same incident number must not send the same Message-ID (mail systems
// and DSL inboxes drop or thread a "duplicate"); a resend of one message
// after a crash keeps its ID.
func TestMessageIDsUniqueAcrossInstalls(t *testing.T) {
	srv := newTestSMTP(t)
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	id1, path := alertOnce(t, srv, at)
	id2, _ := alertOnce(t, srv, at)
	if id1 == id2 {
		t.Fatalf("two installs sent the same Message-ID %s", id1)
	}
	for _, id := range []string{id1, id2} {
		if !strings.HasPrefix(id, "<alert-1-1.") || !strings.HasSuffix(id, ">") || strings.Count(id, "@") != 1 {
			t.Errorf("Message-ID %q: want <alert-1-1.INSTALL@HOST>", id)
		}
	}

	// A crash after the server took the message but before it was marked
	// sent: at restart it goes again, with the same ID.
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.db.Exec(`UPDATE outbox SET sent_ts = 0`); err != nil {
		t.Fatal(err)
	}
	before := len(srv.messages())
	if _, err := NewMailer(st, srv.mailConfig(t.TempDir()), nil, nil).DeliverDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := srv.wait(t, before+1, 10*time.Second)
	if got := msgs[before].ID; got != id1 {
		t.Errorf("resend has Message-ID %s, first send %s", got, id1)
	}
}

func mistakeEvent(at time.Time, client, url, note string) Event {
	return Event{Time: at, Source: "http", Protocol: "http", Client: netip.MustParseAddr(client), User: "amira", Group: "students",
		Name: hostOf(url), URL: url, Action: ActionReport, Reason: "mistake-report", Category: "games", Route: "it", Ref: "GH-AAAA-BBBB", Note: note, Count: 1}
}

// TestMistakeMailsBatched: the first report is mailed to IT at once; more
// within MistakeMailEvery wait and then go together in one mail. Reports
// are kept as long as breaches, not as long as the query log.
func TestMistakeMailsBatched(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	st := openTemp(t)
	p := testParts(t, MailConfig{Dir: dir}, clk.Now)
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
	check := func(want int) {
		t.Helper()
		w.Flush()
		if n, err := a.Check(context.Background()); err != nil || n != want {
			t.Fatalf("Check: %d mails, %v; want %d", n, err, want)
		}
	}
	w.Record(mistakeEvent(clk.Now(), "10.0.0.1", "http://a.example/x", "note one"))
	check(1)
	clk.Add(time.Minute)
	w.Record(mistakeEvent(clk.Now(), "10.0.0.2", "http://b.example/y", "note two"))
	w.Record(mistakeEvent(clk.Now(), "10.0.0.3", "http://c.example/z", "note three"))
	check(0)
	clk.Add(DefaultMistakeMailEvery)
	check(1)
	check(0)
	w.Close()
	rows, err := st.db.Query(`SELECT role, recipients, subject, text_body FROM outbox WHERE kind = 'mistakes' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for rows.Next() {
		var role, rc, subj, text string
		if err := rows.Scan(&role, &rc, &subj, &text); err != nil {
			t.Fatal(err)
		}
		if role != "it" || !strings.Contains(rc, "it@school.example") {
			t.Errorf("mistake mail to %s %s", role, rc)
		}
		bodies = append(bodies, subj+"\n"+text)
	}
	rows.Close()
	if len(bodies) != 2 || !strings.Contains(bodies[0], "note one") || strings.Contains(bodies[0], "note two") ||
		!strings.Contains(bodies[1], "note two") || !strings.Contains(bodies[1], "note three") || !strings.Contains(bodies[1], "2 blocked sites") {
		t.Fatalf("mistake mails:\n%s", strings.Join(bodies, "\n----\n"))
	}
	// The group, not who sent it (as the console's mis-block queue).
	for _, b := range bodies {
		if !strings.Contains(b, "Group:     students") || strings.Contains(b, "amira") || strings.Contains(b, "10.0.0.") {
			t.Errorf("a mistake mail names the sender or lacks the group:\n%s", b)
		}
	}

	// The query log's retention does not remove them; the breaches' does.
	clk.Add(60 * 24 * time.Hour)
	if _, err := st.Purge(context.Background(), clk.Now(), p.Breaches, p.QueryLog); err != nil {
		t.Fatal(err)
	}
	if ms, _ := st.Mistakes(Filter{}); len(ms) != 3 {
		t.Fatalf("%d reports after the query-log retention, want 3", len(ms))
	}
	clk.Add(p.Breaches)
	if _, err := st.Purge(context.Background(), clk.Now(), p.Breaches, p.QueryLog); err != nil {
		t.Fatal(err)
	}
	if ms, _ := st.Mistakes(Filter{}); len(ms) != 0 {
		t.Fatalf("%d reports after the breach retention, want 0", len(ms))
	}
}

// TestRedact: a restricted event keeps no name, URL, search term or note,
// and records the hash of the matched entry (or of the host).
func TestRedact(t *testing.T) {
	e := ev(time.Now(), "10.0.0.1", "students", "iwf", "www.Secret.example")
	e.URL, e.SearchTerm = "http://www.secret.example/a", "secret"
	Redact(&e)
	if e.Name != "" || e.URL != "" || e.SearchTerm != "" || e.Entry != bl.EntryHash("www.secret.example") {
		t.Errorf("redacted event %+v", e)
	}
	e = mistakeEvent(time.Now(), "10.0.0.1", "http://secret.example/", "secret.example please")
	e.Restricted, e.Entry = true, bl.EntryHash("secret.example")
	Redact(&e)
	if e.Name != "" || e.URL != "" || e.Note != withheldNote || e.Entry != bl.EntryHash("secret.example") {
		t.Errorf("redacted report %+v", e)
	}
	e = ev(time.Now(), "10.0.0.1", "students", "games", "games.example")
	Redact(&e)
	if e.Name != "games.example" || e.Entry != "" {
		t.Errorf("an unrestricted event was changed: %+v", e)
	}
}

// TestUpgradeScrubsRestrictedNames: a database written before redaction
// holds restricted-tier names; opening it with this build removes them
// (keeping the entry's hash) from the file and its WAL.
func TestUpgradeScrubsRestrictedNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	raw, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	for v, m := range migrations[:2] {
		if _, err := raw.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", v+1, err)
		}
	}
	if _, err := raw.Exec(`PRAGMA user_version = 2`); err != nil {
		t.Fatal(err)
	}
	// As the old writer stored them: the name kept, the URL blanked.
	if _, err := raw.Exec(`INSERT INTO events (ts, kind, source, client, name, action, category, severity, route, list, flags)
		VALUES (1, 1, 'dns', '10.0.0.1', 'www.oldsecret.example', 'block', 'iwf', 4, 'dsl', 'restricted', 1),
		       (2, 1, 'dns', '10.0.0.1', 'games.example', 'block', 'games', 1, 'dsl', 'games', 0)`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var name, entry string
	if err := st.db.QueryRow(`SELECT name, entry FROM events WHERE ts = 1`).Scan(&name, &entry); err != nil {
		t.Fatal(err)
	}
	if name != "" || entry != bl.EntryHash("www.oldsecret.example") {
		t.Errorf("after the upgrade: name %q entry %q", name, entry)
	}
	if n := count(t, st, `SELECT count(*) FROM events WHERE name = 'games.example'`); n != 1 {
		t.Errorf("an unrestricted event was changed")
	}
	st.Close()
	for _, p := range []string{path, path + "-wal"} {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(strings.ToLower(string(b)), "oldsecret") {
			t.Errorf("%s still holds the restricted name", p)
		}
	}
}

// TestAckThenRepeat: after an acknowledgement, a new attempt is alerted at
// once as a new alert (not held back by the de-duplication window, not a
// follow-up); the reopened incident then de-duplicates as usual.
func TestAckThenRepeat(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	st := openTemp(t)
	p := testParts(t, MailConfig{Dir: t.TempDir()}, clk.Now)
	w, err := NewWriter(st, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
	attempt := func() {
		e := ev(clk.Now(), "10.0.0.5", "students", "self-harm", "harm.example")
		e.User = "pupil17"
		w.Record(e)
		w.Flush()
	}
	check := func(want int) {
		t.Helper()
		if n, err := a.Check(context.Background()); err != nil || n != want {
			t.Fatalf("at %s: %d alerts, %v; want %d", clk.Now().Format("15:04"), n, err, want)
		}
	}
	attempt()
	check(1)
	if n, err := st.Acknowledge(1); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	check(0) // the attempt already alerted is dealt with
	clk.Add(time.Minute)
	attempt()
	check(1)
	var subj, body, status string
	st.db.QueryRow(`SELECT subject, text_body FROM outbox ORDER BY id DESC LIMIT 1`).Scan(&subj, &body)
	st.db.QueryRow(`SELECT status FROM incidents WHERE id = 1`).Scan(&status)
	if strings.Contains(subj, "follow-up") || !strings.Contains(subj, "alert") || !strings.Contains(body, "acknowledged") || status != StatusAlerted {
		t.Errorf("after the acknowledgement: %s\n%s\nstatus %s", subj, body, status)
	}
	clk.Add(time.Minute)
	attempt()
	check(0) // inside the window again: the follow-up counts it
	clk.Add(10 * time.Minute)
	check(1)
}

// TestRedactDoesNotAllocate: Redact runs for every event; an unrestricted
// one costs no allocation.
func TestRedactDoesNotAllocate(t *testing.T) {
	e := ev(time.Now(), "10.0.0.1", "students", "", "www.example.com")
	g := ev(time.Now(), "10.0.0.1", "students", "games", "games.example")
	if n := testing.AllocsPerRun(100, func() { Redact(&e); Redact(&g) }); n != 0 {
		t.Errorf("Redact allocates %.1f times", n)
	}
	if !restrictedName("iwf") || !restrictedName("CTIRU") || restrictedName("games") {
		t.Error("restrictedName")
	}
}
