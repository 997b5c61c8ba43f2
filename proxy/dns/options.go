// Package dns is Gatehouse's filtering DNS resolver: the front door a
// school's DHCP hands out. See README.md for the request flow.
package dns

import (
	"crypto/tls"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/devices"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// Block responses.
const (
	BlockNXDomain  = "nxdomain"
	BlockNull      = "null"
	BlockBlockPage = "blockpage"
)

// Options configures a Server. Zero values take the defaults noted.
type Options struct {
	Listen    []string    // host:port, UDP and TCP
	TLSListen []string    // host:port for DNS-over-TLS (needs TLSConfig)
	TLSConfig *tls.Config // certificate for the DoT listener

	// Remote is the off-site listeners for enrolled devices (remote.go).
	Remote RemoteOptions

	// Engine returns the current policy engine (swapped on reload).
	Engine func() *policy.Engine
	// UserFor names the user logged in from a client address ("" when
	// none), e.g. the proxy's recent logins, so that a query is decided by
	// that user's group and its events name them. nil = no users.
	UserFor func(netip.Addr) string
	// Identity is the per-address identity table (package identity): the
	// user, their group, display name and device. nil = none; UserFor is
	// asked when it names no user.
	Identity *identity.Table
	// Upstreams resolves allowed queries.
	Upstreams *Upstreams

	// ACL, RateQPS and RateBurst are the starting access settings;
	// Server.SetAccess changes them on a running server.
	ACL       []netip.Prefix // clients served; others get REFUSED. Empty = loopback + private ranges
	RateQPS   int            // per client address; 0 = no limit
	RateBurst int

	BlockResponse string        // nxdomain, null or blockpage (default nxdomain)
	BlockTTL      time.Duration // default 60 s
	BlockPageIP   netip.Addr    // for blockpage

	// Decrypting reports whether the HTTP proxy decrypts HTTPS (the
	// school's CA is loaded); then HTTPS records (type 65) of names a
	// client's group decrypts (config.DecryptsAllowed) are answered
	// without h3 in their alpn, so browsers do not take QUIC around the
	// proxy. nil: never.
	Decrypting func() bool

	Cache       CacheOptions
	HealthCheck time.Duration // upstream probe interval (0 = none)

	// Bounds on cache misses waiting on upstreams at once: in all (and
	// prefetches; default 1024) and per UDP socket (default 512). A miss
	// beyond them is answered at once: stale if the cache has it, else
	// SERVFAIL (gatehouse_dns_upstream_busy_total).
	MaxWaiting          int
	MaxWaitingPerSocket int

	Sink     reports.Sink  // events; nil = discarded
	Collapse time.Duration // event collapse window (default 1 min)
	Queue    int           // event queue size (default 10,000)
	QueryLog bool          // record allowed queries too

	// Tunnel is the DNS tunnel detection (tunnel.go); the zero value
	// blocks at the defaults.
	Tunnel TunnelOptions

	// UDPPoller serves UDP through Go's network poller, as where blocking
	// sockets are not available (anywhere but Linux), instead of one
	// socket per listen address read by GOMAXPROCS (at least 2) workers
	// blocked in recvmsg (udp_blocking_linux.go): for comparison in
	// benchmarks and tests.
	UDPPoller bool

	// UDPSockets is how many UDP sockets serve each listen address through
	// the poller (Linux, SO_REUSEPORT: the kernel spreads clients over them
	// by address and port), each read by one worker that answers what it
	// reads. Default 2 × GOMAXPROCS; 1 gives one socket read by
	// 2 × GOMAXPROCS workers in turn, as where SO_REUSEPORT is not
	// available.
	UDPSockets int

	// MiekgUDP serves UDP with miekg/dns's server (a goroutine per
	// datagram) instead of Gatehouse's worker pool: for comparison in
	// benchmarks and tests.
	MiekgUDP bool

	Registry prometheus.Registerer // metrics; nil = not registered
	Log      *slog.Logger
	Now      func() time.Time // for tests; default time.Now
}

// EDNSSize is the UDP payload size Gatehouse advertises and answers within
// (DNS flag day 2020).
const EDNSSize = 1232

func (o *Options) defaults() {
	if o.BlockResponse == "" {
		o.BlockResponse = BlockNXDomain
	}
	if o.BlockTTL <= 0 {
		o.BlockTTL = 60 * time.Second
	}
	if o.Collapse <= 0 {
		o.Collapse = time.Minute
	}
	if o.Queue <= 0 {
		o.Queue = 10_000
	}
	if o.MaxWaiting <= 0 {
		o.MaxWaiting = defaultMaxWaiting
	}
	if o.MaxWaitingPerSocket <= 0 {
		o.MaxWaitingPerSocket = defaultMaxWaitingPerSocket
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.ACL) == 0 {
		o.ACL = DefaultACL()
	}
}

// DefaultACL is loopback, RFC 1918, CGNAT, link-local and ULA.
func DefaultACL() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
		"100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// RemoteOptions configures the listeners for school devices off-site:
// DNS-over-HTTPS at /dns-query/<token> and DNS-over-TLS with the token as
// the first label of the server name. They serve any address (the token is
// their access control), never clients.allow.
type RemoteOptions struct {
	// Host is dns.remote.host: the DoT names are <token>.Host.
	Host      string
	DoHListen []string // host:port for DoH (HTTP/2 and HTTP/1.1 over TLS)
	DoTListen []string // host:port for DoT (853)
	// TLSConfig holds the certificate (Certificates or GetCertificate);
	// the listeners clone it.
	TLSConfig *tls.Config
	Devices   *devices.Registry // enrolled devices; nil: every token is refused
	// Per token (device) and per source address: sustained queries per
	// second and burst. 0 QPS = no limit.
	TokenQPS, TokenBurst int
	AddrQPS, AddrBurst   int
}
