package console

import (
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

func TestSignInWithPasswordAndTOTP(t *testing.T) {
	r := newRig(t, false)
	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	c := r.client()
	if p := r.get(c, "/"); p.url != "/signin" {
		t.Fatalf("signed out: / went to %s, want /signin", p.url)
	}
	p := r.signIn(c, "DSL@school.example", goodPass, secret)
	if p.status != 200 || p.url != "/" || !strings.Contains(p.body, "<h1>Incidents</h1>") {
		t.Fatalf("after sign-in: %d at %s:\n%s", p.status, p.url, p.body)
	}
	got := r.actions()
	want := []string{"account.add dsl@school.example", "signin dsl@school.example", "view incidents:today"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit log %q, want %q", got, want)
	}
	log, _ := r.st.AuditLog()
	if log[1].Addr != "127.0.0.1" || log[1].Detail != "password and code" || !log[1].Time.Equal(start) {
		t.Fatalf("sign-in row: %+v", log[1])
	}
	// The session ID is stored hashed, never as the cookie's value.
	u, _ := url.Parse(r.http.URL)
	cookies := c.Jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", cookies)
	}
	var n int
	if err := r.rep.DB().QueryRow(`SELECT count(*) FROM console_sessions WHERE id_hash = ?`, cookies[0].Value).Scan(&n); err != nil || n != 0 {
		t.Fatalf("session stored under the cookie value itself (n=%d err=%v)", n, err)
	}
	if err := r.rep.DB().QueryRow(`SELECT count(*) FROM console_sessions WHERE id_hash = ? AND stage = 'full'`, hashToken(cookies[0].Value)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("no full session under the cookie's hash (n=%d err=%v)", n, err)
	}
}

func TestTOTPWrongAndReplayedCodesRefused(t *testing.T) {
	r := newRig(t, false)
	secret := r.add("it@school.example", RoleIT, goodPass, true)
	c := r.client()
	p := r.post(c, "/signin", url.Values{"email": {"it@school.example"}, "password": {goodPass}})
	code, _ := TOTPCode(secret, start)
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	p = r.post(c, "/signin/code", url.Values{"code": {wrong}, "csrf": {csrf(t, p.body)}})
	if p.status != 401 || !strings.Contains(p.body, "That code is wrong") {
		t.Fatalf("wrong code: %d\n%s", p.status, p.body)
	}
	p = r.post(c, "/signin/code", url.Values{"code": {code}, "csrf": {csrf(t, p.body)}})
	if p.status != 200 || p.url != "/" {
		t.Fatalf("right code: %d at %s", p.status, p.url)
	}
	// The same code again (someone who saw it over a shoulder) is refused.
	c2 := r.client()
	p = r.post(c2, "/signin", url.Values{"email": {"it@school.example"}, "password": {goodPass}})
	p = r.post(c2, "/signin/code", url.Values{"code": {code}, "csrf": {csrf(t, p.body)}})
	if p.status != 401 {
		t.Fatalf("replayed code: %d at %s, want 401", p.status, p.url)
	}
	// The next step's code works; so does one step of clock drift.
	r.clock.Add(30 * time.Second)
	next, _ := TOTPCode(secret, r.clock.Now().Add(30*time.Second))
	p = r.post(c2, "/signin/code", url.Values{"code": {next}, "csrf": {csrf(t, p.body)}})
	if p.status != 200 || p.url != "/" {
		t.Fatalf("next code: %d at %s", p.status, p.url)
	}
	// A code from two minutes ago is not accepted.
	c3 := r.client()
	p = r.post(c3, "/signin", url.Values{"email": {"it@school.example"}, "password": {goodPass}})
	old, _ := TOTPCode(secret, r.clock.Now().Add(-2*time.Minute))
	if p = r.post(c3, "/signin/code", url.Values{"code": {old}, "csrf": {csrf(t, p.body)}}); p.status != 401 {
		t.Fatalf("old code: %d", p.status)
	}
}

func TestCodeStageIsNotSignedIn(t *testing.T) {
	r := newRig(t, false)
	r.add("dsl@school.example", RoleDSL, goodPass, true)
	c := r.client()
	r.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {goodPass}})
	if p := r.get(c, "/"); p.url != "/signin" {
		t.Fatalf("password without code reached %s", p.url)
	}
}

