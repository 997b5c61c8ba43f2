package tlsinspect

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// Terminator completes TLS on client connections the proxy has taken over
// (an answered CONNECT) with a leaf minted for the host the client asked
// for, then serves them with one net/http server: HTTP/2 or HTTP/1.1 as the
// client's ALPN chooses, as browsers expect. It adds no connection bound
// of its own: each connection stays counted by the proxy's connection
// limits until it closes.
type Terminator struct {
	certs     func(host string) (*tls.Certificate, error)
	handshake time.Duration
	srv       *http.Server
	ln        *connListener
	vals      sync.Map // *tls.Conn → the value given to Serve
	done      chan struct{}
}

// TerminatorOptions configure a Terminator.
type TerminatorOptions struct {
	Handler          http.Handler // serves every request; ConnValue gives the connection's value
	HandshakeTimeout time.Duration
	HeaderTimeout    time.Duration // a request's headers must arrive within this
	IdleTimeout      time.Duration // an idle connection closes after this
}

// NewTerminator returns a running terminator; certs gives the leaf for a
// host (Minter.Get).
func NewTerminator(certs func(host string) (*tls.Certificate, error), o TerminatorOptions) *Terminator {
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	t := &Terminator{certs: certs, handshake: o.HandshakeTimeout, ln: newConnListener(), done: make(chan struct{})}
	t.srv = &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: o.HeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		// Block pages are small: a few streams at once is plenty, and
		// bounds the handler goroutines one HTTP/2 connection can start.
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: MaxStreams},
		ErrorLog: log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			v, _ := t.vals.Load(c)
			return context.WithValue(ctx, valKey{}, v)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				t.vals.Delete(c)
			}
		},
	}
	go func() {
		defer close(t.done)
		_ = t.srv.Serve(t.ln)
	}()
	return t
}

// MaxStreams bounds the concurrent requests on one HTTP/2 connection.
const MaxStreams = 32

type valKey struct{}

// ConnValue returns the value Serve was given for the request's connection.
func ConnValue(ctx context.Context) any { return ctx.Value(valKey{}) }

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("tlsinspect: terminator closed")

// Serve completes the TLS handshake on c as host (a leaf minted for it,
// whatever name the ClientHello carries) within the handshake timeout, and
// hands the connection to the HTTP server. It returns the handshake's
// error (a client that does not trust the CA fails here and gets no page);
// c is closed on error.
func (t *Terminator) Serve(ctx context.Context, c net.Conn, host string, value any) error {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		// One config per connection: tickets could never be redeemed.
		SessionTicketsDisabled: true,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.certs(host)
		},
	}
	tc := tls.Server(c, cfg)
	_ = c.SetDeadline(time.Now().Add(t.handshake))
	hctx, cancel := context.WithTimeout(ctx, t.handshake)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		_ = tc.Close()
		return err
	}
	_ = c.SetDeadline(time.Time{})
	t.vals.Store(tc, value)
	if !t.ln.put(tc) {
		t.vals.Delete(tc)
		_ = tc.Close()
		return ErrClosed
	}
	return nil
}

// Shutdown stops taking connections and closes them gracefully, until ctx
// ends; then it closes them.
func (t *Terminator) Shutdown(ctx context.Context) error {
	err := t.srv.Shutdown(ctx)
	if err != nil {
		_ = t.srv.Close()
	}
	<-t.done
	return err
}

// connListener is a net.Listener fed by Serve.
type connListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return dummyAddr{} }

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "gatehouse-inspect" }
