package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// tpEnv is a proxy with its transparent listeners on loopback.
type tpEnv struct {
	*env
	httpAddr, tlsAddr string
}

// transparentConfig is the proxy.transparent section the tests use
// (appended to the proxy: section).
const transparentConfig = `  transparent:
    http_listen: 127.0.0.1:0
    https_listen: 127.0.0.1:0
    allow: [127.0.0.1/32{{v6}}]
    no_sni_groups: {staff: allow}
`

// newTPEnv starts the transparent listeners; with toOrigin, a connection
// not redirected goes to the TLS test origin's port instead of 443.
func newTPEnv(t *testing.T, eo envOpts, toOrigin ...bool) *tpEnv {
	t.Helper()
	v6 := ""
	if strings.Contains(eo.allow, "::1") {
		v6 = `, "::1/128"`
	}
	eo.extra += strings.ReplaceAll(transparentConfig, "{{v6}}", v6)
	e := newEnv(t, eo)
	te := &tpEnv{env: e}
	if len(toOrigin) > 0 && toOrigin[0] {
		_, e.s.tp.tlsPort, _ = net.SplitHostPort(e.tlsOrig.Listener.Addr().String())
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	te.httpAddr, te.tlsAddr = hl.Addr().String(), sl.Addr().String()
	done := make(chan error, 2)
	go func() { done <- e.s.ServeTransparentHTTP(hl) }()
	go func() { done <- e.s.ServeTransparentTLS(sl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = e.s.Shutdown(ctx)
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("transparent Serve: %v", err)
			}
		}
	})
	return te
}

// redirected is an HTTP client whose every connection goes to addr, as a
// firewall's redirect sends them; roots verifies TLS (nil: the test
// origin's certificate).
func (te *tpEnv) redirected(addr, src string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tc := te.tlsOrig.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	if roots != nil {
		tc.RootCAs = roots
	}
	tr := &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		TLSClientConfig:   tc,
		ForceAttemptHTTP2: true,
	}
	te.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: browser{tr}, Timeout: 5 * time.Second}
}

func TestTransparentHTTP(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	c := te.redirected(te.httpAddr, "", nil)

	resp, body := get(t, c, te.originURL("site.test", "/hello?a=1"))
	if resp.StatusCode != http.StatusOK || len(body) != 1024 {
		t.Fatalf("allowed: %d %q", resp.StatusCode, body)
	}
	if r := te.lastReq.Load(); r == nil || r.URL.RequestURI() != "/hello?a=1" || r.Header.Get("Via") != Via {
		t.Errorf("origin saw %+v", r)
	}

	resp, body = get(t, c, te.originURL("adult.test", "/x"))
	ref := resp.Header.Get("X-Gatehouse-Ref")
	if resp.StatusCode != http.StatusForbidden || ref == "" || !strings.Contains(body, "adult.test") || !strings.Contains(body, reportPath) {
		t.Fatalf("blocked: %d\n%s", resp.StatusCode, body)
	}
	ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Ref == ref })
	if ev.Source != "http" || ev.Action != "block" || ev.Category != "pornography" || ev.URL != te.originURL("adult.test", "/x") || ev.Group != "students" {
		t.Errorf("event %+v", ev)
	}
	if te.res.count("adult.test") != 0 {
		t.Error("a blocked site was resolved")
	}

	// URL lists see the path, as in the explicit proxy.
	resp, _ = get(t, c, te.originURL("site.test", "/casino/x"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("URL-list block: %d", resp.StatusCode)
	}

	// "Report a mistake" posts to the blocked site's own address.
	resp, err := c.PostForm(te.originURL("adult.test", reportPath), formOf(t, body, "biology homework"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("report: %d", resp.StatusCode)
	}
	te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Action == "report" && ev.Ref == ref })

	// A request that already came through Gatehouse loops.
	req, _ := http.NewRequest("GET", te.originURL("site.test", "/"), nil)
	req.Header.Set("Via", Via)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("loop: %d", resp.StatusCode)
	}
}

