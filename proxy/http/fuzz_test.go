package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzServeRequest drives the request-parsing path (host and port
// splitting, normalisation, login parsing, policy lookup, the block page)
// with arbitrary requests. Nothing leaves the process: every dial fails.
func FuzzServeRequest(f *testing.F) {
	for _, s := range []string{
		"GET http://site.test/small HTTP/1.1\r\nHost: site.test\r\n\r\n",
		"GET http://adult.test/x?y=%zz HTTP/1.1\r\nHost: adult.test\r\n\r\n",
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\nProxy-Authorization: Basic amFtZXM6eA==\r\n\r\n",
		"GET http://xn--bcher-kva.example/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic !!!\r\n\r\n",
		"POST http://games.test/.gatehouse/report HTTP/1.1\r\nHost: games.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\nurl=http://a&why=b\r\n",
		"GET /proxy.pac HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n",
		"GET http://www.site.test/casino HTTP/1.0\r\nConnection: Upgrade, X\r\nUpgrade: websocket\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f, envOpts{})
	e.s.dialAddr = func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no network in fuzzing")
	}
	e.s.tr.DialContext = e.s.dialContext
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1234"
		rec := httptest.NewRecorder()
		e.s.ServeHTTP(rec, req)
		if rec.Code == 0 {
			t.Fatal("no status written")
		}
		name, pass, ok := parseBasic(req.Header.Get("Proxy-Authorization"))
		if ok && name == "" {
			t.Fatalf("empty user name accepted (%q)", pass)
		}
		_ = isClientHello(data)
	})
}

// FuzzFrontConn sends arbitrary bytes over a real loopback connection to
// the proxy's own HTTP/1.1 loop (request parsing, pipelining, bodies,
// Expect, framing of the answers). The proxy must answer or close, never
// hang and never hit an internal error. Every upstream dial fails.
func FuzzFrontConn(f *testing.F) {
	for _, s := range []string{
		"GET http://site.test/small HTTP/1.1\r\nHost: site.test\r\n\r\nGET http://adult.test/ HTTP/1.1\r\nHost: adult.test\r\n\r\n",
		"GET http://site.test/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD http://site.test/ HTTP/1.0\r\n\r\n",
		"POST http://site.test/ HTTP/1.1\r\nHost: site.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"POST http://adult.test/ HTTP/1.1\r\nHost: adult.test\r\nContent-Length: 3\r\n\r\nabcGET /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n\r\n\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",
		"GET /wpad.dat HTTP/1.1\r\nHost: wpad\r\nExpect: 100-continue\r\n\r\n",
		"GET http://site.test/ HTTP/1.1\r\nHost: site.test\r\nContent-Length: 10\r\n\r\nshort",
		"OPTIONS * HTTP/1.1\r\nHost: site.test\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// CONNECT tunnels carrying hellos dressed as TLS servers accept them
	// (a warning alert first, record version 3.5, an alert between records).
	connect := []byte("CONNECT site.test:443 HTTP/1.1\r\nHost: site.test:443\r\n\r\n")
	warn := []byte{recordAlert, 0x03, 0x03, 0x00, 0x02, alertLevelWarning, 0x5a}
	f.Add(slices.Concat(connect, warn, buildHello("adult.test", false, 1)))
	f.Add(slices.Concat(connect, recordVersion(buildHello("adult.test", false, 1), 0x03, 0x05)))
	f.Add(slices.Concat(connect, alertsBetween(buildHello("adult.test", false, 2), warn)))
	e := newEnv(f, envOpts{})
	e.s.dialAddr = func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no network in fuzzing")
	}
	var internal atomic.Int32
	e.s.log = slog.New(countErrors{&internal})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write(data)
		_ = c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the proxy neither answered nor closed within 5s")
			}
		}
		if n := internal.Load(); n > 0 {
			t.Fatalf("%d internal errors logged", n)
		}
	})
}

// countErrors is a slog handler that counts error records.
type countErrors struct{ n *atomic.Int32 }

func (h countErrors) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h countErrors) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h countErrors) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countErrors) WithGroup(string) slog.Handler      { return h }
