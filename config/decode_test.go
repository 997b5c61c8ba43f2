package config

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the whole error text
	}{
		{
			name: "tab indentation",
			src:  "school:\n\tname: Hillside\n",
			want: "school.yaml:2:1: invalid YAML: found character that cannot start any token (a tab: YAML indentation must use spaces)",
		},
		{
			name: "unclosed double quote",
			src:  "school:\n  name: \"Hillside\n  timezone: Europe/London\n",
			want: "school.yaml:2:9: invalid YAML: unclosed quote (found unexpected end of stream)",
		},
		{
			name: "unclosed single quote on the first line",
			src:  "database: '/var/lib/gatehouse.db\nlog:\n  level: info\n",
			want: "school.yaml:1:11: invalid YAML: unclosed quote (found unexpected end of stream)",
		},
		{
			name: "unclosed flow list",
			src:  "groups:\n  staff:\n    block: [games, chat\n",
			want: "school.yaml:3:",
		},
		{
			name: "a '?' in a flow list",
			src:  "groups:\n  students:\n    allow: [tube.example/edu, tube.example/watch?v=abc]\n",
			want: "school.yaml:3: invalid YAML: did not find expected ',' or ']' (an entry with a '?' in a [a, b] list must be quoted",
		},
		{
			name: "unclosed flow mapping",
			src:  "school: {name: Hillside\nlog:\n  level: info\n",
			want: "school.yaml:2: invalid YAML: did not find expected ',' or '}'",
		},
		{
			name: "scanner error on the first line",
			src:  "school: name: Hillside\n",
			want: "school.yaml:1: invalid YAML: mapping values are not allowed in this context",
		},
		{
			name: "bad indentation",
			src:  "school:\n  name: Hillside\n timezone: Europe/London\n",
			want: "school.yaml:3: invalid YAML: did not find expected key",
		},
		{
			name: "two documents",
			src:  "school:\n  name: A\n---\nschool:\n  name: B\n",
			want: `school.yaml:4: only one YAML document is allowed (remove the second "---")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := parseErrors(t, tt.src)
			if len(errs) != 1 || !strings.HasPrefix(errs.Error(), tt.want) {
				t.Errorf("got  %v\nwant %s", errs, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []want
	}{
		{
			name: "unknown keys",
			src: `shcool:
  name: Hillside
dns:
  foo: 1
lists:
  - name: x
    urll: https://x.example/list
    category: games
`,
			want: []want{
				{"1:1", "", `unknown key "shcool" (did you mean "school"?)`},
				{"4:3", "dns", `unknown key "foo" (known keys: block_page_http, block_page_ip, block_response, block_ttl, cache, events, forward, group_upstreams, health_check, listen, memory_limit_mib, query_log, rate_limit, remote, tls, tls_upstreams, tunnel, upstream_timeout, upstreams)`},
				// url was never set, so the list has neither path nor url.
				{"6:5", "lists[0]", "a list needs path:"},
				{"7:5", "lists[0]", `unknown key "urll" (did you mean "url"?)`},
			},
		},
		{
			name: "duplicate keys",
			src: `log:
  level: info
  level: debug
groups:
  staff: {}
  staff: {}
`,
			want: []want{
				{"3:3", "log.level", `duplicate key "level" (first set at line 2)`},
				{"5:3", "groups.staff", "without block: it blocks nothing"},
				{"6:3", "groups.staff", `duplicate key "staff" (first set at line 5)`},
			},
		},
		{
			name: "wrong shapes",
			src: `school: [a]
clients:
  allow:
    a: b
  devices: pc1
dns:
  listen: 127.0.0.1:53
  upstreams: {a: 1}
groups:
  staff:
    description: [a, b]
    block: games
`,
			want: []want{
				{"1:1", "school", "expected a mapping, got a list"},
				{"3:3", "clients.allow", "expected a list, got a mapping"},
				{"5:12", "clients.devices", "expected a list, got a string"},
				{"7:11", "dns.listen", "expected a list, got a string"},
				{"8:3", "dns.upstreams", "expected a list, got a mapping"},
				{"11:5", "groups.staff.description", "expected a string, got a list"},
				{"12:12", "groups.staff.block", "expected a list, got a string"},
			},
		},
		{
			name: "scalar types",
			src: `dns:
  block_ttl: 60
clients:
  allow: [10.0.0.0/33, 10.1.2.0/16, fe80::1%eth0]
  devices:
    - name: pc
      ip: 10.0.0.300
lists:
  - name: x
    url: https://x.example/list
    category: games
    min_ratio: half
    max_size: 12XB
    timeout: [1]
groups:
  students:
    schedules:
      - name: s
        block: [games]
        when:
          - days: [mon]
            from: "25:00"
            to: 9
categories:
  games:
    severity: 3
`,
			want: []want{
				{"2:14", "dns.block_ttl", `invalid duration "60"`},
				{"4:11", "clients.allow[0]", `invalid network "10.0.0.0/33"`},
				{"4:24", "clients.allow[1]", `network "10.1.2.0/16" has bits set after the /16 mask (did you mean 10.1.0.0/16?)`},
				{"4:37", "clients.allow[2]", `invalid network "fe80::1%eth0"`},
				{"7:11", "clients.devices[0].ip", `invalid IP address "10.0.0.300"`},
				{"12:16", "lists[0].min_ratio", "expected a number, got a string"},
				{"13:15", "lists[0].max_size", `invalid size "12XB"`},
				{"14:5", "lists[0].timeout", "expected a duration (e.g. 90s, 15m, 12h, 30d), got a list"},
				{"16:3", "groups.students", "without block: it blocks nothing"},
				{"22:19", "groups.students.schedules[0].when[0].from", `invalid time of day "25:00"`},
				{"23:17", "groups.students.schedules[0].when[0].to", `invalid time of day "9"`},
				{"26:15", "categories.games.severity", `unknown severity "3"`},
			},
		},
		{
			name: "bad keys",
			src: `groups:
  ? [a, b]
  : {}
  "": {}
`,
			want: []want{
				{"2:5", "groups", "a key must be a plain name, got a list"},
				{"4:3", `groups.""`, "empty key"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErrors(t, tt.src, tt.want) })
	}
}

// Decoding and validation problems from one file come back together,
// sorted by position.
func TestAllErrorsAtOnce(t *testing.T) {
	checkErrors(t, `school:
  timezone: Europe/Londn
  motto: Learning together
dns:
  listen: ["127.0.0.1:5353"]
  block_response: refuse
groups:
  students:
    block: [porn, games]
    safe_search: always
  staff:
    networks: [10.10.0.0/16]
    block: {games: yes}
lists:
  - name: feed
    url: gopher://x.example/list
    category: games
    refresh: every day
`, []want{
		{"2:13", "school.timezone", `unknown time zone "Europe/Londn"`},
		{"3:3", "school", `unknown key "motto"`},
		{"6:19", "dns.block_response", `unknown block response "refuse"`},
		{"9:13", "groups.students.block[0]", `unknown category "porn"`},
		{"10:18", "groups.students.safe_search", `unknown safe_search mode "always"`},
		{"13:5", "groups.staff.block", "expected a list, got a mapping"},
		{"16:10", "lists[0].url", "url must start with https:// or http://"},
		{"18:14", "lists[0].refresh", `invalid refresh schedule "every day"`},
	})
}

func TestNetworksWithoutMask(t *testing.T) {
	c, err := Parse([]byte(`clients:
  allow: [10.0.0.5, "2001:db8::1", "::ffff:192.168.0.1", 10.20.0.0/16]
  devices:
    - name: pc
      ip: "::ffff:10.0.0.5"
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.5/32"),
		netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("192.168.0.1/32"),
		netip.MustParsePrefix("10.20.0.0/16"),
	}
	if len(c.Clients.Allow) != len(want) {
		t.Fatalf("allow = %v", c.Clients.Allow)
	}
	for i := range want {
		if c.Clients.Allow[i] != want[i] {
			t.Errorf("allow[%d] = %v, want %v", i, c.Clients.Allow[i], want[i])
		}
	}
	if ip := c.Clients.Devices[0].IP; ip != netip.MustParseAddr("10.0.0.5") {
		t.Errorf("device ip = %v, want unmapped 10.0.0.5", ip)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	c, err := Parse([]byte(`groups:
  students: &pupils
    block: [games, dating]
    safe_search: strict
    networks: [10.20.0.0/16]
  guests:
    <<: *pupils
    networks: [10.30.0.0/16]
    safe_search: moderate
lists:
  - &feed
    name: a
    url: https://a.example/list
    category: games
    refresh: "@every 6h"
  - <<: *feed
    name: b
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	g := c.Groups["guests"]
	if strings.Join(g.Block, ",") != "games,dating" || g.SafeSearch != "moderate" || len(g.Networks) != 1 || g.Networks[0].String() != "10.30.0.0/16" {
		t.Errorf("guests = %+v", g)
	}
	if len(c.Lists) != 2 || c.Lists[1].Name != "b" || c.Lists[1].URL != "https://a.example/list" || c.Lists[1].Refresh != "@every 6h" {
		t.Errorf("lists = %+v", c.Lists)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, src := range []string{"", "# nothing yet\n", "---\n", "~\n"} {
		c, err := Parse([]byte(src), testFile)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if c.School.Name != DefaultSchoolName || len(c.Groups) != 3 {
			t.Errorf("%q: not the defaults: %+v", src, c)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 7, Path: "x.y", Msg: "bad"}, "a.yaml:3:7: x.y: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Path: "x", Msg: "bad"}, "a.yaml: x: bad"},
		{Error{Path: "x", Msg: "bad"}, "x: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%#v: %q, want %q", tt.e, got, tt.want)
		}
	}
	es := Errors{{File: "f", Line: 2, Msg: "b"}, {File: "f", Msg: "c"}}
	if got := es.Error(); got != "f:2: b\nf: c" {
		t.Errorf("Errors.Error() = %q", got)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"block_ttl", "block_response", "listen", "upstreams"}
	for in, want := range map[string]string{
		"upstream":      "upstreams",
		"blockTTL":      "block_ttl",
		"block-ttl":     "block_ttl",
		"lisen":         "listen",
		"block_respons": "block_response",
		"zzz":           "",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"groups.students.block[2]": "groups.students.block",
		"groups.students.block":    "groups.students",
		"groups":                   "",
		`groups."a.b".block`:       `groups."a.b"`,
		`groups."a.b"`:             "groups",
		`categories."x\"y"`:        "categories",
		"lists[0]":                 "lists",
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A file of nested aliases ("billion laughs") must fail after bounded
// work, not hang: here 100 groups x 100 schedules x 100 windows x 100
// days. The bound is on the nodes walked, never on the time taken (which
// depends on the machine's load).
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	hundred := func(item string) string { return "[" + strings.TrimSuffix(strings.Repeat(item+", ", 100), ", ") + "]" }
	b.WriteString("x:\n")
	b.WriteString("  d: &d " + hundred("mon") + "\n")
	b.WriteString("  w: &w " + hundred(`{days: *d, from: "08:00", to: "09:00"}`) + "\n")
	b.WriteString("  s: &s " + hundred("{name: a, block: [games], when: *w}") + "\n")
	b.WriteString("groups:\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "  g%d: {schedules: *s}\n", i)
	}
	errs := parseErrors(t, b.String())
	if !strings.Contains(errs.Error(), "document too large") {
		t.Errorf("errors: %.500v", errs)
	}
	root, perr := parseDocument([]byte(b.String()), testFile)
	if perr != nil {
		t.Fatal(perr)
	}
	d := newDecoder(testFile)
	d.decodeInto(root, defaults())
	// The file itself has ~700 nodes; the rest is expansion.
	if d.nodes > maxExpanded+1000 || len(d.pos) > maxExpanded+1000 {
		t.Errorf("walked %d nodes (%d paths) before giving up, bound %d", d.nodes, len(d.pos), maxExpanded+1000)
	}
}

// TestAliasesWithinBound: a config that reuses anchors as people do is
// decoded in full.
func TestAliasesWithinBound(t *testing.T) {
	src := "groups:\n  g0: {block: [], schedules: &s [{name: lessons, block: [games, social-media], when: [{days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"15:00\"}]}]}\n"
	for i := 1; i < 40; i++ {
		src += fmt.Sprintf("  g%d: {block: [], schedules: *s}\n", i)
	}
	c, err := Parse([]byte(src), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Groups) < 40 {
		t.Fatalf("%d groups", len(c.Groups))
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Example)
	f.Add([]byte("groups:\n  students: &p\n    block: [games]\n  guests:\n    <<: *p\n"))
	f.Add([]byte("lists:\n  - name: a\n    auth:\n      token: x\n"))
	f.Add([]byte("clients:\n  allow: [10.0.0.5, ::1]\n  devices: [{name: a, ip: 10.0.0.1}]\n"))
	f.Add([]byte("school:\n\tname: x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "f.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c != nil, err)
		}
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error type %T", err)
			}
		}
	})
}

// Random damage to valid files must give errors, never a panic or a hang
// (a cheap stand-in for running FuzzParse).
func TestParseMutations(t *testing.T) {
	seeds := [][]byte{Example, []byte("groups:\n  students: &p\n    block: [games]\n  guests:\n    <<: *p\nlists:\n  - name: a\n    path: /a\n    category: games\n")}
	r := rand.New(rand.NewPCG(1, 2))
	const specials = "*&<:[]{}\"'\t\n-#!|>%@`~? "
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		in := slices.Clone(seeds[r.IntN(len(seeds))])
		for k := r.IntN(8) + 1; k > 0 && len(in) > 0; k-- {
			p := r.IntN(len(in))
			switch r.IntN(4) {
			case 0:
				in[p] = byte(r.IntN(256))
			case 1:
				in = slices.Delete(in, p, min(len(in), p+r.IntN(20)))
			case 2:
				q := r.IntN(len(in))
				in = slices.Insert(in, p, in[q:min(len(in), q+r.IntN(30))]...)
			case 3:
				in = slices.Insert(in, p, specials[r.IntN(len(specials))])
			}
		}
		c, err := Parse(in, "f.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("input %q: config %v, error %v", in, c != nil, err)
		}
		if _, ok := err.(Errors); err != nil && !ok {
			t.Fatalf("input %q: error type %T", in, err)
		}
	}
}

// TestDurationOverflowIsAnError: a number of days too large for a
// duration is an error at its line, not a wrapped-round value: 213503d
// would otherwise be a negative block TTL that passes "at most 24h", and
// 213504d twenty-five minutes.
func TestDurationOverflowIsAnError(t *testing.T) {
	checkErrors(t, "dns:\n  block_ttl: 213503d\n  cache:\n    max_ttl: 213504d\n", []want{
		{"2:14", "dns.block_ttl", `invalid duration "213503d"`},
		{"4:14", "dns.cache.max_ttl", `invalid duration "213504d"`},
	})
	var d Duration
	if err := d.UnmarshalText([]byte("106751d")); err != nil || d.D() != 106751*24*time.Hour {
		t.Errorf("106751d (the largest whole number of days) = %v, %v", d.D(), err)
	}
}
