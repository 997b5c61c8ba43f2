package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
)

// setup writes lists into a temp dir, loads cfgYAML (with {{dir}} replaced)
// and returns an engine over the loaded lists.
func setup(t testing.TB, cfgYAML string, files map[string]string) (*Engine, *bl.Manager) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgYAML = strings.ReplaceAll(cfgYAML, "{{dir}}", dir)
	cfg, err := config.Parse([]byte(cfgYAML), filepath.Join(dir, "gatehouse.yaml"))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	sources, err := Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := bl.NewManager(filepath.Join(dir, "cache"), sources, cfg.Location(), nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Index().Lists() {
		if l.Err != "" {
			t.Fatalf("list %s: %s", l.Name, l.Err)
		}
	}
	e, err := New(cfg, m.Index())
	if err != nil {
		t.Fatal(err)
	}
	return e, m
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

const testConfig = `
school:
  name: Test School
  timezone: Europe/London
database: {{dir}}/gatehouse.db
lists:
  - name: adult
    path: {{dir}}/adult.txt
    category: pornography
  - name: games
    path: {{dir}}/games.txt
    category: games
  - name: iwf
    path: {{dir}}/iwf.txt
    category: iwf
    format: sha256
  - name: phishing-urls
    path: {{dir}}/phish-urls.txt
    category: phishing
    format: urls
  - name: school-allow
    path: {{dir}}/allow.txt
  - name: school-deny
    path: {{dir}}/deny.txt
clients:
  default_group: students
  devices:
    - name: library-pc-01
      ip: 10.1.2.3
    - name: head-laptop
      ip: 10.1.9.9
      group: staff
  users:
    - name: alice
      group: staff
groups:
  students:
    networks: [10.1.0.0/16]
    block: [pornography, vpn, web-proxy, tor, doh, private-relay, phishing]
    schedules:
      - name: lessons
        block: [games]
        when:
          - days: [weekdays]
            from: "08:45"
            to: "15:20"
    allow: [abuse.example, teach.games.example]
    allow_lists: [school-allow]
    deny_lists: [school-deny]
    deny: [annoying.example, video.example/bad]
    safe_search: strict
  staff:
    networks: [10.2.0.0/16, 10.1.200.0/24]
    block: [pornography]
    safe_search: moderate
  guests:
    networks: [192.168.0.0/16]
    block: [pornography, games]
    safe_search: "off"
`

var testFiles = map[string]string{
	"adult.txt":      "porn.example\nboth.example\n",
	"games.txt":      "games.example\nboth.example\n",
	"iwf.txt":        hashOf("abuse.example") + "\n" + hashOf("host.example/bad/page.html") + "\n",
	"phish-urls.txt": "bank.example/login\n",
	"allow.txt":      "games.example\n",
	"deny.txt":       "porn.example\nblocked-by-school.example\n",
}

// A Monday in term, 10:00 and 18:00 in London (BST is over; GMT).
var (
	lessonTime  = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	eveningTime = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
)

func TestDecisionOrder(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	staff := netip.MustParseAddr("10.2.0.7")
	guest := netip.MustParseAddr("192.168.1.1")
	tests := []struct {
		name       string
		client     netip.Addr
		user, host string
		path       string
		at         time.Time
		action     Action
		reason     Reason
		category   string
		list       string
		entry      string
	}{
		// Restricted beats the group's own allow entry for the same name.
		{"restricted over allow", student, "", "abuse.example", "", lessonTime, Block, ReasonRestricted, "iwf", "restricted", ""},
		{"restricted for staff", staff, "", "www.abuse.example", "", lessonTime, Block, ReasonRestricted, "iwf", "restricted", ""},
		{"restricted URL", guest, "", "host.example", "/bad/page.html", lessonTime, Block, ReasonRestricted, "iwf", "restricted", ""},
		{"restricted name with a path", guest, "", "www.abuse.example", "/any/page.html", lessonTime, Block, ReasonRestricted, "iwf", "restricted", ""},
		// Group deny beats group allow and categories.
		{"deny list", student, "", "www.blocked-by-school.example", "", lessonTime, Block, ReasonGroupDeny, "", "school-deny", "blocked-by-school.example"},
		{"deny list with category", student, "", "porn.example", "", lessonTime, Block, ReasonGroupDeny, "pornography", "school-deny", "porn.example"},
		{"inline deny", student, "", "annoying.example", "", lessonTime, Block, ReasonGroupDeny, "", "group/students/deny", "annoying.example"},
		{"inline deny URL", student, "", "video.example", "/bad/clip", lessonTime, Block, ReasonGroupDeny, "", "group/students/deny", "video.example/bad"},
		{"inline deny URL other path", student, "", "video.example", "/good", lessonTime, Allow, ReasonDefault, "", "", ""},
		// Group allow beats category lists.
		{"allow list over scheduled category", student, "", "games.example", "", lessonTime, Allow, ReasonGroupAllow, "", "school-allow", "games.example"},
		{"inline allow", student, "", "teach.games.example", "", lessonTime, Allow, ReasonGroupAllow, "", "school-allow", "games.example"},
		// Categories.
		{"category", student, "", "www.both.example", "", eveningTime, Block, ReasonCategory, "pornography", "adult", "both.example"},
		{"scheduled category in lessons", guest, "", "x.games.example", "", eveningTime, Block, ReasonCategory, "games", "games", "games.example"},
		{"phishing URL", student, "", "bank.example", "/login?next=1", eveningTime, Block, ReasonCategory, "phishing", "phishing-urls", "bank.example/login"},
		{"phishing URL other path", student, "", "bank.example", "/about", eveningTime, Allow, ReasonDefault, "", "", ""},
		{"staff not blocked for games", staff, "", "games.example", "", lessonTime, Allow, ReasonDefault, "", "", ""},
		{"staff blocked for porn", staff, "", "both.example", "", lessonTime, Block, ReasonCategory, "pornography", "adult", "both.example"},
		// Built-in lists: bypass and canaries.
		{"vpn built in", student, "", "nordvpn.com", "", lessonTime, Block, ReasonCategory, "vpn", "embedded/vpn", "nordvpn.com"},
		{"canary for staff", staff, "", "use-application-dns.net", "", lessonTime, Block, ReasonAlways, "dns-canary", "embedded/dns-canary", "use-application-dns.net"},
		{"private relay", student, "", "mask.icloud.com", "", lessonTime, Block, ReasonCategory, "private-relay", "embedded/private-relay", "mask.icloud.com"},
		// Safe search by group.
		{"safe search strict", student, "", "www.youtube.com", "", lessonTime, Rewrite, ReasonSafeSearch, "", "", ""},
		{"safe search off for guests", guest, "", "www.google.co.uk", "", lessonTime, Allow, ReasonDefault, "", "", ""},
		{"allowed", student, "", "bbc.co.uk", "", lessonTime, Allow, ReasonDefault, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(Request{Client: tt.client, User: tt.user, Host: tt.host, Path: tt.path, Time: tt.at})
			cat := ""
			if d.HasCategory {
				cat = d.Category.String()
			}
			if d.Action != tt.action || d.Reason != tt.reason || cat != tt.category || d.List != tt.list || d.Entry != tt.entry {
				t.Errorf("got %s/%s category=%q list=%q entry=%q; want %s/%s category=%q list=%q entry=%q",
					d.Action, d.Reason, cat, d.List, d.Entry, tt.action, tt.reason, tt.category, tt.list, tt.entry)
			}
		})
	}
}

