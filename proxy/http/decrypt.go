package httpproxy

// HTTPS inspection with the school's CA. decideConnect decides every
// CONNECT (tunnel, decrypt or refuse); a decrypted connection is handed to
// a tlsinspect.Terminator, whose net/http server (HTTP/2 or HTTP/1.1)
// calls serveDecrypted for each request. A blocked connection gets the
// block page for every request; an allowed one sends each request through
// plain, the per-request path plain-HTTP requests take, and on to the site
// over verified TLS (forwardTLS).

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

// CertSource gives the leaf certificate to present for a host
// (tlsinspect.Minter.Get).
type CertSource interface {
	Get(host string) (*tls.Certificate, error)
}

// ConnectPlan is what happens to a CONNECT, or to a connection for a
// host's port 443 reaching the proxy by other means (transparent mode).
type ConnectPlan uint8

const (
	// PlanTunnel splices the connection to the site untouched.
	PlanTunnel ConnectPlan = iota
	// PlanDecrypt completes TLS with a leaf minted for the host and serves
	// the connection's requests: the block page when the decision blocks,
	// else each request decided and forwarded (serveDecrypted).
	PlanDecrypt
	// PlanRefuse refuses the connection (403 and an event).
	PlanRefuse
)

func (p ConnectPlan) String() string {
	return [...]string{"tunnel", "decrypt", "refuse"}[p]
}

// decideConnect decides a connection to info.host:info.port for info's
// client once info.dec holds the host's policy decision (Engine.Decide
// without a path); addr is the host as an address when it was written as
// one. It applies the tunnel rules to info.dec (a bare IP address outside
// proxy.connect.ip_networks, a port outside proxy.connect.ports: blocked
// as bypass attempts, with reason "ip-literal" or "port") and says what to
// do:
//
//   - blocked: decrypted to show the block page when the school's CA is
//     loaded, the group's decrypt is not off, the host is not on the
//     never-decrypt list, its client has not been failing handshakes for
//     it (a pinned app, with proxy.inspect.pinned_apps: tunnel) and the
//     reason is not the port (the connection need not be TLS); refused
//     otherwise.
//   - allowed: decrypted when the CA is loaded and the group decrypts the
//     host (config.DecryptsAllowed: search engines and video sites for
//     search, everything but the never-decrypt list for all; never a host
//     written as an address), unless its client has been failing the
//     handshake for it and proxy.inspect.pinned_apps is tunnel: then
//     tunnelled, or refused for a search engine or video site (safe search
//     and search terms must hold there); tunnelled otherwise. With
//     pinned_apps: report (the default) the failures are only reported: a
//     pupil could fail handshakes on purpose to have a site tunnelled.
//
// Transparent mode calls it for port 443 with the host from the SNI.
func (s *Server) decideConnect(info *reqInfo, addr netip.Addr, eng *policy.Engine, cfg *config.Config) (plan ConnectPlan, reason string) {
	d := &info.dec
	reason = s.tunnelRules(info, addr, false, eng, cfg)
	pinned := s.term != nil && cfg.PinnedTunnels() && s.pins.held(info.client, info.host, s.now())
	if d.Action == policy.Block {
		if s.term == nil || reason == "port" || pinned || cfg.NeverDecrypt(info.host) {
			return PlanRefuse, reason
		}
		if g := cfg.Groups[d.Group]; g == nil || g.DecryptMode() == config.DecryptOff {
			return PlanRefuse, reason
		}
		return PlanDecrypt, reason
	}
	return s.allowedPlan(info.client, d.Group, info.host, addr, cfg)
}

// allowedPlan is decideConnect's plan for an allowed host (the
// CONNECT's, or the other name a tunnel's ClientHello carries:
// sniBlocked) for a client in group: decrypted when the CA is loaded and the group
// decrypts the host, unless the client has been failing handshakes for it
// under pinned_apps: tunnel (then tunnelled, or refused for a search
// engine or video site); tunnelled otherwise.
func (s *Server) allowedPlan(client netip.Addr, group, host string, addr netip.Addr, cfg *config.Config) (ConnectPlan, string) {
	if s.term == nil || addr.IsValid() || !cfg.DecryptsAllowed(group, host) {
		return PlanTunnel, ""
	}
	if cfg.PinnedTunnels() && s.pins.held(client, host, s.now()) {
		if cfg.SearchHost(host) {
			return PlanRefuse, "pinned"
		}
		return PlanTunnel, ""
	}
	return PlanDecrypt, ""
}

