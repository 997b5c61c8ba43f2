package httpproxy

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	// The request counters every request touches, resolved once.
	httpAllow, httpBlock, httpRewrite, connectAllow, connectBlock prometheus.Counter

	requests       *prometheus.CounterVec
	refused        *prometheus.CounterVec
	upstreamErrors prometheus.Counter
	reports        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, limits *connLimits) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_proxy_requests_total", Help: "Proxy requests by kind (http, connect) and action.",
		}, []string{"kind", "action"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_proxy_refused_total", Help: "Connections or requests refused: acl (client not allowed), cap (connection caps), auth (bad login), auth-busy (too many logins being checked), auth-limit (too many wrong logins from the address or for the user name), internal-address (a site on the school's own network or the Gatehouse machine), loop (Gatehouse's own HTTPS connection redirected back to its transparent listener).",
		}, []string{"reason"}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_proxy_upstream_errors_total", Help: "Requests whose site could not be reached or verified.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_proxy_mistake_reports_total", Help: "\"Report a mistake\" forms accepted.",
		}),
	}
	m.httpAllow = m.requests.WithLabelValues("http", "allow")
	m.httpBlock = m.requests.WithLabelValues("http", "block")
	m.httpRewrite = m.requests.WithLabelValues("http", "rewrite")
	m.connectAllow = m.requests.WithLabelValues("connect", "allow")
	m.connectBlock = m.requests.WithLabelValues("connect", "block")
	if reg != nil {
		reg.MustRegister(m.requests, m.refused, m.upstreamErrors, m.reports,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gatehouse_proxy_connections", Help: "Open client connections (tunnels included).",
			}, func() float64 { return float64(limits.total.Load()) }))
	}
	return m
}
