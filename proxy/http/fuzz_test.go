package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
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
