package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProxyDefaults(t *testing.T) {
	p := Default().Proxy
	if p.Listen != DefaultProxyListen || p.Timeouts.Header.D() != 10*time.Second || p.Timeouts.Tunnel.D() != 10*time.Minute {
		t.Errorf("proxy defaults = %+v", p)
	}
	if len(p.Connect.Ports) != 1 || p.Connect.Ports[0] != 443 || p.Connect.NonTLS != "block" {
		t.Errorf("connect defaults = %+v", p.Connect)
	}
	if p.Limits.Connections != DefaultProxyConnections || p.Limits.PerClient != DefaultProxyPerClient || p.BlockPage.ReportsPerHour != 10 {
		t.Errorf("limits = %+v, block page = %+v", p.Limits, p.BlockPage)
	}
	if p.Limits.IdleTotal != DefaultProxyIdleTotal || !slices.Equal(p.HTTP.Ports, []int{80, 8080, 443}) || len(p.HTTP.IPNetworks) != 0 {
		t.Errorf("idle total %d, http = %+v", p.Limits.IdleTotal, p.HTTP)
	}
	if d := Default(); len(d.Admin.Allow) != 0 || len(d.Proxy.Connect.IPNetworks) != 0 {
		t.Errorf("admin.allow %v, connect networks %v: loopback and private networks must not be open by default", d.Admin.Allow, d.Proxy.Connect.IPNetworks)
	}
}

