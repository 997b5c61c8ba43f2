package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/console"
)

const consoleConfig = cliConfig + `console: {listen: "127.0.0.1:0"}
`

// withStdin runs f with the account commands reading s.
func withStdin(s string, f func()) {
	old := stdin
	stdin = strings.NewReader(s)
	defer func() { stdin = old }()
	f()
}

func TestAccountsAndAuditCommands(t *testing.T) {
	path, dir := writeConfig(t, consoleConfig, cliFiles)
	var code int
	var out, errs string
	withStdin("Summer2026!!\n", func() {
		code, out, errs = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "dsl")
	})
	if code != exitUsage || !strings.Contains(errs, "common word") {
		t.Fatalf("weak password: %d %q %q", code, out, errs)
	}
	if code, _, errs = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "boss"); code != exitUsage || !strings.Contains(errs, "--role must be one of") {
		t.Fatalf("bad role: %d %q", code, errs)
	}
	withStdin("copper kettle violin harbour\n", func() {
		code, out, errs = runCLI(t, "--config", path, "accounts", "add", "DSL@school.example", "--role", "dsl")
	})
	if code != exitOK || !strings.Contains(out, "otpauth://totp/") || !strings.Contains(out, "account dsl@school.example added (dsl)") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	if fi, err := os.Stat(filepath.Join(dir, "gatehouse.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database mode: %v %v", fi.Mode(), err)
	}
	withStdin("another good passphrase here\n", func() {
		code, _, errs = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "it")
	})
	if code != exitFailure || !strings.Contains(errs, "already exists") {
		t.Fatalf("duplicate: %d %q", code, errs)
	}
	withStdin("dsl@school.example is me\n", func() { code, _, errs = runCLI(t, "--config", path, "accounts", "passwd", "dsl@school.example") })
	if code != exitUsage || !strings.Contains(errs, "account name") {
		t.Fatalf("passwd with the name: %d %q", code, errs)
	}
	withStdin("lantern meadow biscuit orbit\n", func() { code, out, _ = runCLI(t, "--config", path, "accounts", "passwd", "dsl@school.example") })
	if code != exitOK || !strings.Contains(out, "password changed") {
		t.Fatalf("passwd: %d %q", code, out)
	}
	withStdin("auditor passphrase river\n", func() {
		code, out, _ = runCLI(t, "--config", path, "accounts", "add", "gov@school.example", "--role", "auditor")
	})
	if code != exitOK || strings.Contains(out, "otpauth") {
		t.Fatalf("auditor add: %d %q", code, out)
	}
	if code, out, _ = runCLI(t, "--config", path, "accounts", "disable", "gov@school.example"); code != exitOK {
		t.Fatalf("disable: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "--config", path, "accounts", "list")
	if code != exitOK || !regexp.MustCompile(`dsl@school.example\s+dsl\s+totp\s+active`).MatchString(out) ||
		!regexp.MustCompile(`gov@school.example\s+auditor\s+none\s+disabled`).MatchString(out) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "--config", path, "audit", "--csv")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 6 || !strings.HasPrefix(lines[0], "id,time,actor") {
		t.Fatalf("audit csv: %d\n%s", code, out)
	}
	// The last row: this reading of the log, written before it was read.
	for i, want := range []string{"account.add,dsl@school.example", "account.passwd,dsl@school.example", "account.add,gov@school.example", "account.disable,gov@school.example", "export,audit,audit log CSV"} {
		if !strings.Contains(lines[i+1], ",cli:") || !strings.Contains(lines[i+1], want) {
			t.Errorf("audit row %d: %s, want %s", i+1, lines[i+1], want)
		}
	}
	if code, out, _ = runCLI(t, "--config", path, "audit", "verify"); code != exitOK || !strings.Contains(out, "intact") {
		t.Fatalf("verify: %d %q", code, out)
	}
}

// TestServeConsole: serve starts no console until an account exists;
// then a DSL signs in over it with a password and a code.
func TestServeConsole(t *testing.T) {
	path, _ := writeConfig(t, consoleConfig, cliFiles)
	s, _, stop := startServing(t, path)
	if s.consoleAddr != nil {
		t.Fatalf("console started with no accounts at %s", s.consoleAddr)
	}
	stop()
	var code int
	var out string
	withStdin("copper kettle violin harbour\n", func() {
		code, out, _ = runCLI(t, "--config", path, "accounts", "add", "dsl@school.example", "--role", "dsl")
	})
	if code != exitOK {
		t.Fatalf("add: %d", code)
	}
	m := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no secret in %q", out)
	}
	s, _, _ = startServing(t, path)
	if s.consoleAddr == nil {
		t.Fatal("console not started with an account")
	}
	base := "http://" + s.consoleAddr.String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := c.PostForm(base+"/signin", url.Values{"email": {"dsl@school.example"}, "password": {"copper kettle violin harbour"}})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.Request.URL.Path != "/signin/code" {
		t.Fatalf("after password: %s %d\n%s", resp.Request.URL.Path, resp.StatusCode, body)
	}
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	codeNow, _ := console.TOTPCode(m[1], time.Now())
	resp, err = c.PostForm(base+"/signin/code", url.Values{"code": {codeNow}, "csrf": {tok[1]}})
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" || !strings.Contains(body, "Test School") || !strings.Contains(body, "<h1>Incidents</h1>") {
		t.Fatalf("home: %d at %s\n%s", resp.StatusCode, resp.Request.URL.Path, body)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// TestServeConsoleTLS: with console.cert and key the console serves
// HTTPS (verified by the client) even on loopback, with Secure cookies.
func TestServeConsoleTLS(t *testing.T) {
	dir0 := t.TempDir()
	certFile, keyFile := filepath.Join(dir0, "c.pem"), filepath.Join(dir0, "k.pem")
	if _, err := console.SelfSigned(certFile, keyFile, []string{"127.0.0.1"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	path, _ := writeConfig(t, cliConfig+"console: {listen: \"127.0.0.1:0\", cert: "+certFile+", key: "+keyFile+"}\n", cliFiles)
	var code int
	withStdin("auditor passphrase river\n", func() {
		code, _, _ = runCLI(t, "--config", path, "accounts", "add", "gov@school.example", "--role", "auditor")
	})
	if code != exitOK {
		t.Fatalf("add: %d", code)
	}
	s, _, _ := startServing(t, path)
	if s.consoleAddr == nil {
		t.Fatal("console not started")
	}
	pem, _ := os.ReadFile(certFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.PostForm("https://"+s.consoleAddr.String()+"/signin", url.Values{"email": {"gov@school.example"}, "password": {"auditor passphrase river"}})
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("https sign-in: %d at %s\n%s", resp.StatusCode, resp.Request.URL.Path, body)
	}
	u, _ := url.Parse("https://" + s.consoleAddr.String() + "/")
	if cs := jar.Cookies(u); len(cs) != 1 || cs[0].Name != "__Host-gatehouse" {
		t.Fatalf("cookies %v", cs)
	}
}
