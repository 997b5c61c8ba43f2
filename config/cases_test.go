package config

import (
	"testing"
	"time"
)

// TestConsoleURLAndCaseRecords: console.url is the console's base
// address; reports.retention.case_records is "keep" (the default) or
// years, never shorter than the breach retention.
func TestConsoleURLAndCaseRecords(t *testing.T) {
	d := Default()
	if d.Console.URL != "" || d.Reports.Retention.CaseRecords.D() != 0 {
		t.Fatalf("defaults: url %q, case_records %v", d.Console.URL, d.Reports.Retention.CaseRecords.D())
	}
	c, err := Parse([]byte("console:\n  url: https://filter.school.example:8080\nreports:\n  retention:\n    case_records: 25y\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Console.URL != "https://filter.school.example:8080" || c.Reports.Retention.CaseRecords.D() != 25*8766*time.Hour {
		t.Fatalf("parsed: %q %v", c.Console.URL, c.Reports.Retention.CaseRecords.D())
	}
	if b, _ := c.Reports.Retention.CaseRecords.MarshalText(); string(b) != "25y" {
		t.Fatalf("marshalled %q", b)
	}
	checkErrors(t, `console:
  url: "filter.school.example"
`, []want{{"2:8", "console.url", "not an http(s) address with a host"}})
	checkErrors(t, `console:
  url: "https://filter.school.example/?a=1"
`, []want{{"2:8", "console.url", "base address only"}})
	checkErrors(t, `reports:
  retention:
    case_records: 25
`, []want{{"3:19", "reports.retention.case_records", `invalid retention "25"`}})
	checkErrors(t, `reports:
  retention:
    breaches: 3650d
    case_records: 5y
`, []want{{"4:19", "reports.retention.case_records", "at least as long as breaches"}})
}
