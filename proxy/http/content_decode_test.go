package httpproxy

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/config"
)

// compress applies the encodings in order (as a site lists them in
// Content-Encoding). "deflate" is zlib-wrapped, "deflate-raw" raw deflate
// (both sent as deflate).
func compress(t testing.TB, body []byte, encs ...string) []byte {
	t.Helper()
	for _, enc := range encs {
		var b bytes.Buffer
		var w io.WriteCloser
		var err error
		switch enc {
		case "gzip", "x-gzip":
			w = gzip.NewWriter(&b)
		case "deflate":
			w = zlib.NewWriter(&b)
		case "deflate-raw":
			w, err = flate.NewWriter(&b, flate.DefaultCompression)
		case "br":
			w = brotli.NewWriterLevel(&b, 5)
		case "zstd":
			w, err = zstd.NewWriter(&b)
		default:
			t.Fatalf("no encoder for %q", enc)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		body = b.Bytes()
	}
	return body
}

// encHeader is the Content-Encoding a site sends for encs.
func encHeader(encs []string) string {
	return strings.ReplaceAll(strings.Join(encs, ", "), "deflate-raw", "deflate")
}

// serveRaw serves body as it is under path with the given headers, in two
// flushed pieces (a Content-Type of nil means none at all).
func (ce *contentEnv) serveRaw(path string, h http.Header, body []byte) {
	ce.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range h {
			w.Header()[k] = vs
		}
		if _, ok := h["Content-Type"]; !ok {
			w.Header()["Content-Type"] = nil // no sniffing by the origin's server
		}
		half := len(body) / 2
		_, _ = w.Write(body[:half])
		w.(http.Flusher).Flush()
		_, _ = w.Write(body[half:])
	})
}

// fetch GETs u as a browser would, accepting every encoding (the proxy
// strips that for a page), and reads the answer as it came: the client
// does not decode it.
func fetch(t *testing.T, c *http.Client, method, u string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body) // a broken stream ends the answer: what came is checked
	return resp, b
}

func (ce *contentEnv) unscored() float64 {
	return testutil.ToFloat64(ce.s.metrics.requests.WithLabelValues("http", "content-unscored"))
}

// TestContentEncodings: a site that ignores the stripped Accept-Encoding
// and answers gzip, deflate (zlib-wrapped or raw), br, zstd or two of them
// stacked (in one header or two) has its page decoded, scored and sent
// without Content-Encoding: over the block threshold it gets the notice
// and a block event, over the report threshold it passes whole and is
// flagged.
func TestContentEncodings(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	bad := []byte(htmlHead + "<p>" + harmful7 + "</p><p>THE TAIL</p></div></body></html>")
	flag := []byte(htmlHead + "<p>" + harmful4 + "</p></div></body></html>")
	before := ce.unscored()
	events := 0
	for _, tc := range []struct {
		name  string
		encs  []string
		lines bool // one Content-Encoding line per encoding
	}{
		{"gzip", []string{"gzip"}, false},
		{"x-gzip", []string{"x-gzip"}, false},
		{"zlib", []string{"deflate"}, false},
		{"raw-deflate", []string{"deflate-raw"}, false},
		{"br", []string{"br"}, false},
		{"zstd", []string{"zstd"}, false},
		{"gzip-br", []string{"gzip", "br"}, false},
		{"br-zstd", []string{"br", "zstd"}, false},
		{"deflate-gzip-lines", []string{"deflate", "gzip"}, true},
	} {
		h := http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Content-Encoding": {encHeader(tc.encs)}}
		if tc.lines {
			h["Content-Encoding"] = tc.encs
		}
		ce.serveRaw("/bad/"+tc.name, h, compress(t, bad, tc.encs...))
		ce.serveRaw("/flag/"+tc.name, h, compress(t, flag, tc.encs...))

		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/bad/"+tc.name))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" ||
			!strings.Contains(string(body), "The rest of this page is blocked") || strings.Contains(string(body), "THE TAIL") {
			t.Errorf("%s: page over the block threshold: %d %v %q", tc.name, resp.StatusCode, resp.Header, body)
		}
		evs := ce.contentEvents()
		if len(evs) != events+1 || evs[events].Action != "block" || evs[events].URL != ce.url("pages.test", "/bad/"+tc.name) ||
			!strings.Contains(string(body), evs[events].Ref) {
			t.Fatalf("%s: block event: %+v", tc.name, evs)
		}
		events++

		resp, body = fetch(t, c, http.MethodGet, ce.url("pages.test", "/flag/"+tc.name))
		if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, flag) {
			t.Errorf("%s: flagged page: %v %q", tc.name, resp.Header, body)
		}
		evs = ce.contentEvents()
		if len(evs) != events+1 || evs[events].Action != "flag" || evs[events].URL != ce.url("pages.test", "/flag/"+tc.name) {
			t.Fatalf("%s: flag event: %+v", tc.name, evs)
		}
		events++
	}
	if n := ce.unscored() - before; n != 0 {
		t.Errorf("%v answers counted unscored", n)
	}
}

