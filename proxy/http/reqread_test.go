package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// readBoth reads head with the front's reader (reused parts when reuse)
// and with http.ReadRequest, and fails the test when the fast path took
// it and the two differ in any field or in what they left unread.
func readBoth(t *testing.T, rr *reqReader, head []byte) (fast bool) {
	t.Helper()
	br := bufio.NewReaderSize(bytes.NewReader(head), 4<<10)
	_, _ = br.Peek(1)
	got, gerr := rr.read(br)
	fast = gerr == nil && rr.fast(got)
	if !fast {
		return false
	}
	want, werr := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(head), 4<<10))
	if werr != nil {
		t.Fatalf("the fast path read %q, which http.ReadRequest refuses: %v", head, werr)
	}
	if !reflect.DeepEqual(got.URL, want.URL) {
		t.Fatalf("%q: URL %#v, http.ReadRequest %#v", head, got.URL, want.URL)
	}
	if !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("%q: header %v, http.ReadRequest %v", head, got.Header, want.Header)
	}
	g, w := *got, *want
	g.URL, w.URL, g.Header, w.Header = nil, nil, nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%q: request %+v, http.ReadRequest %+v", head, g, w)
	}
	if got.Method != http.MethodConnect && got.URL.String() != got.RequestURI {
		t.Fatalf("%q: URL.String() %q, not the target", head, got.URL.String())
	}
	rest, _ := io.ReadAll(br)
	wbr := bufio.NewReaderSize(bytes.NewReader(head), 4<<10)
	_, _ = http.ReadRequest(wbr)
	wrest, _ := io.ReadAll(wbr)
	if !bytes.Equal(rest, wrest) {
		t.Fatalf("%q: left %q unread, http.ReadRequest %q", head, rest, wrest)
	}
	return true
}

var readSeeds = []string{
	"GET http://adult.test/x HTTP/1.1\r\nHost: adult.test\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
	"GET http://Adult.Test:8080/a/b;c=d/../e?q=1&r=%41 HTTP/1.1\r\nhost: x\r\nx-custom-thing:  v  \r\nAccept: */*\r\nAccept: text/html\r\n\r\n",
	"HEAD http://a.b/ HTTP/1.1\r\nHost: a.b\r\nConnection: keep-alive, Upgrade\r\n\r\nGET http://next/ HTTP/1.1\r\n",
	"CONNECT adult.test:443 HTTP/1.1\r\nHost: adult.test:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n",
	"CONNECT adult.test HTTP/1.1\r\nHost: adult.test\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nConnection: Close\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nHost: c.d\r\n\r\n",
	"GET http://a.b/ HTTP/1.0\r\nHost: a.b\r\n\r\n",
	"GET http://a.b/%2e%2E/x HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://u@a.b/ HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://[::1]:80/ HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b/? HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\n Folded: x\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost : a.b\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nContent-Length: 3\r\n\r\nabc",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nPragma: no-cache\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\nHost: a.b\n\n",
	"GET http://a.b/\x7f HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nX: \xc3\xa9\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nX: a\rb\r\n\r\n",
	"GET http://a.b/x?a=b#frag HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b:/ HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b:123456/ HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b//x//y HTTP/1.1\r\nHost: a.b\r\nx-a: 1\r\nX-A: 2\r\n\r\n",
	"get http://a.b/ HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET /local HTTP/1.1\r\nHost: a.b\r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nConnection: keep-alive,close \r\n\r\n",
	"GET http://a.b/ HTTP/1.1\r\nHost: a.b\r\nExpect: 100-continue\r\n\r\n",
}

// TestReadRequestFast: the heads the fast path is for are read by it, the
// rest by http.ReadRequest, and either way alike (readBoth).
func TestReadRequestFast(t *testing.T) {
	fastWant := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: false, 5: false, 6: false, 7: false, 8: false,
		9: false, 10: false, 11: false, 12: false, 13: false, 14: false, 15: false, 16: false, 17: false, 18: false,
		19: false, 20: false, 21: false, 22: false, 23: false, 24: false, 25: true, 26: false, 27: false, 28: false, 29: true}
	for _, reuse := range []bool{false, true} {
		rr := &reqReader{}
		for i, head := range readSeeds {
			rr.free = reuse
			if got := readBoth(t, rr, []byte(head)); got != fastWant[i] {
				t.Errorf("seed %d %q: fast %v, want %v", i, head, got, fastWant[i])
			}
		}
	}
}

