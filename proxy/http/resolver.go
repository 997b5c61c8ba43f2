package httpproxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// UpstreamResolver resolves names by asking the configured upstream DNS
// servers directly (Go's own DNS client, not the system resolver; names in
// /etc/hosts still answer from there), with a small
// cache. It is the proxy's resolver until it is given the DNS resolver's
// own (see Resolver); the policy, including safe-search rewrites, is
// applied by the proxy before it asks.
type UpstreamResolver struct {
	r     *net.Resolver
	ttl   time.Duration
	neg   time.Duration
	next  atomic.Uint32
	mu    sync.Mutex
	cache map[string]cached
}

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
	u := &UpstreamResolver{ttl: 30 * time.Second, neg: 5 * time.Second, cache: map[string]cached{}}
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
	if len(u.cache) > 50_000 {
		for k, v := range u.cache {
			if now.After(v.expires) {
				delete(u.cache, k)
			}
		}
	}
	u.cache[host] = cached{addrs: addrs, err: err, expires: now.Add(ttl)}
	u.mu.Unlock()
	return addrs, err
}
