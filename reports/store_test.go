package reports

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

func TestOpenCreatesPrivateWALDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("database mode %04o, want 0600", perm)
	}
	var mode string
	st.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Errorf("journal_mode %q, want wal", mode)
	}
	var fk, av, v, cache int
	st.db.QueryRow("PRAGMA foreign_keys").Scan(&fk)
	st.db.QueryRow("PRAGMA auto_vacuum").Scan(&av)
	st.db.QueryRow("PRAGMA user_version").Scan(&v)
	st.db.QueryRow("PRAGMA cache_size").Scan(&cache)
	if fk != 1 || av != 2 || v != SchemaVersion || cache != -pageCacheKiB {
		t.Errorf("foreign_keys %d auto_vacuum %d user_version %d cache_size %d", fk, av, v, cache)
	}
	st.Close()

	// Reopening is a no-op migration; a newer schema is refused.
	st, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	_, err = Open(path)
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("newer schema: err = %v", err)
	}
}

// TestIncidentFloorMigration: a database made before incident numbers
// were kept from reuse (schema 10) starts its floor at its highest
// incident, so deleting the newest ones does not free their numbers.
func TestIncidentFloorMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Back to schema 10, with incidents 1-3.
	for _, q := range []string{
		`DROP TRIGGER incidents_floor`, `DELETE FROM meta WHERE key = 'incident_floor'`,
		`INSERT INTO incidents (who, category, severity, route, first_ts, last_ts, count) VALUES ('ip:10.0.0.1', 'games', 1, 'dsl', 1, 1, 1), ('ip:10.0.0.2', 'games', 1, 'dsl', 1, 1, 1), ('ip:10.0.0.3', 'games', 1, 'dsl', 1, 1, 1)`,
		`PRAGMA user_version = 10`,
	} {
		if _, err := st.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	st.Close()
	if st, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.db.Exec(`DELETE FROM incidents WHERE id >= 2`); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Record(ev(time.Now(), "10.0.0.9", "students", "games", "play.example"))
	w.Close()
	var id int64
	if err := st.db.QueryRow(`SELECT max(id) FROM incidents`).Scan(&id); err != nil || id != 4 {
		t.Errorf("the new incident is number %d (%v), want 4", id, err)
	}
}