func TestRoleNeedingTOTPWithoutIt(t *testing.T) {
	r := newRig(t, false)
	// Written straight to the table: AddAccount is the only way in and
	// the CLI always enrols, but an old row must still not get in.
	h, _ := HashPassword(goodPass)
	if _, err := r.rep.DB().Exec(`INSERT INTO console_accounts (email, role, pass_hash, created_ts, changed_ts) VALUES ('ht@school.example', 'headteacher', ?, 0, 0)`, h); err != nil {
		t.Fatal(err)
	}
	p := r.signIn(r.client(), "ht@school.example", goodPass, "")
	if p.status != 403 || !strings.Contains(p.body, "authenticator app") {
		t.Fatalf("headteacher without TOTP: %d\n%s", p.status, p.body)
	}
}

func TestLockoutCountedPerAccount(t *testing.T) {
	r := newRig(t, false)
	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	c := r.client()
	for i := 0; i < DefaultAccountFailures; i++ {
		p := r.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {"wrong password " + string(rune('a'+i))}})
		if p.status != 401 {
			t.Fatalf("failure %d: %d", i+1, p.status)
		}
	}
	// The right password is now refused, with a message that says why
	// and until when.
	p := r.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {goodPass}})
	if p.status != 429 || !strings.Contains(p.body, "Sign-in is locked for this account") || !strings.Contains(p.body, "10:15") {
		t.Fatalf("locked: %d\n%s", p.status, p.body)
	}
	// Another account from the same address is not locked.
	other := r.add("dsl2@school.example", RoleAuditor, goodPass+" two", false)
	_ = other
	if p := r.signIn(r.client(), "dsl2@school.example", goodPass+" two", ""); p.status != 200 || p.url != "/" {
		t.Fatalf("other account: %d at %s", p.status, p.url)
	}
	// When the window has passed, sign-in works and clears the count.
	r.clock.Add(DefaultFailureWindow)
	if p := r.signIn(r.client(), "dsl@school.example", goodPass, secret); p.status != 200 || p.url != "/" {
		t.Fatalf("after the window: %d at %s\n%s", p.status, p.url, p.body)
	}
	var n int
	r.rep.DB().QueryRow(`SELECT count(*) FROM console_failures WHERE key = 'account:dsl@school.example'`).Scan(&n)
	if n != 0 {
		t.Fatalf("failures kept after a sign-in: %d", n)
	}
	if !slices.Contains(r.actions(), "signin.locked dsl@school.example") {
		t.Fatalf("lockout not audited: %q", r.actions())
	}
}

func TestLockoutWrongCodesCount(t *testing.T) {
	r := newRig(t, false)
	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	c := r.client()
	p := r.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {goodPass}})
	good, _ := TOTPCode(secret, start)
	bad := "123456"
	if bad == good {
		bad = "654321"
	}
	for i := 0; i < DefaultAccountFailures; i++ {
		p = r.post(c, "/signin/code", url.Values{"code": {bad}, "csrf": {csrf(t, p.body)}})
		if p.status != 401 {
			t.Fatalf("code failure %d: %d", i+1, p.status)
		}
	}
	p = r.post(c, "/signin/code", url.Values{"code": {good}, "csrf": {csrf(t, p.body)}})
	if p.status != 429 {
		t.Fatalf("guessing codes: %d, want 429 lockout\n%s", p.status, p.body)
	}
}

func TestLockoutPerAddress(t *testing.T) {
	r := newRig(t, false)
	r.add("dsl@school.example", RoleAuditor, goodPass, false)
	c := r.client()
	// Spraying one password across many names trips the address limit.
	for i := 0; i < DefaultAddrFailures; i++ {
		p := r.post(c, "/signin", url.Values{"email": {"user" + string(rune('a'+i)) + "@school.example"}, "password": {"Spring2026!!"}})
		if p.status != 401 {
			t.Fatalf("failure %d: %d", i+1, p.status)
		}
	}
	p := r.post(c, "/signin", url.Values{"email": {"dsl@school.example"}, "password": {goodPass}})
	if p.status != 429 || !strings.Contains(p.body, "this computer&#39;s network address") {
		t.Fatalf("address lockout: %d\n%s", p.status, p.body)
	}
}

