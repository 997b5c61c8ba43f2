package console

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/explain"
	"github.com/gatehouse-filter/gatehouse/health"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// filter is a real filter for the IT pages: the config file, its lists
// in a blocklists.Manager and the policy engine snapshot, reloaded as
// gatehouse serve reloads (config.Load, the lists' SetSources, publish).
type filter struct {
	t       *testing.T
	path    string
	dir     string
	lists   *bl.Manager
	eng     atomic.Pointer[policy.Engine]
	mu      sync.Mutex
	applies int
	failing error // Apply fails with this when set
	health  health.Registry
}

const itConfig = `
school: {name: Test Primary, timezone: Europe/London}
database: {{dir}}/gatehouse.db
clients:
  allow: [10.0.0.0/8]
  default_group: students
  users: [{name: head.of.maths, group: staff}]
lists:
  - {name: bets, path: "{{dir}}/bets.txt", category: gambling}
  - {name: iwf, path: "{{dir}}/iwf.txt", category: iwf, format: sha256}
groups:
  students: {networks: [10.1.0.0/16], block: [gambling], deny: [denied.example]}
  staff: {networks: [10.2.0.0/16], block: [gambling]}
`

func newFilter(t *testing.T, dir string) *filter {
	t.Helper()
	f := &filter{t: t, dir: dir, path: filepath.Join(dir, "gatehouse.yaml")}
	files := map[string]string{
		"gatehouse.yaml": strings.ReplaceAll(itConfig, "{{dir}}", dir),
		"bets.txt":       "bet.example\nwager.example\n",
		"iwf.txt":        bl.EntryHash("abuse.example") + "\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(f.path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := policy.Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.lists = bl.NewManager(filepath.Join(dir, "lists"), src, time.UTC, nil)
	f.lists.SetPublisher(func(ix *bl.Index) error { return f.publish(f.eng.Load().Config(), ix) })
	ix, err := f.lists.SetSources(src, func(ix *bl.Index) error { return f.publish(cfg, ix) })
	if err != nil || ix == nil {
		t.Fatal(err)
	}
	f.health.Ready()
	return f
}

func (f *filter) publish(cfg *config.Config, ix *bl.Index) error {
	e, err := policy.New(cfg, ix)
	if err == nil {
		f.eng.Store(e)
	}
	return err
}

// apply is serve's reload: the config file (and with it the managed
// lists) read again and published with lists built for it.
func (f *filter) apply() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing != nil {
		return f.failing
	}
	cfg, err := config.Load(f.path)
	if err != nil {
		return err
	}
	src, err := policy.Sources(cfg)
	if err != nil {
		return err
	}
	if _, err := f.lists.SetSources(src, func(ix *bl.Index) error { return f.publish(cfg, ix) }); err != nil {
		return err
	}
	f.applies++
	return nil
}

