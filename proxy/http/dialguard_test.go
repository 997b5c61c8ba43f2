package httpproxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// testDNS is a loopback DNS server. Each name has a list of addresses
// given in turn, one per lookup (A and AAAA queries advance together), so
// a name can change its answer between two lookups (DNS rebinding).
type testDNS struct {
	mu    sync.Mutex
	names map[string][]string
	asked map[string]int // per name and type
}

func newTestDNS(t *testing.T, names map[string][]string) *UpstreamResolver {
	t.Helper()
	d := &testDNS{names: map[string][]string{}, asked: map[string]int{}}
	for n, a := range names {
		d.names[mdns.Fqdn(n)] = a
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(d.serve)}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	r, err := NewUpstreamResolver([]string{pc.LocalAddr().String()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.ttl, r.neg = 0, 0 // every dial asks again, as a short TTL lets it
	return r
}

func (d *testDNS) serve(w mdns.ResponseWriter, r *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(r)
	if len(r.Question) == 1 {
		q := r.Question[0]
		d.mu.Lock()
		seq, ok := d.names[q.Name]
		k := fmt.Sprint(q.Name, q.Qtype)
		n := d.asked[k]
		d.asked[k]++
		d.mu.Unlock()
		if !ok {
			m.Rcode = mdns.RcodeNameError
		} else if a := netip.MustParseAddr(seq[n%len(seq)]); q.Qtype == mdns.TypeA && a.Is4() {
			rr, _ := mdns.NewRR(q.Name + " 0 IN A " + a.String())
			m.Answer = append(m.Answer, rr)
		} else if q.Qtype == mdns.TypeAAAA && a.Is6() {
			rr, _ := mdns.NewRR(q.Name + " 0 IN AAAA " + a.String())
			m.Answer = append(m.Answer, rr)
		}
	}
	_ = w.WriteMsg(m)
}

// service is a loopback HTTP server standing for something on the school's
// network or the Gatehouse machine (a router page, /metrics).
type service struct {
	port string
	hits atomic.Int32
}

func newService(t *testing.T, addr, body string) *service {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, body)
}

// samePort listens on one port free on both addresses: another test may
// hold a port on the second that was free on the first.
func samePort(t *testing.T, a, b string) (net.Listener, net.Listener) {
	t.Helper()
	for range 50 {
		la, err := net.Listen("tcp", a+":0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(la.Addr().String())
		if lb, err := net.Listen("tcp", net.JoinHostPort(b, port)); err == nil {
			return la, lb
		}
		la.Close()
	}
	t.Fatalf("no port free on both %s and %s", a, b)
	return nil, nil
}

// serveOn answers every request on ln with body, closing each connection.
func serveOn(t *testing.T, ln net.Listener, body string) *service {
	sv := &service{}
	_, sv.port, _ = net.SplitHostPort(ln.Addr().String())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sv.hits.Add(1)
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sv
}

// dials records the addresses the proxy dials; redirect, if set, maps an
// address to the one really dialled (a private network that loopback
// stands in for). Nothing beyond loopback is ever dialled.
type dials struct {
	mu       sync.Mutex
	addrs    []string
	redirect map[string]string
}

func (d *dials) hook(e *env) {
	var dl net.Dialer
	e.s.dialAddr = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.mu.Lock()
		d.addrs = append(d.addrs, addr)
		if to, ok := d.redirect[addr]; ok {
			addr = to
		}
		d.mu.Unlock()
		if ap, err := netip.ParseAddrPort(addr); err != nil || !ap.Addr().IsLoopback() {
			// Tests stay on loopback even when the check under test fails.
			return nil, fmt.Errorf("test: not dialling %s", addr)
		}
		return dl.DialContext(ctx, network, addr)
	}
}

func (d *dials) dialled(prefix string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.ContainsFunc(d.addrs, func(a string) bool { return strings.HasPrefix(a, prefix) })
}

func do(t *testing.T, c *http.Client, method, u string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("form=1")
	}
	req, _ := http.NewRequest(method, u, body)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// checkInternal asserts a 403 for an internal address and its event.
func checkInternal(t *testing.T, e *env, source, name, addr string, status int, ref string) {
	t.Helper()
	if status != http.StatusForbidden {
		t.Errorf("%s %s (%s): status %d, want 403", source, name, addr, status)
		return
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool {
		return ev.Source == source && ev.Reason == "internal-address" && ev.Entry == addr && (ref == "" || ev.Ref == ref) &&
			(ev.Name == name || strings.HasPrefix(ev.Name, name+":"))
	})
	if ev.Action != "block" || !ev.Bypass || ev.Route != "it" || ev.Status != 403 || ev.Client != netip.MustParseAddr("127.0.0.1") ||
		ev.Ref == "" {
		t.Errorf("%s %s: event = %+v", source, name, ev)
	}
}

// Plain HTTP (pooled GET, POST through net/http's Transport, WebSocket
// upgrade) and CONNECT to loopback, link-local, unspecified, multicast,
// broadcast, private and the proxy's own and Gatehouse's other listeners
// are refused with 403 and an event, whether the address is written in
// the URL or is what a name resolves to (over real DNS), in every
// spelling (IPv4-mapped, NAT64). Only 127.0.0.1/32 is configured (the
// test's origins).
func TestInternalAddressesRefused(t *testing.T) {
	res := newTestDNS(t, map[string][]string{
		"lo.test":     {"127.0.0.2"},
		"meta.test":   {"169.254.169.254"},
		"ten.test":    {"10.1.2.3"},
		"cgnat.test":  {"100.64.0.1"},
		"zero.test":   {"0.0.0.0"},
		"mcast.test":  {"224.0.0.1"},
		"bcast.test":  {"255.255.255.255"},
		"ula.test":    {"fd00::1"},
		"v6lo.test":   {"::1"},
		"v6ll.test":   {"fe80::1"},
		"mapped.test": {"::ffff:169.254.169.254"},
		"nat64.test":  {"64:ff9b::a9fe:a9fe"},
		"self.test":   {"127.0.0.1"},
		"admin.test":  {"127.0.0.1"},
		"site.test":   {"127.0.0.1"},
	})
	e := newEnv(t, envOpts{resolver: res})
	d := &dials{}
	d.hook(e)
	inside := newService(t, "127.0.0.2:0", "a service on the Gatehouse machine")
	admin := newService(t, "127.0.0.1:0", "gatehouse_metrics 1")
	e.s.AddOwnListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: atoi(t, admin.port)})
	_, pport, _ := net.SplitHostPort(e.addr)
	for _, p := range []string{inside.port, admin.port, pport} {
		e.allowPort(p)
	}
	e.editProxy(func(p *config.Proxy) {
		p.Connect.Ports = append(slices.Clone(p.Connect.Ports), atoi(t, inside.port), atoi(t, admin.port), atoi(t, pport))
	})
	c := e.client("", "", "")

	type target struct{ host, port, addr string }
	targets := []target{
		{"lo.test", inside.port, "127.0.0.2:" + inside.port},
		{"127.0.0.2", inside.port, "127.0.0.2:" + inside.port},
		{"meta.test", "80", "169.254.169.254:80"},
		{"169.254.169.254", "80", "169.254.169.254:80"},
		{"[::ffff:169.254.169.254]", "80", "169.254.169.254:80"},
		{"mapped.test", "80", "169.254.169.254:80"},
		{"nat64.test", "80", "169.254.169.254:80"},
		{"ten.test", "80", "10.1.2.3:80"},
		{"cgnat.test", "80", "100.64.0.1:80"},
		{"zero.test", "80", "0.0.0.0:80"},
		{"0.0.0.0", "80", "0.0.0.0:80"},
		{"mcast.test", "80", "224.0.0.1:80"},
		{"bcast.test", "80", "255.255.255.255:80"},
		{"ula.test", "80", "[fd00::1]:80"},
		{"v6lo.test", "80", "[::1]:80"},
		{"v6ll.test", "80", "[fe80::1]:80"},
		{"self.test", pport, "127.0.0.1:" + pport},
		{"127.0.0.1", pport, "127.0.0.1:" + pport},
		{"admin.test", admin.port, "127.0.0.1:" + admin.port},
	}
	for _, tg := range targets {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			u := "http://" + tg.host + ":" + tg.port + "/metrics"
			resp, body := do(t, c, method, u)
			if strings.Contains(body, "gatehouse_metrics") || strings.Contains(body, "Gatehouse machine") {
				t.Errorf("%s %s reached %q", method, u, body)
			}
			name := strings.Trim(tg.host, "[]")
			if a, err := netip.ParseAddr(name); err == nil {
				name = a.Unmap().String()
			}
			checkInternal(t, e, "http", name, tg.addr, resp.StatusCode, resp.Header.Get("X-Gatehouse-Ref"))
		}
	}
	// A WebSocket upgrade goes through the same dial.
	r := e.raw(t)
	r.send("GET http://lo.test:" + inside.port + "/ws HTTP/1.1\r\nHost: lo.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, _ := r.read("GET")
	checkInternal(t, e, "http", "lo.test", "127.0.0.2:"+inside.port, resp.StatusCode, resp.Header.Get("X-Gatehouse-Ref"))

	// CONNECT by name (a bare address outside proxy.connect.ip_networks is
	// refused before this, as an IP literal), and by an address inside it
	// that is the proxy itself.
	for _, tg := range []target{
		{"lo.test", inside.port, "127.0.0.2:" + inside.port},
		{"meta.test", "443", "169.254.169.254:443"},
		{"mapped.test", "443", "169.254.169.254:443"},
		{"ten.test", "443", "10.1.2.3:443"},
		{"zero.test", "443", "0.0.0.0:443"},
		{"mcast.test", "443", "224.0.0.1:443"},
		{"v6ll.test", "443", "[fe80::1]:443"},
		{"self.test", pport, "127.0.0.1:" + pport},
		{"127.0.0.1", pport, "127.0.0.1:" + pport},
		{"admin.test", admin.port, "127.0.0.1:" + admin.port},
	} {
		code, _, _ := e.connect("", net.JoinHostPort(tg.host, tg.port), "")
		checkInternal(t, e, "connect", tg.host, tg.addr, code, "")
	}

	if n := inside.hits.Load() + admin.hits.Load(); n != 0 {
		t.Errorf("internal services answered %d requests", n)
	}
	for _, tg := range targets {
		if !strings.HasPrefix(tg.addr, "127.0.0.1:") && d.dialled(tg.addr) {
			t.Errorf("%s was dialled", tg.addr)
		}
	}
	if d.dialled("127.0.0.1:"+pport) || d.dialled("127.0.0.1:"+admin.port) {
		t.Error("a Gatehouse listener was dialled")
	}
	// The configured loopback origin is still reached.
	if resp, body := get(t, c, e.originURL("site.test", "/")); resp.StatusCode != 200 || len(body) != 1024 {
		t.Errorf("allowed origin: %d", resp.StatusCode)
	}
}

