package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// rawConn is a client connection to the proxy that writes raw requests
// and reads responses.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (e *env) raw(t *testing.T) *rawConn {
	c := e.dial("")
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a bound on a stuck test, not a speed check
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatal(err)
	}
}

// read reads one response to a request with method; body is read fully.
func (r *rawConn) read(method string) (*http.Response, string) {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, &http.Request{Method: method})
	if err != nil {
		r.t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// stillOpen reports whether the connection stays open for a while (2 s,
// under the env's idle timeout): for tests that it is not closed at once.
func (r *rawConn) stillOpen() bool {
	_ = r.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := r.br.ReadByte()
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closed reports whether the proxy closed the connection (callers expect
// it to, so the wait is long: it ends as soon as it has).
func (r *rawConn) closed() bool {
	_ = r.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := r.br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestFrontPipelinedAndHead(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	u := e.originURL("site.test", "/small")
	// Two requests in one write: answered in order on one connection.
	r.send("GET " + u + " HTTP/1.1\r\nHost: site.test\r\n\r\nHEAD " + u + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	resp, body := r.read("GET")
	if resp.StatusCode != 200 || len(body) != 1024 || resp.ContentLength != 1024 {
		t.Fatalf("GET: %d, %d bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	resp, body = r.read("HEAD")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "1024" {
		t.Fatalf("HEAD: %d, body %q, Content-Length %q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
	}
	if resp.Header.Get("Date") == "" {
		t.Error("no Date header")
	}
	// The connection is still usable.
	r.send("GET " + u + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if resp, _ := r.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("third request: %d", resp.StatusCode)
	}
	if n := e.originNC.Load(); n != 1 {
		t.Errorf("origin saw %d connections, want 1", n)
	}
}

func TestFrontHTTP10(t *testing.T) {
	e := newEnv(t, envOpts{})
	u := e.originURL("site.test", "/small")

	r := e.raw(t)
	r.send("GET " + u + " HTTP/1.0\r\n\r\n")
	resp, body := r.read("GET")
	if resp.StatusCode != 200 || len(body) != 1024 || resp.ProtoMinor != 0 {
		t.Fatalf("HTTP/1.0: %s %d, %d bytes", resp.Proto, resp.StatusCode, len(body))
	}
	if !r.closed() {
		t.Error("HTTP/1.0 connection without keep-alive left open")
	}

	// An HTTP/1.0 keep-alive client gets a keep-alive answer.
	r = e.raw(t)
	r.send("GET " + u + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, _ = r.read("GET")
	if resp.StatusCode != 200 || !strings.EqualFold(resp.Header.Get("Connection"), "keep-alive") {
		t.Fatalf("HTTP/1.0 keep-alive: %d, Connection %q", resp.StatusCode, resp.Header.Get("Connection"))
	}
	r.send("GET " + u + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if resp, _ = r.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("second HTTP/1.0 request: %d", resp.StatusCode)
	}

	// A block page of unknown length to an HTTP/1.0 client ends with the
	// connection.
	r = e.raw(t)
	r.send("GET " + e.originURL("adult.test", "/") + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	resp, body = r.read("GET")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "adult.test") {
		t.Fatalf("block page over HTTP/1.0: %d %q", resp.StatusCode, body)
	}
}

func TestFrontBadRequests(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400},
		{"no host", "GET /proxy.pac HTTP/1.1\r\n\r\n", 400},
		{"bad host", "GET /proxy.pac HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"two hosts", "GET /proxy.pac HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		// RFC 9112 3.2: every HTTP/1.1 request needs Host, even with an
		// absolute URL or as CONNECT.
		{"absolute URL, no host", "GET http://site.test/ HTTP/1.1\r\nX-Host: site.test\r\nHostname: site.test\r\n\r\n", 400},
		{"POST, no host", "POST http://site.test/ HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400},
		{"CONNECT, no host", "CONNECT site.test:443 HTTP/1.1\r\n\r\n", 400},
		// A header longer than the front's 4 KiB buffer is decided once
		// it is whole: 6 KiB of other fields do not hide a missing Host.
		// (The origin's own URL and port: without the rule these would
		// reach it.)
		{"long header, no host", "GET " + e.originURL("site.test", "/") + " HTTP/1.1\r\n" + longFields + "\r\n", 400},
		{"long header, no host, CONNECT", "CONNECT " + e.origin.Listener.Addr().String() + " HTTP/1.1\r\n" + longFields + "\r\n", 400},
		{"long URL, no host", "GET " + e.originURL("site.test", "/"+strings.Repeat("p", 6<<10)) + " HTTP/1.1\r\nX-Host: site.test\r\n\r\n", 400},
		{"long header, host in the body", "POST " + e.originURL("site.test", "/") + " HTTP/1.1\r\n" + longFields + "Content-Length: 17\r\n\r\nHost: site.test\r\n", 400},
		{"HTTP/2 text", "GET http://site.test/ HTTP/2.0\r\nHost: site.test\r\n\r\n", 505},
		{"huge header", "GET http://site.test/ HTTP/1.1\r\nHost: site.test\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431},
		{"odd expect", "POST http://site.test/ HTTP/1.1\r\nHost: site.test\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", 417},
		{"bad length", "POST http://site.test/ HTTP/1.1\r\nHost: site.test\r\nContent-Length: -4\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t)
			r.send(tc.req)
			resp, body := r.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
			}
			if !r.closed() {
				t.Error("connection left open after a bad request")
			}
		})
	}
	if e.hits.Load() != 0 {
		t.Errorf("%d bad requests reached the origin", e.hits.Load())
	}
}

// longFields is 6 KiB of header fields (none of them Host), each line
// ending in CRLF.
var longFields = strings.Repeat("X-Padding: "+strings.Repeat("p", 500)+"\r\n", 12)

// TestFrontLongHeaderHost: a header longer than the front's buffer with
// its Host field anywhere (after 6 KiB of other fields, or across the
// buffer's end) is served, as are the requests after it on the connection.
func TestFrontLongHeaderHost(t *testing.T) {
	e := newEnv(t, envOpts{})
	u := e.originURL("site.test", "/small")
	r := e.raw(t)
	line := "GET " + u + " HTTP/1.1\r\n"
	for off := 4096 - 24; off <= 4096+2; off++ {
		// The Host line starts at off: in the buffer, across its end, or
		// just after it.
		pad := strings.Repeat("q", off-len(line)-len("X-Pad: \r\n"))
		r.send(line + "X-Pad: " + pad + "\r\nHost: site.test\r\n" + longFields + "\r\n")
		if resp, body := r.read("GET"); resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("Host at %d: %d, %d bytes", off, resp.StatusCode, len(body))
		}
	}
	r.send("GET " + u + " HTTP/1.1\r\n" + longFields + "Host: site.test\r\n\r\nGET " + u + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	for range 2 {
		if resp, body := r.read("GET"); resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("Host after 6 KiB: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
}

// hasHost finds the Host field however the header arrives, and leaves a
// header too long to hold in the buffer, with no Host field in it, to be
// decided once it is whole.
func TestFrontHasHost(t *testing.T) {
	for _, tc := range []struct {
		req         string
		want, known bool
	}{
		{"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", true, true},
		{"GET http://a/ HTTP/1.1\r\nAccept: */*\r\nhost:a\r\n\r\nGET http://b/ HTTP/1.1\r\n\r\n", true, true},
		{"\r\nGET http://a/ HTTP/1.1\nHOST: a\n\n", true, true},
		{"GET http://a/ HTTP/1.1\r\nAccept: */*\r\n\r\nGET http://b/ HTTP/1.1\r\nHost: b\r\n\r\n", false, true},
		{"GET http://a/ HTTP/1.1\r\nX-Host: a\r\nHosts: a\r\n\r\n", false, true},
		{"GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n", true, true},
		{"GET http://a/ HTTP/1.1\r\nX-Big: " + strings.Repeat("b", 5000) + "\r\n\r\n", false, false}, // longer than the buffer
		{"GET http://a/ HTTP/1.1\r\nAccept", true, true},                                             // cut short: ReadRequest reports it
	} {
		br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(tc.req)), 4096)
		if got, known := hasHost(br); got != tc.want || known != tc.known {
			t.Errorf("hasHost(%.60q) = %v, %v, want %v, %v", tc.req, got, known, tc.want, tc.known)
		}
		if b, _ := br.Peek(1); len(b) == 0 || b[0] != tc.req[0] {
			t.Errorf("hasHost(%.60q) consumed input", tc.req)
		}
	}
}

func TestFrontExpectContinue(t *testing.T) {
	e := newEnv(t, envOpts{})
	base := e.extraOrigin("echo.test", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})
	r := e.raw(t)
	r.send("POST " + base + "/form HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := r.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("first line %q (%v), want 100 Continue", line, err)
	}
	if blank, _ := r.br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("100 Continue not followed by a blank line: %q", blank)
	}
	r.send("hello")
	resp, body := r.read("POST")
	if resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	// A site that answers without reading the body: no 100 Continue, and
	// the connection closes (the client may never send the body).
	r = e.raw(t)
	r.send("POST " + e.originURL("site.test", "/form") + " HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if resp, body := r.read("POST"); resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("POST to a site that ignores the body: %d, %d bytes", resp.StatusCode, len(body))
	}
	if !r.closed() {
		t.Error("connection left open with the request body unsent")
	}
}

// An unread request body is skipped so the next request on the
// connection is read correctly (here the block page never reads it).
func TestFrontSkipsUnreadBody(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	r.send("POST " + e.originURL("adult.test", "/") + " HTTP/1.1\r\nHost: adult.test\r\nContent-Length: 11\r\n\r\nhello world" +
		"GET " + e.originURL("site.test", "/small") + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if resp, _ := r.read("POST"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("blocked POST: %d", resp.StatusCode)
	}
	if resp, body := r.read("GET"); resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("next request: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// extraOrigin serves h under name through the env's resolver.
func (e *env) extraOrigin(name string, h http.HandlerFunc) string {
	o := httptest.NewServer(h)
	e.t.Cleanup(o.Close)
	e.res.mu.Lock()
	e.res.names[name] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	e.res.mu.Unlock()
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	e.allowPort(port)
	return "http://" + name + ":" + port
}

func TestFrontChunkedTrailers(t *testing.T) {
	e := newEnv(t, envOpts{})
	base := e.extraOrigin("stream.test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(200)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc123")
	})
	r := e.raw(t)
	r.send("GET " + base + "/ HTTP/1.1\r\nHost: stream.test\r\n\r\n")
	resp, body := r.read("GET")
	if resp.StatusCode != 200 || body != "part 0\npart 1\npart 2\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("transfer encoding %v, want chunked", resp.TransferEncoding)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
		t.Errorf("trailer X-Checksum = %q (trailers %v)", got, resp.Trailer)
	}
	// Trailers on an empty body still need chunks.
	empty := e.extraOrigin("trailer.test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(200)
		w.Header().Set("X-Checksum", "empty")
	})
	r2 := e.raw(t)
	r2.send("GET " + empty + "/ HTTP/1.1\r\nHost: trailer.test\r\n\r\n")
	if resp, body := r2.read("GET"); resp.StatusCode != 200 || body != "" || resp.Trailer.Get("X-Checksum") != "empty" {
		t.Errorf("empty body with a trailer: %d %q trailers %v", resp.StatusCode, body, resp.Trailer)
	}
	// Still keep-alive after a chunked response.
	r.send("GET " + base + "/ HTTP/1.1\r\nHost: stream.test\r\n\r\n")
	if resp, _ := r.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("second: %d", resp.StatusCode)
	}
}

// Shutdown waits for a request in flight, closes idle keep-alive
// connections at once, and Serve returns.
func TestFrontShutdown(t *testing.T) {
	e := newEnv(t, envOpts{})
	release := make(chan struct{})
	base := e.extraOrigin("slow.test", func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "done")
	})
	idle := e.raw(t)
	idle.send("GET " + e.originURL("site.test", "/") + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if resp, _ := idle.read("GET"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	busy := e.raw(t)
	busy.send("GET " + base + "/ HTTP/1.1\r\nHost: slow.test\r\n\r\n")
	time.Sleep(100 * time.Millisecond) // the request is with the origin

	var wg sync.WaitGroup
	var shutErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutErr = e.s.Shutdown(ctx)
	}()
	if !idle.closed() {
		t.Error("idle connection still open during shutdown")
	}
	close(release)
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "done" {
		t.Fatalf("request in flight: %d %q", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Error("response during shutdown does not say Connection: close")
	}
	wg.Wait()
	if shutErr != nil {
		t.Fatalf("Shutdown: %v", shutErr)
	}
	if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
}

// A pooled upstream connection the site has closed is replaced without
// the client noticing; one the site asked to close is not reused.
func TestUpstreamPoolStaleAndClose(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	u := e.originURL("site.test", "/small")
	if resp, _ := get(t, c, u); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if n := e.s.up.idleCount(); n != 1 {
		t.Fatalf("%d pooled connections, want 1", n)
	}
	e.origin.CloseClientConnections()
	time.Sleep(50 * time.Millisecond)
	if resp, body := get(t, c, u); resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("after the site closed the idle connection: %d, %d bytes", resp.StatusCode, len(body))
	}
	if n := e.originNC.Load(); n != 2 {
		t.Errorf("origin saw %d connections, want 2", n)
	}

	base := e.extraOrigin("closing.test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	before := e.s.up.idleCount()
	for i := 0; i < 2; i++ {
		if resp, body := get(t, c, base+"/"); resp.StatusCode != 200 || body != "bye" {
			t.Fatalf("closing site: %d %q", resp.StatusCode, body)
		}
	}
	if n := e.s.up.idleCount(); n != before {
		t.Errorf("pooled %d connections after Connection: close, want %d", n, before)
	}
}

func TestUpstreamPoolTimeoutAndInformational(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.s.up.response = 200 * time.Millisecond
	base := e.extraOrigin("hints.test", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "page")
	})
	c := e.client("", "", "")
	resp, body := get(t, c, base+"/")
	if resp.StatusCode != 200 || body != "page" {
		t.Fatalf("after 103: %d %q", resp.StatusCode, body)
	}
	// The site answers after 1 s, so a 504 means the 200 ms timeout cut it
	// off; how long that took is the machine's business, not the test's.
	resp, body = get(t, c, base+"/slow")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(body, "did not answer in time") {
		t.Fatalf("slow site: %d %q", resp.StatusCode, body)
	}
}

// A response body the client stops reading closes the upstream
// connection instead of returning it to the pool half-read.
func TestUpstreamPoolUnreadBody(t *testing.T) {
	e := newEnv(t, envOpts{})
	chunk := bytes.Repeat([]byte("y"), 32<<10)
	base := e.extraOrigin("big.test", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(chunk)*8192))
		for i := 0; i < 8192; i++ { // 256 MiB: more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := e.raw(t)
	r.send("GET " + base + "/ HTTP/1.1\r\nHost: big.test\r\n\r\n")
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", err, resp)
	}
	r.c.Close() // gone mid-body
	// Wait until the proxy has finished with the connection.
	for deadline := time.Now().Add(30 * time.Second); e.s.front.closeIdle() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the proxy still serves a client that went away")
		}
	}
	if n := e.s.up.idleCount(); n != 0 {
		t.Errorf("%d half-read connections pooled", n)
	}
}