// newTerminator serves decrypted connections when the school's CA is
// loaded (Options.Certs); nil otherwise.
func (s *Server) newTerminator(p config.Proxy) *tlsinspect.Terminator {
	if s.o.Certs == nil {
		return nil
	}
	return tlsinspect.NewTerminator(s.o.Certs.Get, tlsinspect.TerminatorOptions{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hasFragment(r) { // see front.go; an HTTP/2 :path too
				http.Error(w, fragmentError, http.StatusBadRequest)
				return
			}
			s.serveDecrypted(w, r)
		}),
		HandshakeTimeout: p.Timeouts.Header.D(),
		HeaderTimeout:    p.Timeouts.Header.D(),
		IdleTimeout:      p.Timeouts.Idle.D(),
	})
}

// decryptConn is a decrypted connection's state, shared by its requests.
type decryptConn struct {
	info   reqInfo // the CONNECT's: client, login, user, host, port, decision
	addr   netip.Addr
	reason string // the tunnel rule that blocked it, if any
}

// decrypt answers a CONNECT decideConnect chose to decrypt: 200, then the
// TLS handshake with a leaf for the CONNECT's host (never the
// ClientHello's name) and the terminator's HTTP server. It reports whether
// it took the connection; if not (no hijacking), the caller refuses or
// tunnels it as it would without a CA.
func (s *Server) decrypt(w http.ResponseWriter, info *reqInfo, addr netip.Addr, reason string) bool {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	c, brw, err := hj.Hijack()
	if err == nil {
		_, err = brw.WriteString("HTTP/1.1 200 Connection established\r\nVia: " + Via + "\r\n\r\n")
	}
	if err == nil {
		err = brw.Flush()
	}
	if err != nil { // the client went away: a block is still recorded
		if c != nil {
			_ = c.Close()
		}
		if info.dec.Action == policy.Block {
			s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, newRef())
		}
		return true
	}
	// A ClientHello the client sent straight after the CONNECT may already
	// be in brw's buffer: read through it.
	s.serveTLS(&bufferedConn{Conn: c, r: brw.Reader}, info, addr, reason)
	return true
}

// serveTLS decrypts a client connection whose next bytes are its TLS
// ClientHello (after an answered CONNECT, or a transparent connection to
// port 443, peeked bytes included) once decideConnect said PlanDecrypt:
// the handshake with a leaf for info.host, then the terminator serves its
// requests (serveDecrypted). A failed handshake is recorded (the refused
// block; not TLS at all; a count towards the pinned-app hold). It returns
// once the handshake is over; c is closed on failure.
func (s *Server) serveTLS(c net.Conn, info *reqInfo, addr netip.Addr, reason string) {
	blocked := info.dec.Action == policy.Block
	action := "decrypt"
	if blocked {
		action = "decrypt-block"
	}
	s.metrics.requests.WithLabelValues("connect", action).Inc()
	dc := &decryptConn{info: *info, addr: addr, reason: reason}
	dc.info.conn, dc.info.rw = nil, respWriter{}
	if err := s.term.Serve(context.Background(), c, info.host, dc); err != nil {
		s.metrics.requests.WithLabelValues("connect", "decrypt-failed").Inc()
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			// Not TLS at all (a VPN or SSH through port 443): the tunnel
			// rule for non-TLS tunnels, closed.
			ev := *info
			ev.dec.Action = policy.Block // blocked or not
			markBypass(&ev.dec)
			s.eventRef(&ev, "connect", "block", 0, 0, "not-tls", "")
			return
		}
		if blocked {
			// Most often a device that does not trust the school's CA: it
			// saw a certificate error, not a page. Recorded as the refused
			// CONNECT it would have been.
			s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, newRef())
		}
		if s.pins.fail(info.client, info.host, s.now()) {
			s.pinnedEvent(info)
		}
	}
}