// A name whose answer changes between lookups (DNS rebinding: an allowed
// address, then an internal one) is checked on every dial: the internal
// answer is refused however the allowed one went before. The proxy
// decides on the name without resolving it, so the only lookup is the
// dial's own.
func TestDNSRebindingRefused(t *testing.T) {
	lpub, lin := samePort(t, "127.0.0.1", "127.0.0.2")
	public := serveOn(t, lpub, "public page")
	inside := serveOn(t, lin, "router admin page")
	port := public.port
	res := newTestDNS(t, map[string][]string{"rebind.test": {"127.0.0.1", "127.0.0.2"}})
	e := newEnv(t, envOpts{resolver: res})
	(&dials{}).hook(e)
	e.allowPort(port)
	e.editProxy(func(p *config.Proxy) { p.Connect.Ports = append(slices.Clone(p.Connect.Ports), atoi(t, port)) })
	c := e.client("", "", "")
	for i := range 4 {
		resp, body := get(t, c, "http://rebind.test:"+port+"/"+strconv.Itoa(i)) // the site closes each connection, so each request dials
		if i%2 == 0 && (resp.StatusCode != 200 || body != "public page") {
			t.Fatalf("request %d (public answer): %d %q", i, resp.StatusCode, body)
		}
		if i%2 == 1 {
			checkInternal(t, e, "http", "rebind.test", "127.0.0.2:"+port, resp.StatusCode, resp.Header.Get("X-Gatehouse-Ref"))
		}
	}
	for i := range 2 {
		code, conn, _ := e.connect("", "rebind.test:"+port, "")
		conn.Close()
		if i == 0 && code != 200 {
			t.Fatalf("tunnel to the public answer: %d", code)
		}
		if i == 1 {
			checkInternal(t, e, "connect", "rebind.test", "127.0.0.2:"+port, code, "")
		}
	}
	if n := inside.hits.Load(); n != 0 {
		t.Errorf("the internal service answered %d requests", n)
	}
	if public.hits.Load() != 2 {
		t.Errorf("public service answered %d requests, want 2", public.hits.Load())
	}
}