// A proxy login is never asked for on the transparent listener (a
// redirected browser cannot answer a 407); the address's group decides.
func TestTransparentHTTPNoLogin(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	c := te.redirected(te.httpAddr, "", nil)
	req, _ := http.NewRequest("GET", te.originURL("site.test", "/"), nil)
	req.Header.Set("Proxy-Authorization", "Basic "+basic("jsmith", password))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if r := te.lastReq.Load(); r.Header.Get("Proxy-Authorization") != "" {
		t.Error("Proxy-Authorization was forwarded")
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// Clients outside proxy.transparent.allow are disconnected at once.
func TestTransparentACL(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	for _, addr := range []string{te.httpAddr, te.tlsAddr} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
		n, err := c.Read(make([]byte, 64))
		c.Close()
		if n != 0 || err == nil {
			t.Errorf("%s: a client outside transparent.allow got %d bytes (%v)", addr, n, err)
		}
	}
	if te.hits.Load() != 0 {
		t.Error("the origin was reached")
	}
}

// Transparent connections count against the explicit proxy's per-client
// cap (10 here): with ten keep-alive connections open on port 80, the next
// connection, to either listener, is over it.
func TestTransparentConnectionCap(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	for range 10 {
		c, err := net.Dial("tcp", te.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /keep HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(te.originURL("site.test", ""), "http://"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("keep-alive request: %d", resp.StatusCode) // held open until the idle timeout (5s)
		}
	}
	for _, dial := range []func() net.Conn{
		func() net.Conn { return te.dial("") }, // the explicit proxy
		func() net.Conn {
			c, err := net.Dial("tcp", te.httpAddr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		},
	} {
		c := dial()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: site.test\r\n\r\n", te.originURL("site.test", "/"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("11th connection: %d", resp.StatusCode)
		}
	}
}

func TestTransparentTLSAllowedIsTunnelled(t *testing.T) {
	te := newTPEnv(t, envOpts{}, true)
	resp, body := get(t, te.redirected(te.tlsAddr, "", nil), "https://example.com/tunnelled")
	if resp.StatusCode != http.StatusOK || len(body) != 1024 {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// The client saw the origin's own certificate, not one of Gatehouse's.
	if got, want := resp.TLS.PeerCertificates[0].Raw, te.tlsOrig.Certificate().Raw; string(got) != string(want) {
		t.Error("the client did not see the origin's certificate")
	}
	if te.res.count("example.com") == 0 {
		t.Error("the server name was not resolved through Gatehouse's resolver")
	}
}

// TestTransparentTLSDecryptsLikeExplicit: an allowed site of a group that
// decrypts everything is decrypted on transparent 443 as after a CONNECT
// (decideConnect): the client sees the school's leaf, the request is
// decided on its URL and forwarded over verified TLS to the site.
func TestTransparentTLSDecryptsLikeExplicit(t *testing.T) {
	m, pool := schoolCA(t)
	te := newTPEnv(t, envOpts{certs: m}, true)
	origins := x509.NewCertPool()
	origins.AddCert(te.tlsOrig.Certificate())
	te.s.roots = origins // the site's own CA, as proxy.upstream_ca_file gives it
	c := *te.cur.Load()
	c.Groups = map[string]*config.Group{}
	for k, g := range te.cur.Load().Groups {
		g2 := *g
		g2.Decrypt = config.DecryptAll
		c.Groups[k] = &g2
	}
	eng, err := policy.New(&c, te.ix)
	if err != nil {
		t.Fatal(err)
	}
	te.cur.Store(&c)
	te.eng.Store(eng)
	// The test origin's port stands for 443 (newTPEnv's toOrigin).
	resp, body := get(t, te.redirected(te.tlsAddr, "", pool), "https://example.com:"+te.s.tp.tlsPort+"/decrypted")
	if resp.StatusCode != http.StatusOK || len(body) != 1024 {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got := resp.TLS.PeerCertificates[0].Issuer.CommonName; got != "Test Academy web filter CA" {
		t.Fatalf("served with a certificate from %q, want the school's leaf", got)
	}
	if r := te.lastReq.Load(); r == nil || r.URL.Path != "/decrypted" {
		t.Fatalf("the site did not get the decrypted request: %v", r)
	}
}

func TestTransparentTLSBlockedWithCA(t *testing.T) {
	m, pool := schoolCA(t)
	te := newTPEnv(t, envOpts{certs: m})
	for _, h2 := range []bool{true, false} {
		c := te.redirected(te.tlsAddr, "", pool)
		if !h2 {
			c.Transport.(browser).ForceAttemptHTTP2 = false
			c.Transport.(browser).TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		path := fmt.Sprintf("/page-h2-%v", h2)
		resp, body := get(t, c, "https://adult.test"+path)
		ref := resp.Header.Get("X-Gatehouse-Ref")
		if resp.StatusCode != http.StatusForbidden || ref == "" || !strings.Contains(body, "adult.test") {
			t.Fatalf("h2=%v: %d\n%s", h2, resp.StatusCode, body)
		}
		if resp.TLS.PeerCertificates[0].Issuer.CommonName != "Test Academy web filter CA" {
			t.Errorf("h2=%v: not the school's leaf", h2)
		}
		if (resp.ProtoMajor == 2) != h2 {
			t.Errorf("h2=%v: served over %s", h2, resp.Proto)
		}
		ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Ref == ref })
		if ev.Source != "connect" || ev.Action != "block" || ev.Category != "pornography" || ev.URL != "https://adult.test"+path {
			t.Errorf("event %+v", ev)
		}
	}
	if te.res.count("adult.test") != 0 || te.hits.Load() != 0 {
		t.Error("a blocked site was resolved or reached")
	}
}

func TestTransparentTLSBlockedWithoutDecrypt(t *testing.T) {
	for _, withCA := range []bool{false, true} {
		t.Run(fmt.Sprintf("ca=%v", withCA), func(t *testing.T) {
			eo := envOpts{}
			var pool *x509.CertPool
			if withCA {
				eo.certs, pool = schoolCA(t)
			}
			te := newTPEnv(t, eo)
			if withCA { // the CA exists, but the group has decrypt: off
				c := *te.cur.Load()
				c.Groups = map[string]*config.Group{}
				for k, g := range te.cur.Load().Groups {
					g2 := *g
					g2.Decrypt = config.DecryptOff
					c.Groups[k] = &g2
				}
				eng, err := policy.New(&c, te.ix)
				if err != nil {
					t.Fatal(err)
				}
				te.cur.Store(&c)
				te.eng.Store(eng)
			}
			_, err := te.redirected(te.tlsAddr, "", pool).Get("https://adult.test/")
			if err == nil || !strings.Contains(err.Error(), "access denied") {
				t.Fatalf("error %v, want the TLS alert access_denied", err)
			}
			ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Source == "connect" })
			if ev.Action != "block" || ev.Name != "adult.test" || ev.Category != "pornography" || ev.Status != 403 {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// rawHello sends a ClientHello built by hand (sni "" = none; ech adds the
// encrypted_client_hello extension) and returns what came back before the
// connection closed.
func rawHello(t *testing.T, addr, sni string, ech bool) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(buildHello(sni, ech, 1)); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return b
}

// buildHello builds a TLS 1.3-style ClientHello split over the given
// number of records.
func buildHello(sni string, ech bool, records int) []byte {
	var b cryptobyte.Builder
	b.AddUint8(1)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)
		b.AddBytes(make([]byte, 32))
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x1301); b.AddUint16(0x1302) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if sni != "" {
				b.AddUint16(0)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
						b.AddUint8(0)
						b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(sni)) })
					})
				})
			}
			b.AddUint16(43) // supported_versions: TLS 1.3
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x0304) })
			})
			if ech {
				b.AddUint16(extECH)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
					b.AddUint8(0)       // outer
					b.AddUint16(0x0001) // HKDF-SHA256
					b.AddUint16(0x0001) // AES-128-GCM
					b.AddUint8(0x42)    // config_id
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 32)) })
					b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(make([]byte, 200)) })
				})
			}
		})
	})
	msg := b.BytesOrPanic()
	var out []byte
	size := (len(msg) + records - 1) / records
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, 0x03, 0x01, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// recordVersion sets the record-layer version of every record in recs
// (handshake records, as buildHello makes them).
func recordVersion(recs []byte, major, minor byte) []byte {
	out := slices.Clone(recs)
	for off := 0; off+5 <= len(out); off += 5 + (int(out[off+3])<<8 | int(out[off+4])) {
		out[off+1], out[off+2] = major, minor
	}
	return out
}

