package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAccountsInviteCommand: `accounts add --invite` makes an account with
// no password and mails a one-time link to the console over the configured
// SMTP relay (a go-smtp server here); without console.url it refuses,
// saying what to set; `accounts list` shows the link outstanding and
// `accounts passwd --invite` sends a fresh one.
func TestAccountsInviteCommand(t *testing.T) {
	ib := newInbox(t)
	noURL, _ := writeConfig(t, consoleConfig+ib.smtpConfig(), cliFiles)
	code, out, errs := runCLI(t, "--config", noURL, "accounts", "add", "teacher@school.example", "--role", "dsl", "--invite")
	if code != exitUsage || !strings.Contains(errs, "console.url is not set in "+noURL) {
		t.Fatalf("without console.url: %d %q %q", code, out, errs)
	}
	path, _ := writeConfig(t, cliConfig+`console: {listen: "127.0.0.1:0", url: "https://filter.school.example:8080"}
`+ib.smtpConfig(), cliFiles)
	code, out, errs = runCLI(t, "--config", path, "accounts", "add", "Teacher@school.example", "--role", "dsl", "--invite", "--by", "Sam Jones (IT)")
	if code != exitOK || !strings.Contains(out, "account teacher@school.example added (dsl) with no password yet") || strings.Contains(out, "otpauth") ||
		!strings.Contains(out, "this is the first account: restart gatehouse serve") {
		t.Fatalf("add --invite: %d %q %q", code, out, errs)
	}
	mail := decodeMail(ib.waitFor(t, 0, "Your account on the safeguarding console", 10*time.Second))
	link := regexp.MustCompile(`https://filter\.school\.example:8080/invite\?t=[A-Za-z0-9_-]{43}`).FindString(mail)
	if link == "" || !strings.Contains(mail, "Sam Jones (IT) has made you an account (teacher@school.example) on Test School's") ||
		!strings.Contains(mail, "teacher@school.example") {
		t.Fatalf("invitation:\n%s", mail)
	}
	code, out, _ = runCLI(t, "--config", path, "accounts", "list")
	if code != exitOK || !regexp.MustCompile(`teacher@school.example\s+dsl\s+none\s+link sent, until`).MatchString(out) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	code, out, errs = runCLI(t, "--config", path, "accounts", "passwd", "teacher@school.example", "--invite")
	if code != exitOK {
		t.Fatalf("passwd --invite: %d %q %q", code, out, errs)
	}
	again := decodeMail(ib.waitFor(t, 1, "safeguarding console", 10*time.Second))
	if link2 := regexp.MustCompile(`https://\S+/invite\?t=\S+`).FindString(again); link2 == "" || link2 == link {
		t.Fatalf("second link %q (first %q)", link2, link)
	}
	if strings.Contains(out, "first account") {
		t.Errorf("a second link called the account the first: %q", out)
	}
	// A relay that does not answer: the command says so and leaves the
	// mail queued for gatehouse serve to retry.
	down, _ := writeConfig(t, cliConfig+`console: {listen: "127.0.0.1:0", url: "https://filter.school.example:8080"}
reports:
  smtp: {host: 127.0.0.1, port: 9, tls: none, from: gatehouse@school.example, timeout: 2s}
`, cliFiles)
	code, out, errs = runCLI(t, "--config", down, "accounts", "add", "head@school.example", "--role", "headteacher", "--invite")
	if code != exitFailure || !strings.Contains(errs, "the mail is not delivered yet") || !strings.Contains(errs, "gatehouse serve will keep retrying") {
		t.Fatalf("relay down: %d %q %q", code, out, errs)
	}
	if code, _, errs = runCLI(t, "--config", path, "accounts", "disable", "teacher@school.example", "--invite"); code != exitUsage || !strings.Contains(errs, "--invite goes with add or passwd") {
		t.Fatalf("disable --invite: %d %q", code, errs)
	}
	code, out, _ = runCLI(t, "--config", path, "audit")
	if code != exitOK || strings.Count(out, "invite.sent") != 2 {
		t.Fatalf("audit:\n%s", out)
	}
}

// TestServeInviteLinkWorks: with gatehouse serve running, a link mailed by
// `accounts add --invite` opens its page on the real console, sets the
// password there and the person signs in.
func TestServeInviteLinkWorks(t *testing.T) {
	ib := newInbox(t)
	path, _ := writeConfig(t, cliConfig+`console: {listen: "127.0.0.1:0", url: "http://filter.school.example/"}
`+ib.smtpConfig(), cliFiles)
	var code int
	withStdin("copper kettle violin harbour\n", func() {
		code, _, _ = runCLI(t, "--config", path, "accounts", "add", "gov@school.example", "--role", "auditor")
	})
	if code != exitOK {
		t.Fatal("first account")
	}
	s, _, _ := startServing(t, path)
	if s.consoleAddr == nil {
		t.Fatal("the console did not start")
	}
	code, out, errs := runCLI(t, "--config", path, "accounts", "add", "clerk@school.example", "--role", "auditor", "--invite")
	if code != exitOK || strings.Contains(out, "first account") {
		t.Fatalf("add --invite: %d %q %q", code, out, errs)
	}
	mail := decodeMail(ib.waitFor(t, 0, "Your account on the safeguarding console", 10*time.Second))
	tok := regexp.MustCompile(`http://filter\.school\.example/invite\?t=([A-Za-z0-9_-]+)`).FindStringSubmatch(mail)
	if tok == nil {
		t.Fatalf("no link in:\n%s", mail)
	}
	base := "http://" + s.consoleAddr.String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(u string, form url.Values) (int, string) {
		t.Helper()
		resp, err := c.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := get(base + "/invite?t=" + tok[1]); st != 200 || !strings.Contains(body, "clerk@school.example") {
		t.Fatalf("link page: %d\n%s", st, body)
	}
	const pass = "lantern otter meadow brick"
	if st, body := post(base+"/invite", url.Values{"t": {tok[1]}, "new": {pass}, "again": {pass}}); st != 200 || !strings.Contains(body, "Your password is set") {
		t.Fatalf("set password: %d\n%s", st, body)
	}
	if st, body := post(base+"/signin", url.Values{"email": {"clerk@school.example"}, "password": {pass}}); st != 200 || !strings.Contains(body, "clerk@school.example (Auditor)") {
		t.Fatalf("sign-in: %d\n%s", st, body)
	}
}