// Private networks are reached only where proxy.http.ip_networks (plain
// requests) or proxy.connect.ip_networks (tunnels) list them, and a
// reload applies at once. No 10.x network exists on loopback, so the dial
// to 10.1.2.3 is recorded and sent to the loopback origins instead.
func TestPrivateNetworkWhenConfigured(t *testing.T) {
	res := newTestDNS(t, map[string][]string{"intranet.test": {"10.1.2.3"}})
	e := newEnv(t, envOpts{resolver: res})
	_, oport, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	_, tport, _ := net.SplitHostPort(e.tlsOrig.Listener.Addr().String())
	d := &dials{redirect: map[string]string{
		"10.1.2.3:" + oport: e.origin.Listener.Addr().String(),
		"10.1.2.3:" + tport: e.tlsOrig.Listener.Addr().String(),
	}}
	d.hook(e)
	c := e.client("", "", "")
	u := "http://intranet.test:" + oport + "/"
	resp, _ := get(t, c, u)
	checkInternal(t, e, "http", "intranet.test", "10.1.2.3:"+oport, resp.StatusCode, resp.Header.Get("X-Gatehouse-Ref"))
	code, _, _ := e.connect("", "intranet.test:"+tport, "")
	checkInternal(t, e, "connect", "intranet.test", "10.1.2.3:"+tport, code, "")
	if d.dialled("10.") {
		t.Fatal("a private address outside the configured networks was dialled")
	}

	e.editProxy(func(p *config.Proxy) {
		p.HTTP.IPNetworks = append(slices.Clone(p.HTTP.IPNetworks), netip.MustParsePrefix("10.1.0.0/16"))
	})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if resp, body := do(t, c, method, u); resp.StatusCode != 200 || len(body) != 1024 {
			t.Fatalf("%s to a configured private network: %d", method, resp.StatusCode)
		}
	}
	if !d.dialled("10.1.2.3:" + oport) {
		t.Error("the private address was not dialled")
	}
	// Tunnels follow proxy.connect.ip_networks, not the plain-HTTP list.
	if code, _, _ := e.connect("", "intranet.test:"+tport, ""); code != http.StatusForbidden {
		t.Fatalf("tunnel with only proxy.http.ip_networks: %d", code)
	}
	e.editProxy(func(p *config.Proxy) {
		p.Connect.IPNetworks = append(slices.Clone(p.Connect.IPNetworks), netip.MustParsePrefix("10.1.0.0/16"))
	})
	code, conn, _ := e.connect("", "intranet.test:"+tport, "")
	if code != 200 {
		t.Fatalf("tunnel to a configured private network: %d", code)
	}
	conn.Close()
}