// TestContentEncodingAsBrowsersRead: an answer is read as a browser reads
// it. Chromium shows the body as it came when Content-Encoding names an
// encoding it does not know ("compress", "utf-8", identity): so the check
// scores it as it came, and blocks it. Known encodings mixed with unknown
// ones ("gzip, identity": Chromium shows it raw, Firefox decodes the gzip)
// or more than two stacked (browsers undo them all) cannot be read the one
// way the browser will: nothing of such a page goes on, and it is counted
// unscored. A compressed image is left as it came.
func TestContentEncodingAsBrowsersRead(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	bad := []byte(htmlHead + "<p>" + harmful7 + "</p><p>THE TAIL</p></div></body></html>")
	events := 0
	for _, enc := range []string{"compress", "utf-8", "identity", "x-bzip2"} {
		path := "/raw/" + enc
		h := http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {enc}}
		if enc == "x-bzip2" {
			delete(h, "Content-Type") // sniffed as HTML
		}
		ce.serveRaw(path, h, bad)
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", path))
		if !strings.Contains(string(body), "The rest of this page is blocked") || strings.Contains(string(body), "THE TAIL") {
			t.Errorf("%s: the browser shows this page as it came, unchecked: %v %q", enc, resp.Header, body)
			continue
		}
		if evs := ce.contentEvents(); len(evs) != events+1 || evs[events].Action != "block" {
			t.Errorf("%s: events %+v", enc, evs)
		}
		events++
	}
	before := ce.unscored()
	three := compress(t, bad, "gzip", "br", "zstd")
	ce.serveRaw("/three", http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {"gzip, br, zstd"}}, three)
	ce.serveRaw("/gzip-identity", http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {"gzip, identity"}}, bad)
	ce.serveRaw("/identity-gzip", http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {"identity", "gzip"}}, compress(t, bad, "gzip"))
	ce.serveRaw("/br-compress", http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {"br, compress"}}, bad)
	for _, path := range []string{"/three", "/gzip-identity", "/identity-gzip", "/br-compress"} {
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", path))
		if len(body) != 0 || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: a page the check cannot read as the browser will went on: %v %q", path, resp.Header, body)
		}
	}
	if n := ce.unscored() - before; n != 4 {
		t.Errorf("%v answers counted unscored, want 4", n)
	}
	png := compress(t, append([]byte("\x89PNG\r\n\x1a\n"), bad...), "br")
	ce.serveRaw("/png", http.Header{"Content-Type": {"image/png"}, "Content-Encoding": {"br"}}, png)
	if resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/png")); !bytes.Equal(body, png) || resp.Header.Get("Content-Encoding") != "br" {
		t.Errorf("image changed: %v", resp.Header)
	}
	if evs := ce.contentEvents(); len(evs) != events {
		t.Errorf("events %+v", evs)
	}
}

