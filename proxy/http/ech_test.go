package httpproxy

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// echOrigin is a TLS server that, like an ECH provider's edge, accepts
// Encrypted Client Hello under its own key (crypto/tls's server side) and
// serves whichever site the inner hello names, saying which and whether
// ECH was used.
type echOrigin struct {
	port   string
	config []byte // the ECHConfigList a client needs
	pool   *x509.CertPool
}

// startECHOrigin serves names on loopback with an ECH key whose config
// carries publicName (the outer name a client sends).
func startECHOrigin(t *testing.T, publicName string, names ...string) *echOrigin {
	t.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// ECHConfig (draft-ietf-tls-esni-18, 4): version 0xfe0d, config_id,
	// DHKEM(X25519), the public key, HKDF-SHA256 with AES-128-GCM, the
	// maximum name length, the public name, no extensions.
	var b cryptobyte.Builder
	b.AddUint16(extECH)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(7)
		b.AddUint16(0x0020)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(key.PublicKey().Bytes()) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint16(0x0001); b.AddUint16(0x0001) })
		b.AddUint8(64)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(publicName)) })
		b.AddUint16(0)
	})
	cfg := b.BytesOrPanic()
	var l cryptobyte.Builder
	l.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(cfg) })

	ck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: append([]string{publicName}, names...),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ck.PublicKey, ck)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	o := &echOrigin{config: l.BytesOrPanic(), pool: x509.NewCertPool()}
	o.pool.AddCert(leaf)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates:             []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: ck}},
		MinVersion:               tls.VersionTLS13,
		EncryptedClientHelloKeys: []tls.EncryptedClientHelloKey{{Config: cfg, PrivateKey: key.Bytes(), SendAsRetry: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	_, o.port, _ = net.SplitHostPort(ln.Addr().String())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				st := tc.ConnectionState()
				_, _ = io.WriteString(tc, "edge serves "+st.ServerName+" ech="+strconv.FormatBool(st.ECHAccepted))
			}()
		}
	}()
	return o
}

// TestConnectToECHFrontHidesSite: a CONNECT to an ECH provider's front
// (proxy.transparent.ech_names: cloudflare-ech.com, which reaches the
// provider's edge) with a ClientHello carrying real Encrypted Client
// Hello. The pupil's tool puts an allowed name in the outer server name
// (a config whose public name is any allowed site; the edge does not
// check it) or none at all, so only the CONNECT's host shows the front:
// the proxy decided the allowed outer name, let the tunnel through with
// no event, and the edge served the hidden, blocked site. A tunnel to a
// front with ECH hides its site whatever the outer name: it follows
// proxy.transparent.no_sni as an ECH front in the outer name does.
func TestConnectToECHFrontHidesSite(t *testing.T) {
	edge := startECHOrigin(t, "site.test", "adult.test")
	for _, tc := range []struct {
		name  string
		allow bool // no_sni: allow for students
	}{{"block", false}, {"no_sni allow", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ie := newInspectEnv(t, "")
			ie.setDecrypt(config.DecryptOff)
			ie.editProxy(func(p *config.Proxy) {
				n, _ := strconv.Atoi(edge.port)
				p.Connect.Ports = append(p.Connect.Ports[:len(p.Connect.Ports):len(p.Connect.Ports)], n)
			})
			if tc.allow {
				ie.setConfig(func(c *config.Config) {
					c.Proxy.Transparent.NoSNIGroups = map[string]string{"students": config.NoSNIAllow}
				})
			}
			ie.res.mu.Lock()
			ie.res.names["cloudflare-ech.com"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			ie.res.mu.Unlock()
			code, c, br := ie.connect("", "Cloudflare-ECH.com.:"+edge.port, "")
			if code != http.StatusOK || br.Buffered() != 0 {
				t.Fatalf("CONNECT: %d", code)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tlc := tls.Client(c, &tls.Config{ServerName: "adult.test", RootCAs: edge.pool, MinVersion: tls.VersionTLS13,
				EncryptedClientHelloConfigList: edge.config})
			err := tlc.Handshake()
			var got string
			if err == nil {
				b, _ := io.ReadAll(tlc)
				got = string(b)
			}
			if !tc.allow {
				if err == nil {
					t.Fatalf("CONNECT to the ECH front, outer name site.test, inner adult.test (blocked): %q", got)
				}
			} else if !strings.Contains(got, "edge serves adult.test ech=true") {
				t.Fatalf("no_sni allow: the tunnel should go on: %v %q", err, got)
			}
			want := map[bool]string{false: "block", true: "flag"}[tc.allow]
			ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "ech" })
			if ev.Action != want || !ev.Bypass || ev.Source != "connect" || !strings.HasPrefix(ev.Name, "cloudflare-ech.com:") {
				t.Errorf("event %+v", ev)
			}
		})
	}
	// No outer name at all (a hand-built hello) through the front: the same.
	ie := newInspectEnv(t, "")
	ie.setDecrypt(config.DecryptOff)
	ie.s.tlsPort = ie.port
	ie.res.mu.Lock()
	ie.res.names["cloudflare-ech.com"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	ie.res.mu.Unlock()
	code, c, br := ie.connect("", "cloudflare-ech.com:"+ie.port, "")
	if code != http.StatusOK || br.Buffered() != 0 {
		t.Fatalf("CONNECT: %d", code)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(buildHello("", true, 1)); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(br); len(b) != 0 {
		t.Errorf("a nameless ECH hello through the front reached the edge (%d bytes back)", len(b))
	}
	ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "ech" })
	if ev.Action != "block" || !ev.Bypass {
		t.Errorf("event %+v", ev)
	}
}