// Plain HTTP goes only to proxy.http.ports, on every upstream path
// (pooled GET, POST through the Transport, https:// sent as a plain
// request).
func TestPlainHTTPPorts(t *testing.T) {
	e := newEnv(t, envOpts{})
	d := &dials{}
	d.hook(e)
	for _, tc := range []struct{ method, url string }{
		{http.MethodGet, "http://site.test:22/"},
		{http.MethodPost, "http://site.test:25/x"},
		{http.MethodGet, "http://93.184.216.34:6379/"},
		{http.MethodGet, "https://site.test:8443/"},
	} {
		r := e.raw(t)
		r.send(tc.method + " " + tc.url + " HTTP/1.1\r\nHost: site.test\r\nContent-Length: 0\r\n\r\n")
		resp, _ := r.read(tc.method)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s: status %d, want 403", tc.method, tc.url, resp.StatusCode)
			continue
		}
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "port" && ev.Method == tc.method && ev.URL == tc.url })
		if !ev.Bypass || ev.Action != "block" || ev.Source != "http" || ev.Ref != resp.Header.Get("X-Gatehouse-Ref") {
			t.Errorf("event = %+v", ev)
		}
	}
	if e.hits.Load() != 0 || d.dialled("") {
		t.Error("a request to a port outside proxy.http.ports was sent on")
	}
	if resp, _ := get(t, e.client("", "", ""), e.originURL("site.test", "/")); resp.StatusCode != 200 {
		t.Errorf("allowed port: %d", resp.StatusCode)
	}
}

