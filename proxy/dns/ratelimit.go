package dns

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// rateLimiter is a token bucket per client address, sized for a school
// behind NAT (a classroom can share one address). Over-limit clients are
// logged once per client per minute, never per query.
type rateLimiter struct {
	qps, burst float64
	seed       maphash.Seed
	shards     [64]rlShard
	log        *slog.Logger
}

type rlShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

type bucket struct {
	tokens  float64
	last    int64 // unix nanos
	logged  int64 // unix nanos of the last "rate limited" log line
	limited uint64
}

func newRateLimiter(qps, burst int, log *slog.Logger) *rateLimiter {
	if qps <= 0 {
		return nil
	}
	if burst < qps {
		burst = qps
	}
	rl := &rateLimiter{qps: float64(qps), burst: float64(burst), seed: maphash.MakeSeed(), log: log}
	for i := range rl.shards {
		rl.shards[i].buckets = map[netip.Addr]*bucket{}
	}
	return rl
}

// allow takes a token for ip at now.
func (rl *rateLimiter) allow(ip netip.Addr, now time.Time) bool {
	if rl == nil {
		return true
	}
	b16 := ip.As16()
	s := &rl.shards[maphash.Bytes(rl.seed, b16[:])%uint64(len(rl.shards))]
	n := now.UnixNano()
	s.mu.Lock()
	b := s.buckets[ip]
	if b == nil {
		if len(s.buckets) > 4096 {
			rl.sweepLocked(s, n)
		}
		b = &bucket{tokens: rl.burst, last: n}
		s.buckets[ip] = b
	}
	b.tokens += float64(n-b.last) / 1e9 * rl.qps
	if b.tokens > rl.burst {
		b.tokens = rl.burst
	}
	b.last = n
	if b.tokens >= 1 {
		b.tokens--
		s.mu.Unlock()
		return true
	}
	b.limited++
	logIt := n-b.logged >= int64(time.Minute)
	var count uint64
	if logIt {
		b.logged, count, b.limited = n, b.limited, 0
	}
	s.mu.Unlock()
	if logIt {
		rl.log.Warn("client rate limited", "client", ip, "qps", rl.qps, "burst", rl.burst, "refused_since_last_log", count)
	}
	return false
}

// sweepLocked forgets buckets that have been full for a while.
func (rl *rateLimiter) sweepLocked(s *rlShard, now int64) {
	full := int64(rl.burst/rl.qps*1e9) + int64(time.Minute)
	for k, b := range s.buckets {
		if now-b.last > full {
			delete(s.buckets, k)
		}
	}
}
