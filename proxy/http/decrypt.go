package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// CertSource gives the leaf certificate to present for a host
// (tlsinspect.Minter.Get).
type CertSource interface {
	Get(host string) (*tls.Certificate, error)
}

// newTerminator serves decrypted connections when the school's CA is
// loaded (Options.Certs); nil otherwise.
func (s *Server) newTerminator(p config.Proxy) *tlsinspect.Terminator {
	if s.o.Certs == nil {
		return nil
	}
	return tlsinspect.NewTerminator(s.o.Certs.Get, tlsinspect.TerminatorOptions{
		Handler:          http.HandlerFunc(s.serveDecrypted),
		HandshakeTimeout: p.Timeouts.Header.D(),
		HeaderTimeout:    p.Timeouts.Header.D(),
		IdleTimeout:      p.Timeouts.Idle.D(),
	})
}

// decryptBlock answers a CONNECT that policy blocks by decrypting it, when
// the school's CA is loaded and the client's group decrypts at least
// blocks: 200, the TLS handshake with a leaf for the host, and the block
// page for every request on the connection. It reports whether it took
// the connection; if not, the caller refuses the CONNECT as before. A
// tunnel refused for its port is never decrypted (it need not be TLS).
func (s *Server) decryptBlock(w http.ResponseWriter, info *reqInfo, reason string, cfg *config.Config) bool {
	if s.term == nil || reason == "port" {
		return false
	}
	if g := cfg.Groups[info.dec.Group]; g == nil || g.DecryptMode() == config.DecryptOff {
		return false
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	ref := newRef()
	c, brw, err := hj.Hijack()
	if err == nil {
		_, err = brw.WriteString("HTTP/1.1 200 Connection established\r\nVia: " + Via + "\r\n\r\n")
	}
	if err == nil {
		err = brw.Flush()
	}
	if err != nil { // the client went away: the block is still recorded
		if c != nil {
			_ = c.Close()
		}
		s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, ref)
		return true
	}
	// A ClientHello the client sent straight after the CONNECT may already
	// be in brw's buffer: read through it.
	bc := &bufferedConn{Conn: c, r: brw.Reader}
	s.metrics.requests.WithLabelValues("connect", "decrypt-block").Inc()
	if err := s.term.Serve(context.Background(), bc, info.host, info); err != nil {
		s.metrics.requests.WithLabelValues("connect", "decrypt-failed").Inc()
		// Most often a device that does not trust the school's CA: it saw
		// a certificate error, not a page. Recorded as the refused CONNECT
		// it would have been.
		s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, ref)
	}
	return true
}

// serveDecrypted serves a request on a decrypted connection: the block
// page (or the "report a mistake" form's answer) over HTTPS, with the
// usual event. Nothing is sent upstream.
func (s *Server) serveDecrypted(w http.ResponseWriter, r *http.Request) {
	ci, _ := tlsinspect.ConnValue(r.Context()).(*reqInfo)
	if ci == nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == reportPath {
		s.handleReport(w, r, ci.client)
		return
	}
	info := *ci
	info.method = r.Method
	u := *r.URL
	u.Scheme, u.Host = "https", info.host
	if info.port != "443" {
		u.Host = net.JoinHostPort(info.host, info.port)
	}
	info.url = eventURL(&u)
	s.blockPage(w, &info, s.o.Config(), info.url, "connect") // the event is durable before the page goes
}

// bufferedConn reads through the front's buffer after a hijack.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
