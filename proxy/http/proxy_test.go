package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

func TestAllowedGETKeepAlive(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	reused := 0
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("GET", e.originURL("site.test", "/small"), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) {
				if ci.Reused {
					reused++
				}
			},
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 1024 {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(b))
		}
		if !strings.Contains(resp.Header.Get("Via"), "gatehouse") {
			t.Errorf("response Via = %q", resp.Header.Get("Via"))
		}
	}
	if reused != 2 {
		t.Errorf("client connection reused %d times, want 2 (keep-alive to the proxy)", reused)
	}
	if n := e.originNC.Load(); n != 1 {
		t.Errorf("origin saw %d connections, want 1 (keep-alive upstream)", n)
	}
	if r := e.lastReq.Load(); r == nil || !strings.Contains(r.Header.Get("Via"), "gatehouse") {
		t.Errorf("origin request has no Via")
	}
	if n := e.res.count("site.test"); n != 1 {
		t.Errorf("site.test resolved %d times, want 1", n)
	}
}

func TestBlockedHostPerGroup(t *testing.T) {
	e := newEnv(t, envOpts{})
	students := e.client("127.0.0.1", "", "")
	resp, body := get(t, students, e.originURL("games.test", "/play"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("student: status %d", resp.StatusCode)
	}
	for _, want := range []string{"Test Academy", "online games", "acceptable use policy", resp.Header.Get("X-Gatehouse-Ref"), "Report a mistake", `name="viewport"`, "127.0.0.1"} {
		if want == "" || !strings.Contains(body, want) {
			t.Errorf("block page lacks %q", want)
		}
	}
	if e.res.count("games.test") != 0 || e.hits.Load() != 0 {
		t.Errorf("a blocked request was resolved (%d) or sent upstream (%d)", e.res.count("games.test"), e.hits.Load())
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "block" })
	if ev.Source != "http" || ev.Category != "games" || ev.Group != "students" || ev.Status != 403 || ev.Method != "GET" ||
		!strings.HasSuffix(ev.URL, "/play") || ev.Ref != resp.Header.Get("X-Gatehouse-Ref") || ev.Bytes == 0 {
		t.Errorf("event = %+v", ev)
	}
	// Staff (logged in) may play.
	staff := e.client("127.0.0.2", "jsmith", password)
	if resp, _ := get(t, staff, e.originURL("games.test", "/play")); resp.StatusCode != 200 {
		t.Errorf("staff: status %d", resp.StatusCode)
	}
	// Pornography is blocked for both.
	resp, body = get(t, staff, e.originURL("adult.test", "/"))
	if resp.StatusCode != 403 || !strings.Contains(body, "pornography") {
		t.Errorf("staff adult: %d", resp.StatusCode)
	}
}

func TestURLPathBlock(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	resp, body := get(t, c, e.originURL("www.site.test", "/casino/roulette?x=1"))
	if resp.StatusCode != 403 || !strings.Contains(body, "gambling") {
		t.Fatalf("casino path: %d", resp.StatusCode)
	}
	e.res.names["www.site.test"] = e.res.names["site.test"]
	if resp, _ := get(t, c, e.originURL("site.test", "/news")); resp.StatusCode != 200 {
		t.Errorf("other path: %d", resp.StatusCode)
	}
}

func TestConnectAllowedTLS(t *testing.T) {
	e := newEnv(t, envOpts{})
	resp, body := get(t, e.client("", "", ""), e.tlsURL("example.com", "/small"))
	if resp.StatusCode != 200 || len(body) != 1024 || resp.TLS == nil {
		t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
	}
}

// connect sends a raw CONNECT and returns the status line and the conn.
func (e *env) connect(src, target, auth string) (int, net.Conn, *bufio.Reader) {
	e.t.Helper()
	c := e.dial(src)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		e.t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp.StatusCode, c, br
}

