package dns

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Upstream is one resolver Gatehouse forwards to.
type Upstream struct {
	Addr       netip.AddrPort
	TLS        bool   // DNS-over-TLS
	ServerName string // for TLS

	udp, tcp  *mdns.Client
	healthy   atomic.Bool
	fails     atomic.Int32
	name      string
	tlsConfig *tls.Config
}

// UpstreamSpec describes an upstream to NewUpstreams.
type UpstreamSpec struct {
	Addr       netip.AddrPort
	TLS        bool
	ServerName string
	TLSConfig  *tls.Config // optional (tests: custom roots)
}

// Zone forwards a domain and its subdomains to its own servers.
type Zone struct {
	Name    string // lower case, no trailing dot
	Servers []UpstreamSpec
}

// Upstreams is the ordered set of default upstreams plus conditional
// forwarding zones. Healthy upstreams are tried first, in order; one that
// fails three times in a row is skipped until a health check or a query
// finds it answering again.
type Upstreams struct {
	def     []*Upstream
	sets    [][]*Upstream    // per-group upstreams; set i+1 of Set
	groups  map[string]uint8 // group → its set (absent: 0, the default)
	zones   []zoneUps        // longest first
	timeout time.Duration
	metrics *metrics
	log     *slog.Logger
}

type zoneUps struct {
	suffix string // ".zone"
	name   string
	ups    []*Upstream
}

// ErrNoUpstream is returned when every upstream failed.
var ErrNoUpstream = errors.New("no upstream answered")

// NewUpstreams builds the upstream set. timeout bounds one exchange.
func NewUpstreams(def []UpstreamSpec, zones []Zone, timeout time.Duration, log *slog.Logger) (*Upstreams, error) {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &Upstreams{timeout: timeout, log: log}
	for _, s := range def {
		u.def = append(u.def, newUpstream(s, timeout))
	}
	if len(u.def) == 0 {
		return nil, errors.New("no upstream resolvers")
	}
	for _, z := range zones {
		name := strings.ToLower(strings.TrimSuffix(z.Name, "."))
		zu := zoneUps{suffix: "." + name, name: name}
		for _, s := range z.Servers {
			zu.ups = append(zu.ups, newUpstream(s, timeout))
		}
		u.zones = append(u.zones, zu)
	}
	// Longest zone first, so the most specific wins.
	for i := 1; i < len(u.zones); i++ {
		for j := i; j > 0 && len(u.zones[j].name) > len(u.zones[j-1].name); j-- {
			u.zones[j], u.zones[j-1] = u.zones[j-1], u.zones[j]
		}
	}
	return u, nil
}

func newUpstream(s UpstreamSpec, timeout time.Duration) *Upstream {
	up := &Upstream{Addr: s.Addr, TLS: s.TLS, ServerName: s.ServerName, tlsConfig: s.TLSConfig}
	if s.TLS {
		cfg := s.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		cfg = cfg.Clone()
		cfg.ServerName = s.ServerName
		up.tcp = &mdns.Client{Net: "tcp-tls", Timeout: timeout, TLSConfig: cfg}
		up.name = "tls://" + s.Addr.String()
	} else {
		up.udp = &mdns.Client{Net: "udp", Timeout: timeout, UDPSize: EDNSSize}
		up.tcp = &mdns.Client{Net: "tcp", Timeout: timeout}
		up.name = s.Addr.String()
	}
	up.healthy.Store(true)
	return up
}

// AddGroup gives a client group its own upstreams (e.g. a family-filtered
// resolver for guests) in place of the default ones; forwarded zones still
// go to their servers. Call it before the set is used.
func (u *Upstreams) AddGroup(group string, specs []UpstreamSpec) error {
	if len(specs) == 0 {
		return fmt.Errorf("group %s: no upstream resolvers", group)
	}
	if len(u.sets) >= 255 {
		return errors.New("more than 255 groups with their own upstreams")
	}
	if _, dup := u.groups[group]; dup {
		return fmt.Errorf("group %s: upstreams given twice", group)
	}
	var set []*Upstream
	for _, s := range specs {
		set = append(set, newUpstream(s, u.timeout))
	}
	u.sets = append(u.sets, set)
	if u.groups == nil {
		u.groups = map[string]uint8{}
	}
	u.groups[group] = uint8(len(u.sets))
	return nil
}

// Set returns the number of group's upstream set (0: the default), which
// keys the cache, since answers may differ between sets.
func (u *Upstreams) Set(group string) uint8 {
	if len(u.groups) == 0 {
		return 0
	}
	return u.groups[group]
}