func TestDecisionDetails(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	d := e.Decide(Request{Client: student, Host: "nordvpn.com", Time: lessonTime})
	if !d.Bypass || d.Severity != bl.SeverityHigh || d.Route != bl.RouteDSL || d.Group != "students" {
		t.Errorf("vpn decision = %+v", d)
	}
	d = e.Decide(Request{Client: student, Host: "use-application-dns.net", Time: lessonTime})
	if !d.Probe || d.Bypass || d.Severity != bl.SeverityInfo {
		t.Errorf("canary decision = %+v", d)
	}
	d = e.Decide(Request{Client: student, Host: "abuse.example", Time: lessonTime})
	if !d.Restricted || d.Severity != bl.SeverityCritical || d.Entry != "" {
		t.Errorf("restricted decision = %+v", d)
	}
	d = e.Decide(Request{Client: student, Host: "www.youtube.com", Time: lessonTime})
	if d.Rewrite != "restrict.youtube.com" {
		t.Errorf("strict youtube rewrite = %q", d.Rewrite)
	}
	d = e.Decide(Request{Client: netip.MustParseAddr("10.2.0.1"), Host: "www.youtube.com", Time: lessonTime})
	if d.Rewrite != "restrictmoderate.youtube.com" {
		t.Errorf("moderate youtube rewrite = %q", d.Rewrite)
	}
	d = e.Decide(Request{Client: student, Host: "www.google.co.uk", Time: lessonTime})
	if d.Rewrite != "forcesafesearch.google.com" {
		t.Errorf("google rewrite = %q", d.Rewrite)
	}
}