func TestConnectBlocked(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, err := e.client("", "", "").Get("https://adult.test/"); err == nil {
		t.Fatal("CONNECT to a blocked host succeeded")
	}
	code, _, _ := e.connect("", "adult.test:443", "")
	if code != http.StatusForbidden {
		t.Fatalf("status %d", code)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "connect" })
	if ev.Action != "block" || ev.Category != "pornography" || ev.Name != "adult.test" || ev.Protocol != "https" || ev.Status != 403 {
		t.Errorf("event = %+v", ev)
	}
	if e.res.count("adult.test") != 0 {
		t.Error("a blocked CONNECT was resolved")
	}
}

func TestConnectBypassAttempts(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, tport, _ := net.SplitHostPort(e.tlsOrig.Listener.Addr().String())
	code, _, _ := e.connect("", "127.0.0.3:"+tport, "") // outside proxy.connect.ip_networks
	if code != http.StatusForbidden {
		t.Fatalf("IP literal: status %d", code)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "ip-literal" })
	if !ev.Bypass || ev.Action != "block" || ev.Source != "connect" || ev.Client != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("event = %+v", ev)
	}
	if e.hits.Load() != 0 {
		t.Error("origin was contacted")
	}
	code, _, _ = e.connect("", "example.com:22", "")
	if code != http.StatusForbidden {
		t.Fatalf("port 22: status %d", code)
	}
	ev = e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "port" })
	if !ev.Bypass || ev.Name != "example.com:22" {
		t.Errorf("event = %+v", ev)
	}
}

// TestNonTLSTunnel: plain HTTP through a tunnel to the TLS-checked port is
// closed and recorded, the port written as it is or with a leading zero
// ("site.test:0443" is 443 to the dialler and to proxy.connect.ports; the
// port is made canonical where the request is read).
func TestNonTLSTunnel(t *testing.T) {
	for _, zero := range []string{"", "0"} {
		e := newEnv(t, envOpts{tlsPort: true})
		_, oport, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
		code, c, br := e.connect("", "site.test:"+zero+oport, "")
		if code != 200 {
			t.Fatalf("port %s%s: status %d", zero, oport, code)
		}
		fmt.Fprintf(c, "GET /small HTTP/1.1\r\nHost: site.test\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if resp, err := http.ReadResponse(br, nil); err == nil {
			t.Errorf("port %s%s: plain HTTP went through a tunnel that should carry TLS: %s", zero, oport, resp.Status)
		}
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "not-tls" })
		if !ev.Bypass || ev.Action != "block" || ev.Source != "connect" {
			t.Errorf("port %s%s: event = %+v", zero, oport, ev)
		}
		if e.hits.Load() != 0 {
			t.Errorf("port %s%s: origin served the non-TLS tunnel", zero, oport)
		}
	}
	// A real ClientHello on the same port passes the check.
	e2 := newEnv(t, envOpts{tlsPort: true})
	_, tport, _ := net.SplitHostPort(e2.tlsOrig.Listener.Addr().String())
	e2.s.tlsPort = tport
	if resp, _ := get(t, e2.client("", "", ""), e2.tlsURL("example.com", "/small")); resp.StatusCode != 200 {
		t.Errorf("TLS tunnel on the checked port: %d", resp.StatusCode)
	}
}

