package main

import (
	"encoding/csv"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestDevicesCLIAudited: enrolling and revoking an off-site device from
// the command line is in the console's audit log, named by the OS user,
// with the device and its group (never the token); and when the audit log
// cannot be written, no device is enrolled and no token is shown. Before,
// neither was audited: whoever gave a device (and anyone holding its
// token) a group's policy, or revoked one, was recorded nowhere.
func TestDevicesCLIAudited(t *testing.T) {
	dir := t.TempDir()
	wildcardPEM(t, dir, "filter.test")
	path, _ := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
dns:
  listen: ["127.0.0.1:0"]
  remote:
    host: filter.test
    doh_listen: ["127.0.0.1:0"]
    cert: `+dir+`/cert.pem
    key: `+dir+`/key.pem
groups:
  students:
    block: []
  staff:
    block: []
`, nil)
	code, out, errs := runCLI(t, "devices", "add", "Laptop-12", "--group", "staff", "--config", path)
	if code != exitOK {
		t.Fatalf("devices add: %d %s", code, errs)
	}
	token := regexp.MustCompile(`/dns-query/([a-z2-7]{32})`).FindStringSubmatch(out)
	if token == nil {
		t.Fatalf("devices add output:\n%s", out)
	}
	if code, _, errs := runCLI(t, "devices", "revoke", "Laptop-12", "--config", path); code != exitOK {
		t.Fatalf("devices revoke: %d %s", code, errs)
	}
	code, out, errs = runCLI(t, "audit", "--config", path, "--csv")
	if code != exitOK {
		t.Fatalf("audit: %d %s", code, errs)
	}
	if strings.Contains(out, token[1]) {
		t.Errorf("the token is in the audit log:\n%s", out)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, target, in string }{
		{"device.add", "device:Laptop-12", "group staff"},
		{"device.revoke", "device:Laptop-12", "group staff"},
	}
	var got [][]string
	for _, r := range rows[1:] { // id, time, actor, address, action, target, detail, hash
		if strings.HasPrefix(r[4], "device.") {
			got = append(got, r)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("device rows in the audit log: %q, want %d", got, len(want))
	}
	for i, w := range want {
		r := got[i]
		if !strings.HasPrefix(r[2], "cli:") || r[3] != "cli" || r[4] != w.action || r[5] != w.target || !strings.Contains(r[6], w.in) {
			t.Errorf("audit row %q; want actor cli:…, action %s, target %s, detail with %q", r, w.action, w.target, w.in)
		}
	}

	// The audit log refuses writes: no device is enrolled, no token shown.
	st, err := reports.Open(filepath.Join(filepath.Dir(path), "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON console_audit BEGIN SELECT RAISE(ABORT, 'audit refused'); END`); err != nil {
		t.Fatal(err)
	}
	var enrolled int
	count := func() int {
		t.Helper()
		if err := st.DB().QueryRow(`SELECT count(*) FROM devices WHERE revoked = 0`).Scan(&enrolled); err != nil {
			t.Fatal(err)
		}
		return enrolled
	}
	code, out, errs = runCLI(t, "devices", "add", "Laptop-13", "--group", "staff", "--config", path)
	if code == exitOK || strings.Contains(out, "dns-query") || !strings.Contains(errs, "audit log could not be written") {
		t.Errorf("devices add with the audit log refusing writes: %d\n%s\n%s", code, out, errs)
	}
	if n := count(); n != 0 {
		t.Errorf("%d devices enrolled with the audit log refusing writes, want 0", n)
	}
	st.Close()
}
