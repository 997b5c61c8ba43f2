package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestInspectDefaultsAndPaths(t *testing.T) {
	c, err := Parse([]byte("database: /var/lib/gatehouse/g.db\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CACertFile() != filepath.FromSlash("/var/lib/gatehouse/ca/ca.pem") || c.CAKeyFile() != filepath.FromSlash("/var/lib/gatehouse/ca/ca.key") {
		t.Errorf("CA files %s %s", c.CACertFile(), c.CAKeyFile())
	}
	if c.Proxy.Inspect.LeafCache != DefaultLeafCache {
		t.Errorf("leaf_cache %d", c.Proxy.Inspect.LeafCache)
	}
	if m := c.Groups["students"].DecryptMode(); m != DecryptBlocks {
		t.Errorf("students decrypt %q", m)
	}
	c, err = Parse([]byte("proxy:\n  inspect:\n    ca_cert: /etc/g/ca.pem\n    ca_key: /etc/g/ca.key\ngroups:\n  students:\n    decrypt: OFF\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CACertFile() != "/etc/g/ca.pem" || c.CAKeyFile() != "/etc/g/ca.key" || c.Groups["students"].DecryptMode() != DecryptOff {
		t.Errorf("named files or decrypt not applied: %s %s %s", c.CACertFile(), c.CAKeyFile(), c.Groups["students"].DecryptMode())
	}
}

func TestInspectValidation(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"proxy:\n  inspect:\n    ca_cert: /x.pem\n", "t.yaml:3:14: proxy.inspect.ca_cert: ca_cert and ca_key go together"},
		{"proxy:\n  inspect:\n    leaf_cache: 5\n", "t.yaml:3:17: proxy.inspect.leaf_cache: must be between"},
		{"groups:\n  students:\n    decrypt: search\n", "groups.students.decrypt: decrypt: search is not built yet"},
		{"groups:\n  students:\n    decrypt: all\n", "not built yet"},
		{"groups:\n  students:\n    decrypt: everything\n", `unknown decrypt mode "everything"`},
	} {
		_, err := Parse([]byte(tc.src), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.src, err, tc.want)
		}
	}
}
