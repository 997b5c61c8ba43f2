package blocklists

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fetchListServer serves a mutable body with an ETag and honours If-None-Match.
type fetchListServer struct {
	mu      sync.Mutex
	body    []byte
	etag    string
	ctype   string
	status  int
	lastReq http.Header
	hits    int
}

func (s *fetchListServer) set(body, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.etag = []byte(body), etag
}

func (s *fetchListServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	s.lastReq = r.Header.Clone()
	if s.status != 0 {
		http.Error(w, "boom", s.status)
		return
	}
	if s.etag != "" {
		w.Header().Set("ETag", s.etag)
		if r.Header.Get("If-None-Match") == s.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
	ct := s.ctype
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Write(s.body)
}

func (s *fetchListServer) header() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReq
}

// fetchServers starts the handler on plain HTTP and on TLS.
func fetchServers(t *testing.T, h http.Handler) map[string]*httptest.Server {
	t.Helper()
	plain, tlsSrv := httptest.NewServer(h), httptest.NewTLSServer(h)
	t.Cleanup(plain.Close)
	t.Cleanup(tlsSrv.Close)
	return map[string]*httptest.Server{"http": plain, "https": tlsSrv}
}

func newTestFetcher(t *testing.T, srv *httptest.Server) *Fetcher {
	t.Helper()
	return &Fetcher{Dir: filepath.Join(t.TempDir(), "cache"), Client: srv.Client()}
}

func fetchReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fetchOnlyCache checks no temporary files were left in the cache dir
// (the copies, their sidecars and each feed's lock file stay).
func fetchOnlyCache(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		t.Fatal(err)
	}
	for _, e := range ents {
		lock := strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".lock")
		if !strings.HasSuffix(e.Name(), ".list") && !strings.HasSuffix(e.Name(), ".meta.json") && !lock {
			t.Errorf("leftover file in cache dir: %s", e.Name())
		}
	}
}

func TestFetchFirstThenNotModified(t *testing.T) {
	ls := &fetchListServer{}
	ls.set("a.example\nb.example\n", `"v1"`)
	for scheme, srv := range fetchServers(t, ls) {
		t.Run(scheme, func(t *testing.T) {
			f := newTestFetcher(t, srv)
			feed := Feed{Name: "test", URL: srv.URL + "/list.txt"}
			var lastDone, lastTotal int64
			res, err := f.Fetch(context.Background(), feed, nil, func(d, tot int64) { lastDone, lastTotal = d, tot })
			if err != nil {
				t.Fatal(err)
			}
			if !res.Changed || res.NotModified || res.Bytes != 20 || res.ETag != `"v1"` || res.Fetched.IsZero() {
				t.Fatalf("first fetch: %+v", res)
			}
			if lastDone != 20 || lastTotal != 20 {
				t.Errorf("progress = %d/%d, want 20/20", lastDone, lastTotal)
			}
			if res.Path != filepath.Join(f.Dir, "test.list") || fetchReadFile(t, res.Path) != "a.example\nb.example\n" {
				t.Fatalf("cached copy wrong: %s", res.Path)
			}
			if ua := ls.header().Get("User-Agent"); !strings.HasPrefix(ua, "Gatehouse/") || !strings.HasSuffix(ua, "(+school web filter)") {
				t.Errorf("User-Agent = %q", ua)
			}
			fetchCheckMode(t, f.Dir, 0o700)
			fetchCheckMode(t, res.Path, 0o600)
			fetchCheckMode(t, filepath.Join(f.Dir, "test.meta.json"), 0o600)

			called := false
			res2, err := f.Fetch(context.Background(), feed, func(string) error { called = true; return nil }, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := ls.header()
			if h.Get("If-None-Match") != `"v1"` || h.Get("If-Modified-Since") == "" {
				t.Errorf("conditional headers not sent: %v", h)
			}
			if !res2.NotModified || res2.Changed || called || res2.Path != res.Path || res2.Bytes != 20 || res2.ETag != `"v1"` {
				t.Fatalf("second fetch: %+v (validate called %v)", res2, called)
			}
			if !res2.Fetched.Equal(res.Fetched) {
				t.Errorf("Fetched changed on 304: %v vs %v", res2.Fetched, res.Fetched)
			}
			fetchOnlyCache(t, f.Dir)
		})
	}
}

func fetchCheckMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != want {
		t.Errorf("%s mode = %o, want %o", p, got, want)
	}
}

