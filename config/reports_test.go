package config

import (
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

func TestReportsDefaults(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := c.Reports
	if r.SMTP.Host != "" || r.SMTP.TLS != "starttls" || r.SMTP.Port != 587 {
		t.Errorf("smtp defaults %+v: want no host (outbox only), STARTTLS required, port 587", r.SMTP)
	}
	if r.AlertSeverity != blocklists.SeverityHigh || r.AlertDedup.D() != 10*time.Minute || r.IncidentWindow.D() != 30*time.Minute {
		t.Errorf("alert defaults %v %v %v", r.AlertSeverity, r.AlertDedup, r.IncidentWindow)
	}
	if !r.StaffToHeadteacher || len(r.StaffGroups) != 1 || r.StaffGroups[0] != "staff" || !r.SendEmpty {
		t.Errorf("routing defaults %+v", r)
	}
	if r.Retention.Breaches.D() != 365*24*time.Hour || r.Retention.QueryLog.D() != 30*24*time.Hour {
		t.Errorf("retention %+v", r.Retention)
	}
	if len(r.Digests) != 2 || c.DigestSpec(r.Digests[0]) != "CRON_TZ=Europe/London 30 7 * * 1-5" {
		t.Errorf("digests %+v", r.Digests)
	}
	if c.ReportsOutbox() != "outbox" {
		t.Errorf("outbox %q", c.ReportsOutbox())
	}
}

func TestReportsExampleParses(t *testing.T) {
	c, err := Parse(Example, "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Reports
	if r.SMTP.Host != "smtp.school.example" || r.SMTP.Password == nil || r.SMTP.Password.File == "" || len(r.Recipients["dsl"]) != 2 {
		t.Errorf("example reports %+v", r)
	}
	if got := c.DigestSpec(r.Digests[1]); got != "CRON_TZ=Europe/London 0 8 * * 1" {
		t.Errorf("weekly spec %q", got)
	}
}

func TestReportsValidation(t *testing.T) {
	checkErrors(t, `reports:
  recipients:
    dsl: [not-an-address, dsl@school.example, DSL@school.example]
    "Bad Role": [x@school.example]
  smtp:
    host: "smtp.example:587"
    port: 0
    username: me
    tls: sometimes
  alert_severity: info
  alert_dedup: 10s
  incident_window: 48h
  samples: 0
  staff_groups: [teachers]
  digests:
    - name: daily
      cron: "61 7 * * *"
      recipients: [dsl, governers]
    - name: daily
      cron: "@daily"
      recipients: []
  retention:
    breaches: 1h
    query_log: 400d
`, []want{
		{"3:11", "reports.recipients.dsl[0]", `invalid email address "not-an-address"`},
		{"3:47", "reports.recipients.dsl[2]", "listed twice"},
		{"4:5", `reports.recipients."Bad Role"`, "role name"},
		{"5:3", "reports.smtp.from", "needed when smtp.host is set"},
		{"6:11", "reports.smtp.host", "the port goes in port:"},
		{"7:11", "reports.smtp.port", "must be between 1 and 65535"},
		{"8:15", "reports.smtp.username", "needs password:"},
		{"9:10", "reports.smtp.tls", `unknown TLS mode "sometimes"`},
		{"10:19", "reports.alert_severity", "must be low, medium, high or critical"},
		{"11:16", "reports.alert_dedup", "between 1m and 1d"},
		{"12:20", "reports.incident_window", "between 1m and 1d"},
		{"13:12", "reports.samples", "between 1 and 50"},
		{"14:18", "reports.staff_groups[0]", `no group named "teachers"`},
		{"17:13", "reports.digests[0].cron", `invalid schedule "61 7 * * *"`},
		{"18:25", "reports.digests[0].recipients[1]", `unknown role "governers"`},
		{"19:13", "reports.digests[1].name", `duplicate digest name "daily"`},
		{"21:7", "reports.digests[1].recipients", "needs recipients"},
		{"23:15", "reports.retention.breaches", "between 1d and 3650d"},
		{"24:16", "reports.retention.query_log", "between 1h and 365d"},
	})
}

func TestReportsSecretRules(t *testing.T) {
	// An inline password is refused without being echoed.
	errs := parseErrors(t, `reports:
  smtp:
    host: smtp.school.example
    from: g@school.example
    username: g
    password: hunter2-secret
`)
	if len(errs) == 0 || strings.Contains(errs.Error(), "hunter2") {
		t.Fatalf("inline password: %v", errs)
	}
	// No password over plain text to a remote host.
	checkErrors(t, `reports:
  smtp:
    host: smtp.school.example
    from: g@school.example
    username: g
    password: {env: SMTP_PASSWORD}
    tls: none
`, []want{{"7:10", "reports.smtp.tls", "must not be sent without TLS"}})
	// A relay on the same host may go without TLS.
	if errs := parseErrors(t, `reports:
  smtp: {host: localhost, from: g@school.example, tls: none, port: 25}
`); errs != nil {
		t.Errorf("local relay: %v", errs)
	}
}

func TestReportsCustomRoleAndTimezone(t *testing.T) {
	c, err := Parse([]byte(`school: {timezone: Europe/Dublin}
reports:
  recipients: {governors: [gov@school.example]}
  digests:
    - {name: termly, cron: "0 9 1 * *", recipients: [governors]}
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.DigestSpec(c.Reports.Digests[0]); got != "CRON_TZ=Europe/Dublin 0 9 1 * *" {
		t.Errorf("spec %q: a spec without CRON_TZ runs in school.timezone", got)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Errorf("warnings for a role with an address: %v", w)
	}
	// A role of the school's own with no address: its digests would go
	// to nobody, unseen; the check says so at its line.
	c, err = Parse([]byte(`reports:
  recipients: {governors: []}
  digests:
    - {name: termly, cron: "0 9 1 * *", recipients: [governors]}
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "2:") || !strings.Contains(w, `role "governors" has no addresses`) {
		t.Errorf("warnings: %q", w)
	}
}

func TestMistakeMailEvery(t *testing.T) {
	if d := Default().Reports.MistakeMailEvery.D(); d != 5*time.Minute {
		t.Errorf("default mistake_mail_every %v, want 5m", d)
	}
	checkErrors(t, `reports:
  mistake_mail_every: 10s
`, []want{{"2:23", "reports.mistake_mail_every", "between 1m and 1d"}})
}

// TestCronPrefixNeverPanics: robfig/cron panics on a time-zone prefix
// with nothing after it; the config reports it as an error with its line.
func TestCronPrefixNeverPanics(t *testing.T) {
	for _, spec := range []string{"CRON_TZ=Europe/London", "TZ=UTC", "CRON_TZ="} {
		if _, err := parseCron(spec); err == nil {
			t.Errorf("%q: no error", spec)
		}
	}
	if _, err := parseCron("CRON_TZ=Europe/London 30 7 * * 1-5"); err != nil {
		t.Errorf("a good spec: %v", err)
	}
}
