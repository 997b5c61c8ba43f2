package config

import (
	"strings"
	"testing"
)

func TestIdentityConfig(t *testing.T) {
	d := Default()
	if d.Identity.MaxAddresses != DefaultIdentityMax || d.Identity.Window.D() != DefaultIdentityWindow ||
		d.Identity.RADIUS.Timeout.D() != DefaultRADIUSTimeout || d.Identity.RADIUS.Listen != "" {
		t.Fatalf("defaults %+v", d.Identity)
	}
	checkErrors(t, `identity:
  groups:
    - match: "[oops"
      group: pupils
  max_addresses: 10
  window: 2h
  radius:
    listen: "127.0.0.1:1813"
    nas: [0.0.0.0/0]
    timeout: 10s
  dhcp_leases:
    - path: /var/lib/dhcp/dhcpd.leases
      format: iscd
    - path: /var/lib/dhcp/dhcpd.leases
      format: kea
`, []want{
		{"3:14", "identity.groups[0].match", "invalid pattern"},
		{"4:14", "identity.groups[0].group", `no group named "pupils"`},
		{"5:18", "identity.max_addresses", "must be between 1024 and 1048576"},
		{"6:11", "identity.window", "must be between 0s and 1h"},
		{"7:3", "identity.radius.secret", "needs the shared secret"},
		{"9:11", "identity.radius.nas[0]", "would take accounting from anyone"},
		{"10:14", "identity.radius.timeout", "must be between 1m and 7d"},
		{"13:15", "identity.dhcp_leases[0].format", `unknown lease file format "iscd"`},
		{"14:13", "identity.dhcp_leases[1].path", "is also identity.dhcp_leases[0]"},
	})
	checkErrors(t, `identity:
  radius:
    listen: "127.0.0.1:1813"
    secret: {file: /etc/gatehouse/radius-secret, env: RADIUS_SECRET}
`, []want{
		{"2:3", "identity.radius.nas", "list the controllers"},
		{"4:5", "identity.radius.secret", `either "file:" or "env:"`},
	})
}

// TestIdentitySecretNotDumped: the config, as the change log or any dump
// shows it, names where the RADIUS secret is, never its value.
func TestIdentitySecretNotDumped(t *testing.T) {
	t.Setenv("GH_RADIUS_SECRET", "hunter2-radius")
	c, err := Parse([]byte("identity:\n  radius:\n    listen: 127.0.0.1:1813\n    secret: {env: GH_RADIUS_SECRET}\n    nas: [127.0.0.1/32]\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Identity.RADIUS.Secret.Read(); err != nil || v != "hunter2-radius" {
		t.Fatalf("secret %q %v", v, err)
	}
	for _, ch := range Diff(Default(), c) {
		if strings.Contains(ch.Text, "hunter2") {
			t.Fatalf("change shows the secret: %s", ch.Text)
		}
	}
	if s := c.Identity.RADIUS.Secret.String(); strings.Contains(s, "hunter2") {
		t.Fatalf("String shows the secret: %s", s)
	}
}