// TestContentEncodingCorrupt: a stream that breaks (truncated, or not in
// its encoding at all) ends the answer where it breaks, as in a browser:
// what was decoded before went on (scored), nothing undecoded does.
func TestContentEncodingCorrupt(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	page := []byte(htmlHead + "<p>" + strings.Repeat("Rocks and minerals, lava and ash. ", 2000) + "</p><p>" + harmful7 + "</p></div></body></html>")
	for _, encs := range [][]string{{"br"}, {"zstd"}, {"gzip"}, {"deflate"}, {"deflate-raw"}, {"gzip", "br"}} {
		z := compress(t, page, encs...)
		name := strings.Join(encs, "-")
		ce.serveRaw("/cut/"+name, http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {encHeader(encs)}}, z[:len(z)/3])
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/cut/"+name))
		if resp.Header.Get("Content-Encoding") != "" || !bytes.HasPrefix(page, body) || len(body) == len(page) {
			t.Errorf("%s cut short: %v, %d bytes, a prefix of the page: %v", name, resp.Header, len(body), bytes.HasPrefix(page, body))
		}
	}
	// A page labelled br (or zstd, or deflate) that is no such thing: no
	// phrase of it goes on.
	bad := []byte(htmlHead + "<p>" + harmful7 + "</p></div></body></html>")
	for _, enc := range []string{"br", "zstd", "deflate", "gzip, br"} {
		path := "/plain/" + strings.ReplaceAll(enc, ", ", "-")
		ce.serveRaw(path, http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {enc}}, bad)
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", path))
		if resp.Header.Get("Content-Encoding") != "" || bytes.Contains(body, []byte("kill myself")) || bytes.Contains(body, []byte("volcanoes")) {
			t.Errorf("plain page labelled %s: %v %q", enc, resp.Header, body)
		}
	}
	if evs := ce.contentEvents(); len(evs) != 0 {
		t.Errorf("events %+v", evs)
	}
}