func TestFetchChangedBodyReplacesCache(t *testing.T) {
	ls := &fetchListServer{}
	ls.set("a.example\n", `"v1"`)
	srv := httptest.NewTLSServer(ls)
	defer srv.Close()
	f := newTestFetcher(t, srv)
	feed := Feed{Name: "test", URL: srv.URL}
	if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
		t.Fatal(err)
	}
	ls.set("c.example\nd.example\n", `"v2"`)
	var validated string
	res, err := f.Fetch(context.Background(), feed, func(p string) error {
		if filepath.Dir(p) != f.Dir {
			t.Errorf("temp file %s not in cache dir", p)
		}
		validated = fetchReadFile(t, p)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.ETag != `"v2"` || validated != "c.example\nd.example\n" || fetchReadFile(t, res.Path) != validated {
		t.Fatalf("changed fetch: %+v validated=%q", res, validated)
	}
	if _, m, ok := f.Cached("test"); !ok || m.ETag != `"v2"` || m.Bytes != 20 {
		t.Fatalf("Cached after change: %+v %v", m, ok)
	}
	fetchOnlyCache(t, f.Dir)
}

func TestFetchSameBodyWithoutValidators(t *testing.T) {
	ls := &fetchListServer{}
	ls.set("a.example\n", "") // no ETag: every request is a 200
	srv := httptest.NewServer(ls)
	defer srv.Close()
	f := newTestFetcher(t, srv)
	feed := Feed{Name: "test", URL: srv.URL}
	first, err := f.Fetch(context.Background(), feed, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	res, err := f.Fetch(context.Background(), feed, func(string) error { called = true; return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.NotModified || called || !res.Fetched.Equal(first.Fetched) || res.Bytes != 10 {
		t.Fatalf("identical body: %+v validate=%v", res, called)
	}
	fetchOnlyCache(t, f.Dir)
}

func TestFetchValidateErrorKeepsOldCopy(t *testing.T) {
	ls := &fetchListServer{}
	ls.set("a.example\n", `"v1"`)
	srv := httptest.NewServer(ls)
	defer srv.Close()
	f := newTestFetcher(t, srv)
	feed := Feed{Name: "test", URL: srv.URL}
	if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
		t.Fatal(err)
	}
	ls.set("junk\n", `"v2"`)
	bad := errors.New("too few entries")
	_, err := f.Fetch(context.Background(), feed, func(string) error { return bad }, nil)
	if !errors.Is(err, bad) {
		t.Fatalf("err = %v, want validate error", err)
	}
	p, m, ok := f.Cached("test")
	if !ok || fetchReadFile(t, p) != "a.example\n" || m.ETag != `"v1"` {
		t.Fatalf("old copy not kept: %v %+v", ok, m)
	}
	fetchOnlyCache(t, f.Dir)
	// The old validators are still used.
	if _, err := f.Fetch(context.Background(), feed, func(string) error { return bad }, nil); !errors.Is(err, bad) {
		t.Fatal(err)
	}
	if ls.header().Get("If-None-Match") != `"v1"` {
		t.Errorf("If-None-Match = %q", ls.header().Get("If-None-Match"))
	}
}

func fetchGzip(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFetchRejectsHTMLAndBinary(t *testing.T) {
	cases := []struct {
		name, ctype, want string
		body              []byte
	}{
		{"html content type", "text/html; charset=utf-8", "HTML", []byte("a.example\n")},
		{"xhtml content type", "application/xhtml+xml", "HTML", []byte("a.example\n")},
		{"doctype sniffed", "text/plain", "HTML", []byte("\xef\xbb\xbf \r\n\t<!DOCTYPE html><p>Login</p>")},
		{"html tag sniffed", "application/octet-stream", "HTML", []byte("\n\n<HTML><body>captive portal</body></HTML>")},
		{"gzipped html", "application/gzip", "HTML", fetchGzip(t, "  <!doctype html>\n<title>Error</title>")},
		{"nul bytes", "text/plain", "binary", append([]byte("a.example\n"), 0, 1, 2, 3)},
		{"gzipped binary", "application/gzip", "binary", fetchGzip(t, "a.example\n\x00\x00\x00")},
		{"bad gzip", "application/gzip", "gzip", []byte{0x1f, 0x8b, 0xff, 0xff, 0xff}},
		{"empty", "text/plain", "empty", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ls := &fetchListServer{}
			ls.set("good.example\n", `"v1"`)
			srv := httptest.NewServer(ls)
			defer srv.Close()
			f := newTestFetcher(t, srv)
			feed := Feed{Name: "test", URL: srv.URL + "/feed"}
			if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
				t.Fatal(err)
			}
			ls.mu.Lock()
			ls.body, ls.etag, ls.ctype = c.body, `"v2"`, c.ctype
			ls.mu.Unlock()
			called := false
			_, err := f.Fetch(context.Background(), feed, func(string) error { called = true; return nil }, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "list test") ||
				!strings.Contains(err.Error(), srv.URL+"/feed") {
				t.Fatalf("err = %v, want it to mention %q, the list and the URL", err, c.want)
			}
			if called {
				t.Error("validate called for a rejected body")
			}
			if p, _, ok := f.Cached("test"); !ok || fetchReadFile(t, p) != "good.example\n" {
				t.Error("old copy not kept")
			}
			fetchOnlyCache(t, f.Dir)
		})
	}
}

func TestFetchGzip(t *testing.T) {
	text := strings.Repeat("fetchGzip.example\n", 1000)
	raw := fetchGzip(t, text)
	t.Run("application/gzip stored as served", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/gzip")
			w.Write(raw)
		}))
		defer srv.Close()
		f := newTestFetcher(t, srv)
		res, err := f.Fetch(context.Background(), Feed{Name: "fetchGzip", URL: srv.URL + "/list.fetchGzip"}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := fetchReadFile(t, res.Path); got != string(raw) {
			t.Fatalf("stored %d bytes, want the %d gzip bytes as served", len(got), len(raw))
		}
	})
	t.Run("Content-Encoding gzip", func(t *testing.T) {
		var sawAE atomic.Value
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sawAE.Store(r.Header.Get("Accept-Encoding"))
			w.Header().Set("Content-Type", "text/plain")
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(raw)
				return
			}
			w.Write([]byte(text))
		}))
		defer srv.Close()
		f := newTestFetcher(t, srv)
		res, err := f.Fetch(context.Background(), Feed{Name: "fetchGzip", URL: srv.URL}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if sawAE.Load() != "gzip" {
			t.Errorf("Accept-Encoding = %v", sawAE.Load())
		}
		if got := fetchReadFile(t, res.Path); got != text || res.Bytes != int64(len(text)) {
			t.Fatalf("stored %d bytes, want %d decoded", len(got), len(text))
		}
	})
}

