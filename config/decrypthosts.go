package config

import (
	_ "embed"
	"slices"
	"strings"

	"github.com/gatehouse-filter/gatehouse/blocklists"
)

// The built-in host tables of HTTPS inspection (hosts/*.txt, lists we
// wrote). proxy.inspect.never_decrypt and search_hosts add to them.
var (
	//go:embed hosts/never_decrypt.txt
	builtinNeverText string
	//go:embed hosts/search_hosts.txt
	builtinSearchText string

	builtinHosts = newDecryptHosts(nil, nil)
)

// BuiltinNeverDecrypt is the built-in never-decrypt list, in file order.
func BuiltinNeverDecrypt() []string { return hostLines(builtinNeverText) }

// BuiltinSearchHosts is the built-in table of search engines and video
// sites a group with decrypt: search decrypts, in file order.
func BuiltinSearchHosts() []string { return hostLines(builtinSearchText) }

func hostLines(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if line = strings.TrimSpace(line); line != "" && line[0] != '#' {
			out = append(out, line)
		}
	}
	return out
}

// HostSet is a set of domains, each covering its subdomains.
type HostSet map[string]struct{}

// NewHostSet makes a set of the domains in lists; entries that do not
// normalise are left out (the validator reports them).
func NewHostSet(lists ...[]string) HostSet {
	s := HostSet{}
	for _, l := range lists {
		for _, h := range l {
			if n, err := blocklists.NormalizeHost(strings.TrimSpace(h)); err == nil && n != "" {
				s[n] = struct{}{}
			}
		}
	}
	return s
}

// Has reports whether host (normalised) is a domain of the set or under
// one. It does not allocate.
func (s HostSet) Has(host string) bool {
	for {
		if _, ok := s[host]; ok {
			return true
		}
		i := strings.IndexByte(host, '.')
		if i < 0 {
			return false
		}
		host = host[i+1:]
	}
}

// decryptHosts are the never-decrypt list and the search table, the
// built-in ones with the config's additions.
type decryptHosts struct {
	never, search HostSet
}

// newDecryptHosts builds the tables (NewHostSet).
func newDecryptHosts(never, search []string) *decryptHosts {
	return &decryptHosts{
		never:  NewHostSet(BuiltinNeverDecrypt(), never),
		search: NewHostSet(BuiltinSearchHosts(), search),
	}
}

func (c *Config) decryptHosts() *decryptHosts {
	if h := c.Proxy.Inspect.hosts; h != nil {
		return h
	}
	return builtinHosts
}

// NeverDecrypt reports whether HTTPS to host (normalised) is always
// tunnelled untouched: it is on the built-in never-decrypt list or
// proxy.inspect.never_decrypt.
func (c *Config) NeverDecrypt(host string) bool {
	return c.decryptHosts().never.Has(host)
}

// DecryptsAllowed reports whether the group decrypts an HTTPS connection
// to host that policy allows, once the school's CA exists: decrypt: all,
// or decrypt: search and host is a search engine or video site; never for
// a host on the never-decrypt list. (Connections that will be blocked are
// decrypted by every mode but off.) It does not allocate.
func (c *Config) DecryptsAllowed(group, host string) bool {
	var mode string
	if g := c.Groups[group]; g != nil {
		mode = g.DecryptMode()
	} else {
		mode = DecryptBlocks
	}
	h := c.decryptHosts()
	switch mode {
	case DecryptAll:
	case DecryptSearch:
		if !h.isSearch(host) {
			return false
		}
	default:
		return false
	}
	return !h.never.Has(host)
}

// checkHostList validates a list of domains at path.
func (v *validator) checkHostList(path string, hosts []string) {
	for i, h := range hosts {
		n, err := blocklists.NormalizeHost(strings.TrimSpace(h))
		switch {
		case err != nil:
			v.errf(joinIndex(path, i), "%q is not a domain name: %v", h, err)
		case n == "" || !strings.Contains(n, ".") || strings.ContainsAny(n, "/:[]") || slices.Contains([]string{"com", "uk", "co.uk", "org"}, n):
			v.errf(joinIndex(path, i), "%q is not a site's domain name (one domain a line; it covers its subdomains)", h)
		}
	}
}

// SearchHost reports whether host is a search engine or video site (the
// built-in table or proxy.inspect.search_hosts).
func (c *Config) SearchHost(host string) bool {
	return c.decryptHosts().isSearch(host)
}

// isSearch reports whether host is on the search table or is one of
// Google's search domains in any country (google.ie, www.google.de: the
// safe-search table's Google rows), which the proxy reads search terms
// on as it does www.google.com's.
func (h *decryptHosts) isSearch(host string) bool {
	if h.search.Has(host) {
		return true
	}
	t, ok := blocklists.SafeSearchRow(host)
	return ok && t.Strict == blocklists.GoogleSafe
}
