package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestAccountsEnable: a disabled account is enabled again from the
// command line (audited), an active one is left alone, an unknown one is
// an error.
func TestAccountsEnable(t *testing.T) {
	path, _ := writeConfig(t, consoleConfig, cliFiles)
	var code int
	var out, errs string
	withStdin("auditor passphrase river\n", func() {
		code, out, errs = runCLI(t, "--config", path, "accounts", "add", "gov@school.example", "--role", "auditor")
	})
	if code != exitOK {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if code, out, _ = runCLI(t, "--config", path, "accounts", "enable", "gov@school.example"); code != exitOK || !strings.Contains(out, "already active") {
		t.Fatalf("enable an active account: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "--config", path, "accounts", "disable", "gov@school.example"); code != exitOK {
		t.Fatalf("disable: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "--config", path, "accounts", "enable", "GOV@school.example"); code != exitOK || !strings.Contains(out, "account gov@school.example enabled") {
		t.Fatalf("enable: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "--config", path, "accounts", "list"); code != exitOK || !regexp.MustCompile(`gov@school.example\s+auditor\s+none\s+active`).MatchString(out) {
		t.Fatalf("list after enable: %d\n%s", code, out)
	}
	if code, _, errs = runCLI(t, "--config", path, "accounts", "enable", "nobody@school.example"); code != exitFailure || !strings.Contains(errs, "no such account") {
		t.Fatalf("enable an unknown account: %d %q", code, errs)
	}
	if code, _, errs = runCLI(t, "--config", path, "accounts", "enable"); code != exitUsage || !strings.Contains(errs, "usage: gatehouse accounts enable EMAIL") {
		t.Fatalf("enable without a name: %d %q", code, errs)
	}
	code, out, _ = runCLI(t, "--config", path, "audit", "--csv")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// (the last row is this reading of the log)
	if code != exitOK || len(lines) != 5 || !strings.Contains(lines[3], "account.enable,gov@school.example") || !strings.Contains(lines[3], ",cli:") {
		t.Fatalf("audit: %d\n%s", code, out)
	}
}
