package config

import (
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
)

// DNSRemote is the off-site resolver for enrolled school devices
// (`gatehouse devices`): DNS-over-HTTPS at https://HOST/dns-query/<token>
// and DNS-over-TLS at <token>.HOST. Reachable from the internet by design:
// the device token is its access control, not clients.allow.
type DNSRemote struct {
	Host      string   `yaml:"host"`       // the public name, e.g. filter.school.example
	DoHListen []string `yaml:"doh_listen"` // host:port, e.g. ":443"; empty = no DoH
	DoTListen []string `yaml:"dot_listen"` // host:port, e.g. ":853"; empty = no DoT
	// Cert and Key: a certificate for HOST and *.HOST (the DoT names).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ACME gets HOST's certificate from an ACME CA (Let's Encrypt unless
	// ACMEDirectory says otherwise) by the TLS-ALPN-01 challenge, which the
	// CA makes to HOST's public port 443: that port must reach a DoH
	// listener (directly, or forwarded by the school's firewall). Cached in
	// ACMECache (account key and certificate; directory 0700, files 0600).
	// Never for token names (certificates are public in CT logs), so DoT
	// needs Cert/Key.
	ACME      bool   `yaml:"acme"`
	ACMECache string `yaml:"acme_cache"`
	// ACMEDirectory is the CA's ACME directory URL (https): Let's Encrypt's
	// production by default; its staging, or another CA, for a trial.
	ACMEDirectory string `yaml:"acme_directory"`
	// ACMECAFile (PEM) is trusted besides the system roots for the ACME
	// directory's own HTTPS (a CA run inside the school or a test CA).
	ACMECAFile string `yaml:"acme_ca_file"`
	// RateLimit per device token, AddressRateLimit per source address.
	RateLimit        DNSRateLimit `yaml:"rate_limit"`
	AddressRateLimit DNSRateLimit `yaml:"address_rate_limit"`
	// Reload is how often a running serve re-reads the enrolled devices:
	// a device revoked by `gatehouse devices revoke` is refused within it.
	Reload Duration `yaml:"reload"`
}

// Defaults of dns.remote.
const (
	DefaultRemoteTokenQPS   = 50
	DefaultRemoteTokenBurst = 200
	DefaultRemoteAddrQPS    = 200
	DefaultRemoteAddrBurst  = 800
	DefaultRemoteReload     = Duration(2e9) // 2 s
	// DefaultACMEDirectory is Let's Encrypt's production directory.
	DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"
)

func defaultRemote() DNSRemote {
	return DNSRemote{
		RateLimit:        DNSRateLimit{QPS: DefaultRemoteTokenQPS, Burst: DefaultRemoteTokenBurst},
		AddressRateLimit: DNSRateLimit{QPS: DefaultRemoteAddrQPS, Burst: DefaultRemoteAddrBurst},
		Reload:           DefaultRemoteReload,
		ACMEDirectory:    DefaultACMEDirectory,
	}
}

// Enabled reports whether an off-site listener is configured.
func (r *DNSRemote) Enabled() bool { return len(r.DoHListen)+len(r.DoTListen) > 0 }

// remoteSection validates dns.remote.
func (v *validator) remoteSection() {
	r := &v.c.DNS.Remote
	if !r.Enabled() && r.Cert == "" && r.Key == "" && !r.ACME {
		return
	}
	if !r.Enabled() {
		v.errf("dns.remote.doh_listen", "a certificate or acme is set but no doh_listen or dot_listen address (e.g. \":443\")")
	}
	h := strings.TrimSuffix(strings.ToLower(r.Host), ".")
	if h == "" {
		v.errf("dns.remote.host", "the public name devices reach (e.g. filter.school.example) is needed")
	} else if !validHostName(h) {
		v.errf("dns.remote.host", "invalid host name %q (want e.g. filter.school.example)", r.Host)
	}
	for i, a := range r.DoHListen {
		v.listenAddr(joinIndex("dns.remote.doh_listen", i), a)
	}
	for i, a := range r.DoTListen {
		v.listenAddr(joinIndex("dns.remote.dot_listen", i), a)
	}
	if r.ACME {
		if r.ACMECache == "" {
			v.errf("dns.remote.acme_cache", "a directory for the ACME account and certificates is needed with acme: true")
		}
		if len(r.DoHListen) == 0 {
			v.errf("dns.remote.acme", "needs a doh_listen address: the CA's TLS-ALPN-01 challenge comes to HOST's port 443, which must reach a DoH listener")
		} else if !slices.ContainsFunc(r.DoHListen, func(a string) bool { _, p, _ := net.SplitHostPort(a); return p == "443" }) {
			// Port 443 may be forwarded to another port (NAT), so this is
			// no error; without that, no certificate is ever issued.
			v.warnf("dns.remote.doh_listen", "no DoH listener on port 443: ACME's TLS-ALPN-01 challenge comes to %s:443, so the school's firewall must forward public port 443 to one of %s, or no certificate is issued", r.Host, strings.Join(r.DoHListen, ", "))
		}
		if u, err := url.Parse(r.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			v.errf("dns.remote.acme_directory", "want the CA's ACME directory as an https:// URL (default %s), not %q", DefaultACMEDirectory, r.ACMEDirectory)
		}
		if r.ACMECAFile != "" {
			if _, err := LoadCertPool(r.ACMECAFile); err != nil {
				v.errf("dns.remote.acme_ca_file", "%v", err)
			}
		}
		if len(r.DoTListen) > 0 && (r.Cert == "" || r.Key == "") {
			v.errf("dns.remote.dot_listen", "DoT names are <token>.HOST and need a certificate for *.HOST (cert and key); ACME is never asked for token names, which certificate transparency logs would publish")
		}
	}
	if !r.ACME && r.ACMECAFile != "" {
		v.warnf("dns.remote.acme_ca_file", "set without acme: true, so it is not used")
	}
	if !r.ACME || r.Cert != "" || r.Key != "" {
		for _, k := range []struct{ path, file string }{{"dns.remote.cert", r.Cert}, {"dns.remote.key", r.Key}} {
			if k.file == "" {
				v.errf(k.path, "needed for the off-site listeners (a certificate for HOST and *.HOST), or set acme: true")
			} else if _, err := os.Stat(k.file); err != nil {
				v.errf(k.path, "cannot read %s: %v", k.file, err)
			}
		}
	}
	for _, l := range []struct {
		path string
		rl   DNSRateLimit
	}{{"dns.remote.rate_limit", r.RateLimit}, {"dns.remote.address_rate_limit", r.AddressRateLimit}} {
		if l.rl.QPS <= 0 {
			v.errf(l.path+".qps", "must be positive: these listeners are open to the internet")
		} else if l.rl.Burst < l.rl.QPS {
			v.errf(l.path+".burst", "must be at least qps (%d)", l.rl.QPS)
		}
	}
	if d := r.Reload.D(); d < 100e6 || d > 60e9 {
		v.errf("dns.remote.reload", "must be between 100ms and 1m (a revoked device is refused within it)")
	}
}

// validHostName reports whether h (lower case, no trailing dot) is a DNS
// host name with at least two labels.
func validHostName(h string) bool {
	labels := strings.Split(h, ".")
	if len(labels) < 2 || len(h) > 200 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return false
			}
		}
	}
	return true
}