func TestProxyAuthStaff(t *testing.T) {
	e := newEnv(t, envOpts{})
	// No login from the staff network: 407.
	resp, _ := get(t, e.client("127.0.0.2", "", ""), e.originURL("site.test", "/"))
	if resp.StatusCode != http.StatusProxyAuthRequired || !strings.Contains(resp.Header.Get("Proxy-Authenticate"), `Basic realm="Test Academy"`) {
		t.Fatalf("status %d, %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	// Wrong password: 407.
	if resp, _ := get(t, e.client("127.0.0.2", "jsmith", "nope"), e.originURL("site.test", "/")); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("wrong password: status %d", resp.StatusCode)
	}
	staff := e.client("127.0.0.2", "jsmith", password)
	if resp, _ := get(t, staff, e.originURL("site.test", "/")); resp.StatusCode != 200 {
		t.Fatalf("logged in: status %d", resp.StatusCode)
	}
	if r := e.lastReq.Load(); r.Header.Get("Proxy-Authorization") != "" {
		t.Error("credentials were forwarded upstream")
	}
	// CONNECT carries the login too.
	if resp, _ := get(t, staff, e.tlsURL("example.com", "/small")); resp.StatusCode != 200 {
		t.Fatalf("https logged in: status %d", resp.StatusCode)
	}
	resp, _ = get(t, staff, e.originURL("adult.test", "/x"))
	if resp.StatusCode != 403 {
		t.Fatalf("blocked: %d", resp.StatusCode)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "adult.test" })
	if ev.User != "jsmith" || ev.Group != "staff" {
		t.Errorf("event = %+v", ev)
	}
	if u := e.s.Logins().UserFor(netip.MustParseAddr("127.0.0.2")); u != "jsmith" {
		t.Errorf("UserFor = %q", u)
	}
	if u := e.s.Logins().UserFor(netip.MustParseAddr("127.0.0.1")); u != "" {
		t.Errorf("UserFor(other) = %q", u)
	}
	// Students need no login.
	if resp, _ := get(t, e.client("127.0.0.1", "", ""), e.originURL("site.test", "/")); resp.StatusCode != 200 {
		t.Errorf("student: %d", resp.StatusCode)
	}
}

func TestUpstreamCertificate(t *testing.T) {
	// HTTPS sent to the proxy as a plain absolute URL: the proxy makes the
	// TLS connection and must verify it.
	raw := func(e *env) (int, string) {
		c := e.dial("")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n", e.tlsURL("example.com", "/small"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	e := newEnv(t, envOpts{})
	code, body := raw(e)
	if code != http.StatusBadGateway || !strings.Contains(body, "certificate") || strings.Contains(body, "xxxx") {
		t.Fatalf("untrusted origin: %d %q", code, body)
	}
	if e.hits.Load() != 0 {
		t.Error("the untrusted origin served a request")
	}
	// The same origin with its certificate trusted works.
	pool := x509.NewCertPool()
	pool.AddCert(e.tlsOrig.Certificate())
	e2 := newEnv(t, envOpts{roots: pool})
	pool2 := x509.NewCertPool()
	pool2.AddCert(e2.tlsOrig.Certificate())
	e2.s.tr.TLSClientConfig.RootCAs = pool2
	if code, body := raw(e2); code != 200 || len(body) != 1024 {
		t.Fatalf("trusted origin: %d", code)
	}
}

// TestSlowLorisCutOff: a client trickling header lines is cut off by the
// 1 s header timeout while it is still sending. It would trickle for a
// minute, so the test tells a cut-off from a per-line idle timeout by how
// far the client got, not by the clock.
func TestSlowLorisCutOff(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("")
	_ = c.SetDeadline(time.Now().Add(3 * time.Minute))
	fmt.Fprintf(c, "GET http://site.test/ HTTP/1.1\r\n")
	const lines = 300 // one every 200 ms: a minute
	sent := make(chan int, 1)
	go func() {
		i := 0
		for ; i < lines; i++ {
			time.Sleep(200 * time.Millisecond)
			if _, err := fmt.Fprintf(c, "X-Slow-%d: 1\r\n", i); err != nil {
				break
			}
		}
		sent <- i
	}()
	_, err := io.ReadAll(c)
	c.Close()
	n := <-sent
	// Closed with header lines it had not read, the proxy's socket is
	// reset by the kernel rather than shut: that ends the connection too.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading from the proxy: %v (after %d header lines)", err, n)
	}
	if n == lines {
		t.Fatalf("slow client sent all %d header lines before the connection ended; header timeout is 1s", lines)
	}
	if e.hits.Load() != 0 {
		t.Error("the slow request reached the origin")
	}
}