func TestFetchServerErrorKeepsCache(t *testing.T) {
	ls := &fetchListServer{}
	ls.set("a.example\n", `"v1"`)
	srv := httptest.NewServer(ls)
	defer srv.Close()
	f := newTestFetcher(t, srv)
	feed := Feed{Name: "test", URL: srv.URL}
	if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
		t.Fatal(err)
	}
	ls.mu.Lock()
	ls.status = http.StatusInternalServerError
	ls.mu.Unlock()
	_, err := f.Fetch(context.Background(), feed, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "list test") {
		t.Fatalf("err = %v", err)
	}
	var fe *FetchError
	if !errors.As(err, &fe) || fe.List != "test" || fe.URL != srv.URL {
		t.Errorf("FetchError = %+v", fe)
	}
	p, m, ok := f.Cached("test")
	if !ok || fetchReadFile(t, p) != "a.example\n" || m.ETag != `"v1"` || m.Bytes != 10 || m.Fetched.IsZero() {
		t.Fatalf("Cached after failure: %v %+v", ok, m)
	}
	if _, _, ok := f.Cached("other"); ok {
		t.Error("Cached reports a list never fetched")
	}
	fetchOnlyCache(t, f.Dir)
}

func TestFetchNotModifiedWithoutCache(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotModified)
	}))
	defer srv.Close()
	f := newTestFetcher(t, srv)
	if _, err := f.Fetch(context.Background(), Feed{Name: "x", URL: srv.URL}, nil, nil); err == nil || !strings.Contains(err.Error(), "304") {
		t.Fatalf("err = %v", err)
	}
}