// TestContentDecompressionBomb: 1 GiB of zeros sent as about 200 KiB of
// br or 115 KiB of zstd is decoded as it streams: while the client reads
// the first 32 MiB of it, the process's heap does not grow by more than a
// bounded amount (decoders, buffers, windows), far from the 1 GiB.
func TestContentDecompressionBomb(t *testing.T) {
	ce := newContentEnv(t, "")
	zero := make([]byte, 1<<20)
	var brb bytes.Buffer
	bw := brotli.NewWriterOptions(&brb, brotli.WriterOptions{Quality: 1, LGWin: 24})
	for range 1024 {
		_, _ = bw.Write(zero)
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	frame := compress(t, zero, "zstd") // frames concatenate: 1,024 of them are 1 GiB
	zst := bytes.Repeat(frame, 1024)
	t.Logf("1 GiB of zeros: %d bytes of br, %d of zstd", brb.Len(), len(zst))
	for enc, body := range map[string][]byte{"br": brb.Bytes(), "zstd": zst} {
		ce.serveRaw("/bomb/"+enc, http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {enc}}, body)
	}
	for _, enc := range []string{"br", "zstd"} {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			var m runtime.MemStats
			for {
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
		c := ce.client("", "", "")
		c.Timeout = 2 * time.Minute // the race detector is slow; the read ends by itself
		req, _ := http.NewRequest(http.MethodGet, ce.url("pages.test", "/bomb/"+enc), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		const want = 32 << 20
		buf := make([]byte, 32<<10)
		var n int64
		for n < want {
			k, err := resp.Body.Read(buf)
			if bytes.ContainsFunc(buf[:k], func(r rune) bool { return r != 0 }) {
				t.Fatalf("%s: not zeros", enc)
			}
			n += int64(k)
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		close(stop)
		wg.Wait()
		if n < want || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("%s: read %d bytes, %v", enc, n, resp.Header)
		}
		if grew := int64(peak.Load()) - int64(base); grew > 200<<20 {
			t.Errorf("%s: the heap grew by %d MiB while the client read %d MiB of the bomb", enc, grew>>20, n>>20)
		} else {
			t.Logf("%s: the heap grew by at most %d MiB while the client read %d MiB", enc, grew>>20, n>>20)
		}
	}
}

// TestContentSniffed: an answer with no Content-Type, or one of the
// unknown types browsers sniff, is sniffed as they do (its first 512
// bytes, or fewer if it ends or flushes first): HTML and plain text are
// scored (blocked, flagged) and the header is left as it came; with
// X-Content-Type-Options: nosniff, when it sniffs as an image, or when
// it answers a script's, an image's or a fetch's request, it passes
// untouched. HEAD, 204 and 304 answers pass at once.
func TestContentSniffed(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	filler := "<p>" + strings.Repeat("Rocks and minerals. ", 40) + "</p>" // over 512 bytes before the phrases
	bad := htmlHead + filler + "<p>" + harmful7 + "</p><p>THE TAIL</p></div></body></html>"
	flag := htmlHead + filler + "<p>" + harmful4 + "</p></div></body></html>"
	ce.page("/bad", "", bad)
	ce.page("/flag", "", flag)
	ce.page("/unknown", "unknown/unknown", bad)
	ce.page("/app-unknown", "application/unknown; charset=utf-8", bad)
	ce.page("/any", "*/*", bad)
	ce.page("/notype", "html", bad)                                            // no type/subtype: none
	ce.mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) { // ends within 512 bytes, not flushed
		w.Header()["Content-Type"] = nil
		_, _ = io.WriteString(w, htmlHead+"<p>"+harmful7+"</p>THE TAIL")
	})
	ce.page("/pieces", "", strings.SplitAfter(bad, " ")...)               // flushed a word at a time
	ce.page("/text", "", harmful7+" THE TAIL "+strings.Repeat("x ", 300)) // plain text
	ce.serveRaw("/br", http.Header{"Content-Encoding": {"br"}}, compress(t, []byte(bad), "br"))
	blocked := []string{"/bad", "/unknown", "/app-unknown", "/any", "/notype", "/short", "/pieces", "/text", "/br"}
	for i, p := range blocked {
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", p))
		if resp.StatusCode != 200 || !(strings.Contains(string(body), "The rest of this page is blocked") || strings.Contains(string(body), "web filter blocked the rest")) ||
			strings.Contains(string(body), "THE TAIL") {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
		if p == "/bad" && (resp.Header.Get("Content-Type") != "" || !strings.Contains(string(body), `<div id="gatehouse-block"`)) {
			t.Errorf("%s: the HTML notice, the header as it came: %v", p, resp.Header)
		}
		evs := ce.contentEvents()
		if len(evs) != i+1 || evs[i].Action != "block" || evs[i].URL != ce.url("pages.test", p) {
			t.Fatalf("%s: events %+v", p, evs)
		}
	}
	if _, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/flag")); string(body) != flag {
		t.Errorf("flagged page changed: %q", body)
	}
	if evs := ce.contentEvents(); len(evs) != len(blocked)+1 || evs[len(blocked)].Action != "flag" {
		t.Fatalf("flag event: %+v", evs)
	}

	// Left alone: nosniff, an image, no body.
	ce.serveRaw("/nosniff", http.Header{"X-Content-Type-Options": {"nosniff"}}, []byte(bad))
	img := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bad...)
	ce.serveRaw("/png", http.Header{}, img)
	for p, want := range map[string][]byte{"/nosniff": []byte(bad), "/png": img} {
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", p))
		if !bytes.Equal(body, want) || resp.Header.Get("Content-Type") != "" {
			t.Errorf("%s changed: %v %q", p, resp.Header, body)
		}
	}
	// A script's or an image's request: a browser does not render the
	// answer as a page, so it is not sniffed (nor decoded).
	brBad := compress(t, []byte(bad), "br")
	for _, dest := range []string{"script", "image", "empty"} {
		for p, want := range map[string][]byte{"/bad": []byte(bad), "/br": brBad} {
			req, _ := http.NewRequest(http.MethodGet, ce.url("pages.test", p+"?"+dest), nil)
			req.Header.Set("Sec-Fetch-Dest", dest)
			req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Equal(body, want) {
				t.Errorf("%s for Sec-Fetch-Dest %s changed: %v %q", p, dest, resp.Header, body)
			}
		}
	}
	resp, body := fetch(t, c, http.MethodHead, ce.url("pages.test", "/bad"))
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	for _, code := range []int{http.StatusNoContent, http.StatusNotModified} {
		ce.mux.HandleFunc("/status/"+strconv.Itoa(code), func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			w.WriteHeader(code)
		})
		if resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/status/"+strconv.Itoa(code))); resp.StatusCode != code || len(body) != 0 {
			t.Errorf("%d: %d %q", code, resp.StatusCode, body)
		}
	}
	if evs := ce.contentEvents(); len(evs) != len(blocked)+1 {
		t.Errorf("events after the answers left alone: %+v", evs)
	}
}