func TestConnectionCap(t *testing.T) {
	e := newEnv(t, envOpts{})
	var conns []*bufio.Reader
	for i := 0; i < 10; i++ {
		c := e.dial("")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\n\r\n", e.originURL("site.test", "/"))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("conn %d: %v %v", i, err, resp)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		conns = append(conns, br)
	}
	resp, _ := get(t, e.client("", "", ""), e.originURL("site.test", "/"))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("11th connection: status %d", resp.StatusCode)
	}
	// Another client address is under its own cap.
	e.res.names["site.test"] = e.res.names["example.com"]
	if resp, _ := get(t, e.client("127.0.0.3", "", ""), e.originURL("site.test", "/")); resp.StatusCode != 200 {
		t.Errorf("other client: status %d", resp.StatusCode)
	}
	_ = conns
}

func TestClientACL(t *testing.T) {
	e := newEnv(t, envOpts{allow: "[127.0.0.1/32, 127.0.0.2/32]"})
	c := e.dial("127.0.0.9")
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\n\r\n", e.originURL("site.test", "/"))
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("a client outside clients.allow got an answer: %q", b)
	}
	if e.hits.Load() != 0 {
		t.Error("an outside client's request reached the origin")
	}
}

// TestUpgradeOnlyWebSocket: a WebSocket upgrade is relayed both ways; any
// other protocol switch is not passed on. With Upgrade: h2c relayed, an origin that speaks h2c switched
// the connection to HTTP/2 after an allowed first request, and every later
// request on it went by unread: a path the URL lists block included.
func TestUpgradeOnlyWebSocket(t *testing.T) {
	e := newEnv(t, envOpts{})
	var sawUpgrade atomic.Value
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sawUpgrade.Store(r.Header.Get("Upgrade") + "|" + r.Header.Get("Http2-Settings"))
		if r.Header.Get("Upgrade") == "" {
			io.WriteString(w, "plain answer")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", r.Header.Get("Upgrade"))
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		fmt.Fprintf(brw, "switched: %s", line)
		_ = brw.Flush()
	})
	srv := &http.Server{Handler: mux}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	e.allowPort(port)
	for _, up := range []string{"h2c", "H2C", "websocket, h2c", "TLS/1.2", "websocket2"} {
		c := e.dial("")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET http://site.test:%s/allowed HTTP/1.1\r\nHost: site.test:%s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: %s\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", port, port, up)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("Upgrade: %s: %v", up, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
		c.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "plain answer" || sawUpgrade.Load() != "|" {
			t.Errorf("Upgrade: %s: %d %q, the site saw Upgrade|HTTP2-Settings %q", up, resp.StatusCode, body, sawUpgrade.Load())
		}
	}
	// WebSocket (any case) is still relayed, both ways.
	for _, up := range []string{"websocket", "WebSocket"} {
		c := e.dial("")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET http://site.test:%s/ws HTTP/1.1\r\nHost: site.test:%s\r\nConnection: keep-alive, Upgrade\r\nUpgrade: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", port, port, up)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || sawUpgrade.Load() != up+"|" {
			t.Fatalf("%s: %v %v, the site saw %q", up, err, resp, sawUpgrade.Load())
		}
		fmt.Fprintf(c, "hello\n")
		if line, err := br.ReadString('\n'); err != nil || line != "switched: hello\n" {
			t.Fatalf("%s relay: %q, %v", up, line, err)
		}
		c.Close()
	}
}

func TestStreamingBody(t *testing.T) {
	e := newEnv(t, envOpts{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "second part\n")
	})
	srv := &http.Server{Handler: mux}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	e.allowPort(port)
	resp, err := e.client("", "", "").Get("http://site.test:" + port + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first part\n" {
		t.Fatalf("first part = %q %v (the body was buffered?)", line, err)
	}
	close(release)
	if rest, _ := io.ReadAll(br); string(rest) != "second part\n" {
		t.Errorf("rest = %q", rest)
	}
}

