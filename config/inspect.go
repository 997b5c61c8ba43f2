package config

import (
	"maps"
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
}

// DefaultLeafCache is the default proxy.inspect.leaf_cache (10,000 leaves
// hold about 7 MiB).
const DefaultLeafCache = 10_000

// Decryption modes for a group's decrypt setting.
const (
	DecryptOff    = "off"    // never decrypt: blocked HTTPS sites get a refused CONNECT
	DecryptBlocks = "blocks" // decrypt only connections that will be blocked, to show the block page
	DecryptSearch = "search" // blocks + search engines and video sites (not built yet)
	DecryptAll    = "all"    // everything not on the never-decrypt list (not built yet)
)

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

// DecryptMode is the group's decryption mode once a CA exists. Unset, it
// is blocks for every group: the default for students, search, is
// not built yet, and blocks is the part of it that is.
func (g *Group) DecryptMode() string {
	if g == nil || g.Decrypt == "" {
		return DecryptBlocks
	}
	return g.Decrypt
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
	if in.LeafCache < 100 || in.LeafCache > 1_000_000 {
		v.errf("proxy.inspect.leaf_cache", "must be between 100 and 1000000")
	}
	for _, name := range slices.Sorted(maps.Keys(v.c.Groups)) {
		g := v.c.Groups[name]
		if g == nil {
			continue
		}
		g.Decrypt = strings.ToLower(strings.TrimSpace(g.Decrypt))
		at := joinKey(joinKey("groups", name), "decrypt")
		switch g.Decrypt {
		case "", DecryptOff, DecryptBlocks:
		case DecryptSearch, DecryptAll:
			v.errf(at, "decrypt: %s is not built yet in this version of Gatehouse (use off or blocks)", g.Decrypt)
		default:
			v.errf(at, "unknown decrypt mode %q (want off or blocks; search and all are planned)", g.Decrypt)
		}
	}
}
