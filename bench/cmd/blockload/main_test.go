package main

import (
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunCountsOnly403s runs the load against a loopback stand-in for a
// proxy: 403s count, any other answer is an error, and keep-alive
// connections are reused (one per client) unless the proxy closes them.
func TestRunCountsOnly403s(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Host, "blocked."):
			if r.URL.Path == "/close" {
				w.Header().Set("Connection", "close")
			}
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("blocked page"))
		default:
			_, _ = w.Write([]byte("ok"))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	pu, _ := url.Parse(srv.URL)
	cfg := config{proxy: pu, clients: 3, duration: time.Minute, perConn: 20, status: http.StatusForbidden}

	cfg.target = "http://blocked.test/x"
	r := run(cfg)
	if r.blocked != 60 || r.errors != 0 || r.dials != 3 || conns.Load() != 3 || r.bodySize != int64(len("blocked page")) {
		t.Errorf("blocked: %d blocked, %d errors, %d dials (server saw %d), body %d", r.blocked, r.errors, r.dials, conns.Load(), r.bodySize)
	}
	if r.pct(0.5) <= 0 || r.pct(0.99) < r.pct(0.5) {
		t.Errorf("percentiles p50 %.3f p99 %.3f", r.pct(0.5), r.pct(0.99))
	}

	cfg.target = "http://allowed.test/x"
	if r := run(cfg); r.blocked != 0 || r.errors != 60 {
		t.Errorf("allowed: %d blocked, %d errors; want 0 and 60", r.blocked, r.errors)
	}

	cfg.target = "http://blocked.test/close"
	if r := run(cfg); r.blocked != 60 || r.dials != 60 {
		t.Errorf("closing proxy: %d blocked, %d dials; want 60 and 60", r.blocked, r.dials)
	}
}

// TestRunHTTPSThroughConnect drives an https URL through a loopback CONNECT
// proxy: with the origin's CA trusted, 200s count and each client keeps its
// tunnel; with -newconn every request opens its own; without the CA every
// request fails certificate verification.
func TestRunHTTPSThroughConnect(t *testing.T) {
	var closeAsked atomic.Int32
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Close {
			closeAsked.Add(1) // a browser dropping a connection does not ask
		}
		_, _ = w.Write([]byte("page"))
	}))
	defer origin.Close()
	var tunnels atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != origin.Listener.Addr().String() {
			http.Error(w, "only CONNECT to the origin", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		tunnels.Add(1)
		w.WriteHeader(http.StatusOK)
		c, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			up.Close()
			return
		}
		go func() { _, _ = io.Copy(up, buf); up.Close() }()
		_, _ = io.Copy(c, up)
		c.Close()
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	roots := x509.NewCertPool()
	roots.AddCert(origin.Certificate())
	cfg := config{proxy: pu, target: origin.URL + "/", clients: 2, duration: time.Minute, perConn: 5,
		status: http.StatusOK, roots: roots}

	if r := run(cfg); r.blocked != 10 || r.errors != 0 || r.dials != 2 || tunnels.Load() != 2 || r.bodySize != 4 {
		t.Errorf("keep-alive: %d counted, %d errors, %d dials, %d tunnels, body %d", r.blocked, r.errors, r.dials, tunnels.Load(), r.bodySize)
	}
	tunnels.Store(0)
	cfg.newConn = true
	if r := run(cfg); r.blocked != 10 || r.errors != 0 || r.dials != 10 || tunnels.Load() != 10 {
		t.Errorf("new connections: %d counted, %d errors, %d dials, %d tunnels", r.blocked, r.errors, r.dials, tunnels.Load())
	}
	if n := closeAsked.Load(); n != 0 {
		t.Errorf("%d requests carried Connection: close; want none", n)
	}
	cfg.roots = nil
	if r := run(cfg); r.blocked != 0 || r.errors != 10 {
		t.Errorf("untrusted origin: %d counted, %d errors; want 0 and 10", r.blocked, r.errors)
	}
}

// TestRunFixedRate: with -rate each client keeps its own schedule, and a
// request counts from when it was due: when the proxy holds the first
// answer 200 ms, the requests that fell due meanwhile are charged that
// wait (in the closed loop only the held one would be slow). The schedule
// also bounds how many are sent.
func TestRunFixedRate(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			time.Sleep(200 * time.Millisecond)
		}
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	pu, _ := url.Parse(srv.URL)
	// One client, every 20 ms for 1 s: at most 50 requests.
	r := run(config{proxy: pu, target: "http://blocked.test/", clients: 1, duration: time.Second,
		status: http.StatusForbidden, rate: 50})
	if r.blocked < 10 || r.blocked > 50 || r.errors != 0 {
		t.Fatalf("%d blocked, %d errors; want 10-50 and none", r.blocked, r.errors)
	}
	// Due at 0, 20, ..., 100 ms and all answered after 200 ms: at least
	// six of at least 100 ms.
	slow := 0
	for _, d := range r.lat {
		if d >= 100*time.Millisecond {
			slow++
		}
	}
	if slow < 6 {
		t.Errorf("%d latencies of 100 ms or more, want at least 6 (the requests due while the first was held): %v", slow, r.lat)
	}
}
