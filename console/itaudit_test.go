package console

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
)

// TestManagedChangeNotAuditedIsUndone: every change IT makes is audited,
// so one the audit log refuses (the database full, here a trigger that
// refuses the row) does not stay in force unrecorded: it is undone, the
// file as it was, and the form says so; a removal likewise.
func TestManagedChangeNotAuditedIsUndone(t *testing.T) {
	r, f := newITRig(t, nil)
	c := r.signInIT("it@school.example")
	managed := filepath.Join(f.dir, config.ManagedFileName)
	post := func(path string, form url.Values) page {
		t.Helper()
		p := c.get("/it/lists")
		form.Set("csrf", csrf(t, p.body))
		return c.post(path, form)
	}
	refuse := func(action string) {
		t.Helper()
		if _, err := r.rep.DB().Exec(`CREATE TRIGGER audit_full BEFORE INSERT ON console_audit WHEN NEW.action = '` + action +
			`' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`); err != nil {
			t.Fatal(err)
		}
	}
	allowed := func() bool { return f.decide("10.1.2.3", "bet.example").Action == "allow" }

	refuse("it.allow.add")
	p := post("/it/lists", url.Values{"group": {"students"}, "kind": {"allow"}, "entry": {"bet.example"}, "reason": {"probability lesson"}})
	if allowed() {
		t.Errorf("an allow entry the audit log did not record is in force (form: %d)", p.status)
	}
	if b, err := os.ReadFile(managed); err == nil && strings.Contains(string(b), "bet.example") {
		t.Errorf("the managed file keeps the unaudited entry:\n%s", b)
	}
	if p.status == 200 || !strings.Contains(p.body, "audit log") {
		t.Errorf("the form does not say the change was undone for the audit log: %d\n%s", p.status, p.body)
	}

	// Once the audit log takes it: in force; a removal it refuses stays
	// undone (the entry still there).
	if _, err := r.rep.DB().Exec(`DROP TRIGGER audit_full`); err != nil {
		t.Fatal(err)
	}
	if p := post("/it/lists", url.Values{"group": {"students"}, "kind": {"allow"}, "entry": {"bet.example"}, "reason": {"probability lesson"}}); p.status != 200 || !allowed() {
		t.Fatalf("add: %d\n%s", p.status, p.body)
	}
	refuse("it.allow.remove")
	p = post("/it/lists/remove", url.Values{"group": {"students"}, "kind": {"allow"}, "entry": {"bet.example"}, "reason": {"lesson over"}})
	if !allowed() || p.status == 200 || !strings.Contains(p.body, "audit log") {
		t.Errorf("an unaudited removal: in force %v, form %d\n%s", !allowed(), p.status, p.body)
	}
	if b, _ := os.ReadFile(managed); !strings.Contains(string(b), "bet.example") {
		t.Errorf("the managed file lost the entry on an unaudited removal:\n%s", b)
	}
}