// pinnedEvent records, once per hold, that a client kept failing the TLS
// handshake with the school's leaf for a host: an app that pins its
// certificates, or a device without the school's CA. For IT, who add a
// genuine app's domain to proxy.inspect.never_decrypt.
func (s *Server) pinnedEvent(info *reqInfo) {
	ev := *info
	d := &ev.dec
	d.Action, d.Bypass = policy.Allow, false
	d.Severity, d.Route = bl.SeverityLow, bl.RouteIT
	d.Entry, d.List = info.host, ""
	s.metrics.requests.WithLabelValues("connect", "pinned").Inc()
	s.eventRef(&ev, "connect", "flag", 0, 0, "pinned", "")
}

// serveDecrypted serves a request on a decrypted connection. On a blocked
// connection: the block page (or the "report a mistake" form's answer)
// over HTTPS, with the usual event; nothing goes upstream. On an allowed
// one: the request is decided on its full URL and answered by plain, as a
// plain-HTTP request is (block page, rewrite, events), and allowed
// requests go to the site over verified TLS (forwardTLS).
func (s *Server) serveDecrypted(w http.ResponseWriter, r *http.Request) {
	dc, _ := tlsinspect.ConnValue(r.Context()).(*decryptConn)
	if dc == nil {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == reportPath {
		s.handleReport(w, r, dc.info.client)
		return
	}
	info := dc.info
	info.method = r.Method
	hostport := info.host
	if info.port != "443" {
		hostport = net.JoinHostPort(info.host, info.port)
	}
	r.URL.Scheme, r.URL.Host = "https", hostport
	if dc.info.dec.Action == policy.Block {
		info.url = eventURL(r.URL)
		s.blockPage(w, r, &info, s.o.Config(), info.url, "connect") // the event is durable before the page goes
		return
	}
	if !sameHost(r.Host, info.host, info.port) {
		// A request for another site on this connection (domain fronting,
		// or a client reusing it): it must open its own.
		w.Header().Set("Via", Via)
		http.Error(w, "421 Misdirected Request: this connection is for "+hostport, http.StatusMisdirectedRequest)
		return
	}
	r.Host = ""
	eng := s.o.Engine()
	cfg := eng.Config()
	// Decided as ServeHTTP decides a request: the CONNECT's login, else
	// the identity table's user with their group and device, looked up
	// for each request (the table may name someone else while a
	// keep-alive connection lives).
	req, who := s.whoRequest(info.client, info.login, info.loginGroup)
	info.who, info.user = who, req.User
	req.Host, req.Path, req.Addr = info.host, r.URL.RequestURI(), dc.addr
	info.dec = eng.Decide(req)
	info.tls = true
	s.plain(w, r, &info, cfg)
}

// sameHost reports whether a request's Host names host:port (port 443 may
// be left out).
func sameHost(reqHost, host, port string) bool {
	h, p := splitHostPort(reqHost)
	if p == "" {
		p = "443"
	}
	if p != port {
		return false
	}
	n, _, err := normHost(h)
	return err == nil && n == host
}

// forwardTLS sends an allowed decrypted request to its site over TLS that
// verifies the site's chain and name (system roots plus
// proxy.upstream_ca_file), HTTP/2 where the site offers it, and relays the
// answer without Alt-Svc (which would move the browser to QUIC, around
// the proxy).
func (s *Server) forwardTLS(w http.ResponseWriter, r *http.Request, info *reqInfo) {
	r.RequestURI = ""
	if r.ContentLength == 0 {
		// net/http's HTTP/2 server gives even a bodiless GET a body, which
		// the Transport would send as one of unknown length: a DATA frame
		// and a round trip more to the site for every request.
		r.Body = http.NoBody
	}
	tr := s.tlsTransport(info.rewrite)
	out := r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
	// A client's "Connection: close" is about its own connection to the
	// proxy: the connection to the site stays for the next request (else
	// every such request paid a new TLS handshake to the site).
	out.Close = false
	resp, err := tr.RoundTrip(out)
	if err != nil && isCertError(err) {
		s.badCertificate(w, r, info, err)
		return
	}
	s.relay(w, r, info, resp, err)
}

// tlsTransport is the transport for decrypted requests to host, or to the
// safe-search endpoint target in its place (its own transport, so a
// connection never mixes safe and unsafe answers).
func (s *Server) tlsTransport(target string) *http.Transport {
	if t, ok := s.tlsTr.Load(target); ok {
		return t.(*http.Transport)
	}
	t, _ := s.tlsTr.LoadOrStore(target, s.newTLSTransport(s.o.Config().Proxy, target))
	return t.(*http.Transport)
}

// newTLSTransport builds a transport for decrypted requests. Every dial
// goes through dialHost with the tunnels' network rule
// (proxy.connect.ip_networks), as the CONNECT's own would have.
func (s *Server) newTLSTransport(p config.Proxy, target string) *http.Transport {
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, port := splitHostPort(addr)
		if target != "" {
			host = target
		}
		return s.dialHost(ctx, clientOf(ctx), host, port, s.o.Config().Proxy.Connect.IPNetworks)
	}
	return &http.Transport{
		Proxy:                 nil, // never an environment proxy
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   p.Timeouts.Dial.D(),
		ResponseHeaderTimeout: p.Timeouts.Response.D(),
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          p.Limits.IdleTotal,
		MaxIdleConnsPerHost:   p.Limits.IdlePerSite,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// isCertError reports whether err is a failed verification of a site's
// certificate.
func isCertError(err error) bool {
	var cv *tls.CertificateVerificationError
	return errors.As(err, &cv) || strings.Contains(err.Error(), "x509:")
}

// badCertificate answers a decrypted request whose site's certificate did
// not verify: an error page over the school's own leaf (which the device
// trusts for the filter's pages, never for the site's content), and an
// event for IT with the reason.
func (s *Server) badCertificate(w http.ResponseWriter, r *http.Request, info *reqInfo, err error) {
	s.metrics.upstreamErrors.Inc()
	s.metrics.refused.WithLabelValues("upstream-cert").Inc()
	ref := newRef()
	ev := *info
	ev.url = eventURL(r.URL)
	d := &ev.dec
	d.Action, d.Bypass = policy.Block, false
	d.Severity, d.Route = bl.SeverityLow, bl.RouteIT
	d.Entry, d.List, d.HasCategory = certProblem(err), "", false
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Via", Via)
	h.Set("X-Gatehouse-Ref", ref)
	var b strings.Builder
	_ = certTmpl.Execute(&b, certPage{School: s.o.Config().School.Name, Host: info.host, Problem: d.Entry, Ref: ref})
	s.eventRef(&ev, "connect", "flag", http.StatusBadGateway, int64(b.Len()), "upstream-cert", ref)
	w.WriteHeader(http.StatusBadGateway)
	_, _ = io.WriteString(w, b.String())
}

// certProblem says in a few words what was wrong with a certificate.
func certProblem(err error) string {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		err = cv.Err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unknown authority"):
		return "issued by an authority nobody trusts"
	case strings.Contains(msg, "not valid for"), strings.Contains(msg, "valid for"):
		return "issued for a different site"
	case strings.Contains(msg, "expired"), strings.Contains(msg, "not yet valid"):
		return "expired or not yet valid"
	}
	return "not valid"
}

type certPage struct{ School, Host, Problem, Ref string }

var certTmpl = template.Must(template.New("cert").Parse(`<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>Not a safe connection – {{.School}}</title>
<style>body{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;font-size:1.1rem;line-height:1.5;max-width:38rem;margin:0 auto;padding:1.5rem 1rem}</style>
</head><body><main>
<p>{{.School}}</p>
<h1>This site's security certificate is not valid</h1>
<p>The school's web filter did not connect to <strong>{{.Host}}</strong>: its certificate is {{.Problem}}, so
someone could be pretending to be the site. Nothing was sent to it.</p>
<p>IT have been told. Reference: <strong>{{.Ref}}</strong></p>
</main></body></html>
`))

// bufferedConn reads through the front's buffer after a hijack.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
