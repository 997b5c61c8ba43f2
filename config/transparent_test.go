package config

import (
	"strings"
	"testing"
)

func TestTransparentDefaults(t *testing.T) {
	c, err := Parse([]byte("database: /var/lib/gatehouse/g.db\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tp := &c.Proxy.Transparent
	if tp.HTTPListen != "" || tp.HTTPSListen != "" || tp.NoSNIFor("students") != NoSNIBlock || !tp.IsECHName("cloudflare-ech.com") {
		t.Errorf("defaults %+v", tp)
	}
	c, err = Parse([]byte(`clients:
  allow: [10.0.0.0/8]
proxy:
  transparent:
    http_listen: 0.0.0.0:3129
    https_listen: "[::]:3130"
    allow: [10.20.0.0/16]
    no_sni: ALLOW
    no_sni_groups: {students: Block}
    ech_names: [Front.Example.]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tp = &c.Proxy.Transparent
	if tp.NoSNIFor("students") != NoSNIBlock || tp.NoSNIFor("staff") != NoSNIAllow {
		t.Errorf("no_sni: students %s, staff %s", tp.NoSNIFor("students"), tp.NoSNIFor("staff"))
	}
	if !tp.IsECHName("front.example") || !tp.IsECHName("a.front.example") || tp.IsECHName("notfront.example") {
		t.Errorf("ech_names %v", tp.ECHNames)
	}
	if n := c.TransparentClients(); len(n) != 1 || n[0].String() != "10.20.0.0/16" {
		t.Errorf("clients %v", n)
	}
}

func TestTransparentValidation(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"proxy:\n  transparent:\n    no_sni: maybe\n", `t.yaml:3:13: proxy.transparent.no_sni: unknown value "maybe" (want block or allow)`},
		{"proxy:\n  transparent:\n    no_sni_groups: {pupils: allow}\n", `proxy.transparent.no_sni_groups.pupils: no group named "pupils"`},
		{"proxy:\n  transparent:\n    no_sni_groups: {staff: sometimes}\n", `proxy.transparent.no_sni_groups.staff: unknown value "sometimes"`},
		{"clients:\n  allow: [10.0.0.0/8]\nproxy:\n  transparent:\n    allow: [192.168.0.0/16]\n", "t.yaml:5:13: proxy.transparent.allow[0]: 192.168.0.0/16 is not inside clients.allow"},
		{"clients:\n  allow: [0.0.0.0/0]\nproxy:\n  transparent:\n    allow: [0.0.0.0/0]\n", "proxy.transparent.allow[0]: 0.0.0.0/0 would let anyone use the filter"},
		{"proxy:\n  transparent:\n    ech_names: [not a name]\n", `proxy.transparent.ech_names[0]: invalid name "not a name"`},
		{"proxy:\n  transparent:\n    http_listen: 3129\n", "proxy.transparent.http_listen: invalid address"},
		{"proxy:\n  listen: 127.0.0.1:3128\n  transparent:\n    https_listen: 127.0.0.1:3128\n", "proxy.transparent.https_listen: address 127.0.0.1:3128 is also used by proxy.listen"},
		{"proxy:\n  listen: \"\"\n  transparent:\n    http_listen: 127.0.0.1:3129\n", "proxy.transparent.http_listen: needs the HTTP proxy (proxy.listen)"},
	} {
		_, err := Parse([]byte(tc.src), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
