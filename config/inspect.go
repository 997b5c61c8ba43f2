package config

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ProxyInspect configures HTTPS inspection with the school's own CA
// (`gatehouse ca init`). Nothing is decrypted until the CA exists; then each
// group's decrypt setting says what is.
type ProxyInspect struct {
	// CACert and CAKey are the CA's files; empty means ca/ca.pem and
	// ca/ca.key beside the database (Config.CACertFile, CAKeyFile).
	CACert string `yaml:"ca_cert"`
	CAKey  string `yaml:"ca_key"`
	// LeafCache bounds the minted site certificates kept in memory; past
	// it the least recently used is dropped and minted again when needed.
	LeafCache int `yaml:"leaf_cache"`
	// NeverDecrypt adds domains (each covering its subdomains) to the
	// built-in never-decrypt list (config/hosts/never_decrypt.txt): HTTPS
	// to them is always tunnelled untouched.
	NeverDecrypt []string `yaml:"never_decrypt"`
	// SearchHosts adds domains to the built-in table of search engines and
	// video sites (config/hosts/search_hosts.txt) that decrypt: search
	// decrypts.
	SearchHosts []string `yaml:"search_hosts"`
	// PinnedApps says what happens once a client has failed the handshake
	// with the school's certificate for a host 3 times in 10 minutes (an
	// app that pins its certificates, or a device without the CA):
	// PinnedReport (the default) records an event for IT and goes on
	// decrypting, PinnedTunnel also tunnels the host for that client for
	// 6 hours. Any device can fail handshakes on purpose, so tunnel lets a
	// pupil switch decryption off for a site of their choosing.
	PinnedApps string `yaml:"pinned_apps"`

	hosts *decryptHosts // the built-in tables plus the two above (normalize)
}

// DefaultLeafCache is the default proxy.inspect.leaf_cache (10,000 leaves
// hold about 7 MiB).
const DefaultLeafCache = 10_000

// Decryption modes for a group's decrypt setting.
const (
	DecryptOff    = "off"    // never decrypt: blocked HTTPS sites get a refused CONNECT
	DecryptBlocks = "blocks" // decrypt only connections that will be blocked, to show the block page
	DecryptSearch = "search" // blocks + search engines and video sites (the search table)
	DecryptAll    = "all"    // everything not on the never-decrypt list
)

// proxy.inspect.pinned_apps values.
const (
	PinnedReport = "report" // an event for IT; the host is still decrypted
	PinnedTunnel = "tunnel" // an event for IT, and the host tunnelled for the client for 6 hours
)

// PinnedTunnels reports whether a client that keeps failing the handshake
// for a host gets that host tunnelled (proxy.inspect.pinned_apps: tunnel).
func (c *Config) PinnedTunnels() bool { return c.Proxy.Inspect.PinnedApps == PinnedTunnel }

// DecryptDefaultGroup is the group whose default, once a CA exists, is
// search; every other group's is blocks.
const DecryptDefaultGroup = "students"

// CACertFile is the CA certificate's path.
func (c *Config) CACertFile() string {
	if c.Proxy.Inspect.CACert != "" {
		return c.Proxy.Inspect.CACert
	}
	return filepath.Join(c.Dir(), "ca", "ca.pem")
}

// CAKeyFile is the CA key's path.
func (c *Config) CAKeyFile() string {
	if c.Proxy.Inspect.CAKey != "" {
		return c.Proxy.Inspect.CAKey
	}
	return filepath.Join(c.Dir(), "ca", "ca.key")
}

// DecryptMode is the group's decryption mode once a CA exists (without a
// CA nothing is decrypted, whatever it says). Unset, it is search for the
// students group and blocks for every other.
func (g *Group) DecryptMode() string {
	switch {
	case g == nil:
		return DecryptBlocks
	case g.Decrypt != "":
		return g.Decrypt
	case g.Name == DecryptDefaultGroup:
		return DecryptSearch
	}
	return DecryptBlocks
}

// inspect validates proxy.inspect and every group's decrypt setting.
func (v *validator) inspect() {
	in := &v.c.Proxy.Inspect
	in.CACert, in.CAKey = strings.TrimSpace(in.CACert), strings.TrimSpace(in.CAKey)
	if (in.CACert == "") != (in.CAKey == "") {
		at := "proxy.inspect.ca_cert" // the one that is set
		if in.CACert == "" {
			at = "proxy.inspect.ca_key"
		}
		v.errf(at, "ca_cert and ca_key go together: set both, or neither for ca/ca.pem and ca/ca.key beside the database")
	}
	if in.CACert != "" && filepath.Clean(in.CACert) == filepath.Clean(in.CAKey) {
		// ca init would write the certificate over the key.
		v.errf("proxy.inspect.ca_key", "ca_cert and ca_key must be two files: the certificate would be written over the key")
	}
	if in.LeafCache < 100 || in.LeafCache > 1_000_000 {
		v.errf("proxy.inspect.leaf_cache", "must be between 100 and 1000000")
	}
	switch in.PinnedApps = strings.ToLower(strings.TrimSpace(in.PinnedApps)); in.PinnedApps {
	case "":
		in.PinnedApps = PinnedReport
	case PinnedReport, PinnedTunnel:
	default:
		v.errf("proxy.inspect.pinned_apps", "unknown value %q (want report or tunnel)", in.PinnedApps)
	}
	var all []string // groups that decrypt everything
	for _, name := range slices.Sorted(maps.Keys(v.c.Groups)) {
		g := v.c.Groups[name]
		if g == nil {
			continue
		}
		g.Decrypt = strings.ToLower(strings.TrimSpace(g.Decrypt))
		at := joinKey(joinKey("groups", name), "decrypt")
		switch g.Decrypt {
		case "", DecryptOff, DecryptBlocks, DecryptSearch:
		case DecryptAll:
			all = append(all, name)
		default:
			v.errf(at, "unknown decrypt mode %q (want off, blocks, search or all)", g.Decrypt)
		}
	}
	if in.PinnedApps == PinnedTunnel && len(all) > 0 {
		v.warnf("proxy.inspect.pinned_apps", "tunnel: any device can fail the handshake 3 times on purpose to stop a site being decrypted for it for 6 hours, and %s decrypt all: for them that switches off URL lists and content checks on a site of the pupil's choosing (report is the safe setting)",
			strings.Join(all, ", "))
	}
	v.checkHostList("proxy.inspect.never_decrypt", in.NeverDecrypt)
	v.checkHostList("proxy.inspect.search_hosts", in.SearchHosts)
	if f := strings.TrimSpace(v.c.Proxy.UpstreamCAFile); f != "" && v.checkFiles {
		if v.readable("proxy.upstream_ca_file", f, "upstream CA file") {
			if _, err := LoadCertPool(f); err != nil {
				v.errf("proxy.upstream_ca_file", "%v", err)
			}
		}
	}
}

// LoadCertPool reads a PEM file of CA certificates (proxy.upstream_ca_file)
// into a pool holding the system's roots too. It fails when the file holds
// no certificate or one that does not parse.
func LoadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", file, fileErr(err))
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d does not parse: %v", file, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (want one or more \"-----BEGIN CERTIFICATE-----\" blocks)", file)
	}
	return pool, nil
}