func TestIncidentsGroupByClientCategoryWindow(t *testing.T) {
	st := openTemp(t)
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	w, err := NewWriter(st, Options{Samples: 2, Now: clk.Now, StaffGroups: []string{"staff"}, StaffToHeadteacher: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rec := func(e Event) {
		if !w.Record(e) {
			t.Fatal("event refused")
		}
	}
	rec(ev(t0, "10.0.0.5", "students", "pornography", "a.example"))
	rec(ev(t0.Add(10*time.Minute), "10.0.0.5", "students", "pornography", "b.example"))
	rec(ev(t0.Add(20*time.Minute), "10.0.0.5", "students", "pornography", "c.example")) // samples capped at 2
	rec(ev(t0.Add(55*time.Minute), "10.0.0.5", "students", "pornography", "d.example")) // > 30m gap: new incident
	rec(ev(t0, "10.0.0.5", "students", "gambling", "bet.example"))                      // other category
	u := ev(t0, "10.0.0.6", "students", "pornography", "e.example")
	u.User = "alice"
	rec(u)
	rec(ev(t0, "10.0.0.7", "staff", "pornography", "f.example")) // staff: headteacher
	iwf := ev(t0, "10.0.0.8", "students", "iwf", "secret.example")
	rec(iwf)
	p := ev(t0, "10.0.0.9", "students", "dns-canary", "use-application-dns.net")
	p.Probe = true
	rec(p)
	w.Flush()

	incs, err := st.Incidents(Filter{Since: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	byWho := map[string][]Incident{}
	for _, i := range incs {
		byWho[i.Who+"/"+i.Category] = append(byWho[i.Who+"/"+i.Category], i)
	}
	porn := byWho["ip:10.0.0.5/pornography"]
	if len(porn) != 2 {
		t.Fatalf("pornography incidents for 10.0.0.5: %d, want 2: %+v", len(porn), porn)
	}
	first := porn[1] // newest first
	if first.Count != 3 || len(first.Samples) != 2 || first.Samples[0] != "a.example" || !first.Last.Equal(t0.Add(20*time.Minute)) {
		t.Errorf("first incident %+v", first)
	}
	if len(byWho["ip:10.0.0.5/gambling"]) != 1 || len(byWho["user:alice/pornography"]) != 1 {
		t.Errorf("incidents: %v", byWho)
	}
	if s := byWho["ip:10.0.0.7/pornography"]; len(s) != 1 || s[0].Route != "headteacher" {
		t.Errorf("staff incident %+v, want route headteacher", s)
	}
	if s := byWho["ip:10.0.0.8/iwf"]; len(s) != 1 || len(s[0].Samples) != 0 || s[0].Severity != bl.SeverityCritical {
		t.Errorf("restricted incident %+v: want no samples, critical", s)
	}
	if len(byWho["ip:10.0.0.9/dns-canary"]) != 0 {
		t.Error("a probe made an incident")
	}
	if n := count(t, st, "SELECT count(*) FROM events"); n != 9 {
		t.Errorf("events stored %d, want 9", n)
	}
}

func TestIncidentJoinsAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	t0 := time.Now().UTC()
	for i := range 2 {
		st, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := NewWriter(st, Options{})
		if err != nil {
			t.Fatal(err)
		}
		w.Record(ev(t0.Add(time.Duration(i)*time.Minute), "10.0.0.5", "students", "vpn", "vpn.example"))
		w.Close()
		st.Close()
	}
	st, _ := Open(path)
	defer st.Close()
	if n := count(t, st, "SELECT count(*) FROM incidents"); n != 1 {
		t.Errorf("%d incidents, want 1 (the restart must rejoin the open incident)", n)
	}
	if n := count(t, st, "SELECT count FROM incidents"); n != 2 {
		t.Errorf("count %d, want 2", n)
	}
}

func TestQueueNeverDropsHighSeverity(t *testing.T) {
	st := openTemp(t)
	w, err := NewWriter(st, Options{QueueSize: 16, MaxBatch: 64})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	var high, lowOK, lowDropped int
	for i := range 20_000 {
		e := ev(t0, fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), "students", "piracy", "p.example")
		if i%10 == 0 {
			e = ev(t0, fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), "students", "self-harm", "s.example")
			high++
			if !w.Record(e) {
				t.Fatal("a critical event was refused")
			}
			continue
		}
		if w.Record(e) {
			lowOK++
		} else {
			lowDropped++
		}
	}
	w.Close()
	if n := count(t, st, "SELECT count(*) FROM events WHERE category = 'self-harm'"); n != int64(high) {
		t.Errorf("critical events stored %d, want %d", n, high)
	}
	if n := count(t, st, "SELECT count(*) FROM events WHERE category = 'piracy'"); n != int64(lowOK) {
		t.Errorf("low events stored %d, want the %d accepted", n, lowOK)
	}
	if uint64(lowDropped) != w.Dropped() {
		t.Errorf("dropped %d, counted %d", lowDropped, w.Dropped())
	}
	t.Logf("low accepted %d, dropped %d (queue 16)", lowOK, lowDropped)
}

// TestCrashLosesOnlyUnhandedEvents kills a process that is writing events
// with SIGKILL and checks, after a restart, that every event the writer
// had committed is there and the database is intact.
func TestCrashLosesOnlyUnhandedEvents(t *testing.T) {
	if os.Getenv("GATEHOUSE_CRASH_DB") != "" {
		crashChild(os.Getenv("GATEHOUSE_CRASH_DB"))
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "g.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLosesOnlyUnhandedEvents$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_CRASH_DB="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() { _ = cmd.Process.Kill(); <-done }()
	committed := 0
	sc := bufio.NewScanner(out)
	go func() {
		<-time.After(60 * time.Second)
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
		}
	}()
	for sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "committed "))
		if err != nil {
			continue
		}
		committed = n
		if committed >= 30_000 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	_ = cmd.Wait()
	close(done)
	if committed < 30_000 {
		t.Fatalf("child committed only %d events before it ended", committed)
	}
	st, err := Open(path)
	if err != nil {
		t.Fatalf("reopening after SIGKILL: %v", err)
	}
	defer st.Close()
	var ok string
	st.db.QueryRow("PRAGMA integrity_check").Scan(&ok)
	if ok != "ok" {
		t.Fatalf("integrity_check: %s", ok)
	}
	n := count(t, st, "SELECT count(*) FROM events")
	if n < int64(committed) {
		t.Fatalf("after SIGKILL %d events, but the writer had committed %d", n, committed)
	}
	if sum := count(t, st, "SELECT COALESCE(SUM(count),0) FROM incidents"); sum != count(t, st, "SELECT SUM(count) FROM events WHERE incident_id IS NOT NULL") {
		t.Errorf("incident counts %d do not match their events", sum)
	}
	t.Logf("committed %d before SIGKILL; %d in the database after restart", committed, n)
}

