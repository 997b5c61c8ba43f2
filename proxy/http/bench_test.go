package httpproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
)

// BenchmarkKeepAliveGET measures an allowed keep-alive GET of a 1 KiB page
// through the proxy (client, proxy and origin in one process).
func BenchmarkKeepAliveGET(b *testing.B) {
	e := newEnv(b, envOpts{perClient: 100}) // many clients from one address (up to connections)
	u := e.originURL("site.test", "/small")
	benchGets(b, e, u, 8, http.StatusOK)
}

// benchGets GETs u through the proxy from parallelism × GOMAXPROCS
// keep-alive clients; every answer must be want (0: any).
func benchGets(b *testing.B, e *env, u string, parallelism, want int) {
	b.ReportAllocs()
	b.ResetTimer() // the env's setup is not the request path
	b.SetParallelism(parallelism)
	b.RunParallel(func(pb *testing.PB) {
		c := e.client("", "", "")
		for pb.Next() {
			resp, err := c.Get(u)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if want != 0 && resp.StatusCode != want {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkBlockedGET measures a blocked GET: decision and block page, no
// upstream work.
func BenchmarkBlockedGET(b *testing.B) {
	e := newEnv(b, envOpts{perClient: 100}) // many clients from one address (up to connections)
	u := e.originURL("adult.test", "/x")
	benchGets(b, e, u, 1, 0)
}

// BenchmarkDecryptedGET measures keep-alive GETs of a 1 KiB page over
// HTTPS, one after another on one client connection: through the proxy
// with decrypt: all (client ⇄ proxy with the school's leaf, proxy ⇄
// origin over verified TLS, HTTP/2 upstream) and, as the baseline, a
// direct HTTPS client to the same origin. Client, proxy and origin share
// the process, so allocs/op count all three: the proxy's own are the
// difference between proxy-* and direct-*.
func BenchmarkDecryptedGET(b *testing.B) {
	ie := newInspectEnv(b, "")
	ie.setDecrypt(config.DecryptAll)
	u := ie.url("news.test", "/small")
	origin := ie.origin.Listener.Addr().String()
	for _, bc := range []struct {
		name string
		c    func() *http.Client
	}{
		{"proxy-h2", func() *http.Client { return ie.httpsClient(ie.school, true) }},
		{"proxy-h1", func() *http.Client { return ie.httpsClient(ie.school, false) }},
		{"direct-h2", func() *http.Client { return directClient(b, ie, origin, true) }},
		{"direct-h1", func() *http.Client { return directClient(b, ie, origin, false) }},
	} {
		c := bc.c() // one client (one keep-alive connection) for every run
		b.Run(bc.name, func(b *testing.B) {
			get := func() {
				resp, err := c.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || n != 1024 {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
			get() // connect, handshake, mint
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				get()
			}
		})
	}
}

// BenchmarkSearchGET measures an allowed keep-alive search through the
// proxy: term extraction, watchlist score, safe-search parameter.
func BenchmarkSearchGET(b *testing.B) {
	e := newEnv(b, envOpts{perClient: 100})
	e.res.names["www.bing.com"] = e.res.names["site.test"]
	e.res.names["strict.bing.com"] = e.res.names["site.test"]
	u := e.originURL("www.bing.com", "/search?q=photosynthesis+for+year+7")
	benchGets(b, e, u, 8, http.StatusOK)
}

// BenchmarkSearchHook measures what plain() adds per request for search
// terms: for a host that is no search engine (the table lookup only) and
// for a search (term, score, safe-search parameter).
func BenchmarkSearchHook(b *testing.B) {
	e := newEnv(b, envOpts{})
	eng := e.eng.Load()
	for _, c := range []struct{ name, url string }{
		{"other-host", "http://static.assets.example-cdn.co.uk/app/main.js?v=3"},
		{"search", "http://www.bing.com/search?q=photosynthesis+for+year+7&form=QBLH"},
	} {
		b.Run(c.name, func(b *testing.B) {
			r, _ := http.NewRequest("GET", c.url, nil)
			raw := r.URL.RawQuery
			info := &reqInfo{host: r.URL.Hostname(), eng: eng}
			info.dec.Group = "students"
			b.ReportAllocs()
			for b.Loop() {
				info.search = nil
				r.URL.RawQuery = raw
				e.s.searchRequest(r, info)
				e.s.flagSearch(info, "http")
				e.s.safeSearch(r, info)
			}
		})
	}
}

// directClient reaches the origin without the proxy, trusting its CA.
func directClient(b *testing.B, ie *inspectEnv, origin string, h2 bool) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, n, _ string) (net.Conn, error) { return d.DialContext(ctx, n, origin) },
		TLSClientConfig:   &tls.Config{RootCAs: ie.originPool},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// BenchmarkReadClientHello is what a tunnel to port 443 spends reading its
// client's first flight (the whole ClientHello: the non-TLS rule and its
// server name, decided when it is not the CONNECT's host), on what
// crypto/tls sends; a TLS handshake costs the client and the site about a
// millisecond of CPU.
func BenchmarkReadClientHello(b *testing.B) {
	raw := goHello(b, "www.example.com")
	b.ReportAllocs()
	for b.Loop() {
		if _, h, err := readClientHello(bytes.NewReader(raw)); err != nil || h.sni != "www.example.com" {
			b.Fatal(h.sni, err)
		}
	}
}
