package main

import (
	"encoding/csv"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestCLILooksAudited: a pupil's record read at the command line (events,
// incidents, a digest preview) and an incident acknowledged there are in
// the console's audit log, named by the OS user, as they are when read
// in the console; and when the audit log cannot be written, nothing is
// shown. Before, only account changes from the command line were audited;
// and a list's row named nobody ("events:all"), though it showed pupils.
func TestCLILooksAudited(t *testing.T) {
	path, dir := writeConfig(t, cliConfig, cliFiles)
	st, err := reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := reports.NewWriter(st, reports.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := bl.ParseCategory("pornography")
	if err != nil {
		t.Fatal(err)
	}
	info := cat.Info()
	reports.WaitDurable(w, w.RecordSeq(reports.Event{Time: time.Now().Add(-time.Minute), Source: "dns", Protocol: "udp",
		Client: netip.MustParseAddr("10.1.0.5"), User: "pupil.one", Group: "students", Name: "porn.example", QType: "A",
		Action: "block", Reason: "category", Category: "pornography", Severity: info.Severity, Route: info.Route, Count: 1}))
	w.Close()
	st.Close()

	steps := []struct {
		args               []string
		action, target, in string
	}{
		// A list names whose records it shows, as the console's do.
		{[]string{"events", "--since", "1h"}, "view", "events:all", "events since 1h: shown user:pupil.one"},
		{[]string{"events", "--since", "1h", "--client", "pupil.one", "--csv"}, "export", "events:pupil.one", "as CSV: shown user:pupil.one"},
		{[]string{"events", "--since", "1h", "--mistakes"}, "view", "events:all", "(mistake reports): nobody shown"},
		{[]string{"incidents", "--since", "1h", "--json"}, "export", "incidents:all", "incidents since 1h as JSON: shown #1 user:pupil.one"},
		{[]string{"incidents", "--ack", "1"}, "incident.status", "incident:1", `after="acknowledged"; record of user:pupil.one`},
		{[]string{"report", "preview", "--schedule", "daily"}, "view", "digest:daily", "digest preview: shown #1 user:pupil.one"},
	}
	for _, s := range steps {
		code, out, errs := runCLI(t, append([]string{"--config", path}, s.args...)...)
		if code != exitOK {
			t.Fatalf("%v: %d\n%s\n%s", s.args, code, out, errs)
		}
		if s.args[0] == "events" && s.args[len(s.args)-1] != "--mistakes" && !strings.Contains(out, "porn.example") {
			t.Fatalf("%v shows no event:\n%s", s.args, out)
		}
	}
	code, out, errs := runCLI(t, "audit", "--config", path, "--csv")
	if code != exitOK {
		t.Fatalf("audit: %d %s", code, errs)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != len(steps)+2 {
		t.Fatalf("audit log: %v, %d rows (want %d and this reading):\n%s", err, len(rows)-1, len(steps), out)
	}
	if r := rows[len(rows)-1]; !strings.HasPrefix(r[2], "cli:") || r[4] != "export" || r[5] != "audit" {
		t.Errorf("reading the audit log is not in it: %q", r)
	}
	for i, s := range steps {
		r := rows[i+1] // id, time, actor, address, action, target, detail, hash
		if !strings.HasPrefix(r[2], "cli:") || r[3] != "cli" || r[4] != s.action || r[5] != s.target || !strings.Contains(r[6], s.in) {
			t.Errorf("audit row for %v: %q; want actor cli:…, action %s, target %s, detail with %q", s.args, r, s.action, s.target, s.in)
		}
	}
	if code, out, _ := runCLI(t, "audit", "--config", path, "verify"); code != exitOK {
		t.Fatalf("audit verify: %s", out)
	}

	// The audit log refuses writes: nothing is shown.
	st, err = reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON console_audit BEGIN SELECT RAISE(ABORT, 'audit refused'); END`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, args := range [][]string{
		{"audit", "--config", path},
		{"events", "--config", path, "--since", "1h", "--csv"},
		{"incidents", "--config", path, "--since", "1h"},
		{"report", "preview", "--config", path, "--schedule", "daily"},
	} {
		code, out, errs := runCLI(t, args...)
		if code == exitOK || strings.Contains(out, "porn.example") || strings.Contains(out, "pupil.one") ||
			!strings.Contains(errs, "audit log could not be written") {
			t.Errorf("%v with the audit log refusing writes: %d\n%s\n%s", args, code, out, errs)
		}
	}
}

// TestDigestCarriesAuditFingerprint: each digest carries the audit log's
// fingerprint (its last entry's number and hash), so that an auditor
// holding a digest can show later that nothing up to it was changed or
// removed: entries cut from the end, which the chain alone does not show,
// fail "audit verify --at".
func TestDigestCarriesAuditFingerprint(t *testing.T) {
	path, dir := writeConfig(t, cliConfig, cliFiles)
	st, err := reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	for range 2 { // entries in the audit log
		if code, _, errs := runCLI(t, "--config", path, "events", "--since", "1h"); code != exitOK {
			t.Fatalf("events: %s", errs)
		}
	}
	code, out, errs := runCLI(t, "--config", path, "report", "preview", "--schedule", "daily")
	m := regexp.MustCompile(`Audit log fingerprint \(keep this mail; for an auditor\): (\d+:[0-9a-f]{16})\n`).FindStringSubmatch(out)
	if code != exitOK || m == nil {
		t.Fatalf("preview: %d, no fingerprint\n%s%s", code, out, errs)
	}
	if code, out, _ := runCLI(t, "--config", path, "audit", "verify", "--at", m[1]); code != exitOK || !strings.Contains(out, "nothing up to it was changed") {
		t.Fatalf("verify --at %s: %d %s", m[1], code, out)
	}
	id, _, _ := strings.Cut(m[1], ":")
	st, err = reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`DROP TRIGGER console_audit_no_delete; DELETE FROM console_audit WHERE id >= ` + id); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if code, out, _ := runCLI(t, "--config", path, "audit", "verify"); code != exitOK {
		t.Fatalf("the chain alone: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, "--config", path, "audit", "verify", "--at", m[1]); code != exitFailure || !strings.Contains(out, "is gone") {
		t.Errorf("verify --at after entries were cut: %d %s", code, out)
	}
	if code, _, errs := runCLI(t, "--config", path, "audit", "verify", "--at", "12"); code != exitUsage || !strings.Contains(errs, "ID:FINGERPRINT") {
		t.Errorf("--at without a fingerprint: %d %s", code, errs)
	}
}