func TestCrossOriginAndTokenChecks(t *testing.T) {
	r := newRig(t, false)
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	c := r.client()
	home := r.signIn(c, "audit@school.example", goodPass, "")
	tok := csrf(t, home.body)
	// A cross-site form post (what another site's page would make the
	// browser send) is refused, even with the right token.
	p := r.post(c, "/signout", url.Values{"csrf": {tok}}, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	if p.status != 403 || !strings.Contains(p.body, "sent from another site") {
		t.Fatalf("cross-site post: %d\n%s", p.status, p.body)
	}
	p = r.post(c, "/signout", url.Values{"csrf": {tok}}, "Origin", "https://evil.example")
	if p.status != 403 {
		t.Fatalf("cross-origin post (Origin only): %d", p.status)
	}
	// Sign-in itself is protected too (no logging someone in as you).
	p = r.post(r.client(), "/signin", url.Values{"email": {"audit@school.example"}, "password": {goodPass}}, "Sec-Fetch-Site", "cross-site")
	if p.status != 403 {
		t.Fatalf("cross-site sign-in: %d", p.status)
	}
	// Same origin without the session's token is refused.
	if p = r.post(c, "/signout", url.Values{"csrf": {"x" + tok}}, "Sec-Fetch-Site", "same-origin"); p.status != 403 {
		t.Fatalf("wrong token: %d", p.status)
	}
	if p = r.get(c, "/"); p.url != "/" {
		t.Fatalf("refused posts signed out the session: at %s", p.url)
	}
	p = r.post(c, "/signout", url.Values{"csrf": {tok}}, "Sec-Fetch-Site", "same-origin")
	if p.status != 200 || !strings.Contains(p.body, "You have signed out") {
		t.Fatalf("sign-out: %d\n%s", p.status, p.body)
	}
	if p = r.get(c, "/"); p.url != "/signin" {
		t.Fatalf("after sign-out: at %s", p.url)
	}
	if a := r.actions(); a[len(a)-1] != "signout audit@school.example" {
		t.Fatalf("sign-out not audited: %q", a)
	}
}

func TestIdleAndAbsoluteTimeout(t *testing.T) {
	r := newRig(t, false)
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	c := r.client()
	r.signIn(c, "audit@school.example", goodPass, "")
	// Activity every 14 minutes keeps the session.
	for i := 0; i < 3; i++ {
		r.clock.Add(14 * time.Minute)
		if p := r.get(c, "/"); p.url != "/" {
			t.Fatalf("after %d×14m of activity: at %s", i+1, p.url)
		}
	}
	r.clock.Add(15*time.Minute + time.Second)
	p := r.get(c, "/")
	if p.url != "/signin" || !strings.Contains(p.body, "signed out after 15 minutes") {
		t.Fatalf("idle: at %s\n%s", p.url, p.body)
	}
	if a := r.actions(); a[len(a)-1] != "session.expired audit@school.example" {
		t.Fatalf("expiry not audited: %q", a)
	}
	// Absolute limit: busy all day, still signed out after 12 hours.
	r.signIn(c, "audit@school.example", goodPass, "")
	for i := 0; i <= 12*6; i++ {
		r.clock.Add(10 * time.Minute)
		if p := r.get(c, "/"); p.url != "/" {
			if i != 12*6 {
				t.Fatalf("signed out after %d minutes of activity", (i+1)*10)
			}
			if !strings.Contains(p.body, "time limit") {
				t.Fatalf("absolute: %s", p.body)
			}
			return
		}
	}
	t.Fatal("session outlived the 12-hour limit")
}

func TestHeadersAndCookieFlags(t *testing.T) {
	for _, tls := range []bool{false, true} {
		r := newRig(t, tls)
		r.add("audit@school.example", RoleAuditor, goodPass, false)
		c := r.client()
		p := r.get(c, "/signin")
		want := map[string]string{
			"Content-Security-Policy": "default-src 'self'; script-src 'self'; frame-ancestors 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
		}
		for k, v := range want {
			if !strings.HasPrefix(p.header.Get(k), v) {
				t.Errorf("tls=%t %s = %q, want %q…", tls, k, p.header.Get(k), v)
			}
		}
		if got := p.header.Get("Strict-Transport-Security") != ""; got != tls {
			t.Errorf("tls=%t HSTS set=%t", tls, got)
		}
		if strings.Contains(p.body, "no value") {
			t.Errorf("the sign-in page printed a missing value:\n%s", p.body)
		}
		if strings.Contains(p.body, "<script") || strings.Contains(p.body, " style=") {
			t.Errorf("inline script or style in the sign-in page")
		}
		req, _ := newPost(r.http.URL+"/signin", url.Values{"email": {"audit@school.example"}, "password": {goodPass}})
		noFollow := &http.Client{Transport: r.http.Client().Transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noFollow.Do(req) // no jar: see the Set-Cookie itself
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		for _, f := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
			if !strings.Contains(sc, f) {
				t.Errorf("tls=%t cookie %q lacks %s", tls, sc, f)
			}
		}
		if strings.Contains(sc, "Secure") != tls || strings.HasPrefix(sc, "__Host-") != tls {
			t.Errorf("tls=%t cookie %q: Secure and __Host- only with TLS", tls, sc)
		}
	}
}

func TestClientACL(t *testing.T) {
	r := newRig(t, false)
	r.mu.Lock()
	r.allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	r.mu.Unlock()
	if p := r.get(r.client(), "/signin"); p.status != 403 || strings.Contains(p.body, "Sign in") {
		t.Fatalf("outside the allow list: %d\n%s", p.status, p.body)
	}
}

func TestAuditLogAppendOnly(t *testing.T) {
	r := newRig(t, false)
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	r.signIn(r.client(), "audit@school.example", goodPass, "")
	db := r.rep.DB()
	if _, err := db.Exec(`UPDATE console_audit SET actor = 'someone else'`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("update: %v", err)
	}
	if _, err := db.Exec(`DELETE FROM console_audit`); err == nil {
		t.Fatal("delete allowed")
	}
	if bad, err := r.st.VerifyAudit(); err != nil || bad != 0 {
		t.Fatalf("verify: %d %v", bad, err)
	}
	// Someone with the database file drops the trigger and edits a row:
	// the chain shows where.
	if _, err := db.Exec(`DROP TRIGGER console_audit_no_update; UPDATE console_audit SET detail = 'edited' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if bad, err := r.st.VerifyAudit(); err != nil || bad != 2 {
		t.Fatalf("verify after tampering: %d %v, want 2", bad, err)
	}
}

// TestVerifyAuditAt: the chain alone cannot show entries cut from its end
// or a whole chain written anew after an edit; a fingerprint of its end
// taken earlier (AuditHead, as the digests carry it) can.
func TestVerifyAuditAt(t *testing.T) {
	r := newRig(t, false)
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	r.signIn(r.client(), "audit@school.example", goodPass, "")
	db := r.rep.DB()
	id, hash, err := AuditHead(db)
	if err != nil || id < 2 || len(hash) != 64 {
		t.Fatalf("AuditHead: %d %q %v", id, hash, err)
	}
	fp := hash[:minFingerprint]
	if bad, err := r.st.VerifyAuditAt(id, fp); err != nil || bad != 0 {
		t.Fatalf("untouched: %d %v", bad, err)
	}
	if _, err := r.st.VerifyAuditAt(id, "5f3c"); err == nil {
		t.Error("a short fingerprint was taken")
	}
	// The whole chain written anew after an edit: VerifyAudit passes.
	if _, err := db.Exec(`DROP TRIGGER console_audit_no_update; UPDATE console_audit SET detail = 'edited' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	log, _ := r.st.AuditLog()
	prev := ""
	for _, e := range log {
		e.Hash = chainHash(prev, e)
		if _, err := db.Exec(`UPDATE console_audit SET hash = ? WHERE id = ?`, e.Hash, e.ID); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash
	}
	if bad, err := r.st.VerifyAudit(); err != nil || bad != 0 {
		t.Fatalf("a chain written anew: VerifyAudit %d %v", bad, err)
	}
	if bad, err := r.st.VerifyAuditAt(id, fp); err != nil || bad != id {
		t.Errorf("a chain written anew: VerifyAuditAt = %d %v, want %d", bad, err, id)
	}
	// Entries cut from the end.
	if _, err := db.Exec(`DROP TRIGGER console_audit_no_delete; DELETE FROM console_audit WHERE id >= ?`, id); err != nil {
		t.Fatal(err)
	}
	if bad, err := r.st.VerifyAudit(); err != nil || bad != 0 {
		t.Fatalf("cut from the end: VerifyAudit %d %v", bad, err)
	}
	if bad, err := r.st.VerifyAuditAt(id, fp); err != nil || bad != id {
		t.Errorf("cut from the end: VerifyAuditAt = %d %v, want %d", bad, err, id)
	}
}

func TestAuditPageRoles(t *testing.T) {
	r := newRig(t, false)
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	itSecret := r.add("it@school.example", RoleIT, goodPass, true)
	ca := r.client()
	r.signIn(ca, "audit@school.example", goodPass, "")
	p := r.get(ca, "/audit")
	if p.status != 200 || !strings.Contains(p.body, "hash chain checks out") || !strings.Contains(p.body, "account.add") {
		t.Fatalf("auditor's audit page: %d\n%s", p.status, p.body)
	}
	p = r.get(ca, "/audit.csv")
	lines := strings.Split(strings.TrimSpace(p.body), "\n")
	if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/csv") || lines[0] != "id,time,actor,address,action,target,detail,hash" ||
		!strings.Contains(lines[len(lines)-1], ",export,audit,") {
		t.Fatalf("audit CSV: %d\n%s", p.status, p.body)
	}
	ci := r.client()
	r.signIn(ci, "it@school.example", goodPass, itSecret)
	for _, path := range []string{"/audit", "/audit.csv"} {
		if p := r.get(ci, path); p.status != 403 {
			t.Fatalf("IT's %s: %d", path, p.status)
		}
	}
}

// TestHomePages: incidents written by the reports writer show on the
// DSL's home page with who was involved; IT sees the same counts and no
// names.
func TestHomePages(t *testing.T) {
	r := newRig(t, false)
	w, err := reports.NewWriter(r.rep, reports.Options{Now: r.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(at time.Time, ip, user, cat string, sev bl.Severity) reports.Event {
		return reports.Event{Time: at, Source: "dns", Protocol: "udp", Client: netip.MustParseAddr(ip), User: user, Group: "pupils",
			Name: cat + ".example", Action: "block", Category: cat, Severity: sev, Route: bl.RouteDSL, Count: 1}
	}
	w.Record(ev(start.Add(-time.Hour), "10.0.0.7", "pupil.seven", "selfharm", bl.SeverityCritical))
	w.Record(ev(start.Add(-2*time.Hour), "10.0.0.8", "pupil.eight", "gambling", bl.SeverityMedium))
	w.Record(ev(start.Add(-26*time.Hour), "10.0.0.9", "pupil.nine", "porn", bl.SeverityHigh))   // Tuesday
	w.Record(ev(start.Add(-8*24*time.Hour), "10.0.0.6", "pupil.six", "drugs", bl.SeverityHigh)) // last week
	w.Flush()
	w.Close()

	secret := r.add("dsl@school.example", RoleDSL, goodPass, true)
	p := r.signIn(r.client(), "dsl@school.example", goodPass, secret)
	row := func(body, sev string) string {
		_, rest, _ := strings.Cut(body, `<th scope="row">`+sev+`</th>`)
		out, _, _ := strings.Cut(rest, "</tr>")
		return out
	}
	if got := row(p.body, "critical"); got != "<td>1</td><td>1</td><td>1</td>" {
		t.Errorf("DSL critical row %q", got)
	}
	if got := row(p.body, "high"); got != "<td>0</td><td>1</td><td>1</td>" {
		t.Errorf("DSL high row %q", got)
	}
	for _, s := range []string{"user:pupil.seven", "user:pupil.eight", "Today: critical", "Today: medium"} {
		if !strings.Contains(p.body, s) {
			t.Errorf("DSL home lacks %q", s)
		}
	}
	_, today, _ := strings.Cut(p.body, "<h2>Today:")
	if strings.Contains(today, "pupil.nine") || strings.Contains(today, "pupil.six") {
		t.Errorf("DSL home lists incidents not from today under today")
	}
	// Open high and critical incidents need attention whatever their day.
	_, att, _ := strings.Cut(p.body, "Needs attention now")
	att, _, _ = strings.Cut(att, "</table>")
	if !strings.Contains(att, "pupil.nine") || !strings.Contains(att, "pupil.six") || strings.Contains(att, "pupil.eight") {
		t.Errorf("needs attention:\n%s", att)
	}

	itSecret := r.add("it@school.example", RoleIT, goodPass, true)
	r.clock.Add(time.Minute) // a fresh code step for the new account is not needed, but keep steps apart
	p = r.signIn(r.client(), "it@school.example", goodPass, itSecret)
	if got := row(p.body, "critical"); got != "<td>1</td><td>1</td>" {
		t.Errorf("IT critical row %q\n%s", got, p.body)
	}
	if strings.Contains(p.body, "pupil.") || strings.Contains(p.body, "10.0.0.") {
		t.Errorf("IT's home page names people:\n%s", p.body)
	}
	// Only the DSL's look at names was audited as a view.
	var views int
	for _, a := range r.actions() {
		if strings.HasPrefix(a, "view ") {
			views++
		}
	}
	if views != 1 {
		t.Errorf("%d views audited, want 1 (the DSL's): %q", views, r.actions())
	}
}

func TestDisabledAccountEndsSessionAndSignIn(t *testing.T) {
	r := newRig(t, false)
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	c := r.client()
	if p := r.signIn(c, "audit@school.example", goodPass, ""); p.url != "/" {
		t.Fatalf("sign-in: at %s", p.url)
	}
	if err := r.st.Disable("cli:test", "cli", "audit@school.example", r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if p := r.get(c, "/"); p.url != "/signin" {
		t.Fatalf("disabled account still signed in: at %s", p.url)
	}
	p := r.signIn(r.client(), "audit@school.example", goodPass, "")
	if p.status != 401 {
		t.Fatalf("disabled account signed in: %d", p.status)
	}
	log, _ := r.st.AuditLog()
	if last := log[len(log)-1]; last.Action != "signin.fail" || last.Detail != "account disabled" {
		t.Fatalf("last audit row %+v", last)
	}
}

func TestUnknownAccountAudited(t *testing.T) {
	r := newRig(t, false)
	p := r.signIn(r.client(), "nobody@school.example", goodPass, "")
	if p.status != 401 || !strings.Contains(p.body, "do not match an account") {
		t.Fatalf("unknown account: %d\n%s", p.status, p.body)
	}
	log, _ := r.st.AuditLog()
	if len(log) != 1 || log[0].Action != "signin.fail" || log[0].Detail != "no such account" || log[0].Addr != "127.0.0.1" {
		t.Fatalf("audit %+v", log)
	}
}

// TestHeadteacherSeesStaffIncidents: the headteacher's home page lists
// the incidents routed to them and no pupil's.
func TestHeadteacherSeesStaffIncidents(t *testing.T) {
	r := newRig(t, false)
	w, err := reports.NewWriter(r.rep, reports.Options{Now: r.clock.Now, StaffToHeadteacher: true, StaffGroups: []string{"staff"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct{ user, group string }{{"mr.jones", "staff"}, {"pupil.seven", "pupils"}} {
		w.Record(reports.Event{Time: start.Add(-time.Hour), Source: "dns", Client: netip.MustParseAddr("10.0.0.7"), User: e.user, Group: e.group,
			Name: "bet.example", Action: "block", Category: "gambling", Severity: bl.SeverityMedium, Count: 1})
	}
	w.Flush()
	w.Close()
	secret := r.add("head@school.example", RoleHeadteacher, goodPass, true)
	p := r.signIn(r.client(), "head@school.example", goodPass, secret)
	if !strings.Contains(p.body, "<h1>Staff incidents</h1>") || !strings.Contains(p.body, "user:mr.jones") || strings.Contains(p.body, "pupil.seven") {
		t.Fatalf("headteacher home:\n%s", p.body)
	}
	if a := r.actions(); a[len(a)-1] != "view incidents:today:staff" {
		t.Fatalf("view not audited: %q", a)
	}
	if strings.Contains(p.body, "no value") {
		t.Fatal("a template printed a missing value")
	}
}

// TestCrossOriginLogBounded: the console answers clients.allow by default
// (pupils' devices too), and a refused cross-origin request is logged; a
// pupil sending them in a loop must not write a line each: one line every
// 10 s, with the count since.
func TestCrossOriginLogBounded(t *testing.T) {
	r := newRig(t, false)
	var logs strings.Builder
	var mu sync.Mutex
	r.srv.o.Log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	const n = 30
	for range n {
		if p := r.post(r.client(), "/signin", url.Values{"email": {"x@school.example"}, "password": {"x"}}, "Sec-Fetch-Site", "cross-site"); p.status != 403 {
			t.Fatalf("cross-site sign-in: %d", p.status)
		}
	}
	mu.Lock()
	got := logs.String()
	mu.Unlock()
	if c := strings.Count(got, "refused a cross-origin request"); c != 1 {
		t.Fatalf("%d refused cross-origin requests wrote %d log lines, want 1:\n%s", n, c, got)
	}
	r.clock.Add(10 * time.Second)
	r.post(r.client(), "/signin", url.Values{}, "Sec-Fetch-Site", "cross-site")
	mu.Lock()
	got = logs.String()
	mu.Unlock()
	if !strings.Contains(got, "refused_since_last_log="+strconv.Itoa(n-1)) {
		t.Fatalf("the line 10 s later does not count the %d held back:\n%s", n-1, got)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