// The upstream address rules: ports and networks for plain HTTP, the
// overall idle cap and the admin allow list, with a warning for networks
// that open the Gatehouse machine itself.
func TestProxyUpstreamRules(t *testing.T) {
	checkErrors(t, `proxy:
  limits:
    idle_total: 1
  http:
    ports: [80, 80, 0, 853]
    ip_networks: [0.0.0.0/0, "::/0"]
admin:
  allow: [0.0.0.0/0]
`, []want{
		{"3:17", "proxy.limits.idle_total", "must be between 2 and 100000"},
		{"5:17", "proxy.http.ports[1]", "port 80 is listed twice"},
		{"5:21", "proxy.http.ports[2]", "invalid port 0"},
		{"5:24", "proxy.http.ports[3]", "port 853 carries mail or DNS"},
		{"6:19", "proxy.http.ip_networks[0]", "would let plain HTTP requests reach any IP address"},
		{"6:30", "proxy.http.ip_networks[1]", "would let plain HTTP requests reach any IP address"},
		{"8:11", "admin.allow[0]", "would let anyone read the metrics"},
	})
	checkErrors(t, "proxy:\n  http:\n    ports: []\n", []want{{"3:5", "proxy.http.ports", "at least one port is needed"}})
	c, err := Parse([]byte(`proxy:
  connect: {ip_networks: [127.0.0.0/8]}
  http:
    ports: [80, 18080]
    ip_networks: [10.0.0.0/8, 169.254.0.0/16]
admin:
  allow: [10.0.0.5/32]
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Proxy.HTTP.Ports, []int{80, 18080}) || len(c.Admin.Allow) != 1 {
		t.Errorf("http = %+v, admin = %+v", c.Proxy.HTTP, c.Admin)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "proxy.connect.ip_networks[0]") || !strings.Contains(w, "Gatehouse machine itself") ||
		!strings.Contains(w, "proxy.http.ip_networks[1]") || !strings.Contains(w, "metadata") || strings.Contains(w, "ip_networks[0]: 10.") {
		t.Errorf("warnings:\n%s", w)
	}
}

func TestProxyValid(t *testing.T) {
	c, err := Parse([]byte(`proxy:
  timeouts: {header: 5s, idle: 2m, dial: 3s, response: 30s, tunnel: 1h}
  limits: {connections: 5000, per_client: 100, idle_per_site: 64}
  connect:
    ports: [443, 8443]
    ip_networks: [10.0.0.0/24]
    non_tls: FLAG
  auth: {users_file: /etc/gatehouse/users, realm: Hillside, login_ttl: 4h}
  block_page:
    contact: IT office
    aup_url: https://school.example/aup
    rules: {gambling: "Rule 4"}
    reports_per_hour: 5
  pac: {proxy_address: "proxy.school.internal:3128", direct: [school.internal, "*.hillside.sch.uk"]}
  events: {collapse: 30s, log_allowed: true}
groups:
  staff:
    block: []
    proxy_login: true
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Proxy
	if p.Connect.NonTLS != "flag" || !c.Groups["staff"].ProxyLogin || c.Groups["students"].ProxyLogin || p.Limits.PerClient != 100 || !p.Events.LogAllowed {
		t.Errorf("proxy = %+v", p)
	}
}

func TestProxyValidation(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []want
	}{
		{
			name: "timeouts out of range",
			src: `proxy:
  timeouts:
    header: 0s
    tunnel: 2d
`,
			want: []want{
				{"3:13", "proxy.timeouts.header", "must be between 1s and 2m"},
				{"4:13", "proxy.timeouts.tunnel", "must be between 10s and 1d"},
			},
		},
		{
			name: "limits",
			src: `proxy:
  limits:
    connections: 100
    per_client: 200
    idle_per_site: 1
`,
			want: []want{
				{"4:17", "proxy.limits.per_client", "must not be above connections (100)"},
				{"5:20", "proxy.limits.idle_per_site", "must be between 2 and 10000"},
			},
		},
		{
			name: "connect",
			src: `proxy:
  connect:
    ports: [443, 443, 53, 70000]
    ip_networks: [0.0.0.0/0]
    non_tls: allow
`,
			want: []want{
				{"3:18", "proxy.connect.ports[1]", "port 443 is listed twice"},
				{"3:23", "proxy.connect.ports[2]", "port 53 carries mail or DNS"},
				{"3:27", "proxy.connect.ports[3]", "invalid port 70000"},
				{"4:19", "proxy.connect.ip_networks[0]", "would let tunnels reach any IP address"},
				{"5:14", "proxy.connect.non_tls", `unknown value "allow" (want block or flag)`},
			},
		},
		{
			name: "login without users file",
			src: `groups:
  staff:
    proxy_login: true
proxy:
  auth:
    realm: 'say "hi"'
    login_ttl: 10s
`,
			want: []want{
				{"2:3", "groups.staff", "without block: it blocks nothing"},
				{"3:18", "groups.staff.proxy_login", "needs proxy.auth.users_file"},
				{"6:12", "proxy.auth.realm", "without quotes"},
				{"7:16", "proxy.auth.login_ttl", "must be between 1m and 7d"},
			},
		},
		{
			name: "block page",
			src: `proxy:
  block_page:
    aup_url: ftp://x/aup
    rules:
      iwf: "no"
      gambling: ""
      gamble: "x"
    reports_per_hour: 0
`,
			want: []want{
				{"3:14", "proxy.block_page.aup_url", "want an http:// or https:// URL"},
				{"5:12", "proxy.block_page.rules.iwf", "standard page"},
				{"6:17", "proxy.block_page.rules.gambling", "empty rule"},
				{"7:15", "proxy.block_page.rules.gamble", `did you mean "gambling"?`},
				{"8:23", "proxy.block_page.reports_per_hour", "must be between 1 and 1000"},
			},
		},
		{
			name: "pac",
			src: `proxy:
  pac:
    proxy_address: "0.0.0.0:3128"
    direct: [uk, "a b"]
  events:
    collapse: 2h
`,
			want: []want{
				{"3:20", "proxy.pac.proxy_address", "not an address browsers can reach"},
				{"4:14", "proxy.pac.direct[0]", "top-level domain"},
				{"4:18", "proxy.pac.direct[1]", "invalid domain"},
				{"6:15", "proxy.events.collapse", "must be at most 1h"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkErrors(t, tt.src, tt.want) })
	}
}