func TestClassify(t *testing.T) {
	nets := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range s {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	for _, tc := range []struct {
		addr  string
		class addrClass
		nets  []netip.Prefix
		ok    bool
	}{
		{"93.184.216.34", classPublic, nil, true},
		{"2606:4700::1111", classPublic, nil, true},
		{"127.0.0.1", classLoopback, nil, false},
		{"127.0.0.1", classLoopback, nets("0.0.0.0/1"), false}, // a broad network does not open loopback
		{"127.0.0.1", classLoopback, nets("127.0.0.0/8"), true},
		{"127.0.0.2", classLoopback, nets("127.0.0.1/32"), false},
		{"::1", classLoopback, nets("::/1"), false},
		{"::1", classLoopback, nets("::1/128"), true},
		{"::ffff:127.0.0.1", classLoopback, nil, false},
		{"::127.0.0.1", classLoopback, nil, false},
		{"169.254.169.254", classLinkLocal, nets("169.0.0.0/8"), false},
		{"169.254.169.254", classLinkLocal, nets("169.254.0.0/16"), true},
		{"64:ff9b::a9fe:a9fe", classLinkLocal, nil, false},
		// Local-use NAT64 (RFC 8215) in RFC 6052's /48 layout: the IPv4
		// address decides, never below private (the school's translator).
		{"64:ff9b:1:a9fe:a9:fe00::", classLinkLocal, nets("64:ff9b:1::/48"), false},
		{"64:ff9b:1:7f00:0:100::", classLoopback, nets("64:ff9b:1::/48"), false},
		{"64:ff9b:1:a01:2:300::", classPrivate, nets("64:ff9b:1::/48"), false},
		{"64:ff9b:1:a01:2:300::", classPrivate, nets("10.0.0.0/8"), true},
		{"64:ff9b:1:5db8:d8:2200::", classPrivate, nil, false},
		{"64:ff9b:1:5db8:d8:2200::", classPrivate, nets("64:ff9b:1::/48"), true},
		{"64:ff9b:1::a9fe:a9fe", classPrivate, nets("64:ff9b:1::/48"), true}, // another layout: the network's choice
		{"2002:a9fe:a9fe::1", classLinkLocal, nil, false},
		{"fe80::1%eth0", classLinkLocal, nil, false},
		{"10.1.2.3", classPrivate, nil, false},
		{"10.1.2.3", classPrivate, nets("10.0.0.0/8"), true},
		{"10.1.2.3", classPrivate, nets("10.0.0.0/24"), false},
		{"172.16.0.1", classPrivate, nil, false},
		{"192.168.1.1", classPrivate, nil, false},
		{"100.64.0.1", classPrivate, nil, false},
		{"fd12::1", classPrivate, nets("fd00::/8"), true},
		{"0.0.0.0", classNever, nets("0.0.0.0/8"), false},
		{"0.1.2.3", classNever, nil, false},
		{"::", classNever, nil, false},
		{"224.0.0.1", classNever, nets("224.0.0.0/4"), false},
		{"ff02::1", classNever, nil, false},
		{"255.255.255.255", classNever, nil, false},
		{"240.0.0.1", classNever, nil, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		c, eff := classify(a)
		if c != tc.class || reachable(c, eff, tc.nets) != tc.ok {
			t.Errorf("%s with %v: class %s, reachable %v; want %s, %v", tc.addr, tc.nets, classNames[c], !tc.ok, classNames[tc.class], tc.ok)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The dialer itself refuses, on the socket's address just before it
// connects, whatever neither network list allows and Gatehouse's own
// listeners: a floor under dialHost for any dial path.
func TestDialerControl(t *testing.T) {
	e := newEnv(t, envOpts{})
	inside := newService(t, "127.0.0.2:0", "inside")
	ctx := context.Background()
	for _, addr := range []string{"127.0.0.2:" + inside.port, e.addr, "[::1]:80", "224.0.0.1:80"} { // none leaves the machine, even if the check failed
		c, err := e.s.dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		if asInternal(err) == nil {
			t.Errorf("dial %s: %v, want a refusal", addr, err)
		}
	}
	if inside.hits.Load() != 0 {
		t.Error("the internal service was reached")
	}
	c, err := e.s.dialer.DialContext(ctx, "tcp", e.origin.Listener.Addr().String())
	if err != nil {
		t.Fatalf("dial the configured origin: %v", err)
	}
	c.Close()
}

// TestUpstreamResolverCacheBounded: a client asking the proxy for ever new
// names (random subdomains, each answered and cached) must not grow the
// resolver's cache past its bound within the names' TTL; names past the
// bound are still answered (asked again).
func TestUpstreamResolverCacheBounded(t *testing.T) {
	r := newTestDNS(t, map[string][]string{"known.example": {"192.0.2.7"}})
	r.ttl, r.neg = time.Hour, time.Hour // nothing expires during the test
	r.maxCache = 64
	ctx := context.Background()
	for i := range 4 * r.maxCache {
		if _, err := r.LookupNetIP(ctx, netip.Addr{}, fmt.Sprintf("x%d.random.example", i)); err == nil {
			t.Fatalf("x%d.random.example resolved", i)
		}
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n > r.maxCache {
		t.Fatalf("%d names cached, want at most %d", n, r.maxCache)
	}
	addrs, err := r.LookupNetIP(ctx, netip.Addr{}, "known.example")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("known.example at the bound: %v %v", addrs, err)
	}
}