// fetchHugeHandler streams 2 GiB lazily, stopping when the client goes away.
func fetchHugeHandler(sent *atomic.Int64, withLength bool) http.HandlerFunc {
	const total = 2 << 30
	chunk := bytes.Repeat([]byte("big.example\n"), 64<<10/12)
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if withLength {
			w.Header().Set("Content-Length", fmt.Sprint(total))
		}
		for n := 0; n < total; {
			k := min(len(chunk), total-n)
			if _, err := w.Write(chunk[:k]); err != nil || r.Context().Err() != nil {
				return
			}
			n += k
			sent.Add(int64(k))
		}
	}
}

func TestFetchSizeCap(t *testing.T) {
	for _, withLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			var sent atomic.Int64
			var huge atomic.Bool
			ls := &fetchListServer{}
			ls.set("small.example\n", "")
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if huge.Load() {
					fetchHugeHandler(&sent, withLength)(w, r)
					return
				}
				ls.ServeHTTP(w, r)
			}))
			defer srv.Close()
			f := newTestFetcher(t, srv)
			feed := Feed{Name: "big", URL: srv.URL, MaxSize: 1 << 20}
			if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
				t.Fatal(err)
			}
			huge.Store(true)
			_, err := f.Fetch(context.Background(), feed, nil, nil)
			if err == nil || !strings.Contains(err.Error(), "list big: download exceeds size cap of 1048576 bytes") {
				t.Fatalf("err = %v", err)
			}
			// Loopback buffers let the server get ahead a little, never far.
			if s := sent.Load(); s > 64<<20 {
				t.Errorf("server sent %d bytes before the client stopped", s)
			}
			if p, _, ok := f.Cached("big"); !ok || fetchReadFile(t, p) != "small.example\n" {
				t.Error("old copy not kept")
			}
			fetchOnlyCache(t, f.Dir)
		})
	}
}

func TestFetchTimeout(t *testing.T) {
	for _, mode := range []string{"slow headers", "slow body"} {
		t.Run(mode, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if mode == "slow body" {
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(http.StatusOK)
					w.Write([]byte("a.example\n"))
					w.(http.Flusher).Flush()
				}
				select {
				case <-r.Context().Done():
				case <-time.After(20 * time.Second):
				}
			}))
			defer srv.Close()
			f := newTestFetcher(t, srv)
			// The server holds on for 20 s, so "timed out" means the 300 ms
			// timeout cut it off.
			_, err := f.Fetch(context.Background(), Feed{Name: "slow", URL: srv.URL, Timeout: 300 * time.Millisecond}, nil, nil)
			if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "list slow") {
				t.Fatalf("err = %v", err)
			}
			fetchOnlyCache(t, f.Dir)
			if _, _, ok := f.Cached("slow"); ok {
				t.Error("partial download cached")
			}
		})
	}
}

func TestFetchCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	defer srv.Close()
	f := newTestFetcher(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := f.Fetch(ctx, Feed{Name: "c", URL: srv.URL}, nil, nil)
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err = %v", err)
	}
}

