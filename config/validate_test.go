package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []want
	}{
		{
			name: "unknown category in block",
			src: `groups:
  students:
    block:
      - pornography
      - porn
`,
			want: []want{{"5:9", "groups.students.block[1]", `unknown category "porn" (did you mean "pornography"?)`}},
		},
		{
			name: "unknown category without suggestion",
			src: `groups:
  staff:
    block: [games, knitting]
`,
			want: []want{{"3:20", "groups.staff.block[1]", `unknown category "knitting"`}},
		},
		{
			name: "unknown category in schedule, list and categories keys",
			src: `groups:
  students:
    schedules:
      - name: lessons
        block: [gaming]
        when:
          - days: [weekdays]
            from: "08:45"
            to: "15:20"
lists:
  - name: ut1
    path: /srv/ut1
    format: squidguard
    categories:
      adult: porno
  - name: extra
    path: /srv/extra.txt
    category: socialmedia
categories:
  warez:
    route: it
`,
			want: []want{
				{"2:3", "groups.students", "without block: it blocks nothing"},
				{"5:17", "groups.students.schedules[0].block[0]", `unknown category "gaming" (did you mean "games"?)`},
				{"15:14", "lists[0].categories.adult", `unknown category "porno" (did you mean "pornography"?)`},
				{"18:15", "lists[1].category", `unknown category "socialmedia" (did you mean "social-media"?)`},
				{"20:3", "categories.warez", `unknown category "warez" (did you mean "piracy"?)`},
			},
		},
		{
			name: "unknown severity and route",
			src: `categories:
  games:
    severity: urgent
  chat:
    route: dls
`,
			want: []want{
				{"3:15", "categories.games.severity", `unknown severity "urgent"`},
				{"5:12", "categories.chat.route", `unknown route "dls" (want dsl, it, headteacher or none)`},
			},
		},
		{
			name: "unknown list format",
			src: `lists:
  - name: games-extra
    path: /srv/games.txt
    category: games
    format: plain
`,
			want: []want{{"5:13", "lists[0].format", `unknown list format "plain"`}},
		},
		{
			name: "bad cron spec",
			src: `lists:
  - name: x
    url: https://lists.example.org/x.txt
    category: games
    refresh: "0 3 * *"
  - name: y
    url: https://lists.example.org/y.txt
    category: games
    refresh: "CRON_TZ=Mars/Base 0 3 * * *"
`,
			want: []want{
				{"5:14", "lists[0].refresh", `invalid refresh schedule "0 3 * *"`},
				{"9:14", "lists[1].refresh", `invalid refresh schedule "CRON_TZ=Mars/Base 0 3 * * *"`},
			},
		},
		{
			name: "path and url",
			src: `lists:
  - name: both
    path: /srv/a.txt
    url: https://a.example/x
    category: games
  - name: neither
    category: games
`,
			want: []want{
				{"2:5", "lists[0]", "a list takes path: or url:, not both"},
				{"6:5", "lists[1]", "a list needs path: (a local file or directory) or url:"},
			},
		},
		{
			name: "url scheme and credentials",
			src: `lists:
  - name: a
    url: ftp://a.example/x
    category: games
  - name: b
    url: https://user:pw@b.example/x
    category: games
`,
			want: []want{
				{"3:10", "lists[0].url", "url must start with https:// or http://"},
				{"6:10", "lists[1].url", "credentials must not be written in the url"},
			},
		},
		{
			name: "duplicate list names",
			src: `lists:
  - name: a
    path: /srv/a.txt
    category: games
  - name: a
    path: /srv/b.txt
    category: games
`,
			want: []want{{"5:11", "lists[1].name", `duplicate list name "a" (also lists[0])`}},
		},
		{
			name: "squidguard misuse",
			src: `lists:
  - name: ut1
    url: https://ut1.example/blacklists.tar.gz
    format: squidguard
    category: games
  - name: flat
    path: /srv/flat.txt
    category: games
    categories:
      games: games
`,
			want: []want{
				{"3:10", "lists[0].url", "a squidguard list is a directory tree: use path:"},
				{"5:15", "lists[0].category", "with categories:, not category:"},
				{"9:5", "lists[1].categories", "categories: is only for squidguard lists"},
			},
		},
		{
			name: "duplicate devices",
			src: `clients:
  devices:
    - name: pc1
      ip: 10.0.0.1
    - name: PC1
      ip: 10.0.0.1
      mac: 3c:22:fb:12:34:56
    - name: pc3
      mac: 3C-22-FB-12-34-56
    - name: pc4
      mac: not-a-mac
    - name: pc5
`,
			want: []want{
				{"5:13", "clients.devices[1].name", `duplicate device name "PC1" (also clients.devices[0])`},
				{"6:11", "clients.devices[1].ip", "IP address 10.0.0.1 is also clients.devices[0]"},
				{"9:12", "clients.devices[2].mac", "MAC address 3C-22-FB-12-34-56 is also clients.devices[1]"},
				{"11:12", "clients.devices[3].mac", `invalid MAC address "not-a-mac"`},
				{"12:7", "clients.devices[4]", "a device needs ip: or mac:"},
			},
		},
		{
			name: "duplicate users and missing groups",
			src: `clients:
  default_group: pupils
  devices:
    - name: pc
      ip: 10.0.0.9
      group: staf
  users:
    - name: jsmith
      group: staff
    - name: JSmith
      group: teachers
    - name: "ｊｓｍｉｔｈ "
      group: staff
`,
			want: []want{
				{"2:18", "clients.default_group", `no group named "pupils"`},
				{"6:14", "clients.devices[0].group", `no group named "staf" (did you mean "staff"?)`},
				{"10:13", "clients.users[1].name", `duplicate user name "JSmith" (also clients.users[0])`},
				{"11:14", "clients.users[1].group", `no group named "teachers"`},
				// The policy keys users by username.Canon: full width and
				// spaces are the same name there, so the same here.
				{"12:13", "clients.users[2].name", `duplicate user name "ｊｓｍｉｔｈ " (also clients.users[0])`},
			},
		},
		{
			name: "missing and unused lists",
			src: `groups:
  staff:
    allow_lists: [curriculum]
    deny_lists: [local-deni]
lists:
  - name: local-deny
    path: /etc/gatehouse/deny.txt
`,
			want: []want{
				{"2:3", "groups.staff", "without block: it blocks nothing"},
				{"3:19", "groups.staff.allow_lists[0]", `no list named "curriculum"`},
				{"4:18", "groups.staff.deny_lists[0]", `no list named "local-deni" (did you mean "local-deny"?)`},
				{"6:5", "lists[0]", `list "local-deny" has no category and no group uses it`},
			},
		},
		{
			name: "categorised list as allow list, same list twice",
			src: `groups:
  staff:
    allow_lists: [nsfw, mine]
    deny_lists: [mine]
lists:
  - name: nsfw
    path: /srv/nsfw.txt
    category: pornography
  - name: mine
    path: /srv/mine.txt
`,
			want: []want{
				{"2:3", "groups.staff", "without block: it blocks nothing"},
				{"3:19", "groups.staff.allow_lists[0]", `list "nsfw" has categories of its own; allow_lists take lists without a category`},
				{"4:18", "groups.staff.deny_lists[0]", `list "mine" is already in allow_lists`},
			},
		},
		{
			name: "network claimed by two groups",
			src: `groups:
  staff:
    networks: [10.10.0.0/16, 10.0.0.5]
  students:
    networks:
      - 10.20.0.0/16
      - 10.10.0.0/16
      - 10.0.0.5/32
      - 10.20.0.0/16
`,
			want: []want{
				{"2:3", "groups.staff", "without block: it blocks nothing"},
				{"4:3", "groups.students", "without block: it blocks nothing"},
				{"7:9", "groups.students.networks[1]", `network 10.10.0.0/16 is also claimed by group "staff" (groups.staff.networks[0])`},
				{"8:9", "groups.students.networks[2]", `network 10.0.0.5/32 is also claimed by group "staff"`},
				{"9:9", "groups.students.networks[3]", "network 10.20.0.0/16 is listed twice"},
			},
		},
		{
			name: "bad timezone",
			src: `school:
  name: Hillside
  timezone: Mars/Olympus
`,
			want: []want{{"3:13", "school.timezone", `unknown time zone "Mars/Olympus"`}},
		},
		{
			name: "bad listen addresses",
			src: `dns:
  listen: [127.0.0.1]
proxy:
  listen: "proxy.local:3128"
admin:
  listen: 127.0.0.1:99999
`,
			want: []want{
				{"2:12", "dns.listen[0]", `invalid address "127.0.0.1": missing port in address`},
				{"4:11", "proxy.listen", "the host must be an IP address, localhost, or empty"},
				{"6:11", "admin.listen", `invalid port "99999"`},
			},
		},
		{
			name: "listen address used twice, cited where written",
			src: `proxy:
  listen: 127.0.0.1:9153
`,
			want: []want{{"2:11", "proxy.listen", "address 127.0.0.1:9153 is also used by admin.listen"}},
		},
		{
			name: "upstreams",
			src: `dns:
  listen: ["127.0.0.1:53"]
  upstreams:
    - 127.0.0.1:53
    - dns.google:53
    - 9.9.9.9
    - 9.9.9.9:53
`,
			want: []want{
				{"4:7", "dns.upstreams[0]", "is Gatehouse's own listen address (queries would loop)"},
				{"5:7", "dns.upstreams[1]", "the host must be an IP address"},
				{"7:7", "dns.upstreams[3]", "upstream 9.9.9.9:53 is listed twice"},
			},
		},
		{
			name: "dns options",
			src: `dns:
  block_ttl: 48h
  block_response: refuse
log:
  level: verbose
  format: xml
`,
			want: []want{
				{"2:14", "dns.block_ttl", "must be at most 24h"},
				{"3:19", "dns.block_response", `unknown block response "refuse"`},
				{"5:10", "log.level", `unknown log level "verbose"`},
				{"6:11", "log.format", `unknown log format "xml"`},
			},
		},
		{
			name: "days and times",
			src: `groups:
  students:
    schedules:
      - name: lessons
        block: [games]
        when:
          - days: [weekdays, funday]
            from: "08:45"
            to: "15:20"
          - days: []
            from: "10:00"
            to: "10:00"
          - days: [Sat]
            from: "24:00"
            to: "01:00"
      - name: empty
`,
			want: []want{
				{"2:3", "groups.students", "without block: it blocks nothing"},
				{"7:30", "groups.students.schedules[0].when[0].days[1]", `unknown day "funday" (want mon..sun, weekdays, weekend or daily)`},
				{"10:13", "groups.students.schedules[0].when[1].days", "needs days:"},
				{"12:17", "groups.students.schedules[0].when[1].to", "from: and to: are the same time (10:00)"},
				{"14:19", "groups.students.schedules[0].when[2].from", "from: cannot be 24:00"},
				{"16:9", "groups.students.schedules[1].block", "a schedule needs block:"},
				{"16:9", "groups.students.schedules[1].when", "a schedule needs when:"},
			},
		},
		{
			name: "allow and deny entries",
			src: `groups:
  staff:
    allow:
      - "*.example.com"
      - exa_mple..com
      - ftp://files.example.com/
      - bbc.co.uk/bitesize
      - example.com:8080
      - "[2001:db8::1]"
      - 10.1.2.3
      - bücher.example
      - "-bad.example"
    deny:
      - https://www.BBC.co.uk/bitesize
      - "bad host"
      - EXAMPLE.com
`,
			want: []want{
				{"2:3", "groups.staff", "without block: it blocks nothing"},
				{"5:9", "groups.staff.allow[1]", `invalid entry "exa_mple..com": empty label`},
				{"6:9", "groups.staff.allow[2]", "only http:// and https:// addresses can be listed"},
				{"12:9", "groups.staff.allow[8]", `invalid entry "-bad.example": label starts or ends with a hyphen`},
				{"14:9", "groups.staff.deny[0]", `"https://www.BBC.co.uk/bitesize" is in both allow and deny`},
				{"15:9", "groups.staff.deny[1]", `invalid entry "bad host"`},
				{"16:9", "groups.staff.deny[2]", `"EXAMPLE.com" is in both allow and deny`},
			},
		},
		{
			name: "min_ratio and safe_search",
			src: `lists:
  - name: x
    url: https://a.example/x
    category: games
    min_ratio: 1.5
groups:
  staff:
    safe_search: medium
`,
			want: []want{
				{"5:16", "lists[0].min_ratio", "must be between 0 and 1"},
				{"7:3", "groups.staff", "without block: it blocks nothing"},
				{"8:18", "groups.staff.safe_search", `unknown safe_search mode "medium"`},
			},
		},
		{
			name: "secrets",
			src: `lists:
  - name: feed
    url: https://a.example/x
    category: games
    auth:
      username: school
      password: hunter2
  - name: feed2
    url: https://b.example/x
    category: games
    auth:
      header: Authorization
      token:
        file: /etc/gatehouse/token
        env: TOKEN
  - name: feed3
    url: https://c.example/x
    category: games
    auth:
      header: Authorization
      token: {}
  - name: feed4
    url: https://d.example/x
    category: games
    auth:
      token:
        env: 1BAD
`,
			want: []want{
				{"7:17", "lists[0].auth.password", `secrets cannot be written in the config file; use "file: /path/to/secret" or "env: VARIABLE_NAME"`},
				{"13:7", "lists[1].auth.token", `a secret takes either "file:" or "env:", not both`},
				{"21:7", "lists[2].auth.token", `a secret needs "file: /path/to/secret" or "env: VARIABLE_NAME"`},
				{"26:7", "lists[3].auth.token", "token: needs header:"},
				{"27:14", "lists[3].auth.token.env", `invalid environment variable name "1BAD"`},
			},
		},
		{
			name: "auth misuse",
			src: `lists:
  - name: a
    path: /srv/a.txt
    category: games
    auth:
      username: u
      password: {env: A_PASSWORD}
  - name: b
    url: http://b.example/x
    category: games
    auth:
      username: "u:v"
      password: {env: B_PASSWORD}
  - name: c
    url: https://c.example/x
    category: games
    auth: {}
`,
			want: []want{
				{"5:5", "lists[0].auth", "auth: is only used by url lists"},
				{"11:5", "lists[1].auth", "credentials must not be sent over plain http"},
				{"12:17", "lists[1].auth.username", "a username cannot contain ':'"},
				{"17:5", "lists[2].auth", "auth needs username: and password:, or header: and token:"},
			},
		},
		{
			name: "restricted tier cannot be overridden",
			src: `lists:
  - name: iwf
    url: https://iwf.example/list
    category: iwf
    format: adblock
  - name: ctiru
    url: http://ctiru.example/list
    category: ctiru
groups:
  staff:
    allow_lists: [iwf]
categories:
  iwf:
    route: none
  ctiru:
    severity: high
`,
			want: []want{
				{"5:13", "lists[0].format", "the restricted tier (IWF/CTIRU) cannot be overridden: a restricted list (iwf, ctiru) must set format: domains, urls or sha256"},
				{"7:10", "lists[1].url", "a restricted list must be downloaded over https"},
				{"8:15", "lists[1].category", "the restricted tier (IWF/CTIRU) cannot be overridden"},
				{"10:3", "groups.staff", "without block: it blocks nothing"},
				{"11:19", "groups.staff.allow_lists[0]", `the restricted tier (IWF/CTIRU) cannot be overridden: list "iwf" feeds iwf and cannot be an allow list`},
				{"14:12", "categories.iwf.route", "the restricted tier (IWF/CTIRU) cannot be overridden"},
				{"16:15", "categories.ctiru.severity", "the restricted tier (IWF/CTIRU) cannot be overridden"},
			},
		},
		{
			name: "restricted tier in a squidguard mapping",
			src: `lists:
  - name: ut1
    path: /srv/ut1
    format: squidguard
    categories:
      child: iwf
`,
			want: []want{{"6:14", "lists[0].categories.child", "the restricted tier (IWF/CTIRU) cannot be overridden"}},
		},
		{
			name: "too many lists without a category",
			src: func() string {
				var names, lists []string
				for i := range 32 {
					names = append(names, fmt.Sprintf("l%d", i))
					lists = append(lists, fmt.Sprintf("  - {name: l%d, path: /l%d}\n", i, i))
				}
				return "groups:\n  staff:\n    block: []\n    deny_lists: [" + strings.Join(names, ", ") + "]\nlists:\n" + strings.Join(lists, "")
			}(),
			want: []want{{"37:5", "lists[31]", "more than 31 lists without a category (allow/deny lists); merge some"}},
		},
		{
			name: "no groups at all",
			src:  "groups: ~\n",
			want: []want{
				{"1:1", "groups", "at least one group is needed"},
				{"0:0", "clients.default_group", `no group named "students"`},
			},
		},
		{
			name: "empty client ACL and names",
			src: `school:
  name: ""
clients:
  allow: []
database: ""
`,
			want: []want{
				{"2:9", "school.name", "must not be empty"},
				{"4:3", "clients.allow", "is empty, so every client would be refused"},
				{"5:11", "database", "must not be empty"},
			},
		},
		{
			name: "bad group and list names",
			src: `groups:
  "year 7":
    block: [games]
lists:
  - name: ../etc
    path: /srv/x.txt
    category: games
`,
			want: []want{
				{"2:3", `groups."year 7"`, `group name "year 7"`},
				{"5:11", "lists[0].name", `list name "../etc"`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErrors(t, tt.src, tt.want) })
	}
}

