// Package httpproxy is Gatehouse's explicit HTTP/HTTPS filtering proxy,
// built on github.com/elazarl/goproxy. Browsers reach it by policy, PAC
// file or WPAD. It sees the full URL of plain HTTP requests and the host and
// port of every HTTPS CONNECT (once the school's CA is loaded it decrypts
// what each group's decrypt setting says: blocked CONNECTs, to show the
// block page, search engines and video sites, or all but the never-decrypt
// list; decrypt.go), asks the same policy
// engine as the DNS resolver, and records blocks, bypass attempts and
// suspicious tunnels through the same event sink.
//
// What it does, in request order:
//
//   - Connections: only clients.allow may connect (never an open proxy);
//     connections are capped overall and per client address, and a client
//     over a cap gets "503 Service Unavailable". Header reads, idle
//     keep-alive connections, dials, upstream responses and idle tunnels
//     all have timeouts.
//   - Identity: optional Basic proxy login against a users file of bcrypt
//     hashes and/or the school's directory (identity.ldap, Options.Directory),
//     required for groups with proxy_login; ten wrong logins a minute from
//     one address and its logins are refused unchecked; a login maps the client
//     address to the user for proxy.auth.login_ttl (see Logins.UserFor, which
//     the DNS resolver uses so its events carry the name too). Identity
//     order: user → device → IP, as policy.Engine.Identify does.
//   - Filtering: plain HTTP URLs against URL lists and host categories, with
//     the block page for blocks; CONNECT hosts against the same policy, with
//     403 for blocks. A tunnel to a bare IP address (outside
//     proxy.connect.ip_networks), to a port outside proxy.connect.ports, or to
//     a bypass service is a bypass attempt; a tunnel to port 443 whose first
//     bytes are not a TLS ClientHello is blocked or flagged.
//   - Search terms (search.go): a search on a known engine carries its
//     term on every event; a term over a watchlist theme's threshold is a
//     "flag" event with the theme's severity even when allowed; groups with
//     safe_search get the engine's safe parameter and YouTube-Restrict.
//   - Upstream: names are resolved through a Resolver (Gatehouse's own
//     filtering resolver), never the system resolver; safe-search hosts are
//     dialled at their safe endpoint; each address is checked just before
//     it is dialled: loopback, link-local, multicast and the like and
//     Gatehouse's own listeners are refused (403, an internal-address
//     event), private networks are reached only inside
//     proxy.http.ip_networks or proxy.connect.ip_networks, and plain HTTP
//     only on proxy.http.ports; upstream TLS is always verified; idle
//     upstream connections are capped per site and overall
//     (proxy.limits.idle_per_site, idle_total); bodies stream; WebSocket
//     upgrades pass through; hop-by-hop headers are dropped and Via is
//     added.
//
// The admin listener mounts AdminHandler for /proxy.pac, /wpad.dat, the
// block page for names the DNS resolver answered with the block-page
// address, and the "report a mistake" form.
package httpproxy

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// Resolver resolves names for the proxy's upstream connections. It must be
// Gatehouse's own filtering resolver (same cache and answers as DNS
// clients get), never the system resolver. The proxy has already decided
// the request by the time it asks, and asks for the safe-search endpoint
// itself when the policy rewrites a host; client is the requesting
// client, for resolvers that answer per client.
type Resolver interface {
	LookupNetIP(ctx context.Context, client netip.Addr, host string) ([]netip.Addr, error)
}

// DirectoryLogin checks logins against the school's directory
// (*identity.LDAP). Login returns identity.ErrBadLogin for a wrong name or
// password and another error when the directory cannot be asked. One that
// also has an Enabled() bool method (serve's, which a reload turns on and
// off) counts as set only while Enabled is true. One with a
// Remembered(name, password string) (identity.Person, bool) method
// answers the logins its cache holds (a password that passed before)
// without a slot among the binds: they are not held up by a flood of
// logins or a directory that does not answer.
type DirectoryLogin interface {
	Login(name, password string) (identity.Person, error)
}

// Options configures a Server.
type Options struct {
	// Engine returns the current policy engine (swapped on reload). A
	// request reads its config from the same engine (Engine.Config), so
	// the two always match.
	Engine func() *policy.Engine
	// Config returns the current configuration; nil (what serve passes)
	// means Engine().Config(), and if set it must return the config the
	// current engine was built from. Listen address, timeouts, limits,
	// the login TTL and the users file path are read once by New; block
	// page wording, the school's name, which groups must log in, CONNECT
	// rules, PAC and event settings are read per request, so a reload
	// applies at once.
	Config func() *config.Config
	// Resolver resolves upstream names (required).
	Resolver Resolver
	// Sink receives events; nil discards them.
	Sink reports.Sink
	// Identity is the per-address identity table (package identity): it
	// names the user of a request without a login, their group and the
	// device; a login is recorded in it for proxy.auth.login_ttl. nil:
	// none.
	Identity *identity.Table
	// Directory, if set, checks proxy logins the users file does not list
	// (identity.ldap); the groups' proxy_login applies as with the file.
	Directory DirectoryLogin
	// Certs, when set (the school's CA is loaded), lets the proxy decrypt
	// CONNECTs per group (groups.*.decrypt; decideConnect). nil: nothing
	// is decrypted.
	Certs CertSource
	// RootCAs verifies upstream TLS; nil = the system roots plus
	// proxy.upstream_ca_file (read by New).
	RootCAs *x509.CertPool
	// Registry receives the proxy's metrics; nil = not registered.
	Registry prometheus.Registerer
	Log      *slog.Logger
	Now      func() time.Time // for tests; default time.Now
}