// TestReadRequestReuse: parts are written over only when the front has
// freed them.
func TestReadRequestReuse(t *testing.T) {
	rr := &reqReader{}
	sr := strings.NewReader("")
	br := bufio.NewReader(sr)
	read := func(head string) *http.Request {
		sr.Reset(head)
		br.Reset(sr)
		_, _ = br.Peek(1)
		r, err := rr.read(br)
		if err != nil || !rr.fast(r) {
			t.Fatalf("%q: not read by the fast path (%v)", head, err)
		}
		return r
	}
	a := read(readSeeds[0])
	b := read(readSeeds[1])
	if a == b || a.Header["User-Agent"][0] != "Go-http-client/1.1" || a.URL.Host != "adult.test" {
		t.Fatalf("a request not freed was written over: %+v", a)
	}
	rr.free = true
	c := read(readSeeds[3])
	if c != b || b.Method != http.MethodConnect {
		t.Fatal("a freed request's parts were not reused")
	}
	if _, ok := c.Header["Accept"]; ok {
		t.Fatalf("the last request's fields were kept: %v", c.Header)
	}
	for _, i := range []int{0, 2} { // seed 2 has a Connection field
		if n := testing.AllocsPerRun(100, func() { rr.free = true; read(readSeeds[i]) }); n > 1 {
			t.Errorf("seed %d: a reused read allocates %.0f times, want 1 (the head's string)", i, n)
		}
	}
}

func FuzzReadRequest(f *testing.F) {
	for _, s := range readSeeds {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, head []byte, reuse bool) {
		rr := &reqReader{}
		readBoth(t, rr, []byte(readSeeds[0])) // parts to reuse
		rr.free = reuse
		readBoth(t, rr, head)
	})
}

// TestEventsDetachHead: an event kept past its request (the collapse
// window, the writer's queue) holds copies of the strings cut from the
// request's head, not the head: it would keep the cookies too.
func TestEventsDetachHead(t *testing.T) {
	e := newEnv(t, envOpts{})
	head := "GET http://adult.test/x?q=a HTTP/1.1\r\n" + strings.Repeat("Cookie: a=b\r\n", 200) + "\r\n"
	in := func(s string) bool {
		p, h := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(head)))
		return p >= h && p < h+uintptr(len(head))
	}
	ev := reports.Event{Time: time.Now(), Source: "http", Action: "block", Name: head[11:21], URL: head[4:27], SearchTerm: head[26:27], Count: 1}
	if !in(ev.Name) || !in(ev.URL) || !in(ev.SearchTerm) {
		t.Fatal("the test's strings are not the head's")
	}
	e.s.events.record(ev)
	e.s.events.flush(true)
	evs := e.sink.events()
	if len(evs) != 1 || evs[0].Name != "adult.test" || evs[0].URL != "http://adult.test/x?q=a" || evs[0].SearchTerm != "a" {
		t.Fatalf("events %+v", evs)
	}
	if in(evs[0].Name) || in(evs[0].URL) || in(evs[0].SearchTerm) {
		t.Error("the stored event points into the request's head")
	}
}

// TestUpstreamKeyCopied: the pool of idle connections to sites keeps its
// own copy of a site's name and port, not strings cut from the request
// head that first dialled it.
func TestUpstreamKeyCopied(t *testing.T) {
	e := newEnv(t, envOpts{})
	_, port, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	head := "GET http://site.test:" + port + "/ HTTP/1.1\r\n" + strings.Repeat("Cookie: a=b\r\n", 200) + "\r\n"
	in := func(s string) bool {
		p, h := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(head)))
		return p >= h && p < h+uintptr(len(head))
	}
	key := siteKey{host: head[11:20], port: head[21 : 21+len(port)]}
	if key.host != "site.test" || key.port != port || !in(key.host) || !in(key.port) {
		t.Fatalf("key %+v", key)
	}
	info := &reqInfo{client: netip.MustParseAddr("127.0.0.1"), host: key.host, port: key.port}
	pc, err := e.s.up.dial(context.Background(), info, key)
	if err != nil {
		t.Fatal(err)
	}
	e.s.up.put(key, pc)
	e.s.up.mu.Lock()
	defer e.s.up.mu.Unlock()
	if len(e.s.up.idle) != 1 {
		t.Fatalf("idle %v", e.s.up.idle)
	}
	for k := range e.s.up.idle {
		if k != key || in(k.host) || in(k.port) || in(pc.key.host) || in(pc.key.port) {
			t.Errorf("the pool keeps the head's strings: %+v", k)
		}
	}
}