// A secret written inline must never be echoed back in an error.
func TestInlineSecretNotEchoed(t *testing.T) {
	errs := parseErrors(t, `lists:
  - name: feed
    url: https://a.example/x
    category: games
    auth:
      header: Authorization
      token: "Bearer sup3r-s3cret-t0ken"
`)
	if len(errs) == 0 {
		t.Fatal("inline secret accepted")
	}
	if strings.Contains(errs.Error(), "sup3r") {
		t.Errorf("error echoes the secret: %v", errs)
	}
}

func TestWarnings(t *testing.T) {
	c, err := Parse([]byte(`clients:
  allow: [10.0.0.0/8]
  devices:
    - name: printer
      ip: 192.168.1.20
groups:
  staff:
    networks: [172.16.0.0/12]
    block: []
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	w := c.Warnings()
	if len(w) != 2 || !strings.HasPrefix(w[0], "school.yaml:5:11: clients.devices[0].ip: device address 192.168.1.20 is not inside clients.allow") ||
		!strings.HasPrefix(w[1], "school.yaml:8:16: groups.staff.networks[0]: network 172.16.0.0/12 is not inside clients.allow") {
		t.Errorf("warnings = %q", w)
	}
}

func TestValidateInCode(t *testing.T) {
	c := Default()
	c.Groups["staff"].Block = append(c.Groups["staff"].Block, "knitting")
	c.Groups["staff"].SafeSearch = "STRICT"
	err := c.Validate()
	errs, ok := err.(Errors)
	if !ok || len(errs) != 1 || errs[0].Path != "groups.staff.block[17]" || errs[0].Line != 0 {
		t.Fatalf("Validate = %v", err)
	}
	if c.Groups["staff"].SafeSearch != "strict" {
		t.Errorf("safe_search not normalised: %q", c.Groups["staff"].SafeSearch)
	}
	if got := errs.Error(); !strings.HasPrefix(got, "groups.staff.block[17]: unknown category") {
		t.Errorf("message %q", got)
	}
}

func TestMarkerCategoryRejected(t *testing.T) {
	_, err := Parse([]byte("groups:\n  students:\n    block: [search-engine]\n"), "m.yaml")
	if err == nil || !strings.Contains(err.Error(), "m.yaml:3:13") || !strings.Contains(err.Error(), "safe_search") {
		t.Fatalf("marker category in block: %v", err)
	}
}

// TestGroupWithoutBlockIsAnError: a group written in the file replaces the
// built-in group of that name whole, so a half-edit that gives students
// only their networks would leave pupils with nothing blocked but the
// restricted tier. Leaving block: out is an error naming the group's line
// (schedules or not); block: [] says "nothing always blocked" on purpose.
func TestGroupWithoutBlockIsAnError(t *testing.T) {
	checkErrors(t, `groups:
  students:
    networks: [10.20.0.0/16]
  lab:
    description: Computing lab
    networks: [10.40.0.0/16]
    safe_search: off
  guests:
    schedules:
      - {name: evenings, block: [games], when: [{days: [daily], from: "18:00", to: "22:00"}]}
`, []want{
		{"2:3", "groups.students", "replaces the built-in students group whole"},
		{"4:3", "groups.lab", "no block:"},
		{"8:3", "groups.guests", "replaces the built-in guests group whole"},
	})
	for _, src := range []string{
		"groups:\n  it:\n    networks: [10.50.0.0/16]\n    block: []\n",
		"groups:\n  it:\n    networks: [10.50.0.0/16]\n    block: ~\n",
		"groups:\n  lab:\n    block: []\n    schedules:\n      - {name: evenings, block: [games], when: [{days: [daily], from: \"18:00\", to: \"22:00\"}]}\n",
		"groups:\n  lab: &base\n    block: [games]\n  lab2:\n    <<: *base\n    networks: [10.40.0.0/16]\n",
	} {
		if errs := parseErrors(t, src); len(errs) != 0 {
			t.Errorf("%s: %v", src, errs)
		}
	}
}
