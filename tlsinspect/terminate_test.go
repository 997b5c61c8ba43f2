package tlsinspect

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The terminator advertises its stream bound to HTTP/2 clients, and a
// request on the connection reaches the handler with Serve's value.
func TestTerminatorHTTP2Settings(t *testing.T) {
	ca, _, _ := newCA(t)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	term := NewTerminator(m.Get, TerminatorOptions{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, ConnValue(r.Context()).(string))
	})})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = term.Shutdown(ctx)
	})
	sc, cc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- term.Serve(context.Background(), sc, "x.example", "the value") }()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tc := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "x.example", NextProtos: []string{"h2"}})
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q", p)
	}
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, tc)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok || v != MaxStreams {
				t.Fatalf("max concurrent streams %d (%v), want %d", v, ok, MaxStreams)
			}
			return
		}
	}
}

// A client that does not trust the CA fails the handshake; Serve says so.
func TestTerminatorUntrustedClient(t *testing.T) {
	ca, _, _ := newCA(t)
	m, err := NewMinter(ca, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	term := NewTerminator(m.Get, TerminatorOptions{Handler: http.NotFoundHandler(), HandshakeTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = term.Shutdown(context.Background()) })
	sc, cc := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- term.Serve(context.Background(), sc, "x.example", nil) }()
	tc := tls.Client(cc, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "x.example"})
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake succeeded without trusting the CA")
	}
	tc.Close()
	if err := <-done; err == nil {
		t.Fatal("Serve reported success for a failed handshake")
	}
}
