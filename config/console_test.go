package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestConsoleConfig(t *testing.T) {
	d := Default()
	if d.Console.Listen != "127.0.0.1:8080" || d.Console.IdleTimeout.D() != DefaultConsoleIdle || d.Console.SessionLimit.D() != DefaultConsoleLimit {
		t.Fatalf("defaults %+v", d.Console)
	}
	if _, _, _, tls := d.ConsoleTLS(); tls {
		t.Error("loopback default wants TLS")
	}
	checkErrors(t, `admin: {listen: "127.0.0.1:8080"}
console:
  listen: "nowhere"
  allow: [0.0.0.0/0]
  cert: /etc/c.pem
  idle_timeout: 2h
  session_limit: 10m
`, []want{
		{"3:11", "console.listen", "invalid address"},
		{"4:11", "console.allow[0]", "would let anyone reach the console"},
		{"5:9", "console.cert", "cert and key go together"},
		{"6:17", "console.idle_timeout", "must be between 1m and 1h"},
		{"7:18", "console.session_limit", "must be between 15m and 1d"},
		{"7:18", "console.session_limit", "must not be shorter than console.idle_timeout"},
	})
	checkErrors(t, "admin: {listen: \"127.0.0.1:8080\"}\n", []want{{"1:17", "admin.listen", "also used by console.listen"}})
	c, err := Parse([]byte("database: /var/lib/gatehouse/g.db\nconsole:\n  listen: 0.0.0.0:8443\n  allow: [10.1.0.0/16]\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, self, tls := c.ConsoleTLS()
	if !tls || !self || cert != filepath.Join("/var/lib/gatehouse", "console-cert.pem") || key != filepath.Join("/var/lib/gatehouse", "console-key.pem") {
		t.Errorf("off loopback: %s %s self=%t tls=%t", cert, key, self, tls)
	}
	if a := c.ConsoleAllow(); len(a) != 1 || a[0].String() != "10.1.0.0/16" {
		t.Errorf("allow %v", a)
	}
	if c, err := Parse([]byte("console: {listen: \"off\"}\nadmin: {listen: \"127.0.0.1:9153\"}\n"), testFile); err != nil || !c.ConsoleOff() {
		t.Errorf("off: %v", err)
	}
}

// TestConsoleAllowWarning: a console listening beyond loopback without
// console.allow is open to every client in clients.allow, pupils too:
// config check says so. On loopback, or with console.allow, it does not.
func TestConsoleAllowWarning(t *testing.T) {
	for _, tc := range []struct {
		src  string
		warn bool
	}{
		{"console:\n  listen: 0.0.0.0:8443\n", true},
		{"console:\n  listen: 10.0.0.5:8443\n", true},
		{"console:\n  listen: 10.0.0.5:8443\n  allow: [10.20.0.0/16]\n", false},
		{"console:\n  listen: 127.0.0.1:8080\n", false},
		{"console:\n  listen: \"[::1]:8080\"\n", false},
		{"console:\n  listen: \"off\"\n", false},
		{"database: /tmp/g.db\n", false},
	} {
		c, err := Parse([]byte(tc.src), "t.yaml")
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		w := strings.Join(c.Warnings(), "\n")
		if got := strings.Contains(w, "console.listen: console.allow is not set"); got != tc.warn {
			t.Errorf("%q: warned %v, want %v:\n%s", tc.src, got, tc.warn, w)
		}
	}
}