// TestAllowKeepsSafeSearch: an allow entry (inline or an allow list) for a
// search engine or video site lifts blocks, not the group's safe search:
// the name is still rewritten to the safe endpoint, naming the allow
// entry, for names and URLs alike; only the group's safe_search: off gives
// the real site.
func TestAllowKeepsSafeSearch(t *testing.T) {
	cfg := strings.Replace(testConfig, "allow: [abuse.example, teach.games.example]", "allow: [abuse.example, teach.games.example, youtube.com, google.co.uk]", 1)
	cfg = strings.Replace(cfg, "    safe_search: \"off\"\n", "    safe_search: \"off\"\n    allow: [youtube.com]\n", 1)
	files := map[string]string{}
	for k, v := range testFiles {
		files[k] = v
	}
	files["allow.txt"] += "bing.com\n"
	files["adult.txt"] += "www.google.co.uk\n" // the allow entry lifts a block
	e, _ := setup(t, cfg, files)
	student := netip.MustParseAddr("10.1.5.5")
	guest := netip.MustParseAddr("192.168.1.1")
	for _, tt := range []struct {
		client               netip.Addr
		host, path           string
		action               Action
		reason               Reason
		rewrite, list, entry string
	}{
		{student, "www.youtube.com", "", Rewrite, ReasonSafeSearch, "restrict.youtube.com", "group/students/allow", "youtube.com"},
		{student, "m.youtube.com", "/watch?v=abc", Rewrite, ReasonSafeSearch, "restrict.youtube.com", "group/students/allow", "youtube.com"},
		{student, "www.google.co.uk", "", Rewrite, ReasonSafeSearch, "forcesafesearch.google.com", "group/students/allow", "google.co.uk"},
		{student, "www.bing.com", "", Rewrite, ReasonSafeSearch, "strict.bing.com", "school-allow", "bing.com"},
		{student, "music.youtube.com", "", Allow, ReasonGroupAllow, "", "group/students/allow", "youtube.com"}, // no safe endpoint
		{guest, "www.youtube.com", "", Allow, ReasonGroupAllow, "", "group/guests/allow", "youtube.com"},
	} {
		d := e.Decide(Request{Client: tt.client, Host: tt.host, Path: tt.path, Time: lessonTime})
		if d.Action != tt.action || d.Reason != tt.reason || d.Rewrite != tt.rewrite || d.List != tt.list || d.Entry != tt.entry {
			t.Errorf("%s%s for %s: %s/%s rewrite %q list %q entry %q; want %s/%s rewrite %q list %q entry %q", tt.host, tt.path, tt.client,
				d.Action, d.Reason, d.Rewrite, d.List, d.Entry, tt.action, tt.reason, tt.rewrite, tt.list, tt.entry)
		}
	}
	r := Request{Client: student, Host: "www.youtube.com", Time: lessonTime}
	if n := testing.AllocsPerRun(200, func() { e.Decide(r) }); n != 0 {
		t.Errorf("Decide(%s) allocates %.1f times", r.Host, n)
	}
}