// alertsBetween puts the record alert between each two records of recs.
func alertsBetween(recs, alert []byte) []byte {
	var out []byte
	for off := 0; off+5 <= len(recs); {
		end := min(off+5+(int(recs[off+3])<<8|int(recs[off+4])), len(recs))
		if off > 0 {
			out = append(out, alert...)
		}
		out = append(out, recs[off:end]...)
		off = end
	}
	return out
}

// paddedHello is buildHello's hello grown by an extension to size bytes
// of handshake message (type and length included), in records of 16 KiB.
func paddedHello(size int) []byte {
	msg := helloMessage(buildHello("adult.test", false, 1))
	pad := size - len(msg) - 4 // the padding extension's type and length
	body := slices.Concat(msg[4:], []byte{0x00, 0x15, byte(pad >> 8), byte(pad)}, make([]byte, pad))
	// The extensions' length, after version, random, session, suites
	// and compression.
	off := 2 + 32
	off += 1 + int(body[off])
	off += 2 + (int(body[off])<<8 | int(body[off+1]))
	off += 1 + int(body[off])
	extLen := len(body) - off - 2
	body[off], body[off+1] = byte(extLen>>8), byte(extLen)
	msg = slices.Concat([]byte{0x01, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body)
	var out []byte
	for len(msg) > 0 {
		n := min(1<<14, len(msg))
		out = append(out, recordHandshake, 0x03, 0x01, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// records puts msg in handshake records of the sizes given.
func records(msg []byte, sizes ...int) []byte {
	var out []byte
	for _, n := range sizes {
		out = append(out, recordHandshake, 0x03, 0x03, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// helloMessage reassembles the handshake message from recs.
func helloMessage(recs []byte) []byte {
	var msg []byte
	for off := 0; off+5 <= len(recs); off += 5 + (int(recs[off+3])<<8 | int(recs[off+4])) {
		msg = append(msg, recs[off+5:off+5+(int(recs[off+3])<<8|int(recs[off+4]))]...)
	}
	return msg
}

// isAlert reports whether b is a fatal TLS alert with description desc.
func isAlert(b []byte, desc byte) bool {
	return len(b) == 7 && b[0] == 21 && b[5] == 2 && b[6] == desc
}

func TestTransparentTLSNoSNI(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	// Not redirected and no name: blocked as a bypass attempt (students).
	if b := rawHello(t, te.tlsAddr, "", false); !isAlert(b, alertAccessDenied) {
		t.Errorf("no SNI: answered %x, want the access_denied alert", b)
	}
	ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "no-sni" })
	if ev.Action != "block" || !ev.Bypass || ev.Source != "connect" || ev.Group != "students" {
		t.Errorf("event %+v", ev)
	}
	// A Go client dialling an address sends no server name either.
	conn, err := tls.Dial("tcp", te.tlsAddr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Error("a ClientHello without a server name got through")
	}
}

func TestTransparentTLSECH(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	// ECH to a provider's front name: the real site is hidden.
	if b := rawHello(t, te.tlsAddr, "cloudflare-ech.com", true); !isAlert(b, alertAccessDenied) {
		t.Errorf("ECH: answered %x, want the access_denied alert", b)
	}
	ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "ech" })
	if ev.Action != "block" || !ev.Bypass || ev.Name != "cloudflare-ech.com" {
		t.Errorf("event %+v", ev)
	}
	if te.res.count("cloudflare-ech.com") != 0 {
		t.Error("the ECH front was resolved")
	}
	// The same front name without ECH is an ordinary site (here unknown to
	// the resolver: refused with internal_error, no bypass event).
	if b := rawHello(t, te.tlsAddr, "cloudflare-ech.com", false); !isAlert(b, alertInternalError) {
		t.Errorf("no ECH: answered %x", b)
	}
	// GREASE ECH (every current browser sends the extension) to a blocked
	// name is decided on that name.
	if b := rawHello(t, te.tlsAddr, "adult.test", true); !isAlert(b, alertAccessDenied) {
		t.Errorf("GREASE ECH to a blocked site: answered %x", b)
	}
	te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Name == "adult.test" && ev.Category == "pornography" })
	// GREASE ECH to an allowed name goes through to the site.
	before := te.res.count("site.test")
	rawHello(t, te.tlsAddr, "site.test", true)
	if te.res.count("site.test") != before+1 {
		t.Error("GREASE ECH to an allowed site was not sent on")
	}
	for _, ev := range te.sink.events() {
		if ev.Reason == "ech" && ev.Name != "cloudflare-ech.com" {
			t.Errorf("unexpected ECH event %+v", ev)
		}
	}
}

// A group with no_sni: allow is let through (recorded as a flag); without
// a redirect there is still nowhere to send a nameless connection.
func TestTransparentNoSNIAllowedGroup(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	te.setConfig(func(c *config.Config) {
		c.Proxy.Transparent.NoSNIGroups = map[string]string{"students": config.NoSNIAllow}
	})
	rawHello(t, te.tlsAddr, "cloudflare-ech.com", true)
	ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "ech" })
	if ev.Action != "flag" || !ev.Bypass {
		t.Errorf("event %+v", ev)
	}
	if te.res.count("cloudflare-ech.com") != 1 {
		t.Error("an allowed ECH connection was not sent on to its front name")
	}
}