// TestParseCodings: the Content-Encoding parser, in the order applied.
func TestParseCodings(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []coding
		ok   bool
	}{
		{nil, nil, true},
		{[]string{""}, nil, true},
		{[]string{"identity"}, nil, true},
		{[]string{"GZIP"}, []coding{codingGzip}, true},
		{[]string{"x-gzip"}, []coding{codingGzip}, true},
		{[]string{" br "}, []coding{codingBr}, true},
		{[]string{"gzip, br"}, []coding{codingGzip, codingBr}, true},
		{[]string{"deflate", "zstd"}, []coding{codingDeflate, codingZstd}, true},
		{[]string{"zstd,,", ""}, []coding{codingZstd}, true},
		{[]string{"compress"}, nil, true}, // shown as it came
		{[]string{"x-deflate", "utf-8"}, nil, true},
		{[]string{"gzip;q=1"}, nil, true},
		{[]string{"identity, zstd,,"}, nil, false},
		{[]string{"gzip, br, zstd"}, nil, false},
		{[]string{"gzip", "gzip", "gzip"}, nil, false},
		{[]string{"br, bogus"}, nil, false},
	} {
		cs, n, ok := parseCodings(tc.in)
		if ok != tc.ok || (ok && !slicesEqual(cs[:n], tc.want)) {
			t.Errorf("%q: %v %v, want %v %v", tc.in, cs[:n], ok, tc.want, tc.ok)
		}
	}
}

