package main

import (
	"net"
	"strings"
	"testing"

	"github.com/gatehouse-filter/gatehouse/config"
)

func TestDNSOptionsFromConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(`admin: {listen: "10.0.0.9:9153"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: [127.0.0.1:5399, 127.0.0.2]
  block_response: blockpage
  tls_upstreams:
    - address: 127.0.0.3
      server_name: dns.test
  forward:
    - zone: school.internal
      servers: [127.0.0.4]
  group_upstreams:
    guests:
      upstreams: [127.0.0.5]
  rate_limit:
    qps: 500
    burst: 900
`), "g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o, err := dnsOptions(cfg, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 9153}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.RateQPS != 500 || o.RateBurst != 900 || o.BlockResponse != "blockpage" || o.BlockPageIP.String() != "10.0.0.9" ||
		o.Upstreams == nil || len(o.ACL) == 0 || o.Cache.Entries != config.DefaultCacheEntries {
		t.Fatalf("%+v", o)
	}
	if o.Upstreams.Set("guests") == 0 || o.Upstreams.Set("students") != 0 {
		t.Fatal("group_upstreams not given to the resolver")
	}
	// A loopback admin address is no use to clients: without block_page_ip
	// the config is refused, not answered with 0.0.0.0 and no page.
	if _, err := config.Parse([]byte("dns: {block_response: blockpage}\nadmin: {listen: \"127.0.0.1:9153\"}\n"), "g.yaml"); err == nil ||
		!strings.Contains(err.Error(), "g.yaml:1:23: dns.block_response: blockpage needs dns.block_page_ip") {
		t.Fatalf("blockpage with a loopback admin listener: %v", err)
	}
}