func TestIdentify(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	for _, tt := range []struct {
		ip, user, group, device string
	}{
		{"10.1.5.5", "", "students", ""},
		{"10.1.2.3", "", "students", "library-pc-01"},
		{"10.1.9.9", "", "staff", "head-laptop"},     // device group
		{"10.1.200.4", "", "staff", ""},              // more specific network wins
		{"10.1.5.5", "alice", "staff", ""},           // user group wins
		{"10.1.5.5", "unknown-user", "students", ""}, // unknown user keeps the network group
		{"172.16.0.1", "", "students", ""},           // default group
		{"::ffff:192.168.3.3", "", "guests", ""},     // v4-mapped
	} {
		id := e.Identify(netip.MustParseAddr(tt.ip), tt.user)
		if id.Group != tt.group || id.Device != tt.device || id.User != tt.user {
			t.Errorf("Identify(%s, %q) = %+v, want group %s device %q", tt.ip, tt.user, id, tt.group, tt.device)
		}
	}
}

func TestScheduleWindows(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	london, _ := time.LoadLocation("Europe/London")
	for _, tt := range []struct {
		at      string
		blocked bool
	}{
		{"2026-11-23 08:44", false}, // Monday, before lessons
		{"2026-11-23 08:45", true},
		{"2026-11-23 15:19", true},
		{"2026-11-23 15:20", false},
		{"2026-11-28 10:00", false}, // Saturday
		{"2026-06-15 10:00", true},  // Monday in summer time
		{"2026-06-15 15:30", false},
	} {
		at, _ := time.ParseInLocation("2006-01-02 15:04", tt.at, london)
		d := e.Decide(Request{Client: student, Host: "www.both.example", Time: at})
		if d.Action != Block {
			t.Errorf("%s: both.example should always be blocked (pornography)", tt.at)
		}
		cats, _ := e.BlockedCategories("students", at)
		if got := cats.Has(bl.Games); got != tt.blocked {
			t.Errorf("%s: games blocked = %v, want %v", tt.at, got, tt.blocked)
		}
	}
}

// TestUntilScheduled: how long until a lesson blocks what is allowed now,
// across days, the weekend and a change of the clocks; nothing for a
// group with no such schedule, a category always blocked or a name on the
// allow list.
func TestUntilScheduled(t *testing.T) {
	files := maps.Clone(testFiles)
	files["games.txt"] += "arcade.example\n"
	e, _ := setup(t, testConfig, files)
	student := netip.MustParseAddr("10.1.5.5")
	london, _ := time.LoadLocation("Europe/London")
	games := bl.SetOf(bl.Games)
	for _, tt := range []struct {
		at   string
		want time.Duration
	}{
		{"2026-11-23 08:40:30", 4*time.Minute + 30*time.Second}, // Monday
		{"2026-11-23 10:00:00", 0},                              // in the lesson
		{"2026-11-23 15:20:00", 17*time.Hour + 25*time.Minute},  // Tuesday's
		{"2026-11-27 16:00:00", 64*time.Hour + 45*time.Minute},  // Friday: Monday's
		{"2026-11-29 08:45:00", 24 * time.Hour},                 // Sunday
		// The clocks go forward at 01:00 GMT on Sunday 29 March: Monday's
		// lesson is an hour sooner than the clock faces say.
		{"2026-03-28 12:00:00", 43*time.Hour + 45*time.Minute},
		// They go back on 25 October: an hour later than the faces say, and
		// the answer is the earlier (never too late).
		{"2026-10-24 12:00:00", 44*time.Hour + 45*time.Minute},
	} {
		at, _ := time.ParseInLocation(time.DateTime, tt.at, london)
		got, ok := e.UntilScheduled("students", games, at)
		if !ok || got != tt.want {
			t.Errorf("%s: UntilScheduled = %v %v, want %v", tt.at, got, ok, tt.want)
		}
	}
	at := time.Date(2026, 11, 23, 8, 40, 0, 0, london)
	d := e.Decide(Request{Client: student, Host: "www.arcade.example", Time: at})
	if d.Action != Allow || d.Scheduled() != games {
		t.Errorf("games before the lesson: %v, scheduled %v", d.Action, d.Scheduled())
	}
	for _, host := range []string{"play.games.example", "www.both.example", "www.example.org"} { // allow list, always blocked, no category
		if d := e.Decide(Request{Client: student, Host: host, Time: at}); d.Scheduled() != 0 {
			t.Errorf("%s: scheduled %v", host, d.Scheduled())
		}
	}
	for _, g := range []string{"staff", "guests", "no-such-group"} {
		if got, ok := e.UntilScheduled(g, games, at); ok {
			t.Errorf("%s: UntilScheduled = %v", g, got)
		}
	}
	if got, ok := e.UntilScheduled("students", bl.SetOf(bl.Pornography), at); ok {
		t.Errorf("pornography (always blocked): UntilScheduled = %v", got)
	}
	if n := testing.AllocsPerRun(200, func() { e.UntilScheduled("students", games, at) }); n != 0 {
		t.Errorf("UntilScheduled allocates %.1f times", n)
	}
}

