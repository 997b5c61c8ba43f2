package dns

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	queries       *prometheus.CounterVec // qtype, result, group
	cacheHits     prometheus.Counter
	cacheMisses   prometheus.Counter
	cacheStale    prometheus.Counter
	prefetches    prometheus.Counter
	upstreamDur   *prometheus.HistogramVec
	upstreamErr   *prometheus.CounterVec
	eventsQueued  prometheus.Counter
	eventsDropped prometheus.Counter
	probes        *prometheus.CounterVec // kind
	rateLimited   prometheus.Counter
	upstreamBusy  prometheus.Counter
	panics        prometheus.Counter
	remoteRefused *prometheus.CounterVec
	udpWait       prometheus.Histogram // kernel receipt of a datagram → a worker read it
	udpAnswer     prometheus.Histogram // read → answer written (not held for its event)
	udpParked     prometheus.Gauge     // spare UDP readers parked (udp.go)
	udpStarted    prometheus.Counter   // UDP workers started (udp.go: spawn)
	held          prometheus.Histogram // a block answer held for its event's commit: how long

	// The queries counters by label values, so that counting a query is a
	// map lookup without the vector's label hashing and lock. Copied on
	// write: new label combinations are rare.
	queryMu  sync.Mutex
	queryCtr atomic.Pointer[map[queryLabels]prometheus.Counter]
}

// latencyBuckets are the UDP latency histograms' buckets, 25 µs to 100 ms.
var latencyBuckets = []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3}

type queryLabels struct{ qtype, result, group string }

// query returns the gatehouse_dns_queries_total counter for the labels.
func (m *metrics) query(qtype, result, group string) prometheus.Counter {
	k := queryLabels{qtype, result, group}
	if p := m.queryCtr.Load(); p != nil {
		if c, ok := (*p)[k]; ok {
			return c
		}
	}
	c := m.queries.WithLabelValues(qtype, result, group)
	m.queryMu.Lock()
	defer m.queryMu.Unlock()
	old := m.queryCtr.Load()
	if old != nil && len(*old) >= 4096 {
		return c // groups renamed over and over: stop remembering
	}
	next := make(map[queryLabels]prometheus.Counter, 16)
	if old != nil {
		for k2, v := range *old {
			next[k2] = v
		}
	}
	next[k] = c
	m.queryCtr.Store(&next)
	return c
}

func newMetrics(reg prometheus.Registerer, cacheLen, pendingLen func() int) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_dns_queries_total",
			Help: "DNS queries by type, result and group."}, []string{"qtype", "result", "group"}),
		cacheHits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_cache_hits_total", Help: "Answers served from the cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_cache_misses_total", Help: "Queries the cache could not answer."}),
		cacheStale:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_cache_stale_served_total", Help: "Expired answers served because upstreams failed (RFC 8767)."}),
		prefetches:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_cache_prefetches_total", Help: "Popular names refreshed before expiry."}),
		udpWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_dns_udp_wait_seconds",
			Help:    "How long a UDP query waited in the socket before a worker read it (from the kernel's receive time).",
			Buckets: latencyBuckets}),
		udpAnswer: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_dns_udp_answer_seconds",
			Help:    "How long a UDP query took from being read to its answer being written (upstream waits included; answers held for their event's commit not).",
			Buckets: latencyBuckets}),
		udpParked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "gatehouse_dns_udp_readers_parked",
			Help: "Spare UDP reader threads parked because queries were queueing in the socket (a saturated resolver answers more with fewer)."}),
		udpStarted: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_udp_workers_started_total",
			Help: "UDP workers started: at start, and to read in the place of one waiting on an upstream when no retired worker was free."}),
		held: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gatehouse_dns_held_seconds",
			Help:    "How long block answers waited for their event to be committed to the breach store (only those that waited; a slow disk shows here).",
			Buckets: latencyBuckets}),
		upstreamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gatehouse_dns_upstream_duration_seconds",
			Help: "Upstream exchange latency.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"upstream"}),
		upstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_dns_upstream_errors_total",
			Help: "Failed upstream exchanges."}, []string{"upstream"}),
		eventsQueued:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_events_queued_total", Help: "Events queued for the event sink."}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_events_dropped_total", Help: "Low-severity events dropped because the queue was full."}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_dns_probes_total",
			Help: "Automatic probes answered (DoH canary, DDR), never reported as breaches."}, []string{"kind"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_rate_limited_total", Help: "Queries refused by the per-client rate limit."}),
		upstreamBusy: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_upstream_busy_total",
			Help: "Cache misses answered without waiting (stale or SERVFAIL) because too many queries already waited on upstreams."}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "gatehouse_dns_panics_total",
			Help: "Queries (or prefetches) whose answering panicked; each cost only itself."}),
		remoteRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "gatehouse_dns_remote_refused_total",
			Help: "Off-site DoH/DoT requests refused, by listener and reason (token: unknown, revoked or malformed; ratelimited; bad: not a DNS request; group: the device's group is not in the config)."}, []string{"listener", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.udpWait, m.udpAnswer, m.udpParked, m.udpStarted, m.held, m.queries, m.cacheHits, m.cacheMisses, m.cacheStale, m.prefetches, m.upstreamDur, m.upstreamErr,
			m.eventsQueued, m.eventsDropped, m.probes, m.rateLimited, m.upstreamBusy, m.panics, m.remoteRefused,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_dns_cache_entries", Help: "Answers in the cache."},
				func() float64 { return float64(cacheLen()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gatehouse_dns_events_pending",
				Help: "Blocked names (per client) within their collapse window, whose repeats are counted in memory before they are stored."},
				func() float64 { return float64(pendingLen()) }))
	}
	return m
}