func slicesEqual(a, b []coding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzParseCodings: any header parses without panic, to at most
// maxCodings known codings.
func FuzzParseCodings(f *testing.F) {
	f.Add("gzip, br")
	f.Add("identity,,zstd , deflate")
	f.Fuzz(func(t *testing.T, v string) {
		cs, n, ok := parseCodings([]string{v})
		if n < 0 || n > maxCodings || (!ok && n != 0) {
			t.Fatalf("%q: %d codings, ok %v", v, n, ok)
		}
		for _, c := range cs[:n] {
			if c < codingGzip || c > codingZstd {
				t.Fatalf("%q: coding %d", v, c)
			}
		}
	})
}

// TestSniffable: which types a browser sniffs.
func TestSniffable(t *testing.T) {
	for ct, want := range map[string]bool{
		"": true, "unknown/unknown": true, "Application/Unknown": true, "*/*": true, " */* ; q": true, "html": true, "text/": true,
		"text/html": false, "image/png": false, "application/octet-stream": false, "text/plain; charset=utf-8": false,
	} {
		if got := sniffable(ct, http.Header{}); got != want {
			t.Errorf("%q: %v", ct, got)
		}
	}
	for v, want := range map[string]bool{"nosniff": false, "NoSniff ": false, "nosniff, other": false, "other": true} {
		if got := sniffable("", http.Header{"X-Content-Type-Options": {v}}); got != want {
			t.Errorf("X-Content-Type-Options %q: %v", v, got)
		}
	}
}

// BenchmarkContentDecode50K measures decoding a 50 KiB HTML page sent
// compressed and scanning its text, no network: the decoders come from
// their pools (compare BenchmarkContentScan50K, the scan alone).
func BenchmarkContentDecode50K(b *testing.B) {
	e := newEnv(b, envOpts{})
	wl := e.eng.Load().Watchlist()
	page := benchPage(50 << 10)
	req := httptest.NewRequest(http.MethodGet, "http://pages.test/", nil)
	for _, encs := range [][]string{{"gzip"}, {"deflate"}, {"br"}, {"zstd"}, {"gzip", "br"}} {
		z := compress(b, page, encs...)
		b.Run(strings.Join(encs, "-"), func(b *testing.B) {
			sc := wl.Get()
			defer wl.Put(sc)
			c := &contentWriter{r: req}
			buf := make([]byte, 32<<10)
			body := &bytes.Reader{}
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(z)
				resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/html"}, "Content-Encoding": {encHeader(encs)}}, Body: io.NopCloser(body)}
				if !c.decode(resp) {
					b.Fatal("not decoded")
				}
				var x textState
				sc.Begin()
				n := 0
				for {
					k, err := resp.Body.Read(buf)
					x.html(sc, buf[:k])
					n += k
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				sc.Result()
				resp.Body.Close()
				if n != len(page) {
					b.Fatalf("%d bytes", n)
				}
			}
		})
	}
}

// BenchmarkContentCheck50KEncoded measures keep-alive GETs of the 50 KiB
// page through the proxy by a client with the check on, from a site that
// answers compressed whatever it is asked for: the proxy decodes, scores
// and sends it on decoded.
func BenchmarkContentCheck50KEncoded(b *testing.B) {
	ce := newContentEnv(b, "")
	page := benchPage(50 << 10)
	c := ce.client("", "", "")
	for _, enc := range []string{"identity", "gzip", "br", "zstd"} {
		var body []byte
		h := http.Header{"Content-Type": {"text/html; charset=utf-8"}}
		if enc == "identity" {
			body = page
		} else {
			body = compress(b, page, enc)
			h["Content-Encoding"] = []string{enc}
		}
		ce.serveRaw("/"+enc, h, body)
		u := ce.url("pages.test", "/"+enc)
		b.Run(enc, func(b *testing.B) {
			b.SetBytes(int64(len(page)))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n != int64(len(page)) {
					b.Fatalf("%d bytes", n)
				}
			}
		})
	}
}

// TestContentDecryptedEncodedAndSniffed: on decrypted HTTPS (HTTP/2 and
// HTTP/1.1), a zstd page and an untyped page are scored and blocked, and
// an untyped one with nosniff passes untouched, still untyped (net/http's
// server would sniff a type for it); an untyped page answering a POST
// (relayed through goproxy on plain HTTP) is blocked too.
func TestContentDecryptedEncodedAndSniffed(t *testing.T) {
	ie := newInspectEnv(t, "")
	ie.setDecrypt(config.DecryptAll)
	mux := ie.origin.Config.Handler.(*http.ServeMux)
	bad := []byte(htmlHead + "<p>" + harmful7 + "</p><p>THE TAIL</p></body></html>")
	z := compress(t, bad, "zstd")
	mux.HandleFunc("/content/zstd", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "zstd")
		_, _ = w.Write(z)
	})
	mux.HandleFunc("/content/untyped", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		_, _ = w.Write(bad)
	})
	mux.HandleFunc("/content/nosniff", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(bad)
	})
	for _, h2 := range []bool{true, false} {
		// nosniff: passed untouched, and no type is added on the way.
		resp, body := get(t, ie.httpsClient(ie.school, h2), ie.url("news.test", "/content/nosniff?h2="+strconv.FormatBool(h2)))
		if body != string(bad) || resp.Header.Get("Content-Type") != "" {
			t.Errorf("nosniff, h2=%v: %v %q", h2, resp.Header, body)
		}
		for _, p := range []string{"/content/zstd", "/content/untyped"} {
			path := p + "?h2=" + strconv.FormatBool(h2)
			resp, body := get(t, ie.httpsClient(ie.school, h2), ie.url("news.test", path))
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" ||
				!strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "THE TAIL") {
				t.Errorf("%s: %d %v %q", path, resp.StatusCode, resp.Header, body)
			}
		}
	}

	ce := newContentEnv(t, "")
	ce.page("/post", "", string(bad))
	req, _ := http.NewRequest(http.MethodPost, ce.url("pages.test", "/post"), strings.NewReader("q=1"))
	resp, err := ce.client("", "", "").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "The rest of this page is blocked") || strings.Contains(string(body), "THE TAIL") {
		t.Errorf("POST: %q", body)
	}
}

