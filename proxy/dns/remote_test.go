package dns

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/devices"
)

// wildcardCert makes a self-signed certificate for dns.test and
// *.dns.test (the DoT names <token>.dns.test).
func wildcardCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "dns.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"dns.test", "*.dns.test"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

type remoteTest struct {
	*testServer
	reg       *devices.Registry
	pool      *x509.CertPool
	dot, doh  string
	logs      *syncBuffer
	http      *http.Client
	student   string // token of Laptop-12 (students)
	staff     string // token of Office-1 (staff)
	entries   []devices.Entry
	studentEn devices.Entry
}

func startRemote(t *testing.T, mod func(*Options)) *remoteTest {
	t.Helper()
	cert, pool := wildcardCert(t)
	rt := &remoteTest{reg: &devices.Registry{}, pool: pool, logs: &syncBuffer{}}
	var err error
	if rt.student, err = devices.NewToken(); err != nil {
		t.Fatal(err)
	}
	rt.staff, _ = devices.NewToken()
	rt.studentEn = devices.Entry{Hash: devices.Hash(rt.student), Name: "Laptop-12", Group: "students"}
	rt.entries = []devices.Entry{rt.studentEn, {Hash: devices.Hash(rt.staff), Name: "Office-1", Group: "staff"}}
	rt.reg.Set(rt.entries)
	rt.testServer = startServer(t, func(o *Options) {
		// On-site clients.allow excludes loopback: the off-site listeners
		// serve by token, whatever the address.
		o.ACL = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		o.Log = slog.New(slog.NewTextHandler(rt.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Remote = RemoteOptions{DoHListen: []string{"127.0.0.1:0"}, DoTListen: []string{"127.0.0.1:0"},
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Devices: rt.reg,
			TokenQPS: 1000, TokenBurst: 1000, AddrQPS: 1000, AddrBurst: 1000}
		if mod != nil {
			mod(o)
		}
	})
	addrs := rt.Addrs()
	rt.dot, rt.doh = addrs[2].String(), addrs[3].String()
	rt.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dns.test"}}}
	t.Cleanup(rt.http.CloseIdleConnections)
	return rt
}

func dohQuery(name string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	m.Id = 0 // RFC 8484: DoH clients use ID 0
	return m
}

// dohAsk asks name over DoH with token, by GET or POST; it returns the
// HTTP status and the answer (nil unless 200).
func (rt *remoteTest) dohAsk(t *testing.T, method, token, name string) (int, *mdns.Msg) {
	t.Helper()
	b, _ := dohQuery(name).Pack()
	u := "https://" + rt.doh + "/dns-query/" + token
	var req *http.Request
	if method == http.MethodGet {
		req, _ = http.NewRequest(method, u+"?dns="+base64.RawURLEncoding.EncodeToString(b), nil)
	} else {
		req, _ = http.NewRequest(method, u, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/dns-message")
	}
	req.Header.Set("Accept", "application/dns-message")
	resp, err := rt.http.Do(req)
	if err != nil {
		t.Fatalf("DoH %s %s: %v", method, name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("DoH over %s, want HTTP/2", resp.Proto)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/dns-message" {
		t.Errorf("Content-Type %q", ct)
	}
	m := new(mdns.Msg)
	if err := m.Unpack(body); err != nil {
		t.Fatalf("DoH answer: %v", err)
	}
	return resp.StatusCode, m
}

func (rt *remoteTest) dotClient(token string) *mdns.Client {
	return &mdns.Client{Net: "tcp-tls", Timeout: 30 * time.Second,
		TLSConfig: &tls.Config{RootCAs: rt.pool, ServerName: token + ".dns.test"}}
}

// TestRemoteDevicesFiltered: a valid token over DoH (GET and POST, HTTP/2)
// and DoT is filtered by its device's group, whatever the address, and
// the block event names the device with the source "device token".
func TestRemoteDevicesFiltered(t *testing.T) {
	rt := startRemote(t, nil)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		// gamble.example is blocked for students only; 127.0.0.1 is
		// staff's network, so only the token can make it students.
		code, m := rt.dohAsk(t, method, rt.student, "gamble.example")
		if code != 200 || m.Rcode != mdns.RcodeNameError {
			t.Fatalf("DoH %s student gamble.example: %d %v", method, code, m)
		}
		code, m = rt.dohAsk(t, method, rt.staff, "gamble.example")
		if code != 200 || firstA(m) != "192.0.2.1" {
			t.Fatalf("DoH %s staff gamble.example: %d %v", method, code, m)
		}
	}
	r, _, err := rt.dotClient(rt.student).Exchange(dohQuery("porn.example"), rt.dot)
	if err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("DoT student porn.example: %v %v", r, err)
	}
	r, _, err = rt.dotClient(rt.student).Exchange(dohQuery("gamble.example"), rt.dot)
	if err != nil || r.Rcode != mdns.RcodeNameError {
		t.Fatalf("DoT student gamble.example: %v %v", r, err)
	}
	r, _, err = rt.dotClient(rt.staff).Exchange(dohQuery("gamble.example"), rt.dot)
	if err != nil || firstA(r) != "192.0.2.1" {
		t.Fatalf("DoT staff gamble.example: %v %v", r, err)
	}
	// On-site from the same address: clients.allow (10/8) refuses it
	// (over TCP the connection is closed unread: TestACLOnConnections).
	if m := ask(t, "udp", rt.udp, "127.0.0.1", "gamble.example", mdns.TypeA, false); m.Rcode != mdns.RcodeRefused {
		t.Fatalf("on-site query outside clients.allow: %v", mdns.RcodeToString[m.Rcode])
	}
	if _, _, err := (&mdns.Client{Net: "tcp", Timeout: 30 * time.Second}).Exchange(dohQuery("gamble.example"), rt.tcp); err == nil {
		t.Fatal("on-site TCP from outside clients.allow was answered")
	}
	waitEvents(t, rt.testServer, 2)
	protos := map[string]bool{}
	for _, ev := range rt.sink.events() {
		if ev.Device != "Laptop-12" || ev.Group != "students" || ev.IDSource != IDSourceToken || ev.User != "" {
			t.Errorf("event %+v: want device Laptop-12, group students, source %q", ev, IDSourceToken)
		}
		protos[ev.Protocol] = true
	}
	if !protos["doh"] || !protos["dot"] {
		t.Errorf("event protocols %v, want doh and dot", protos)
	}
	rt.noTokenIn(t)
}

// noTokenIn checks that no token reached the log or an event.
func (rt *remoteTest) noTokenIn(t *testing.T) {
	t.Helper()
	logs := rt.logs.String()
	evs := fmt.Sprintf("%+v", rt.sink.events())
	for _, tok := range []string{rt.student, rt.staff} {
		if strings.Contains(logs, tok) || strings.Contains(evs, tok) {
			t.Errorf("token in the log or an event:\n%s\n%s", logs, evs)
		}
	}
}

// TestRemoteRefusesTokens: an unknown, malformed or revoked token is
// refused over DoH (403) and DoT (failed handshake; REFUSED on a
// connection opened before the revocation), counted, and never resolved.
func TestRemoteRefusesTokens(t *testing.T) {
	rt := startRemote(t, nil)
	unknown, _ := devices.NewToken()
	refused := func(l string) float64 {
		return testutil.ToFloat64(rt.metrics.remoteRefused.WithLabelValues(l, "token"))
	}
	for i, tok := range []string{unknown, "not-a-token", strings.ToUpper(rt.student)} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			if code, _ := rt.dohAsk(t, method, tok, fmt.Sprintf("open%d.example", i)); code != http.StatusForbidden {
				t.Errorf("DoH %s with a bad token: %d, want 403", method, code)
			}
		}
	}
	if _, _, err := rt.dotClient(unknown).Exchange(dohQuery("open9.example"), rt.dot); err == nil {
		t.Error("DoT handshake with an unknown token succeeded")
	}
	if got := refused("doh"); got != 6 {
		t.Errorf("doh refusals counted %v, want 6", got)
	}
	if got := refused("dot"); got != 1 {
		t.Errorf("dot refusals counted %v, want 1", got)
	}

	// Open a DoT connection with a valid token, then revoke it.
	c := rt.dotClient(rt.student)
	conn, err := c.Dial(rt.dot)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if r, _, err := c.ExchangeWithConn(dohQuery("open10.example"), conn); err != nil || firstA(r) != "192.0.2.1" {
		t.Fatalf("DoT before revocation: %v %v", r, err)
	}
	rt.reg.Set(rt.entries[1:]) // Laptop-12 revoked
	if code, _ := rt.dohAsk(t, http.MethodPost, rt.student, "open11.example"); code != http.StatusForbidden {
		t.Errorf("DoH with a revoked token: %d, want 403", code)
	}
	if r, _, err := c.ExchangeWithConn(dohQuery("open12.example"), conn); err != nil || r.Rcode != mdns.RcodeRefused {
		t.Errorf("DoT on an open connection after revocation: %v %v, want REFUSED", r, err)
	}
	if _, _, err := rt.dotClient(rt.student).Exchange(dohQuery("open13.example"), rt.dot); err == nil {
		t.Error("DoT handshake with a revoked token succeeded")
	}
	// The other device is unaffected.
	if code, m := rt.dohAsk(t, http.MethodGet, rt.staff, "open14.example"); code != 200 || firstA(m) != "192.0.2.1" {
		t.Errorf("DoH staff after another revocation: %d %v", code, m)
	}
	for i := range 14 {
		if i == 10 || i == 14 {
			continue
		}
		if n := rt.up.count(fmt.Sprintf("open%d.example.", i)); n != 0 {
			t.Errorf("open%d.example resolved %d times for a refused token", i, n)
		}
	}
	rt.noTokenIn(t)
}