func TestTransparentTLSNotTLS(t *testing.T) {
	te := newTPEnv(t, envOpts{})
	c, err := net.Dial("tcp", te.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "SSH-2.0-OpenSSH_9.2\r\n")
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Errorf("got %q", b)
	}
	ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "not-tls" })
	if ev.Action != "block" || !ev.Bypass {
		t.Errorf("event %+v", ev)
	}
}

func TestReadClientHello(t *testing.T) {
	for _, tc := range []struct {
		sni     string
		ech     bool
		records int
	}{{"site.test", false, 1}, {"site.test", true, 3}, {"", false, 1}, {"xn--bcher-kva.example", true, 1}} {
		raw := buildHello(tc.sni, tc.ech, tc.records)
		tail := []byte("after")
		got, h, err := readClientHello(io.MultiReader(strings.NewReader(string(raw)), strings.NewReader(string(tail))))
		if err != nil || h.sni != tc.sni || h.ech != tc.ech || string(got) != string(raw) {
			t.Errorf("%+v: sni %q ech %v err %v, read %d of %d bytes", tc, h.sni, h.ech, err, len(got), len(raw))
		}
	}
	// What crypto/tls sends.
	for _, name := range []string{"example.com", "a.b.example.org"} {
		raw := goHello(t, name)
		_, h, err := readClientHello(strings.NewReader(string(raw)))
		if err != nil || h.sni != name {
			t.Errorf("crypto/tls hello for %s: %q %v", name, h.sni, err)
		}
	}
	if _, _, err := readClientHello(strings.NewReader("GET / HTTP/1.1\r\n\r\n")); err != errHelloNotTLS {
		t.Errorf("HTTP: %v", err)
	}
}