// TestContentBigDecodersBounded: Brotli and Zstandard answers (windows of
// up to 16 and 8 MiB) are decoded at most maxBigDecoders at a time; with
// every slot taken another waits, and ends with its request rather than
// pass undecoded or unscored; once a slot frees it is decoded and scored,
// and its slot is given back; gzip does not wait for one.
func TestContentBigDecodersBounded(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	bad := []byte(htmlHead + "<p>" + harmful7 + "</p><p>THE TAIL</p></div></body></html>")
	served := make(chan struct{}, 4)
	for _, enc := range []string{"br", "zstd", "gzip"} {
		body := compress(t, bad, enc)
		ce.mux.HandleFunc("/bad/"+enc, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", enc)
			_, _ = w.Write(body)
			served <- struct{}{}
		})
	}
	for range maxBigDecoders {
		bigDecoders <- struct{}{} // every slot taken
	}
	held := maxBigDecoders
	defer func() {
		for range held {
			<-bigDecoders
		}
	}()
	for _, enc := range []string{"br", "zstd"} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ce.url("pages.test", "/bad/"+enc), nil)
		done := make(chan error, 1)
		go func() {
			resp, err := c.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				err = fmt.Errorf("answered while every slot was taken: %d %q", resp.StatusCode, b)
			}
			done <- err
		}()
		<-served // the site has answered; the proxy waits for a slot
		// An answer relayed without a slot would reach the client in
		// milliseconds: give it a second to show, then end the request.
		select {
		case err := <-done:
			t.Fatalf("%s: %v", enc, err)
		case <-time.After(time.Second):
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: %v", enc, err)
		}
	}
	if got := len(bigDecoders); got != maxBigDecoders {
		t.Fatalf("a waiting answer that ended took or gave a slot: %d in use", got)
	}
	// gzip's window is 32 KiB: it never waits.
	if resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/bad/gzip")); !strings.Contains(string(body), "The rest of this page is blocked") {
		t.Fatalf("gzip with the slots taken: %d %q", resp.StatusCode, body)
	}
	<-served
	<-bigDecoders // one slot free
	held--
	for _, enc := range []string{"br", "zstd"} {
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", "/bad/"+enc))
		<-served
		if resp.Header.Get("Content-Encoding") != "" || !strings.Contains(string(body), "The rest of this page is blocked") || strings.Contains(string(body), "THE TAIL") {
			t.Fatalf("%s with a slot free: %v %q", enc, resp.Header, body)
		}
		eventually(t, "the slot given back", func() bool { return len(bigDecoders) == maxBigDecoders-1 })
	}
}

// TestGzipOnly: a request that is not a page keeps gzip if it accepted
// it with any weight above 0, and no encoding otherwise.
func TestGzipOnly(t *testing.T) {
	for in, want := range map[string]string{
		"gzip, deflate, br, zstd": "gzip",
		"br;q=1.0, gzip;q=0.5":    "gzip", // once read as q=0
		"gzip;q=0.05":             "gzip",
		"gzip; q=0":               "",
		"gzip;q=0.000, br":        "",
		"GZIP;Q=0.8":              "gzip",
		"br, zstd":                "",
		"identity":                "",
	} {
		h := http.Header{"Accept-Encoding": {in}}
		gzipOnly(h)
		if got := h.Get("Accept-Encoding"); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}
