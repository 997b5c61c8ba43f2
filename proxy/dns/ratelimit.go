package dns

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/gatehouse-filter/gatehouse/internal/maproom"
)

// rateLimiter is a token bucket per client address, sized for a school
// behind NAT (a classroom can share one address). Over-limit clients are
// logged once per client per minute, never per query.
//
// It remembers at most rlBuckets addresses (a client can make up many,
// e.g. IPv6 temporary addresses): a shard that is full forgets the least
// recently seen of a few sampled buckets to make room. A forgotten client
// starts again with a full bucket, as a new one does, so a flood of new
// addresses can at worst let a forgotten client burst again; it never
// refuses a client within its rate.
type rateLimiter struct {
	qps, burst float64
	seed       maphash.Seed
	shards     [64]rlShard
	log        *slog.Logger
}

// rlShardMax bounds the buckets of a shard: rlBuckets = 64 × 1024 =
// 65,536 addresses in all, ~6 MiB.
const (
	rlShardMax = 1024
	rlBuckets  = rlShardMax * 64
	rlSample   = 8
)

type rlShard struct {
	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	peak    int   // most buckets since the map was last rebuilt (maproom.Shrink)
	swept   int64 // unix nanos of the last sweep (sweepLocked)
}

// rlSweepEvery is how often a shard in use forgets the buckets that have
// filled up again (sweepLocked).
const rlSweepEvery = int64(time.Minute)

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
	if n-s.swept >= rlSweepEvery {
		rl.sweepLocked(s, n)
	}
	b := s.buckets[ip]
	if b == nil {
		if len(s.buckets) >= rlShardMax {
			s.evictLocked()
		}
		b = &bucket{tokens: rl.burst, last: n}
		s.buckets[ip] = b
		s.peak = max(s.peak, len(s.buckets))
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

// sweepLocked forgets the buckets that have filled up again and have no
// "rate limited" log line pending or sent within the minute: such a client
// is treated as a new one would be, so forgetting it changes nothing but
// the memory (after a flood of made-up addresses, the shard's map is then
// rebuilt smaller). Once a minute a shard, at the cost of a pass over its
// at most rlShardMax buckets.
func (rl *rateLimiter) sweepLocked(s *rlShard, n int64) {
	s.swept = n
	for k, b := range s.buckets {
		if b.tokens+float64(n-b.last)/1e9*rl.qps >= rl.burst && b.limited == 0 && n-b.logged >= int64(time.Minute) {
			delete(s.buckets, k)
		}
	}
	s.buckets = maproom.Shrink(s.buckets, &s.peak)
}

// evictLocked forgets the least recently seen of rlSample buckets (map
// iteration starts at a random place, so they are a random sample).
func (s *rlShard) evictLocked() {
	var oldest netip.Addr
	var last int64
	i := 0
	for k, b := range s.buckets {
		if i == 0 || b.last < last {
			oldest, last = k, b.last
		}
		if i++; i == rlSample {
			break
		}
	}
	delete(s.buckets, oldest)
}

// len is the number of buckets held.
func (rl *rateLimiter) len() int {
	n := 0
	for i := range rl.shards {
		s := &rl.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}
