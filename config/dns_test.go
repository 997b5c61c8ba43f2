package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestDNSDefaults(t *testing.T) {
	d := Default().DNS
	if d.Cache.Entries != DefaultCacheEntries || d.Cache.MaxTTL.D() != 24*time.Hour || !d.Cache.Prefetch ||
		d.Cache.ServeStale.D() != 24*time.Hour || d.RateLimit.QPS != 1000 || d.RateLimit.Burst != 2000 ||
		d.Events.Collapse.D() != time.Minute || d.Events.Queue != 10_000 || d.QueryLog.Enabled ||
		d.UpstreamTimeout.D() != 2*time.Second || d.HealthCheck.D() != 30*time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	if tu := d.Tunnel; tu.Action != TunnelBlock || tu.Threshold != 30 || tu.Window.D() != time.Minute ||
		tu.BlockFor.D() != time.Hour || len(tu.Allow) != 0 {
		t.Fatalf("tunnel defaults: %+v", tu)
	}
	if a := BuiltinTunnelAllow(); !slices.Contains(a, "sophosxl.net") || !slices.Contains(a, "spamhaus.org") {
		t.Fatalf("built-in tunnel allow list: %v", a)
	}
}

func TestDNSTunnelSettings(t *testing.T) {
	c, err := Parse([]byte(`dns:
  tunnel:
    action: flag
    threshold: 50
    window: 2m
    block_for: 30m
    allow: [Tunnel-Service.Example]
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if tu := c.DNS.Tunnel; tu.Action != TunnelFlag || tu.Threshold != 50 || tu.Window.D() != 2*time.Minute ||
		tu.BlockFor.D() != 30*time.Minute || !slices.Equal(tu.Allow, []string{"Tunnel-Service.Example"}) {
		t.Fatalf("parsed: %+v", tu)
	}
	checkErrors(t, `dns:
  tunnel:
    action: deny
    threshold: 1
    window: 0s
    block_for: 10s
    allow: [com, "a b.example"]
`, []want{
		{"3:13", "dns.tunnel.action", "want block, flag or off"},
		{"4:16", "dns.tunnel.threshold", "between 5 and 100"},
		{"5:13", "dns.tunnel.window", "between 1s and 1h"},
		{"6:16", "dns.tunnel.block_for", "between 1m and 7d"},
		{"7:13", "dns.tunnel.allow[0]", "not a site's domain name"},
		{"7:18", "dns.tunnel.allow[1]", "not a domain name"},
	})
}

func TestDNSSettingsParse(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src := `dns:
  upstreams: [127.0.0.1:5399]
  block_page_ip: 10.0.0.5
  tls_upstreams:
    - address: 9.9.9.9
      server_name: dns.quad9.net
  forward:
    - zone: School.Internal.
      servers: [10.0.0.10, "10.0.0.11:5353"]
  tls:
    listen: [":853"]
    cert: ` + cert + `
    key: ` + key + `
  cache:
    entries: 5000
    min_ttl: 10s
    max_ttl: 1h
  rate_limit:
    qps: 200
    burst: 400
  events:
    collapse: 30s
  query_log:
    enabled: true
  memory_limit_mib: 128
`
	c, err := Parse([]byte(src), testFile)
	if err != nil {
		t.Fatal(err)
	}
	d := c.DNS
	if d.Cache.Entries != 5000 || d.Cache.MinTTL.D() != 10*time.Second || d.RateLimit.QPS != 200 || !d.QueryLog.Enabled ||
		len(d.Forward) != 1 || len(d.Forward[0].Servers) != 2 ||
		d.TLSUpstreams[0].ServerName != "dns.quad9.net" || d.MemoryLimitMiB != 128 || d.Events.Collapse.D() != 30*time.Second {
		t.Fatalf("parsed: %+v", d)
	}
	// Unset keys keep their defaults.
	if d.Cache.ServeStale.D() != DefaultServeStale || d.Events.Queue != DefaultEventQueue {
		t.Fatalf("defaults lost: %+v", d)
	}
	ap, err := NormalizeIPPort(d.Forward[0].Servers[0], 53)
	if err != nil || ap.String() != "10.0.0.10:53" {
		t.Fatalf("NormalizeIPPort: %v %v", ap, err)
	}
}

func TestDNSValidationErrors(t *testing.T) {
	checkErrors(t, `dns:
  block_page_ip: not-an-ip
  upstream_timeout: 50ms
  health_check: 10ms
  tls_upstreams:
    - address: dns.quad9.net:853
  forward:
    - zone: ""
      servers: [bad]
    - zone: a.internal
      servers: []
    - zone: A.internal.
      servers: [10.0.0.1]
  tls:
    cert: /nonexistent/cert.pem
    key: /nonexistent/key.pem
  cache:
    entries: -1
    min_ttl: 2h
    max_ttl: 1h
    serve_stale: 30d
  rate_limit:
    qps: 20
    burst: 10
  events:
    collapse: 2h
    queue: 5
  query_log:
    enabled: true
  memory_limit_mib: 8
`, []want{
		{"2:18", "dns.block_page_ip", "invalid address"},
		{"3:21", "dns.upstream_timeout", "between 100ms and 30s"},
		{"4:17", "dns.health_check", "at least 1s"},
		{"6:7", "dns.tls_upstreams[0].server_name", "name in the upstream's certificate"},
		{"6:16", "dns.tls_upstreams[0].address", "want IP:port"},
		{"8:13", "dns.forward[0].zone", "a zone is needed"},
		{"9:17", "dns.forward[0].servers[0]", "invalid server"},
		{"11:7", "dns.forward[1].servers", "at least one server"},
		{"12:13", "dns.forward[2].zone", "forwarded twice"},
		{"14:3", "dns.tls.listen", "no listen address"},
		{"15:11", "dns.tls.cert", "cannot read"},
		{"16:10", "dns.tls.key", "cannot read"},
		{"18:14", "dns.cache.entries", "between 0"},
		{"19:14", "dns.cache.min_ttl", "must not be above max_ttl"},
		{"19:14", "dns.cache.min_ttl", "at most 1h"},
		{"21:18", "dns.cache.serve_stale", "at most 7d"},
		{"23:10", "dns.rate_limit.qps", "stall a classroom"},
		{"24:12", "dns.rate_limit.burst", "at least qps"},
		{"26:15", "dns.events.collapse", "at most 1h"},
		{"27:12", "dns.events.queue", "between 100"},
		{"30:21", "dns.memory_limit_mib", "between 32"},
	})
}

func TestGroupUpstreams(t *testing.T) {
	c, err := Parse([]byte(`dns:
  group_upstreams:
    guests:
      upstreams: [1.1.1.3, "1.0.0.3:53"]
      tls_upstreams:
        - {address: 1.1.1.3, server_name: family.cloudflare-dns.com}
`), testFile)
	if err != nil {
		t.Fatal(err)
	}
	g := c.DNS.GroupUpstreams["guests"]
	if len(g.Upstreams) != 2 || len(g.TLSUpstreams) != 1 || g.TLSUpstreams[0].ServerName != "family.cloudflare-dns.com" {
		t.Fatalf("group_upstreams: %+v", c.DNS.GroupUpstreams)
	}
	checkErrors(t, `dns:
  listen: ["127.0.0.1:5353"]
  group_upstreams:
    pupils:
      upstreams: [1.1.1.3]
    guests: {}
    staff:
      upstreams: [not-an-ip, 127.0.0.1:5353, 9.9.9.9, "9.9.9.9:53"]
      tls_upstreams:
        - {address: "x:853"}
`, []want{
		{"4:5", "dns.group_upstreams.pupils", `unknown group "pupils"`},
		{"6:5", "dns.group_upstreams.guests", "at least one upstream"},
		{"8:19", "dns.group_upstreams.staff.upstreams[0]", "invalid upstream"},
		{"8:30", "dns.group_upstreams.staff.upstreams[1]", "own listen address"},
		{"8:55", "dns.group_upstreams.staff.upstreams[3]", "listed twice"},
		{"10:11", "dns.group_upstreams.staff.tls_upstreams[0].server_name", "certificate is needed"},
		{"10:21", "dns.group_upstreams.staff.tls_upstreams[0].address", "invalid upstream"},
	})
}