// Safe-search hosts go to their safe endpoint on both upstream paths (the
// pool for GET, the Transport for a POST), and the original name is never
// resolved.
func TestSafeSearchRewrite(t *testing.T) {
	e := newEnv(t, envOpts{})
	lo := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	e.res.mu.Lock()
	e.res.names["www.bing.com"] = lo
	e.res.names["strict.bing.com"] = lo
	e.res.mu.Unlock()
	c := e.client("", "", "")
	if resp, body := get(t, c, e.originURL("www.bing.com", "/search?q=x")); resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, err := c.Post(e.originURL("www.bing.com", "/search"), "text/plain", strings.NewReader("q=x"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if n := e.res.count("strict.bing.com"); n != 2 {
		t.Errorf("strict.bing.com resolved %d times, want 2 (pool and transport)", n)
	}
	if n := e.res.count("www.bing.com"); n != 0 {
		t.Errorf("www.bing.com resolved %d times; the safe endpoint must be used", n)
	}
	_, port, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	if r := e.lastReq.Load(); r == nil {
		t.Error("the site saw no request")
	} else if r.Host != "www.bing.com:"+port {
		t.Errorf("the site saw Host %q, want the original name", r.Host)
	}
	// A plain site on the same address does not reuse the safe connection.
	before := e.originNC.Load()
	get(t, c, e.originURL("site.test", "/"))
	if e.originNC.Load() != before+1 {
		t.Error("site.test reused a connection opened for the safe-search endpoint")
	}
}

// A handler that panics costs its client the connection, is logged, and
// leaves the proxy serving everyone else.
func TestFrontRecoversPanic(t *testing.T) {
	e := newEnv(t, envOpts{})
	var logged atomic.Int32
	e.s.log = slog.New(countErrors{&logged})
	e.s.front.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			_, _ = io.WriteString(w, "half an answer")
			panic("boom")
		}
		e.s.ServeHTTP(w, r)
	})
	r := e.raw(t)
	r.send("GET " + e.originURL("site.test", "/boom") + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if !r.closed() {
		t.Fatal("connection left open after a panic")
	}
	if logged.Load() != 1 {
		t.Errorf("%d errors logged, want 1", logged.Load())
	}
	if resp, body := get(t, e.client("", "", ""), e.originURL("site.test", "/small")); resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("after the panic: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// A site that refuses an upload before taking it: the answer reaches the
// client in full while the upstream side is still waiting for the body,
// and then the connection closes.
func TestFrontEarlyAnswerToUpload(t *testing.T) {
	e := newEnv(t, envOpts{})
	base := e.extraOrigin("upload.test", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	r := e.raw(t)
	r.send("POST " + base + "/up HTTP/1.1\r\nHost: upload.test\r\nContent-Length: 10000000\r\n\r\n" + strings.Repeat("z", 1024))
	resp, body := r.read("POST")
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "too large") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if !r.closed() {
		t.Error("connection left open with the upload unfinished")
	}
}

// The pool dials the host as the policy saw it (lower case), and shares
// connections between spellings of one name.
func TestUpstreamPoolNormalisedHost(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	for _, h := range []string{"SITE.Test", "site.test"} {
		if resp, body := get(t, c, e.originURL(h, "/small")); resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("%s: %d, %d bytes", h, resp.StatusCode, len(body))
		}
	}
	if n := e.originNC.Load(); n != 1 {
		t.Errorf("origin saw %d connections, want 1", n)
	}
}

// Short answers of undeclared length (a refused tunnel, an error page)
// go out with a Content-Length, not chunked, and keep the connection.
func TestFrontShortAnswersHaveLength(t *testing.T) {
	e := newEnv(t, envOpts{})
	r := e.raw(t)
	r.send("CONNECT adult.test:443 HTTP/1.1\r\nHost: adult.test:443\r\n\r\n")
	resp, body := r.read("CONNECT")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "adult.test is blocked") {
		t.Fatalf("blocked tunnel: %d %q", resp.StatusCode, body)
	}
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("refused tunnel: length %d for %d bytes, transfer encoding %v", resp.ContentLength, len(body), resp.TransferEncoding)
	}
	r.send("GET " + e.originURL("site.test", "/small") + " HTTP/1.1\r\nHost: site.test\r\nVia: 1.1 gatehouse\r\n\r\n")
	resp, body = r.read("GET")
	if resp.StatusCode != http.StatusLoopDetected || resp.ContentLength != int64(len(body)) {
		t.Errorf("error page: %d, length %d for %d bytes", resp.StatusCode, resp.ContentLength, len(body))
	}
	r.send("GET " + e.originURL("site.test", "/small") + " HTTP/1.1\r\nHost: site.test\r\n\r\n")
	if resp, body := r.read("GET"); resp.StatusCode != 200 || len(body) != 1024 {
		t.Fatalf("same connection afterwards: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// idleCount is the number of pooled connections.
func (u *upstream) idleCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, list := range u.idle {
		n += len(list)
	}
	return n
}
