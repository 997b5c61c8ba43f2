package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestReloadRemoteCertificate: a reload re-reads dns.remote's certificate
// files (a certificate renewed at the same path): new DoH and DoT
// connections get the new one, connections already open keep working
// with theirs, and a pair that does not load rejects the reload, the
// running certificate staying.
func TestReloadRemoteCertificate(t *testing.T) {
	upstream := testUpstream(t)
	dir := t.TempDir()
	poolA := wildcardPEM(t, dir, "filter.test")
	body := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
  remote:
    host: filter.test
    doh_listen: ["127.0.0.1:0"]
    dot_listen: ["127.0.0.1:0"]
    cert: ` + dir + `/cert.pem
    key: ` + dir + `/key.pem
groups:
  students: {block: []}
clients:
  default_group: students
`
	path, cdir := writeConfig(t, body, nil)
	code, out, errs := runCLI(t, "devices", "add", "Laptop-12", "--group", "students", "--config", path)
	if code != 0 {
		t.Fatalf("devices add: %d %s", code, errs)
	}
	token := regexp.MustCompile(`/dns-query/([a-z2-7]{32})\n`).FindStringSubmatch(out)[1]
	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	addrs := s.dns.Addrs()
	dot, doh := addrs[2].String(), addrs[3].String()

	// dohClient asks over one kept-alive HTTP/2 connection and reports the
	// certificate and whether the connection was reused.
	dohClient := func(pool *x509.CertPool) func() (*x509.Certificate, bool) {
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "filter.test"}}}
		t.Cleanup(hc.CloseIdleConnections)
		return func() (*x509.Certificate, bool) {
			t.Helper()
			q := new(mdns.Msg)
			q.SetQuestion("ok.example.", mdns.TypeA)
			b, _ := q.Pack()
			var reused bool
			req, _ := http.NewRequest(http.MethodPost, "https://"+doh+"/dns-query/"+token, bytes.NewReader(b))
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
			req.Header.Set("Content-Type", "application/dns-message")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("DoH: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("DoH: %s", resp.Status)
			}
			return resp.TLS.PeerCertificates[0], reused
		}
	}
	dotConn := func(pool *x509.CertPool) *mdns.Conn {
		c := &mdns.Client{Net: "tcp-tls", Timeout: 10 * time.Second, TLSConfig: &tls.Config{RootCAs: pool, ServerName: token + ".filter.test"}}
		conn, err := c.Dial(dot)
		if err != nil {
			t.Fatalf("DoT: %v", err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	dotAsk := func(conn *mdns.Conn) {
		t.Helper()
		q := new(mdns.Msg)
		q.SetQuestion("ok.example.", mdns.TypeA)
		if err := conn.WriteMsg(q); err != nil {
			t.Fatalf("DoT write: %v", err)
		}
		if r, err := conn.ReadMsg(); err != nil || r.Rcode != mdns.RcodeSuccess {
			t.Fatalf("DoT: %v %v", r, err)
		}
	}

	oldDoH := dohClient(poolA)
	certA, _ := oldDoH()
	oldDoT := dotConn(poolA)
	dotAsk(oldDoT)

	// The certificate is renewed at the same path, and the config reloaded.
	renewed := t.TempDir()
	poolB := wildcardPEM(t, renewed, "filter.test")
	for _, f := range []string{"cert.pem", "key.pem"} {
		b, err := os.ReadFile(filepath.Join(renewed, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reloadFile(t, s, path, cdir, body)
	if certB, _ := dohClient(poolB)(); certB.Equal(certA) {
		t.Fatal("a new DoH connection still gets the old certificate")
	}
	dotAsk(dotConn(poolB))
	// The connections opened before the reload go on.
	if cert, reused := oldDoH(); !reused || !cert.Equal(certA) {
		t.Fatalf("the DoH connection from before the reload: reused %v, same certificate %v", reused, cert.Equal(certA))
	}
	dotAsk(oldDoT)
	if !strings.Contains(logs.String(), "off-site certificate loaded") {
		t.Fatal("the reload does not log the new certificate")
	}

	// A key that is not the certificate's (a renewal caught half way, at
	// the same paths): the running certificate stays, with a warning, and
	// the rest of the reload goes on (TestReloadGoesOnWhileSecretUnreadable).
	other := t.TempDir()
	wildcardPEM(t, other, "filter.test")
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), mustRead(t, filepath.Join(other, "key.pem")), 0o600); err != nil {
		t.Fatal(err)
	}
	reloadFile(t, s, path, cdir, body)
	if !strings.Contains(logs.String(), `dns.remote.cert could not be read again; the running certificate stays`) {
		t.Fatalf("a bad key pair was not reported:\n%s", logs.String())
	}
	if cert, _ := dohClient(poolB)(); !cert.Equal(mustParse(t, renewed)) {
		t.Fatal("after the rejected reload the running certificate changed")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustParse is the certificate wildcardPEM wrote to dir.
func mustParse(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReloadLogsPartsNotStarted: settings that apply live to a running
// RADIUS listener or off-site listener are logged as needing a restart
// when serve started without that part, and the part is not started.
func TestReloadLogsPartsNotStarted(t *testing.T) {
	upstream := testUpstream(t)
	head := `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
`
	path, dir := writeConfig(t, head, map[string]string{"radius-secret": "s3cret\n"})
	wildcardPEM(t, dir, "filter.test")
	logs := new(lockedBuffer)
	s := startServingLog(t, path, logs)
	reloadFile(t, s, path, dir, head+`  remote:
    host: filter.test
    doh_listen: ["127.0.0.1:0"]
    cert: {{dir}}/cert.pem
    key: {{dir}}/key.pem
identity:
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [127.0.0.1/32]
`)
	l := logs.String()
	for _, want := range []string{
		`change="dns.remote.cert: changed" status="needs a restart"`,
		`change="identity.radius.secret: changed" status="needs a restart"`,
		`change="identity.radius.listen: changed" status="needs a restart"`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("the reload log lacks %s:\n%s", want, l)
		}
	}
	if s.radius != nil || s.remoteCert != nil {
		t.Fatal("a reload started a part that needs a restart")
	}
}