// decide is what the front doors would do now.
func (f *filter) decide(client, target string) explain.Result {
	f.t.Helper()
	e := f.eng.Load()
	r, err := explain.Run(e.Config(), e, explain.Input{Target: target, Client: netip.MustParseAddr(client), At: start})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func (f *filter) it(rep *reports.Store) *IT {
	return &IT{
		Engine:  f.eng.Load,
		Apply:   f.apply,
		Reviews: rep,
		Status: func() Status {
			return Status{Lists: f.lists.Status(), Problems: f.health.Problems(),
				Upstreams: []UpstreamSet{{Name: "default", Total: 2, Down: []string{"192.0.2.53:53"}}},
				Database:  DatabaseStatus{Path: filepath.Join(f.dir, "gatehouse.db"), Bytes: 4096},
				Certs:     []CertStatus{{Name: "console", File: "console-cert.pem", NotAfter: start.Add(20 * 24 * time.Hour)}}}
		},
		UpdateLists: func(ctx context.Context) error { _, err := f.lists.Update(ctx, nil, nil); return err },
	}
}

// newITRig is newRig with the IT pages over a real filter whose files
// live beside the database.
func newITRig(t *testing.T, opt func(*Options)) (*rig, *filter) {
	t.Helper()
	var f *filter
	r := newRigWith(t, false, func(o *Options, dir string, rep *reports.Store) {
		f = newFilter(t, dir)
		o.IT = f.it(rep)
		if opt != nil {
			opt(o)
		}
	})
	return r, f
}

// signInIT adds an it account and signs it in.
func (r *rig) signInIT(email string) *httpClient {
	r.t.Helper()
	secret := r.add(email, RoleIT, goodPass, true)
	c := r.client()
	if p := r.signIn(c, email, goodPass, secret); p.url != "/" || p.status != 200 {
		r.t.Fatalf("sign-in: %s %d", p.url, p.status)
	}
	return &httpClient{c, r}
}

// addManaged posts the allow and deny form (/it/lists) with the page's
// form token, as IT's browser does.
func (c *httpClient) addManaged(t *testing.T, group, kind, entry, reason string) page {
	t.Helper()
	p := c.get("/it/lists")
	return c.post("/it/lists", url.Values{"csrf": {csrf(t, p.body)}, "group": {group}, "kind": {kind}, "entry": {entry}, "reason": {reason}})
}

func TestWhyBlockedSaysWhatCheckSays(t *testing.T) {
	r, f := newITRig(t, nil)
	c := r.signInIT("it@school.example")

	p := c.why("10.1.2.3", "", "https://www.bet.example/page")
	if p.status != 200 {
		t.Fatalf("why: %d\n%s", p.status, p.body)
	}
	want := f.decide("10.1.2.3", "https://www.bet.example/page")
	if want.Action != "block" || want.List != "bets" {
		t.Fatalf("the filter itself: %+v", want)
	}
	for _, l := range want.Lines {
		if l.Label == "at" {
			continue
		}
		if !strings.Contains(p.body, "<dt>"+l.Label+"</dt><dd>"+htmlEscape(l.Text)+"</dd>") {
			t.Errorf("page lacks %s: %s\n%s", l.Label, l.Text, p.body)
		}
	}
	// A user with a group of their own, without an address.
	if p := c.why("", "head.of.maths", "bet.example"); !strings.Contains(p.body, "<dt>group</dt><dd>staff</dd>") {
		t.Errorf("by user:\n%s", p.body)
	}
	if p := c.why("", "someone", "bet.example"); p.status != 400 || !strings.Contains(p.body, "give its address too") {
		t.Errorf("user without a group: %d\n%s", p.status, p.body)
	}
	if p := c.why("10.1.2.3", "", "bad host!"); p.status != 400 || !strings.Contains(p.body, "is not a site name") {
		t.Errorf("bad target: %d\n%s", p.status, p.body)
	}

	// The restricted tier: only "a site on the IWF list"; never the site,
	// on the page or in the audit log.
	p = c.why("10.1.2.3", "", "abuse.example")
	if !strings.Contains(p.body, "a site on the IWF list") || strings.Contains(p.body, "abuse.example") || !strings.Contains(p.body, "BLOCK") {
		t.Errorf("restricted answer:\n%s", p.body)
	}
	// The same for a client outside clients.allow (a guest network, a
	// typo): refused without filtering, but the site is still on the tier.
	p = c.why("192.168.1.5", "", "https://abuse.example/some/page")
	if !strings.Contains(p.body, "a site on the IWF list") || strings.Contains(p.body, "abuse.example") || !strings.Contains(p.body, "REFUSED") {
		t.Errorf("restricted answer for a refused client:\n%s", p.body)
	}
	log, _ := r.st.AuditLog()
	var whys int
	for _, e := range log {
		if strings.Contains(e.Target+e.Detail, "abuse.example") {
			t.Errorf("audit names a restricted site: %+v", e)
		}
		if e.Action == "it.why" {
			whys++
		}
	}
	if whys != 4 {
		t.Errorf("%d why entries audited, want 4 (the answered questions): %v", whys, r.actions())
	}

	// Not for auditors.
	aud := r.client()
	r.add("audit@school.example", RoleAuditor, goodPass, false)
	r.signIn(aud, "audit@school.example", goodPass, "")
	if p := r.get(aud, "/it/why"); p.status != 403 {
		t.Errorf("auditor: %d", p.status)
	}
}

func TestManagedEntriesApplyLive(t *testing.T) {
	r, f := newITRig(t, nil)
	c := r.signInIT("it@school.example")
	managed := filepath.Join(f.dir, config.ManagedFileName)
	add := func(group, kind, entry, reason string) page {
		t.Helper()
		return c.addManaged(t, group, kind, entry, reason)
	}

	if d := f.decide("10.1.2.3", "bet.example"); d.Action != "block" {
		t.Fatalf("before: %+v", d)
	}
	p := add("students", "allow", "bet.example", "maths lesson on probability")
	if p.status != 200 || !strings.Contains(p.body, "bet.example is now on group students") {
		t.Fatalf("add: %d\n%s", p.status, p.body)
	}
	if d := f.decide("10.1.2.3", "www.bet.example"); d.Action != "allow" || d.Reason != "group-allow" {
		t.Errorf("after the add, no restart: %+v", d)
	}
	if d := f.decide("10.2.3.4", "bet.example"); d.Action != "block" {
		t.Errorf("another group: %+v", d)
	}
	if fi, err := os.Stat(managed); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("managed file: %v %v", fi, err)
	}
	if !strings.Contains(p.body, "maths lesson on probability") {
		t.Errorf("the list does not show the entry:\n%s", p.body)
	}

	// Checked as the config's entries are; the form says why.
	before, _ := os.ReadFile(managed)
	for _, tc := range []struct{ entry, reason, want string }{
		{"bad host!", "x", "Invalid entry"},
		{"ftp://x.example/", "x", "only http:// and https://"},
		{"ok.example", "", "has no reason"},
		{"bet.example", "again", "already on group students"},
		{"denied.example", "x", "deny comes before allow"},
	} {
		p := add("students", "allow", tc.entry, tc.reason)
		if p.status != 400 || !strings.Contains(p.body, tc.want) {
			t.Errorf("%q: %d, want %q:\n%s", tc.entry, p.status, tc.want, p.body)
		}
	}
	if p := add("nosuch", "allow", "a.example", "x"); p.status != 400 || !strings.Contains(p.body, "Choose a group") {
		t.Errorf("unknown group: %d", p.status)
	}

	// The restricted tier: never allowed, never stored.
	if p := add("students", "allow", "abuse.example", "test"); p.status != 400 || !strings.Contains(p.body, "restricted list") {
		t.Errorf("restricted allow: %d\n%s", p.status, p.body)
	}
	if d := f.decide("10.1.2.3", "abuse.example"); d.Action != "block" || d.Reason != "restricted" {
		t.Errorf("restricted after the attempt: %+v", d)
	}
	if after, _ := os.ReadFile(managed); string(after) != string(before) {
		t.Errorf("refused entries changed the file:\n%s", after)
	}
	// Even an allow entry written into the file by hand does not unblock it.
	m, _ := config.ReadManaged(managed)
	m.Groups["students"].Allow = append(m.Groups["students"].Allow, config.ManagedEntry{Entry: "abuse.example", Reason: "by hand"})
	if err := config.WriteManaged(managed, m); err != nil {
		t.Fatal(err)
	}
	if err := f.apply(); err != nil {
		t.Fatal(err)
	}
	if d := f.decide("10.1.2.3", "abuse.example"); d.Action != "block" || d.Reason != "restricted" {
		t.Errorf("a hand-made allow entry unblocked the restricted tier: %+v", d)
	}
	if err := os.WriteFile(managed, before, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.apply(); err != nil {
		t.Fatal(err)
	}

	// A reload that fails puts the file back: nothing changes.
	f.mu.Lock()
	f.failing = errors.New("groups.x: broken")
	f.mu.Unlock()
	if p := add("students", "deny", "news.example", "exams"); p.status != 400 || !strings.Contains(p.body, "not applied") {
		t.Errorf("failed reload: %d\n%s", p.status, p.body)
	}
	if after, _ := os.ReadFile(managed); string(after) != string(before) {
		t.Errorf("a failed reload left the file changed:\n%s", after)
	}
	f.mu.Lock()
	f.failing = nil
	f.mu.Unlock()

	// Remove, with a reason: blocked again.
	p = c.get("/it/lists")
	if p := c.post("/it/lists/remove", url.Values{"csrf": {csrf(t, p.body)}, "group": {"students"}, "kind": {"allow"}, "entry": {"bet.example"}}); p.status != 400 {
		t.Errorf("remove without a reason: %d", p.status)
	}
	p = c.post("/it/lists/remove", url.Values{"csrf": {csrf(t, p.body)}, "group": {"students"}, "kind": {"allow"}, "entry": {"bet.example"}, "reason": {"lesson over"}})
	if p.status != 200 {
		t.Fatalf("remove: %d\n%s", p.status, p.body)
	}
	if d := f.decide("10.1.2.3", "bet.example"); d.Action != "block" {
		t.Errorf("after the removal: %+v", d)
	}

	// Audited with before and after; the restricted attempt by hash only.
	log, _ := r.st.AuditLog()
	var got []string
	for _, e := range log {
		if strings.HasPrefix(e.Action, "it.") {
			got = append(got, e.Action+" | "+e.Target+" | "+e.Detail)
		}
		if strings.Contains(e.Target+e.Detail, "abuse.example") {
			t.Errorf("audit names a restricted site: %+v", e)
		}
	}
	want := []string{
		`it.allow.add | group students: bet.example | before: not listed; after: on the allow list, reason "maths lesson on probability"`,
		`it.allow.refused | group students | sha256:` + bl.EntryHash("abuse.example") + `: on a restricted list`,
		`it.allow.remove | group students: bet.example | before: on the allow list, reason "maths lesson on probability" (added by it@school.example at 2026-12-02T10:00:00Z); after: removed, reason "lesson over"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// newRigWith is newRig with a hook that sees the options, the database's
// directory and the reports store before the server is built.
func newRigWith(t *testing.T, tls bool, hook func(o *Options, dir string, rep *reports.Store)) *rig {
	t.Helper()
	dir := t.TempDir()
	rep, err := reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rep.Close() })
	st, err := NewStore(rep.DB())
	if err != nil {
		t.Fatal(err)
	}
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, rep: rep, st: st, clock: &clock{t: start}, allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	o := Options{Store: st, Incidents: rep, School: "Test Primary", Location: london, TLS: tls,
		Now: r.clock.Now, Allow: func() []netip.Prefix { r.mu.Lock(); defer r.mu.Unlock(); return r.allow }}
	hook(&o, dir, rep)
	if r.srv, err = New(o); err != nil {
		t.Fatal(err)
	}
	if tls {
		r.http = httptest.NewTLSServer(r.srv)
	} else {
		r.http = httptest.NewServer(r.srv)
	}
	t.Cleanup(r.http.Close)
	return r
}

// httpClient is a signed-in browser.
type httpClient struct {
	c *http.Client
	r *rig
}

func (h *httpClient) get(path string) page { h.r.t.Helper(); return h.r.get(h.c, path) }

func (h *httpClient) post(path string, form url.Values) page {
	h.r.t.Helper()
	return h.r.post(h.c, path, form)
}

// why asks the why-blocked question through its form.
func (h *httpClient) why(client, user, target string) page {
	h.r.t.Helper()
	p := h.get("/it/why")
	return h.post("/it/why", url.Values{"csrf": {csrf(h.r.t, p.body)}, "client": {client}, "user": {user}, "target": {target}})
}

func htmlEscape(s string) string { return template.HTMLEscapeString(s) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func writeFile(dir, name, body string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600)
}

func sleepBriefly() { time.Sleep(5 * time.Millisecond) }

// TestManagedDenySaysHowLong: a deny entry blocks each new lookup at once,
// but a device keeps a DNS answer it had for its time to live; the form
// says so for a deny entry, with the school's dns.cache.max_ttl.
func TestManagedDenySaysHowLong(t *testing.T) {
	cfg := config.Default()
	if got := managedDone(cfg, "news.example", "students", "allow"); strings.Contains(got, "may still reach") {
		t.Errorf("allow: %q", got)
	}
	if got := managedDone(cfg, "news.example", "students", "deny"); !strings.Contains(got, "may still reach it until its answer runs out (at most 24 hours, dns.cache.max_ttl)") {
		t.Errorf("deny: %q", got)
	}
	cfg.DNS.Cache.MaxTTL = config.Duration(30 * time.Minute)
	if got := managedDone(cfg, "news.example", "students", "deny"); !strings.Contains(got, "at most 30 minutes") {
		t.Errorf("deny, max_ttl 30m: %q", got)
	}
}