// goHello captures the first flight crypto/tls sends for serverName.
func goHello(t testing.TB, serverName string) []byte {
	t.Helper()
	cl, sv := net.Pipe()
	go func() {
		_ = tls.Client(cl, &tls.Config{ServerName: serverName}).Handshake()
		cl.Close()
	}()
	defer sv.Close()
	raw, _, err := readClientHello(sv)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func FuzzClientHello(f *testing.F) {
	f.Add(buildHello("site.test", false, 1))
	f.Add(buildHello("cloudflare-ech.com", true, 2))
	f.Add(buildHello("", false, 1))
	f.Add(goHello(f, "example.com"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00})
	// Hellos dressed as TLS servers accept them (readClientHello): warning
	// alerts before and between the records, other record versions; and
	// the limits: 16 alerts, then a 17th; close_notify and fatal alerts;
	// the largest hello with 16 alerts.
	warn := []byte{recordAlert, 0x03, 0x03, 0x00, 0x02, alertLevelWarning, 0x5a}
	alerts := func(n int) []byte { return bytes.Repeat(warn, n) }
	f.Add(slices.Concat(warn, buildHello("adult.test", false, 1)))
	f.Add(slices.Concat(warn, goHello(f, "adult.test")))
	f.Add(recordVersion(buildHello("adult.test", false, 2), 0x03, 0x05))
	f.Add(recordVersion(buildHello("adult.test", false, 1), 0x00, 0x00))
	f.Add(recordVersion(buildHello("adult.test", false, 1), 0x0f, 0xff))
	f.Add(recordVersion(buildHello("adult.test", false, 1), 0x10, 0x00)) // not TLS
	f.Add(alertsBetween(buildHello("adult.test", true, 3), warn))
	f.Add(slices.Concat(alerts(maxHelloAlerts), buildHello("adult.test", false, 1)))
	f.Add(slices.Concat(alerts(maxHelloAlerts+1), buildHello("adult.test", false, 1)))
	f.Add(slices.Concat([]byte{recordAlert, 0x03, 0x03, 0x00, 0x02, alertLevelWarning, alertCloseNotify}, buildHello("adult.test", false, 1)))
	f.Add(slices.Concat([]byte{recordAlert, 0x03, 0x03, 0x00, 0x02, 2, 40}, buildHello("adult.test", false, 1))) // fatal
	f.Add([]byte{recordAlert, 0x03, 0x03, 0x00, 0x02, alertLevelWarning})                                        // cut short
	f.Add(slices.Concat(alerts(maxHelloAlerts), paddedHello(maxHello)))
	// The largest hello but its last byte in 38 records (34 of one byte),
	// then 16 alerts and the last byte: past the bound on what is read.
	msg := helloMessage(paddedHello(maxHello))
	sizes := slices.Concat(slices.Repeat([]int{1}, 34), []int{1 << 14, 1 << 14, 1 << 14, len(msg) - 1 - 34 - 3<<14, 1})
	near := slices.Concat(records(msg[:len(msg)-1], sizes[:len(sizes)-1]...), alerts(maxHelloAlerts), records(msg[len(msg)-1:], 1))
	f.Add(near)
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, h, err := readClientHello(strings.NewReader(string(data)))
		if len(raw) > len(data) || string(raw) != string(data[:len(raw)]) {
			t.Fatalf("read %d bytes that are not the input's first", len(raw))
		}
		if err == nil && h.sni != "" && !strings.Contains(string(data), h.sni) {
			t.Fatalf("server name %q is not in the input", h.sni)
		}
		if len(raw) > maxHelloRaw+5 { // and the header of the record that would go past it
			t.Fatalf("read %d bytes", len(raw))
		}
	})
}
