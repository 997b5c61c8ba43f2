package httpproxy

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkKeepAliveGET measures an allowed keep-alive GET of a 1 KiB page
// through the proxy (client, proxy and origin in one process).
func BenchmarkKeepAliveGET(b *testing.B) {
	e := newEnv(b, envOpts{perClient: 100}) // many clients from one address (up to connections)
	u := e.originURL("site.test", "/small")
	b.ReportAllocs()
	b.ResetTimer() // the env's setup is not the request path
	b.SetParallelism(8)
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
			if resp.StatusCode != http.StatusOK {
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
	b.ReportAllocs()
	b.ResetTimer() // the env's setup is not the request path
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
		}
	})
}

// BenchmarkSearchGET measures an allowed keep-alive search through the
// proxy: term extraction, watchlist score, safe-search parameter.
func BenchmarkSearchGET(b *testing.B) {
	e := newEnv(b, envOpts{perClient: 100})
	e.res.names["www.bing.com"] = e.res.names["site.test"]
	e.res.names["strict.bing.com"] = e.res.names["site.test"]
	u := e.originURL("www.bing.com", "/search?q=photosynthesis+for+year+7")
	b.ReportAllocs()
	b.ResetTimer() // the env's setup is not the request path
	b.SetParallelism(8)
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
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
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