// crashChild writes events for ever, reporting the committed count.
func crashChild(path string) {
	st, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	w, err := NewWriter(st, Options{})
	if err != nil {
		os.Exit(3)
	}
	t0 := time.Now().UTC()
	for i := 0; ; i++ {
		w.Record(ev(t0.Add(time.Duration(i)*time.Millisecond), fmt.Sprintf("10.%d.%d.1", i%200, i/200%250), "students", "vpn", "x.example"))
		if i%1000 == 999 {
			w.Flush()
			fmt.Printf("committed %d\n", w.Written())
		}
	}
}

func TestRetentionPurge(t *testing.T) {
	st := openTemp(t)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	w, _ := NewWriter(st, Options{QueueSize: 20_000, Now: func() time.Time { return now }})
	old := now.Add(-400 * 24 * time.Hour)
	for i := range 12_000 { // more than one delete batch
		w.Record(ev(old.Add(time.Duration(i)*time.Second), "10.0.0.1", "students", "gambling", "bet.example"))
	}
	w.Record(ev(now.Add(-time.Hour), "10.0.0.1", "students", "gambling", "bet.example"))
	allowed := ev(now.Add(-40*24*time.Hour), "10.0.0.1", "students", "", "bbc.co.uk")
	allowed.Action = "allow"
	w.Record(allowed)
	recent := allowed
	recent.Time = now.Add(-time.Hour)
	w.Record(recent)
	w.Close()
	n, err := st.Purge(context.Background(), now, 365*24*time.Hour, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n < 12_001 {
		t.Errorf("purged %d rows", n)
	}
	if c := count(t, st, "SELECT count(*) FROM events"); c != 2 {
		t.Errorf("%d events left, want 2 (recent breach, recent query log)", c)
	}
	if c := count(t, st, "SELECT count(*) FROM incidents"); c != 1 {
		t.Errorf("%d incidents left, want 1", c)
	}
	var free int
	st.db.QueryRow("PRAGMA freelist_count").Scan(&free)
	t.Logf("purged %d rows; %d free pages left after incremental vacuum", n, free)
}

// TestRetentionPurgeGoesOnPastAFailure: one kind of record that cannot be
// deleted (here a trigger refuses query-log events) does not keep the
// others past retention until the next day's purge: the breach events and
// the incident naming the pupil still go, and the failure is returned.
func TestRetentionPurgeGoesOnPastAFailure(t *testing.T) {
	st := openTemp(t)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	w, _ := NewWriter(st, Options{Now: func() time.Time { return now }})
	old := now.Add(-400 * 24 * time.Hour)
	w.Record(ev(old, "10.0.0.1", "students", "gambling", "bet.example"))
	allowed := ev(old, "10.0.0.1", "students", "", "bbc.co.uk")
	allowed.Action = "allow"
	w.Record(allowed)
	w.Close()
	if _, err := st.db.Exec(`CREATE TRIGGER keep_log BEFORE DELETE ON events WHEN OLD.kind IN (2, 3) BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Purge(context.Background(), now, 365*24*time.Hour, 30*24*time.Hour); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("the failed step's error was not returned: %v", err)
	}
	if c := count(t, st, "SELECT count(*) FROM incidents"); c != 0 {
		t.Errorf("%d incidents past retention kept because another step failed", c)
	}
	if c := count(t, st, "SELECT count(*) FROM events WHERE kind = 1"); c != 0 {
		t.Errorf("%d breach events past retention kept", c)
	}
}

func TestCSVExportEscapesFormulas(t *testing.T) {
	st := openTemp(t)
	w, _ := NewWriter(st, Options{})
	t0 := time.Now().UTC().Add(-time.Minute)
	bad := []string{`=HYPERLINK("http://evil.example","x")`, "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "plain, \"quoted\"\nline"}
	for i, s := range bad {
		e := ev(t0.Add(time.Duration(i)*time.Second), "10.0.0.1", "students", "gambling", "bet.example")
		e.SearchTerm = s
		e.User = s
		w.Record(e)
	}
	iwf := ev(t0.Add(10*time.Second), "10.0.0.2", "students", "iwf", "hidden.example")
	w.Record(iwf)
	w.Close()
	var buf bytes.Buffer
	if err := st.EventsCSV(&buf, Filter{Since: t0.Add(-time.Hour)}, time.UTC); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "\r\n") {
		t.Error("RFC 4180 wants CRLF line ends")
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse back: %v", err)
	}
	if len(rows) != len(bad)+2 {
		t.Fatalf("%d rows", len(rows))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for i, s := range bad {
		got := rows[i+1][col["search_term"]]
		want := s
		if strings.ContainsAny(s[:1], "=+-@") {
			want = "'" + s
		}
		if got != want || rows[i+1][col["user"]] != want {
			t.Errorf("cell %q exported as %q, want %q", s, got, want)
		}
	}
	last := rows[len(rows)-1]
	if last[col["name"]] != "a site on the IWF list" || strings.Contains(buf.String(), "hidden.example") {
		t.Errorf("restricted name exported: %v", last)
	}
	var js bytes.Buffer
	if err := st.EventsJSON(&js, Filter{Since: t0.Add(-time.Hour)}); err != nil || strings.Count(js.String(), "\n") != len(bad)+1 || strings.Contains(js.String(), "hidden.example") {
		t.Errorf("JSON export: %v\n%s", err, js.String())
	}
}

// TestRetentionPurgeRemovesEML: without SMTP (the default) every alert and
// digest is an .eml file in the outbox directory, with the pupil's name in
// it. The purge that deletes sent mail older than breaches removes its file
// too; newer mail keeps its file.
func TestRetentionPurgeRemovesEML(t *testing.T) {
	st := openTemp(t)
	dir := t.TempDir()
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	old := now.Add(-400 * 24 * time.Hour)
	for i, at := range []time.Time{old, now.Add(-time.Hour)} {
		tx, err := st.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		msg := &Message{Kind: "alert", Role: "dsl", Recipients: []string{"dsl@school.example"},
			Subject: "Self-harm: pupil17", Text: "pupil17 searched for harm.example"}
		if err := Enqueue(tx, msg, fmt.Sprintf("purge-test-%d", i), at); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		clk := at
		if _, err := NewMailer(st, MailConfig{Dir: dir}, nil, func() time.Time { return clk }).DeliverDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(readEMLs(t, dir)); got != 2 {
		t.Fatalf("%d .eml files written, want 2", got)
	}
	if _, err := st.Purge(context.Background(), now, 365*24*time.Hour, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if c := count(t, st, "SELECT count(*) FROM outbox"); c != 1 {
		t.Errorf("%d outbox rows left, want 1", c)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), now.Add(-time.Hour).Format("20060102")) {
		t.Errorf(".eml files left after the purge: %v, want only the recent one", files)
	}
}

// TestRetentionPurgeOverwrites: a purged pupil's events are gone from the
// database file, not only from its tables. Without secure_delete SQLite
// leaves deleted rows' bytes in free space, where any tool that reads the
// file finds them long after retention.
func TestRetentionPurgeOverwrites(t *testing.T) {
	st := openTemp(t)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	w, _ := NewWriter(st, Options{Now: func() time.Time { return now }})
	old := now.Add(-400 * 24 * time.Hour)
	for i := range 3000 {
		e := ev(old.Add(time.Duration(i)*time.Second), "10.0.0.1", "students", "gambling", "bet.example")
		e.User = "formerpupil"
		w.Record(e)
		e = ev(now.Add(-time.Hour+time.Duration(i)*time.Millisecond), "10.0.0.2", "students", "gambling", "bet.example")
		e.User = "currentpupil"
		w.Record(e)
	}
	w.Close()
	if _, err := st.Purge(context.Background(), now, 365*24*time.Hour, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if c := count(t, st, "SELECT count(*) FROM events WHERE user = 'formerpupil'"); c != 0 {
		t.Fatalf("%d purged events still in the table", c)
	}
	st.Close()
	for _, p := range []string{st.Path(), st.Path() + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("formerpupil")); n > 0 {
			t.Errorf("%s still holds the purged pupil's name %d times", filepath.Base(p), n)
		}
	}
}

// TestRetentionPurgeUnremovableEML: sent mail whose .eml file cannot be
// removed keeps its row (the next purge tries again) and the purge says
// so; the daily run still purges case records past their time.
func TestRetentionPurgeUnremovableEML(t *testing.T) {
	st := openTemp(t)
	t0 := time.Date(2024, 3, 4, 10, 0, 0, 0, time.UTC)
	w, _ := NewWriter(st, Options{Now: func() time.Time { return t0 }})
	w.Record(ev(t0, "10.0.0.5", "students", "self-harm", "harm.example"))
	w.Close()
	var caseID int64
	st.db.QueryRow(`SELECT id FROM incidents`).Scan(&caseID)
	if err := st.AddNote(caseID, "dsl@school.example", "Spoke to her.", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory where the .eml file should be: os.Remove
	// fails whoever runs the test (root may remove a read-only file).
	stuck := filepath.Join(t.TempDir(), "stuck.eml")
	if err := os.MkdirAll(filepath.Join(stuck, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(`INSERT INTO outbox (kind, created_ts, role, recipients, subject, text_body, html_body, message_id, sent_ts, eml_path)
		VALUES ('alert', ?, 'dsl', '[]', 's', 't', '', '<stuck@test>', ?, ?)`, ms(t0), ms(t0), stuck); err != nil {
		t.Fatal(err)
	}
	later := t0.AddDate(3, 0, 0)
	if _, err := st.Purge(context.Background(), later, 365*24*time.Hour, 30*24*time.Hour); err == nil {
		t.Error("the purge did not report the .eml file it could not remove")
	}
	if c := count(t, st, "SELECT count(*) FROM outbox"); c != 1 {
		t.Errorf("%d outbox rows, want the one whose file is still there", c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		st.RunPurge(ctx, Options{Now: func() time.Time { return later }}, 365*24*time.Hour, 30*24*time.Hour, 2*365*24*time.Hour)
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for count(t, st, "SELECT count(*) FROM incidents") != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if c := count(t, st, "SELECT count(*) FROM incidents"); c != 0 {
		t.Errorf("the case record past case_records is still there (%d incidents) while an .eml file could not be removed", c)
	}
}

// TestRetentionPurgeUndeliveredMail: an alert the relay never accepted
// (here a port nobody listens on) is retried every 30 minutes for good,
// and its row and fallback .eml copy, naming the pupil and the site, were
// kept for good with it, long after the incident it is about was purged.
// Mail older than breaches goes, delivered or not, with its copy; newer
// undelivered mail still waits.
func TestRetentionPurgeUndeliveredMail(t *testing.T) {
	st := openTemp(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // refused from now on
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	old := now.Add(-400 * 24 * time.Hour)
	for i, at := range []time.Time{old, now.Add(-time.Hour)} {
		tx, err := st.db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		msg := &Message{Kind: "alert", Role: "dsl", Recipients: []string{"dsl@school.example"},
			Subject: "Self-harm: pupil17", Text: "pupil17 searched for harm.example"}
		if err := Enqueue(tx, msg, fmt.Sprintf("undelivered-%d", i), at); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		clk := at
		m := NewMailer(st, MailConfig{Host: "127.0.0.1", Port: port, TLS: "none", From: "gatehouse@school.example",
			Timeout: 5 * time.Second, Dir: dir, FallbackAfter: 1}, nil, func() time.Time { return clk })
		if _, err := m.DeliverDue(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if c := count(t, st, "SELECT count(*) FROM outbox WHERE sent_ts = 0"); c != 2 {
		t.Fatalf("%d undelivered rows, want 2", c)
	}
	if got := len(readEMLs(t, dir)); got != 2 {
		t.Fatalf("%d fallback .eml copies, want 2", got)
	}
	if _, err := st.Purge(context.Background(), now, 365*24*time.Hour, 30*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if c := count(t, st, "SELECT count(*) FROM outbox WHERE created_ts < ?", ms(now.Add(-365*24*time.Hour))); c != 0 {
		t.Errorf("undelivered mail past retention still in the outbox (%d rows)", c)
	}
	if c := count(t, st, "SELECT count(*) FROM outbox WHERE sent_ts = 0"); c != 1 {
		t.Errorf("%d undelivered rows left, want the recent one still waiting", c)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || !strings.Contains(filepath.Base(files[0]), now.Add(-time.Hour).Format("20060102")) {
		t.Errorf(".eml copies left after the purge: %v, want only the recent one's", files)
	}
}