// TestRemoteRateLimits: per token and per source address, over the rate
// is refused (429 / REFUSED) and counted.
func TestRemoteRateLimits(t *testing.T) {
	rt := startRemote(t, func(o *Options) {
		o.Remote.TokenQPS, o.Remote.TokenBurst = 1, 3 // the clock is frozen: 3 queries, then none
	})
	ok := 0
	for range 5 {
		if code, _ := rt.dohAsk(t, http.MethodGet, rt.student, "rl.example"); code == 200 {
			ok++
		} else if code != http.StatusTooManyRequests {
			t.Fatalf("over the token's rate: %d, want 429", code)
		}
	}
	if ok != 3 {
		t.Errorf("%d answered, want the burst of 3", ok)
	}
	// Another token from the same address still has its own bucket.
	if code, _ := rt.dohAsk(t, http.MethodGet, rt.staff, "rl.example"); code != 200 {
		t.Errorf("other token: %d", code)
	}
	if got := testutil.ToFloat64(rt.metrics.remoteRefused.WithLabelValues("doh", "ratelimited")); got != 2 {
		t.Errorf("ratelimited counted %v, want 2", got)
	}

	rt2 := startRemote(t, func(o *Options) {
		o.Remote.AddrQPS, o.Remote.AddrBurst = 1, 3 // the connection's handshake takes one too
	})
	codes := []int{}
	for _, tok := range []string{rt2.student, rt2.staff, rt2.staff} {
		code, _ := rt2.dohAsk(t, http.MethodGet, tok, "rl.example")
		codes = append(codes, code)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != http.StatusTooManyRequests {
		t.Errorf("per-address limit: %v, want 200 200 429", codes)
	}
}

// TestRemoteBadRequests: malformed DoH requests with a valid token are
// answered 4xx, counted, and never reach the resolver.
func TestRemoteBadRequests(t *testing.T) {
	rt := startRemote(t, nil)
	base := "https://" + rt.doh + "/dns-query/" + rt.student
	notDNS, _ := (&mdns.Msg{MsgHdr: mdns.MsgHdr{Response: true}, Question: []mdns.Question{{Name: "bad.example.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}}}).Pack()
	for _, c := range []struct {
		method, url, ctype string
		body               []byte
		want               int
	}{
		{http.MethodGet, base, "", nil, http.StatusBadRequest},
		{http.MethodGet, base + "?dns=***", "", nil, http.StatusBadRequest},
		{http.MethodGet, base + "?dns=" + base64.RawURLEncoding.EncodeToString([]byte{1, 2, 3}), "", nil, http.StatusBadRequest},
		{http.MethodGet, base + "?dns=" + base64.RawURLEncoding.EncodeToString(notDNS), "", nil, http.StatusBadRequest},
		{http.MethodPost, base, "text/plain", []byte("x"), http.StatusUnsupportedMediaType},
		{http.MethodPost, base, "application/dns-message", bytes.Repeat([]byte{0}, dohMaxBody+1), http.StatusBadRequest},
		{http.MethodPut, base, "application/dns-message", nil, http.StatusMethodNotAllowed},
		{http.MethodGet, "https://" + rt.doh + "/dns-query", "", nil, http.StatusNotFound},
		{http.MethodGet, base + "/extra", "", nil, http.StatusNotFound},
	} {
		req, _ := http.NewRequest(c.method, c.url, bytes.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		resp, err := rt.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s (%s): %d, want %d", c.method, strings.TrimPrefix(c.url, base), c.ctype, resp.StatusCode, c.want)
		}
	}
	if got := testutil.ToFloat64(rt.metrics.remoteRefused.WithLabelValues("doh", "bad")); got != 6 {
		t.Errorf("bad requests counted %v, want 6", got)
	}
	if n := rt.up.count("bad.example."); n != 0 {
		t.Errorf("a response message was resolved %d times", n)
	}
}