func TestHopByHopHeaders(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n", e.originURL("site.test", "/"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(err, resp)
	}
	r := e.lastReq.Load()
	for _, h := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection", "Connection"} {
		if r.Header.Get(h) != "" {
			t.Errorf("%s was forwarded", h)
		}
	}
	if r.Header.Get("X-Kept") != "yes" || r.Header.Get("Via") != Via {
		t.Errorf("headers = %v", r.Header)
	}
}

func TestAdminPages(t *testing.T) {
	e := newEnv(t, envOpts{})
	admin := &http.Server{Handler: e.s.AdminHandler()}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = admin.Serve(ln) }()
	t.Cleanup(func() { admin.Close() })
	base := "http://" + ln.Addr().String()

	resp, body := get(t, http.DefaultClient, base+"/proxy.pac")
	_, port, _ := net.SplitHostPort(e.cfg.Proxy.Listen)
	if resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" || !strings.Contains(body, `dnsDomainIs(host, ".school.internal")`) ||
		!strings.Contains(body, `"PROXY 127.0.0.1:`+port+`"`) {
		t.Errorf("PAC:\n%s", body)
	}
	if _, body := get(t, http.DefaultClient, base+"/wpad.dat"); !strings.Contains(body, "FindProxyForURL") {
		t.Error("wpad.dat")
	}

	// The DNS resolver's block-page address: Host is the blocked site.
	req, _ := http.NewRequest("GET", base+"/videos", nil)
	req.Host = "adult.test"
	req.Header.Set("Accept", browserAccept)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 403 || !strings.Contains(string(b), "pornography") || !strings.Contains(string(b), "http://adult.test/videos") {
		t.Errorf("DNS block page: %d\n%s", r2.StatusCode, b)
	}
	ref := r2.Header.Get("X-Gatehouse-Ref")

	// Report a mistake: stored for IT, rate-limited (2 an hour in the test).
	form := formOf(t, string(b), "It is a biology resource")
	for i, want := range []int{200, 200, 429} {
		resp, err := http.PostForm(base+reportPath, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("report %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "report" })
	if ev.Ref != ref || ev.Note != "It is a biology resource" || ev.Route != "it" || ev.Name != "adult.test" {
		t.Errorf("report event = %+v", ev)
	}
	n := 0
	for _, ev := range e.sink.events() {
		if ev.Action == "report" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d report events, want 2 (the third was refused)", n)
	}

	// Through the proxy, the form posts to the blocked site's address and
	// the proxy answers it.
	pc := e.client("127.0.0.3", "", "")
	_, page := get(t, pc, "http://games.test/")
	resp, err = pc.PostForm("http://games.test"+reportPath, formOf(t, page, "It is for a lesson"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || e.res.count("games.test") != 0 {
		t.Errorf("report through the proxy: %d", resp.StatusCode)
	}
}

func TestRestrictedPageIsQuiet(t *testing.T) {
	e := newEnv(t, envOpts{})
	info := &reqInfo{client: netip.MustParseAddr("127.0.0.1"), host: "x.test"}
	info.dec.Restricted = true
	pd := e.s.pageFor(info, e.cfg, "http://x.test/secret")
	rec := &recorder{h: http.Header{}}
	e.s.writePage(rec, 403, pd)
	body := rec.b.String()
	if strings.Contains(body, "secret") || strings.Contains(body, "Category") || strings.Contains(body, "<form") || !strings.Contains(body, "not available") {
		t.Errorf("restricted page:\n%s", body)
	}
}

type recorder struct {
	h    http.Header
	b    strings.Builder
	code int
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(p []byte) (int, error) { return r.b.Write(p) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func TestEventsCollapse(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	for i := 0; i < 5; i++ {
		get(t, c, e.originURL("adult.test", "/"))
	}
	if n := len(e.sink.events()); n != 1 {
		t.Fatalf("%d events before the window ends, want 1", n)
	}
	e.s.events.flush(true)
	ev := e.sink.events()
	if len(ev) != 2 || ev[0].Count != 1 || ev[1].Count != 4 {
		t.Errorf("events = %+v", ev)
	}
}

func TestIsClientHello(t *testing.T) {
	hello := func() []byte {
		// Capture a real ClientHello.
		a, b := net.Pipe()
		go func() {
			_ = tls.Client(a, &tls.Config{ServerName: "x.test"}).HandshakeContext(context.Background())
		}()
		buf := make([]byte, 16)
		n, _ := io.ReadAtLeast(b, buf, 6)
		a.Close()
		b.Close()
		return buf[:n]
	}()
	if !isClientHello(hello) {
		t.Errorf("a real ClientHello was not recognised: % x", hello)
	}
	for _, s := range []string{"GET / HTTP/1.1\r\n", "SSH-2.0-OpenSSH", "\x16\x03\x09", "\x16\x03\x01\x00\x10\x02"} {
		if isClientHello([]byte(s)) {
			t.Errorf("%q taken for a ClientHello", s)
		}
	}
}

func TestLoopAndURLCredentials(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.dial("")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\nVia: 1.1 gatehouse\r\n\r\n", e.originURL("site.test", "/"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusLoopDetected {
		t.Fatalf("looped request: %v %v", err, resp)
	}
	c2 := e.dial("")
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c2, "GET http://me:secret@adult.test/a HTTP/1.1\r\nHost: adult.test\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("blocked: %v %v", err, resp)
	}
	b, _ := io.ReadAll(resp.Body)
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "adult.test" })
	if strings.Contains(ev.URL, "secret") || strings.Contains(string(b), "secret") || ev.URL != "http://adult.test/a" {
		t.Errorf("credentials kept: event URL %q", ev.URL)
	}
}

// TestClientCloseKeepsSiteConnection: a client that closes its connection
// after each request ("Connection: close") still gets its answers, its
// own connection is closed each time, and the proxy's pooled connection
// to the site is kept for the next request instead of redialled.
func TestClientCloseKeepsSiteConnection(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := e.client("", "", "")
	c.Transport.(browser).DisableKeepAlives = true // sends Connection: close
	for i := 0; i < 3; i++ {
		resp, err := c.Get(e.originURL("site.test", "/small"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 1024 || !resp.Close {
			t.Fatalf("status %d, %d bytes, close %v", resp.StatusCode, len(b), resp.Close)
		}
	}
	if n := e.originNC.Load(); n != 1 {
		t.Errorf("origin saw %d connections for 3 requests, want 1 (the proxy's pool kept it)", n)
	}
}

// TestMistakeReportLogNamesNoSite: a "report a mistake" form is stored
// for IT (kept as long as breaches); the log, which the system keeps by
// its own policy, says only that one came, with its reference, never the
// page the pupil was on.
func TestMistakeReportLogNamesNoSite(t *testing.T) {
	e := newEnv(t, envOpts{})
	var logs syncBuffer
	e.s.log = slog.New(slog.NewTextHandler(&logs, nil))
	admin := &http.Server{Handler: e.s.AdminHandler()}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = admin.Serve(ln) }()
	t.Cleanup(func() { admin.Close() })
	base := "http://" + ln.Addr().String()
	req, _ := http.NewRequest("GET", base+"/help-page", nil)
	req.Host = "adult.test"
	req.Header.Set("Accept", browserAccept)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	ref := r.Header.Get("X-Gatehouse-Ref")
	form := formOf(t, string(page), "It is a biology resource")
	resp, err := http.PostForm(base+reportPath, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("report: status %d", resp.StatusCode)
	}
	e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "report" })
	got := logs.String()
	if !strings.Contains(got, ref) {
		t.Errorf("the log does not give the report's reference %s:\n%s", ref, got)
	}
	for _, s := range []string{"adult.test", "help-page", "biology"} {
		if strings.Contains(got, s) {
			t.Errorf("the log names %q:\n%s", s, got)
		}
	}
}

// syncBuffer is a bytes.Buffer the server's goroutines may log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