func TestOvernightWindow(t *testing.T) {
	w := window{days: 1 << time.Friday, from: 22 * 60, to: 6 * 60}
	for _, tt := range []struct {
		wd     time.Weekday
		minute int
		want   bool
	}{
		{time.Friday, 22*60 + 1, true}, {time.Saturday, 5 * 60, true}, {time.Saturday, 6 * 60, false},
		{time.Friday, 5 * 60, false}, {time.Thursday, 23 * 60, false},
	} {
		if got := w.active(weekMinute{int(tt.wd), tt.minute}); got != tt.want {
			t.Errorf("%s %d: got %v", tt.wd, tt.minute, got)
		}
	}
}

func TestDecideAllocations(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	student := netip.MustParseAddr("10.1.5.5")
	for _, host := range []string{"www.both.example", "bbc.co.uk", "a.b.c.d.example.org", "nordvpn.com", "abuse.example"} {
		r := Request{Client: student, Host: host, Time: lessonTime}
		if n := testing.AllocsPerRun(200, func() { e.Decide(r) }); n != 0 {
			t.Errorf("Decide(%s) allocates %.1f times", host, n)
		}
	}
}

func TestSourcesErrors(t *testing.T) {
	cfg, err := config.Parse([]byte(`
lists:
  - name: feed
    url: https://lists.example/feed.txt
    category: gambling
    auth:
      username: school
      password:
        env: GATEHOUSE_TEST_UNSET_SECRET
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("GATEHOUSE_TEST_UNSET_SECRET")
	if _, err := Sources(cfg); err == nil || !strings.Contains(err.Error(), "feed") {
		t.Errorf("Sources with a missing secret: err = %v", err)
	}
	t.Setenv("GATEHOUSE_TEST_UNSET_SECRET", "s3cret")
	src, err := Sources(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if src[0].Feed.Password != "s3cret" || src[0].Feed.Username != "school" {
		t.Errorf("feed auth not read: %+v", src[0].Feed)
	}
	if strings.Contains(fmt.Sprint(err), "s3cret") {
		t.Error("secret leaked")
	}
}

// TestIdentifyFromIdentityTable: the identity table's group for a user
// beats the device's and the network's; clients.users beats it; a static
// device name beats a lease's; an unknown group is ignored.
func TestIdentifyFromIdentityTable(t *testing.T) {
	e, _ := setup(t, testConfig, testFiles)
	for _, tt := range []struct {
		ip, user, idGroup, lease, group, device string
	}{
		{"10.1.5.5", "bob", "staff", "", "staff", ""},                                      // user's group beats the subnet's
		{"10.1.5.5", "", "staff", "", "students", ""},                                      // no user: no user group
		{"10.1.2.3", "bob", "guests", "lease-name", "guests", "library-pc-01"},             // beats the device's group; static name kept
		{"10.1.5.5", "alice", "guests", "", "staff", ""},                                   // clients.users beats the table
		{"10.1.5.5", "bob", "no-such-group", "lib-laptop-12", "students", "lib-laptop-12"}, // unknown group ignored
	} {
		r := Request{Client: netip.MustParseAddr(tt.ip), User: tt.user, Group: tt.idGroup, Device: tt.lease, Host: "porn.example"}
		id := e.IdentifyRequest(r)
		if id.Group != tt.group || id.Device != tt.device {
			t.Errorf("IdentifyRequest(%+v) = %+v, want group %s device %q", r, id, tt.group, tt.device)
		}
		if d := e.Decide(r); d.Group != tt.group || d.Device != tt.device {
			t.Errorf("Decide(%+v) identity = %+v", r, d.Identity)
		}
	}
}

// TestScheduleDayNamesAsConfigReadsThem: every day name the config accepts
// (config check says "valid" for it) builds an engine whose schedule is
// active on that day: "monday" as well as "mon", any case.
func TestScheduleDayNamesAsConfigReadsThem(t *testing.T) {
	cfg, err := config.Parse([]byte(`
groups:
  students:
    block: [pornography]
    schedules:
      - name: lessons
        block: [games]
        when:
          - days: [Monday, wednesday, FRI]
            from: "09:00"
            to: "15:00"
`), "gatehouse.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New refused a config that config.Parse accepted: %v", err)
	}
	london, _ := time.LoadLocation("Europe/London")
	for _, tt := range []struct {
		at      string
		blocked bool
	}{
		{"2026-11-23 10:00", true}, // Monday
		{"2026-11-24 10:00", false},
		{"2026-11-25 10:00", true}, // Wednesday
		{"2026-11-27 10:00", true}, // Friday
		{"2026-11-28 10:00", false},
	} {
		at, _ := time.ParseInLocation("2006-01-02 15:04", tt.at, london)
		cats, _ := e.BlockedCategories("students", at)
		if got := cats.Has(bl.Games); got != tt.blocked {
			t.Errorf("%s: games blocked = %v, want %v", tt.at, got, tt.blocked)
		}
	}
}

// TestIPv4MappedNetworks: a network written in its IPv4-mapped IPv6 form
// (::ffff:10.20.0.0/112, as some tools print dual-stack sockets' peers)
// places the IPv4 clients it names, as a single mapped address already
// does; clients are always compared unmapped.
func TestIPv4MappedNetworks(t *testing.T) {
	cfg, err := config.Parse([]byte(`
clients:
  allow: ["::ffff:10.0.0.0/104"]
  default_group: staff
groups:
  students:
    networks: ["::ffff:10.20.0.0/112", "::ffff:10.30.0.7"]
    block: [games]
`), "gatehouse.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if w := cfg.Warnings(); len(w) != 0 {
		t.Errorf("warnings: %q", w)
	}
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"10.20.1.1", "::ffff:10.20.1.1", "10.30.0.7"} {
		if g := e.Identify(netip.MustParseAddr(c), "").Group; g != "students" {
			t.Errorf("%s: group %s, want students", c, g)
		}
	}
	if g := e.Identify(netip.MustParseAddr("10.21.0.1"), "").Group; g != "staff" {
		t.Errorf("10.21.0.1: group %s, want staff", g)
	}
	if got := cfg.Clients.Allow[0]; got != netip.MustParsePrefix("10.0.0.0/8") {
		t.Errorf("clients.allow[0] = %s, want 10.0.0.0/8", got)
	}
}