// pick returns the upstreams of set for name (lower case, no trailing dot).
func (u *Upstreams) pick(name string, set uint8) []*Upstream {
	for i := range u.zones {
		z := &u.zones[i]
		if name == z.name || strings.HasSuffix(name, z.suffix) {
			return z.ups
		}
	}
	if set > 0 && int(set) <= len(u.sets) {
		return u.sets[set-1]
	}
	return u.def
}

// Exchange sends q to the upstreams of set (see Set) for name, healthy
// ones first.
func (u *Upstreams) Exchange(ctx context.Context, q *mdns.Msg, name string, set uint8) (*mdns.Msg, error) {
	ups := u.pick(name, set)
	var lastErr error
	for pass := 0; pass < 2; pass++ {
		for _, up := range ups {
			if up.healthy.Load() != (pass == 0) {
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r, err := u.exchangeOne(ctx, up, q)
			if err == nil {
				return r, nil
			}
			lastErr = err
		}
	}
	if lastErr == nil {
		lastErr = ErrNoUpstream
	}
	return nil, fmt.Errorf("%w: %v", ErrNoUpstream, lastErr)
}

func (u *Upstreams) exchangeOne(ctx context.Context, up *Upstream, q *mdns.Msg) (*mdns.Msg, error) {
	start := time.Now()
	addr := up.Addr.String()
	var r *mdns.Msg
	var err error
	if up.udp != nil {
		r, _, err = up.udp.ExchangeContext(ctx, q, addr)
		if err == nil && r.Truncated || err != nil && r != nil {
			r, _, err = up.tcp.ExchangeContext(ctx, q, addr)
		}
	} else {
		r, _, err = up.tcp.ExchangeContext(ctx, q, addr)
	}
	if err == nil && r.Rcode == mdns.RcodeServerFailure || err == nil && r.Rcode == mdns.RcodeRefused {
		err = fmt.Errorf("upstream %s answered %s", up.name, mdns.RcodeToString[r.Rcode])
	}
	if u.metrics != nil {
		u.metrics.upstreamDur.WithLabelValues(up.name).Observe(time.Since(start).Seconds())
	}
	if err != nil {
		if u.metrics != nil {
			u.metrics.upstreamErr.WithLabelValues(up.name).Inc()
		}
		if up.fails.Add(1) >= 3 && up.healthy.Swap(false) {
			u.log.Warn("upstream marked down", "upstream", up.name, "err", err)
		}
		return nil, err
	}
	up.fails.Store(0)
	if !up.healthy.Swap(true) {
		u.log.Info("upstream answering again", "upstream", up.name)
	}
	return r, nil
}

// all lists every upstream (default, groups' and zones').
func (u *Upstreams) all() []*Upstream {
	out := append([]*Upstream(nil), u.def...)
	for _, set := range u.sets {
		out = append(out, set...)
	}
	for _, z := range u.zones {
		out = append(out, z.ups...)
	}
	return out
}

// HealthCheck probes every upstream each interval until ctx ends.
func (u *Upstreams) HealthCheck(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, up := range u.all() {
			q := new(mdns.Msg)
			q.SetQuestion(".", mdns.TypeNS)
			q.SetEdns0(EDNSSize, false)
			cctx, cancel := context.WithTimeout(ctx, u.timeout)
			_, _ = u.exchangeOne(cctx, up, q)
			cancel()
		}
	}
}

// SetHealth is the state of one set of upstreams, for health checks.
type SetHealth struct {
	// Name says what the set serves: "default", "group guests" (groups
	// sharing a set are joined with commas) or "zone school.internal".
	Name  string
	Total int
	Down  []string // upstreams marked down (three failures in a row)
}

// AllDown reports whether no upstream of the set is answering.
func (h SetHealth) AllDown() bool { return h.Total > 0 && len(h.Down) == h.Total }

// Health returns the state of every set: the default upstreams, each
// group's own and each forwarded zone's.
func (u *Upstreams) Health() []SetHealth {
	down := func(name string, ups []*Upstream) SetHealth {
		h := SetHealth{Name: name, Total: len(ups)}
		for _, up := range ups {
			if !up.healthy.Load() {
				h.Down = append(h.Down, up.name)
			}
		}
		return h
	}
	out := []SetHealth{down("default", u.def)}
	for i, set := range u.sets {
		var groups []string
		for g, n := range u.groups {
			if int(n) == i+1 {
				groups = append(groups, g)
			}
		}
		slices.Sort(groups)
		out = append(out, down("group "+strings.Join(groups, ","), set))
	}
	for _, z := range u.zones {
		out = append(out, down("zone "+z.name, z.ups))
	}
	return out
}

// Upstreams returns the server's upstream set (for health checks).
func (s *Server) Upstreams() *Upstreams { return s.ups }
