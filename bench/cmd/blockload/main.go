// Command blockload drives a forward proxy with requests for a blocked
// URL: C clients, each on its own keep-alive connection, ask for the URL
// again and again for a while. Only 403 answers count; anything else
// (another status, a failed request) is an error. It prints one CSV line
// in the shape of the shared harness's load tool:
//
//	mode,target,rps,p50_ms,p99_ms,errors,body_bytes
//
// plus, on stderr, how many new connections the clients had to open
// (a proxy that closes the connection after each block answer makes its
// clients pay a new TCP handshake per request).
//
// By default each client asks again as soon as it has its answer (a closed
// loop: a faster proxy is asked more, so its clients, which share the
// machine, are busier too). -rate R fixes the offered load instead: each
// client sends on its own schedule, R/C requests a second, and a request's
// latency counts from when it was due, not when it was sent, so a proxy
// that falls behind is charged for the wait (no coordinated omission).
// Comparing proxies at one rate they all sustain compares their latency
// under the same load.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// config is one run.
type config struct {
	proxy    *url.URL
	target   string // the blocked URL
	clients  int
	duration time.Duration
	perConn  int            // stop each client after this many requests (0: run for duration)
	status   int            // the answer that counts (403: blocked)
	newConn  bool           // a new connection (and CONNECT + TLS for https) per request
	roots    *x509.CertPool // trusted for https URLs (nil: the system's)
	accept   string         // the requests' Accept header ("": none, as a tool's retry loop sends)
	rate     float64        // requests a second over all clients (0: closed loop)
}

// result is what a run measured.
type result struct {
	blocked  int             // 403 answers
	errors   int             // any other answer or failure
	dials    int64           // connections opened
	lat      []time.Duration // of the 403 answers, sorted
	bodySize int64           // size of the last 403 body
	elapsed  time.Duration
}

func (r *result) pct(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	return float64(r.lat[int(p*float64(len(r.lat)-1))].Microseconds()) / 1000
}

func run(cfg config) result {
	var dials atomic.Int64
	var bodySize atomic.Int64
	d := &net.Dialer{Timeout: 5 * time.Second}
	var mu sync.Mutex
	var res result
	deadline := time.Now().Add(cfg.duration)
	start := time.Now()
	var every time.Duration // one client's interval at a fixed rate
	if cfg.rate > 0 {
		every = time.Duration(float64(cfg.clients) / cfg.rate * float64(time.Second))
	}
	var wg sync.WaitGroup
	for i := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One transport per client: its own keep-alive connection, as a
			// browser tab or a bypass tool retrying would have.
			tr := &http.Transport{
				Proxy: http.ProxyURL(cfg.proxy),
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					return d.DialContext(ctx, network, addr)
				},
				MaxIdleConnsPerHost: 1,
				DisableCompression:  true,
				TLSClientConfig:     &tls.Config{RootCAs: cfg.roots},
			}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			var mine []time.Duration
			bad := 0
			// The clients' schedules are spread over one interval.
			due := start.Add(every * time.Duration(i) / time.Duration(cfg.clients))
			for n := 0; (cfg.perConn == 0 || n < cfg.perConn) && time.Now().Before(deadline) && (every == 0 || due.Before(deadline)); n++ {
				t := time.Now()
				if every > 0 {
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
					t = due
					due = due.Add(every)
				}
				err := get(cl, cfg.target, cfg.accept, cfg.status, &bodySize)
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
				if cfg.newConn {
					// Closed by the client after the answer, as a browser
					// drops a connection: no "Connection: close" in the
					// request, which a proxy could pass on upstream.
					tr.CloseIdleConnections()
				}
			}
			mu.Lock()
			res.lat = append(res.lat, mine...)
			res.errors += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if cfg.perConn == 0 {
		res.elapsed = cfg.duration
	}
	slices.Sort(res.lat)
	res.blocked = len(res.lat)
	res.dials = dials.Load()
	res.bodySize = bodySize.Load()
	return res
}

var errNotBlocked = errors.New("not the expected status")

// get asks for u once; only a want answer whose body arrived whole is a success.
func get(cl *http.Client, u, accept string, want int, size *atomic.Int64) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%w: %d", errNotBlocked, resp.StatusCode)
	}
	size.Store(n)
	return nil
}

func main() {
	proxy := flag.String("proxy", "http://127.0.0.1:3128", "proxy URL")
	name := flag.String("name", "proxy", "label for the CSV line")
	target := flag.String("url", "", "a URL the proxy blocks (required)")
	conc := flag.Int("c", 50, "concurrent clients, one keep-alive connection each")
	dur := flag.Duration("duration", 15*time.Second, "how long to run")
	perConn := flag.Int("n", 0, "stop each client after this many requests (0: run for -duration)")
	status := flag.Int("status", http.StatusForbidden, "the answer that counts (200 for a page the proxy passes)")
	newConn := flag.Bool("newconn", false, "open a new connection for every request (no keep-alive)")
	caFile := flag.String("cafile", "", "PEM CAs trusted for https URLs (e.g. the proxy's decrypting CA) instead of the system's")
	mode := flag.String("mode", "blocked-keepalive", "label for the CSV line's mode field")
	accept := flag.String("accept", "", `the requests' Accept header: "" (none, as a tool retrying), "page" (Chromium's for a page load) or any value`)
	rate := flag.Float64("rate", 0, "requests a second over all clients, each on its own schedule (0: each asks again at once)")
	flag.Parse()
	var roots *x509.CertPool
	if *caFile != "" {
		b, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "blockload:", err)
			os.Exit(2)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(b) {
			fmt.Fprintf(os.Stderr, "blockload: %s: no PEM certificate\n", *caFile)
			os.Exit(2)
		}
	}
	pu, err := url.Parse(*proxy)
	if err != nil || pu.Host == "" || *target == "" || *conc < 1 || *rate < 0 {
		fmt.Fprintln(os.Stderr, "blockload: need -proxy http://host:port, -url, -c ≥ 1 and -rate ≥ 0")
		os.Exit(2)
	}
	r := run(config{proxy: pu, target: *target, clients: *conc, duration: *dur, perConn: *perConn,
		status: *status, newConn: *newConn, roots: roots, accept: acceptHeader(*accept), rate: *rate})
	fmt.Fprintf(os.Stderr, "blockload %s: %d counted (status %d), %d errors, %d connections opened, %d-byte answer\n",
		*name, r.blocked, *status, r.errors, r.dials, r.bodySize)
	fmt.Printf("%s,%s,%.0f,%.2f,%.2f,%d,%d\n", *mode, *name, float64(r.blocked)/r.elapsed.Seconds(),
		r.pct(0.5), r.pct(0.99), r.errors, r.bodySize)
}

// acceptHeader turns -accept into the header's value.
func acceptHeader(v string) string {
	if v == "page" {
		return "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
	}
	return v
}
