package httpproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/maproom"
)

// UpstreamResolver resolves names by asking the configured upstream DNS
// servers directly (Go's own DNS client, not the system resolver; names in
// /etc/hosts still answer from there), with a small
// cache: at most maxCache names (resolverCacheMax). It is the proxy's resolver until it is given the DNS resolver's
// own (see Resolver); the policy, including safe-search rewrites, is
// applied by the proxy before it asks.
type UpstreamResolver struct {
	r        *net.Resolver
	ttl      time.Duration
	neg      time.Duration
	next     atomic.Uint32
	mu       sync.Mutex
	cache    map[string]cached
	maxCache int       // names cached at most
	swept    time.Time // the cache's last sweep of expired names
}

// resolverCacheMax bounds the names the UpstreamResolver caches (each
// about 100 bytes plus the name and its addresses: about 4 MiB). A client
// asking for ever new names (random subdomains) must not grow it without
// limit within the TTL. At the bound expired names are swept (at most once
// a second), else a name is forgotten at random: it is asked again.
const resolverCacheMax = 10_000

type cached struct {
	addrs   []netip.Addr
	err     error
	expires time.Time
}

// NewUpstreamResolver asks servers (IP:port) in turn.
func NewUpstreamResolver(servers []string, timeout time.Duration) (*UpstreamResolver, error) {
	if len(servers) == 0 {
		return nil, errors.New("no upstream DNS servers")
	}
	u := &UpstreamResolver{ttl: 30 * time.Second, neg: 5 * time.Second, cache: map[string]cached{}, maxCache: resolverCacheMax}
	d := net.Dialer{Timeout: timeout}
	u.r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		s := servers[int(u.next.Add(1))%len(servers)]
		return d.DialContext(ctx, network, s)
	}}
	return u, nil
}

// LookupNetIP implements Resolver.
func (u *UpstreamResolver) LookupNetIP(ctx context.Context, _ netip.Addr, host string) ([]netip.Addr, error) {
	now := time.Now()
	u.mu.Lock()
	c, ok := u.cache[host]
	u.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.addrs, c.err
	}
	addrs, err := u.r.LookupNetIP(ctx, "ip", host)
	ttl := u.ttl
	if err != nil {
		if ctx.Err() != nil {
			return nil, err // our deadline, not the name's fault: do not cache
		}
		ttl = u.neg
	}
	u.mu.Lock()
	if _, ok := u.cache[host]; !ok {
		maproom.SweepAndMake(u.cache, u.maxCache, &u.swept, now, func(v cached) bool { return now.After(v.expires) })
	}
	u.cache[host] = cached{addrs: addrs, err: err, expires: now.Add(ttl)}
	u.mu.Unlock()
	return addrs, err
}