func TestFetchRedirects(t *testing.T) {
	var plainHits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/r/") {
			var n int
			fmt.Sscanf(r.URL.Path, "/r/%d", &n)
			if n > 0 {
				http.Redirect(w, r, fmt.Sprintf("/r/%d", n-1), http.StatusFound)
				return
			}
		} else {
			plainHits.Add(1)
		}
		w.Write([]byte("redirected.example\n"))
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/list", http.StatusMovedPermanently)
	}))
	defer secure.Close()

	t.Run("https to http refused", func(t *testing.T) {
		f := newTestFetcher(t, secure)
		_, err := f.Fetch(context.Background(), Feed{Name: "down", URL: secure.URL + "/list"}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "refusing redirect from https to http") {
			t.Fatalf("err = %v", err)
		}
		if plainHits.Load() != 0 {
			t.Error("the http URL was requested")
		}
	})
	t.Run("five redirects followed", func(t *testing.T) {
		f := newTestFetcher(t, plain)
		res, err := f.Fetch(context.Background(), Feed{Name: "r5", URL: plain.URL + "/r/5"}, nil, nil)
		if err != nil || fetchReadFile(t, res.Path) != "redirected.example\n" {
			t.Fatalf("res %+v err %v", res, err)
		}
	})
	t.Run("six redirects refused", func(t *testing.T) {
		f := newTestFetcher(t, plain)
		_, err := f.Fetch(context.Background(), Feed{Name: "r6", URL: plain.URL + "/r/6"}, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "stopped after 5 redirects") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestFetchAuthAndHeaders(t *testing.T) {
	const user, pass, token = "school", "hunter2-pass", "sekret-api-token"
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass || r.Header.Get("X-Api-Key") != token {
			http.Error(w, "unauthorised", http.StatusUnauthorized)
			return
		}
		if s := int(status.Load()); s != http.StatusOK {
			http.Error(w, "denied "+pass, s) // a server echoing secrets back
			return
		}
		w.Write([]byte("authed.example\n"))
	}))
	defer srv.Close()
	f := newTestFetcher(t, srv)
	feed := Feed{
		Name: "iwf", URL: srv.URL + "/feed?format=domains&token=qs-secret-value",
		Header:   http.Header{"X-Api-Key": {token}},
		Username: user, Password: pass,
	}
	if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
		t.Fatal(err)
	}
	status.Store(http.StatusForbidden)
	// Credentials also in the URL's userinfo.
	feed.URL = strings.Replace(feed.URL, "https://", "https://urluser:url-pass-secret@", 1)
	_, err := f.Fetch(context.Background(), feed, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("err = %v", err)
	}
	fetchNoSecrets(t, err, pass, token, "url-pass-secret", "urluser", "qs-secret-value")
	if !strings.Contains(err.Error(), "list iwf") || !strings.Contains(err.Error(), "format=domains") {
		t.Errorf("error does not name the list and URL: %v", err)
	}

	// Network failure with credentials in the URL.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	feed.URL = strings.Replace(deadURL, "http://", "http://urluser:url-pass-secret@", 1) + "/?apikey=qs-secret-value"
	_, err = f.Fetch(context.Background(), feed, nil, nil)
	if err == nil {
		t.Fatal("fetch from a closed server succeeded")
	}
	fetchNoSecrets(t, err, pass, token, "url-pass-secret", "urluser", "qs-secret-value")

	// A malformed URL is not echoed.
	feed.URL = "https://u:url-pass-secret@[::1"
	_, err = f.Fetch(context.Background(), feed, nil, nil)
	if err == nil {
		t.Fatal("bad URL accepted")
	}
	fetchNoSecrets(t, err, "url-pass-secret")
}

func fetchNoSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error leaks %q: %v", s, err)
		}
	}
}

func TestFetchDefaultClientVerifiesTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a.example\n"))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the expected handshake failure
	srv.StartTLS()
	defer srv.Close()
	f := &Fetcher{Dir: t.TempDir()}
	_, err := f.Fetch(context.Background(), Feed{Name: "tls", URL: srv.URL, Timeout: 10 * time.Second}, nil, nil)
	var cve *tls.CertificateVerificationError
	if err == nil || !errors.As(err, &cve) {
		t.Fatalf("err = %v, want a certificate verification error", err)
	}
	tr := defaultFetchClient().Transport.(*http.Transport)
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.InsecureSkipVerify || tr.Proxy == nil {
		t.Error("default transport misconfigured")
	}
}

func TestFetchCacheNames(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.URL.Path + "\n"))
	}))
	defer srv.Close()
	f := newTestFetcher(t, srv)
	for _, name := range []string{"ut1/adult", "ut1_adult", "../escape", ".hidden", "a b*?[", "plain-name.v2"} {
		res, err := f.Fetch(context.Background(), Feed{Name: name, URL: srv.URL + "/" + fmt.Sprint(len(name))}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(res.Path) != f.Dir || strings.HasPrefix(filepath.Base(res.Path), ".") {
			t.Errorf("%q cached at %s", name, res.Path)
		}
		if p, _, ok := f.Cached(name); !ok || p != res.Path {
			t.Errorf("Cached(%q) = %s, %v", name, p, ok)
		}
	}
	if feedCacheBase("ut1/adult") == feedCacheBase("ut1_adult") {
		t.Error("distinct names share a cache file")
	}
	if got := feedCacheBase("plain-name.v2"); got != "plain-name.v2" {
		t.Errorf("safe name changed to %q", got)
	}
	fetchOnlyCache(t, f.Dir)
	if ents, _ := os.ReadDir(f.Dir); len(ents) != 18 { // a copy, its sidecar and its lock each
		t.Errorf("%d files in cache dir, want 18", len(ents))
	}
}

