package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	mdns "github.com/miekg/dns"
)

// pebbleCA is Let's Encrypt's test ACME server (Pebble) run in the test
// process on loopback: its directory URL, the PEM file of the TLS
// certificate its HTTPS is served with, the root that signs what it
// issues, and the orders placed so far.
type pebbleCA struct {
	dirURL string
	tlsCA  string
	root   *x509.CertPool
	orders atomic.Int64
}

// startPebble runs Pebble. Its validation authority resolves names with
// the DNS server at resolver and makes the TLS-ALPN-01 challenge to port
// tlsPort of the address found (the school's public port 443).
func startPebble(t *testing.T, resolver string, tlsPort int) *pebbleCA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random sleeps before a validation
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no bad nonces by design
	lg := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(lg, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(lg, 0, tlsPort, false, resolver, store)
	front := wfe.New(lg, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	p := &pebbleCA{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.dirURL = srv.URL + wfe.DirectoryPath
	p.tlsCA = filepath.Join(t.TempDir(), "pebble-tls.pem")
	if err := os.WriteFile(p.tlsCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	p.root = x509.NewCertPool()
	p.root.AddCert(authority.GetRootCert(0).Cert)
	return p
}

// publicDNS answers name's A queries with 127.0.0.1 over TCP (Pebble's
// resolver asks over TCP), like the school's public DNS record.
func publicDNS(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{Listener: ln, Net: "tcp", Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if q := r.Question; len(q) == 1 && strings.EqualFold(q[0].Name, name+".") && q[0].Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR(q[0].Name + " 60 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// portForward is the school's firewall forwarding public port 443 to the
// DoH listener (whose port is known once serve runs): connections wait
// for a target, and are refused once it is cleared.
type portForward struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	set    chan struct{}
	conns  atomic.Int64
}

func startForward(t *testing.T) *portForward {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &portForward{ln: ln, set: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go f.serve(c)
		}
	}()
	return f
}

func (f *portForward) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *portForward) to(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	first := f.target == "" && addr != ""
	f.target = addr
	if first {
		close(f.set)
	}
}

func (f *portForward) serve(c net.Conn) {
	defer c.Close()
	select {
	case <-f.set:
	case <-time.After(30 * time.Second):
		return
	}
	f.mu.Lock()
	target := f.target
	f.mu.Unlock()
	if target == "" {
		return
	}
	u, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
}

// TestACMEEndToEnd: with dns.remote.acme, a running serve gets the DoH
// listener's certificate from an ACME CA (Pebble, through
// dns.remote.acme_directory, its HTTPS trusted by acme_ca_file) by the
// TLS-ALPN-01 challenge arriving on "public port 443", forwarded to the
// DoH listener's own port; a DoH client with a device token gets answers
// over that certificate, verified against Pebble's root alone. The
// account key and certificate are in acme_cache (dir 0700, files 0600),
// (a directory readable by others is made private), and a restarted
// serve uses them without a new order (with port 443 no
// longer forwarded, a new order could not succeed).
func TestACMEEndToEnd(t *testing.T) {
	const host = "filter.school.test"
	upstream := testUpstream(t)
	fwd := startForward(t)
	peb := startPebble(t, publicDNS(t, host), fwd.port())
	path, dir := writeConfig(t, `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  remote:
    host: `+host+`
    doh_listen: ["127.0.0.1:0"]
    acme: true
    acme_cache: {{dir}}/acme
    acme_directory: `+peb.dirURL+`
    acme_ca_file: `+peb.tlsCA+`
    reload: 100ms
lists:
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  students:
    block: [gambling]
clients:
  default_group: students
`, map[string]string{"bet.txt": "bet.example\n"})
	code, out, errs := runCLI(t, "devices", "add", "Laptop-12", "--group", "students", "--config", path)
	if code != 0 {
		t.Fatalf("devices add: %d %s", code, errs)
	}
	m := regexp.MustCompile(`/dns-query/([a-z2-7]{32})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("devices add output:\n%s", out)
	}
	token := m[1]

	// query asks name over DoH with the token, trusting Pebble's root
	// only, and returns the answer's rcode and the certificate served.
	query := func(doh, name string) (int, *x509.Certificate) {
		t.Helper()
		hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{RootCAs: peb.root, ServerName: host}}}
		defer hc.CloseIdleConnections()
		q := new(mdns.Msg)
		q.SetQuestion(name, mdns.TypeA)
		q.Id = 0
		b, _ := q.Pack()
		req, _ := http.NewRequest(http.MethodPost, "https://"+doh+"/dns-query/"+token, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/dns-message")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("DoH %s: %v", name, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("DoH %s: %s %s", name, resp.Status, body)
		}
		a := new(mdns.Msg)
		if err := a.Unpack(body); err != nil {
			t.Fatal(err)
		}
		return a.Rcode, resp.TLS.PeerCertificates[0]
	}
	dohAddr := func(s *server) string {
		addrs := s.dns.Addrs()
		return addrs[len(addrs)-1].String() // UDP, TCP, then DoH
	}

	// A cache directory left readable by others is made private.
	if err := os.Mkdir(filepath.Join(dir, "acme"), 0o755); err != nil {
		t.Fatal(err)
	}
	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	doh := dohAddr(s)
	fwd.to(doh)
	rc, cert := query(doh, "ok.example.")
	if rc != mdns.RcodeSuccess {
		t.Fatalf("ok.example: rcode %d", rc)
	}
	if err := cert.VerifyHostname(host); err != nil || peb.orders.Load() != 1 || fwd.conns.Load() == 0 {
		t.Fatalf("certificate %v for %v, orders %d, challenge connections through port 443: %d", err, cert.DNSNames, peb.orders.Load(), fwd.conns.Load())
	}
	if rc, _ := query(doh, "bet.example."); rc != mdns.RcodeNameError {
		t.Fatalf("bet.example over DoH: rcode %d, want the students' block", rc)
	}
	cache := filepath.Join(dir, "acme")
	fi, err := os.Stat(cache)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("acme_cache: %v %v", fi, err)
	}
	files, _ := os.ReadDir(cache)
	var names []string
	for _, f := range files {
		fi, _ := f.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f.Name(), fi.Mode().Perm())
		}
		names = append(names, f.Name())
	}
	if len(names) != 2 || !strings.Contains(strings.Join(names, " "), host) {
		t.Fatalf("acme_cache holds %q, want the account key and %s's certificate", names, host)
	}
	// A token's name is never sent to the CA (certificates are public in
	// CT logs): the handshake fails and no order is placed.
	if c, err := tls.Dial("tcp", doh, &tls.Config{RootCAs: peb.root, ServerName: token + "." + host}); err == nil {
		c.Close()
		t.Fatal("a handshake for a token's name succeeded")
	}
	if n := peb.orders.Load(); n != 1 {
		t.Fatalf("%d orders after a handshake for a token's name, want 1", n)
	}
	// The certificate was asked for at start, not only at the first
	// device's connection (the two share the one order).
	for i := 0; i < 200 && !strings.Contains(logs.String(), "ACME certificate ready"); i++ {
		time.Sleep(25 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, `msg="ACME certificate ready" part=dns host=`+host) || strings.Contains(l, token) {
		t.Fatalf("the log does not say the certificate is ready (or holds the token):\n%s", l)
	}

	// A restart uses the cached certificate: no new order, and none could
	// be validated (port 443 now goes nowhere).
	s.stopDNS()
	s.stopProxy()
	s.stopReports()
	fwd.to("127.0.0.1:1")
	before := fwd.conns.Load()
	s2 := startServingLog(t, path, io.Discard)
	rc, cert2 := query(dohAddr(s2), "ok.example.")
	if rc != mdns.RcodeSuccess || !cert2.Equal(cert) {
		t.Fatalf("after a restart: rcode %d, same certificate %v", rc, cert2.Equal(cert))
	}
	if n := peb.orders.Load(); n != 1 || fwd.conns.Load() != before {
		t.Fatalf("after a restart: %d orders, %d challenge connections; want the cached certificate", n, fwd.conns.Load()-before)
	}
}
