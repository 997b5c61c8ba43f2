package httpproxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// schoolCA makes a CA and a minter for it; it returns the minter and a pool
// trusting the CA (what a managed device has).
func schoolCA(t *testing.T) (*tlsinspect.Minter, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsinspect.Init(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"), tlsinspect.InitOptions{Name: "Test Academy web filter CA"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tlsinspect.NewMinter(ca, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return m, pool
}

// httpsClient goes through the proxy trusting roots (nil: the system's),
// over HTTP/2 when h2, else HTTP/1.1.
func (e *env) httpsClient(roots *x509.CertPool, h2 bool) *http.Client {
	tr := &http.Transport{
		Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: e.addr}),
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	e.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: browser{tr}, Timeout: 5 * time.Second}
}

func TestDecryptBlockPageHTTP2AndHTTP1(t *testing.T) {
	m, pool := schoolCA(t)
	e := newEnv(t, envOpts{certs: m})
	for _, h2 := range []bool{true, false} {
		c := e.httpsClient(pool, h2)
		path := map[bool]string{true: "/h2/page?x=1", false: "/h1/page?x=1"}[h2] // distinct, so not collapsed
		resp, body := get(t, c, "https://adult.test"+path)
		wantProto := map[bool]int{true: 2, false: 1}[h2]
		if resp.ProtoMajor != wantProto {
			t.Errorf("h2=%v: served over %s", h2, resp.Proto)
		}
		ref := resp.Header.Get("X-Gatehouse-Ref")
		if resp.StatusCode != http.StatusForbidden || ref == "" || !strings.Contains(body, ref) ||
			!strings.Contains(body, "Test Academy") || !strings.Contains(body, "adult.test") || !strings.Contains(body, reportPath) {
			t.Fatalf("h2=%v: status %d, ref %q, body:\n%s", h2, resp.StatusCode, ref, body)
		}
		if resp.TLS == nil || resp.TLS.PeerCertificates[0].Issuer.CommonName != "Test Academy web filter CA" {
			t.Errorf("h2=%v: not served with the school's leaf", h2)
		}
		ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Ref == ref })
		if ev.Action != "block" || ev.Source != "connect" || ev.Protocol != "https" || ev.Category != "pornography" ||
			ev.URL != "https://adult.test"+path || ev.Status != 403 || ev.Method != "GET" {
			t.Errorf("h2=%v: event %+v", h2, ev)
		}
	}
	if e.res.count("adult.test") != 0 || e.hits.Load() != 0 {
		t.Error("a decrypted blocked site was resolved or contacted")
	}
	if m.Mints() != 1 {
		t.Errorf("%d leaves minted for one host", m.Mints())
	}
}

func TestDecryptReportMistakeOverHTTPS(t *testing.T) {
	m, pool := schoolCA(t)
	e := newEnv(t, envOpts{certs: m})
	c := e.httpsClient(pool, true)
	_, page := get(t, c, "https://adult.test/")
	form := formOf(t, page, "needed for biology homework")
	resp, err := c.PostForm("https://adult.test"+reportPath, form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("report: %d %s", resp.StatusCode, b)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "report" })
	if ev.Ref != form.Get("ref") || ev.URL != "https://adult.test/" || !strings.Contains(ev.Note, "biology") {
		t.Errorf("report event %+v", ev)
	}
}

func TestDecryptUntrustedClientGetsHandshakeFailure(t *testing.T) {
	m, _ := schoolCA(t)
	e := newEnv(t, envOpts{certs: m})
	resp, err := e.httpsClient(x509.NewCertPool(), true).Get("https://adult.test/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a client not trusting the CA got a page: %d", resp.StatusCode)
	}
	var unknown x509.UnknownAuthorityError
	if !strings.Contains(err.Error(), "certificate") && !errorsAs(err, &unknown) {
		t.Errorf("error %v, want a certificate error", err)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "connect" })
	if ev.Action != "block" || ev.Name != "adult.test" || ev.URL != "" || ev.Category != "pornography" {
		t.Errorf("event %+v", ev)
	}
}

func TestDecryptOffAndNoCA(t *testing.T) {
	m, pool := schoolCA(t)
	e := newEnv(t, envOpts{certs: m})
	c := *e.cur.Load()
	c.Groups = map[string]*config.Group{}
	for k, g := range e.cur.Load().Groups {
		g2 := *g
		g2.Decrypt = config.DecryptOff
		c.Groups[k] = &g2
	}
	eng, err := policy.New(&c, e.ix)
	if err != nil {
		t.Fatal(err)
	}
	e.cur.Store(&c)
	e.eng.Store(eng)
	if code, _, _ := e.connect("", "adult.test:443", ""); code != http.StatusForbidden {
		t.Errorf("decrypt: off: CONNECT answered %d, want 403", code)
	}
	if _, err := e.httpsClient(pool, true).Get("https://adult.test/"); err == nil {
		t.Error("decrypt: off: got a page")
	}
	// No CA: nothing is decrypted.
	e2 := newEnv(t, envOpts{})
	if code, _, _ := e2.connect("", "adult.test:443", ""); code != http.StatusForbidden {
		t.Errorf("no CA: CONNECT answered %d, want 403", code)
	}
	if m.Mints() != 0 {
		t.Errorf("%d leaves minted with decryption off", m.Mints())
	}
}

func TestDecryptNotForPortBypass(t *testing.T) {
	m, _ := schoolCA(t)
	e := newEnv(t, envOpts{certs: m})
	if code, _, _ := e.connect("", "site.test:22", ""); code != http.StatusForbidden {
		t.Errorf("CONNECT to port 22 answered %d, want 403", code)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// A CONNECT to an address on a blocked IP list is decrypted too, with the
// address in the leaf (an IP SAN).
func TestDecryptBlockedIPLiteral(t *testing.T) {
	m, pool := schoolCA(t)
	e := newEnv(t, envOpts{certs: m})
	resp, body := get(t, e.httpsClient(pool, true), "https://198.51.100.7/dns-query")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "198.51.100.7") {
		t.Fatalf("status %d:\n%s", resp.StatusCode, body)
	}
	if ips := resp.TLS.PeerCertificates[0].IPAddresses; len(ips) != 1 || ips[0].String() != "198.51.100.7" {
		t.Errorf("leaf IP SANs %v", ips)
	}
	ev := e.sink.waitEvent(t, func(ev reports.Event) bool { return ev.URL != "" })
	if ev.Category != "doh" || ev.URL != "https://198.51.100.7/dns-query" {
		t.Errorf("event %+v", ev)
	}
}