func TestFetchBadFeed(t *testing.T) {
	f := &Fetcher{Dir: t.TempDir()}
	for _, feed := range []Feed{{URL: "http://127.0.0.1/"}, {Name: "x", URL: "ftp://127.0.0.1/x"}, {Name: "x", URL: "/relative"}} {
		if _, err := f.Fetch(context.Background(), feed, nil, nil); err == nil {
			t.Errorf("feed %+v accepted", feed)
		}
	}
}

// TestFetchRedirectToAnotherHostDropsCredentials: a feed's credentials
// (Basic auth and auth.header's token) go to the feed's host and its
// subdomains only; a redirect to another host (a mirror, a CDN, a hijacked
// link) must not carry them.
func TestFetchRedirectToAnotherHostDropsCredentials(t *testing.T) {
	const token, pass = "sekret-api-token-value", "hunter2-pass"
	var mu sync.Mutex
	var seen []http.Header
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Write([]byte("mirrored.example\n"))
	}))
	defer other.Close()
	otherPort := other.Listener.Addr().(*net.TCPAddr).Port
	feedSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/same": // the same host: credentials stay
			http.Redirect(w, r, "/list", http.StatusFound)
		case "/list":
			if r.Header.Get("X-Api-Key") != token {
				http.Error(w, "no token", http.StatusUnauthorized)
				return
			}
			w.Write([]byte("same-host.example\n"))
		default: // another host (the test certificate covers example.com)
			http.Redirect(w, r, fmt.Sprintf("https://example.com:%d/list", otherPort), http.StatusFound)
		}
	}))
	defer feedSrv.Close()
	tr := feedSrv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, _ := net.SplitHostPort(addr); host == "example.com" {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	f := &Fetcher{Dir: filepath.Join(t.TempDir(), "cache"), Client: &http.Client{Transport: tr}}
	feed := Feed{Name: "iwf", URL: feedSrv.URL + "/same", Header: http.Header{"X-Api-Key": {token}}, Username: "school", Password: pass}
	res, err := f.Fetch(context.Background(), feed, nil, nil)
	if err != nil || fetchReadFile(t, res.Path) != "same-host.example\n" {
		t.Fatalf("same-host redirect: res %+v err %v", res, err)
	}
	feed.URL = feedSrv.URL + "/elsewhere"
	res, err = f.Fetch(context.Background(), feed, nil, nil)
	if err != nil || fetchReadFile(t, res.Path) != "mirrored.example\n" {
		t.Fatalf("cross-host redirect: res %+v err %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("other host hit %d times", len(seen))
	}
	for k, vs := range seen[0] {
		for _, v := range vs {
			if strings.Contains(v, token) || k == "Authorization" {
				t.Errorf("the other host received the feed's credentials: %s: %s", k, v)
			}
		}
	}
}

// TestFetchGzipUnpackedSizeCap: a gzip body (application/gzip, stored as
// served) is held to the feed's size cap as unpacked too, as a
// Content-Encoding: gzip body already is: a small download that unpacks to
// far more than the cap (a gzip bomb, a wrong file) is refused before it is
// parsed, and the last good copy stays.
func TestFetchGzipUnpackedSizeCap(t *testing.T) {
	var bomb atomic.Bool
	good := fetchGzip(t, "small.example\n")
	// 24 MiB of list lines: about 100 KiB as gzip, under the 1 MiB cap.
	big := fetchGzip(t, strings.Repeat("bomb-padding-line.example\n", 24<<20/26))
	if len(big) >= 1<<20 {
		t.Fatalf("the test's gzip is %d bytes, not under the cap", len(big))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		if bomb.Load() {
			w.Write(big)
			return
		}
		w.Write(good)
	}))
	defer srv.Close()
	f := newTestFetcher(t, srv)
	feed := Feed{Name: "big", URL: srv.URL + "/list.gz", MaxSize: 1 << 20}
	if _, err := f.Fetch(context.Background(), feed, nil, nil); err != nil {
		t.Fatal(err)
	}
	bomb.Store(true)
	validated := false
	_, err := f.Fetch(context.Background(), feed, func(string) error { validated = true; return nil }, nil)
	if err == nil || !strings.Contains(err.Error(), "size cap of 1048576 bytes") {
		t.Fatalf("err = %v, want the size cap", err)
	}
	if validated {
		t.Error("the oversized body was handed to validate (parsed)")
	}
	if p, _, ok := f.Cached("big"); !ok || fetchReadFile(t, p) != string(good) {
		t.Error("old copy not kept")
	}
	fetchOnlyCache(t, f.Dir)
}
