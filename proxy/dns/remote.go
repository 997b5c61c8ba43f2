package dns

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/devices"
	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// IDSourceToken is the identity source of events from an enrolled device
// off-site (Event.IDSource).
const IDSourceToken = reports.SourceDeviceToken

// Off-site listeners for enrolled school devices (Options.Remote):
//
//   - DoH (RFC 8484): GET ?dns= and POST application/dns-message on
//     /dns-query/<token>, HTTP/2 or HTTP/1.1 over TLS. An unknown, revoked
//     or malformed token gets 403; a client over its rate 429.
//   - DoT: the token is the first label of the TLS server name
//     (<token>.HOST). An unknown token fails the handshake (a TLS alert);
//     a token revoked while the connection is open gets REFUSED.
//
// A query with a valid token goes through the resolver's own path (serve)
// as its device: the device's group decides, its events name it.
// Refusals are counted in gatehouse_dns_remote_refused_total; nothing is
// resolved for them. The token never reaches a log line.
type remote struct {
	s        *Server
	reg      *devices.Registry
	addrRL   *rateLimiter
	tokQPS   float64
	tokBurst float64
	https    []*http.Server
	groupLog lograte.Counted // the "group is not in the config" lines
}

// errNotEnrolled fails a DoT handshake without naming the token.
var errNotEnrolled = errors.New("gatehouse: not an enrolled device")

// dohMaxBody bounds a POSTed DNS message (the largest DNS message).
const dohMaxBody = 65535

func (s *Server) startRemote() error {
	o := s.opts.Remote
	if len(o.DoHListen)+len(o.DoTListen) == 0 {
		return nil
	}
	if o.TLSConfig == nil {
		return errors.New("dns: off-site listeners without a certificate")
	}
	tb := o.TokenBurst
	if tb < o.TokenQPS {
		tb = o.TokenQPS
	}
	r := &remote{s: s, reg: o.Devices, addrRL: newRateLimiter(o.AddrQPS, o.AddrBurst, s.opts.Log),
		tokQPS: float64(o.TokenQPS), tokBurst: float64(tb)}
	s.remote = r
	for _, a := range o.DoTListen {
		cfg := o.TLSConfig.Clone()
		cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
		cfg.NextProtos = nil // any ALPN a DoT client offers (or none) is fine
		cfg.GetConfigForClient = r.checkHello
		raw, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("dns listener off-site dot %s: %w", a, err)
		}
		ln := tls.NewListener(limitTCP(raw), cfg) // server.go
		s.add(&mdns.Server{Listener: ln, Net: "tcp-tls", Handler: remoteDoT{r}, ReadTimeout: 5 * time.Second,
			IdleTimeout: func() time.Duration { return 10 * time.Second }}, ln.Addr())
	}
	for _, a := range o.DoHListen {
		cfg := o.TLSConfig.Clone()
		cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
		if len(cfg.NextProtos) == 0 {
			cfg.NextProtos = []string{"h2", "http/1.1"}
		}
		// A handshake costs the server a signature: it takes from the
		// source address's bucket, as DoT's do (the token is in the path,
		// checked per request).
		cfg.GetConfigForClient = r.checkDoHHello
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("dns listener doh %s: %w", a, err)
		}
		hs := &http.Server{Handler: r, TLSConfig: cfg, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10,
			// Handshake and protocol errors from the internet: debug only, at
			// most one every 10 s (they never carry the token, which is in
			// the path).
			ErrorLog: lograte.ServerLog(s.opts.Log, slog.LevelDebug, 10*time.Second)}
		r.https = append(r.https, hs)
		s.mu.Lock()
		s.addrs = append(s.addrs, ln.Addr())
		s.mu.Unlock()
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := hs.ServeTLS(limitTCP(ln), "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.opts.Log.Error("dns doh listener stopped", "err", err)
			}
		}()
	}
	return nil
}

// shutdown closes the DoH listeners, letting requests in flight finish
// until ctx ends.
func (r *remote) shutdown(ctx context.Context) {
	for _, hs := range r.https {
		if err := hs.Shutdown(ctx); err != nil {
			_ = hs.Close()
		}
	}
}

// refused counts a refusal.
func (r *remote) refused(listener, reason string) {
	r.s.metrics.remoteRefused.WithLabelValues(listener, reason).Inc()
}

// groupGone counts and logs (at most once a minute) a query refused
// because its device's group is not in the config.
func (r *remote) groupGone(listener string, d *devices.Device, now time.Time) {
	r.refused(listener, "group")
	if ok, held := r.groupLog.Allow(now, time.Minute); ok {
		r.s.opts.Log.Error("off-site device refused: its group is not in the config; enrol it again in a group that is (gatehouse devices revoke, then add --group)",
			"device", d.Name, "group", d.Group, "refused_since_last_line", held)
	}
}

// device checks a request from addr with token: the source address's rate,
// the token, the device's rate. It returns the device, or the reason for
// refusing.
func (r *remote) device(addr netip.Addr, token string, now time.Time) (*devices.Device, string) {
	if !r.addrRL.allow(addr, now) {
		return nil, "ratelimited"
	}
	d := r.reg.Lookup(token)
	if d == nil {
		return nil, "token"
	}
	if !d.Allow(now, r.tokQPS, r.tokBurst) {
		return nil, "ratelimited"
	}
	return d, ""
}

// isTokenName reports whether name (lower case, no trailing dot) is a DoT
// server name, <token>.HOST with a token's shape (enrolled or not).
func (s *Server) isTokenName(name string) bool {
	if s.tokenHost == "" || len(name) != devices.TokenLen+1+len(s.tokenHost) {
		return false
	}
	label, rest, _ := strings.Cut(name, ".")
	return rest == s.tokenHost && devices.ValidToken(label)
}

// serveTokenName answers a lookup of a DoT server name, <token>.HOST: a
// device set to it (Android's Private DNS) first looks it up with the
// network's resolver, on site Gatehouse itself. The token must reach no
// upstream (public resolvers feed passive DNS) and no event or log line,
// so HOST is asked in its place, through the whole path (policy, cache,
// events name HOST), and the answer leads from the name asked to HOST's
// records with a CNAME. A school's DNS needs no record for *.HOST then,
// on site.
func (s *Server) serveTokenName(qr *query, dev *devices.Device) {
	sub := qr.r.Copy()
	sub.Question[0].Name = s.tokenHost + "."
	cw := &dohWriter{remote: &net.UDPAddr{IP: qr.client.AsSlice()}, local: qr.w.LocalAddr()}
	s.serve(cw, sub, qr.proto, dev)
	resp := new(mdns.Msg)
	if cw.out == nil || resp.Unpack(cw.out) != nil {
		s.rcode(qr, mdns.RcodeServerFailure, qtypeLabel(qr.q.Qtype), "servfail", "")
		return
	}
	resp.Id, resp.Question, resp.Compress = qr.r.Id, qr.r.Question, true
	if resp.Rcode == mdns.RcodeSuccess && qr.q.Qclass == mdns.ClassINET {
		ttl := uint32(60)
		if len(resp.Answer) > 0 {
			ttl = resp.Answer[0].Header().Ttl
		}
		cn := &mdns.CNAME{Hdr: mdns.RR_Header{Name: qr.q.Name, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: ttl},
			Target: sub.Question[0].Name}
		resp.Answer = append([]mdns.RR{cn}, resp.Answer...)
	}
	var ede *mdns.EDNS0_EDE
	resp.Extra, ede = withoutOPT(resp.Extra[:0], resp.Extra)
	s.write(qr, resp, ede)
}

// firstLabel is the token in a DoT server name (<token>.HOST).
func firstLabel(sni string) string {
	if i := strings.IndexByte(sni, '.'); i >= 0 {
		return sni[:i]
	}
	return sni
}

// checkHello refuses the TLS handshake of an unknown token or a source
// address over its rate: the client gets a TLS alert, nothing is served.
func (r *remote) checkHello(h *tls.ClientHelloInfo) (*tls.Config, error) {
	addr := addrOf(h.Conn.RemoteAddr())
	if !r.addrRL.allow(addr, r.s.opts.Now()) {
		r.refused("dot", "ratelimited")
		return nil, errNotEnrolled
	}
	if r.reg.Lookup(firstLabel(h.ServerName)) == nil {
		r.refused("dot", "token")
		return nil, errNotEnrolled
	}
	return nil, nil
}

// checkDoHHello refuses the TLS handshake of a source address over its
// rate on the DoH listener.
func (r *remote) checkDoHHello(h *tls.ClientHelloInfo) (*tls.Config, error) {
	if !r.addrRL.allow(addrOf(h.Conn.RemoteAddr()), r.s.opts.Now()) {
		r.refused("doh", "ratelimited")
		return nil, errRateLimited
	}
	return nil, nil
}

// errRateLimited fails a DoH handshake from an address over its rate.
var errRateLimited = errors.New("gatehouse: over the address's rate")

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// remoteDoT serves the off-site DoT listener: every query is checked
// again, so a token revoked while its connection is open is refused.
type remoteDoT struct{ r *remote }

func (h remoteDoT) ServeDNS(w mdns.ResponseWriter, m *mdns.Msg) {
	var sni string
	if cs, ok := w.(mdns.ConnectionStater); ok {
		if st := cs.ConnectionState(); st != nil {
			sni = st.ServerName
		}
	}
	d, why := h.r.device(addrOf(w.RemoteAddr()), firstLabel(sni), h.r.s.opts.Now())
	if d == nil {
		h.r.refused("dot", why)
		resp := new(mdns.Msg)
		resp.SetRcode(m, mdns.RcodeRefused)
		_ = w.WriteMsg(resp)
		return
	}
	h.r.s.serve(&trackedWriter{ResponseWriter: w}, m, "dot", d)
}

// ServeHTTP is the DoH endpoint: /dns-query/<token>.
func (r *remote) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	token, ok := strings.CutPrefix(req.URL.Path, "/dns-query/")
	if !ok || strings.Contains(token, "/") {
		http.NotFound(w, req)
		return
	}
	ap, _ := netip.ParseAddrPort(req.RemoteAddr)
	d, why := r.device(ap.Addr().Unmap(), token, r.s.opts.Now())
	if d == nil {
		r.refused("doh", why)
		if why == "ratelimited" {
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		http.Error(w, "not an enrolled device", http.StatusForbidden)
		return
	}
	var wire []byte
	switch req.Method {
	case http.MethodGet:
		q := req.URL.Query().Get("dns")
		if q == "" || len(q) > base64.RawURLEncoding.EncodedLen(dohMaxBody) {
			r.refused("doh", "bad")
			http.Error(w, "missing or oversized dns parameter", http.StatusBadRequest)
			return
		}
		var err error
		if wire, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(q, "=")); err != nil {
			r.refused("doh", "bad")
			http.Error(w, "dns parameter is not base64url", http.StatusBadRequest)
			return
		}
	case http.MethodPost:
		if ct := req.Header.Get("Content-Type"); ct != "application/dns-message" {
			r.refused("doh", "bad")
			http.Error(w, "content type must be application/dns-message", http.StatusUnsupportedMediaType)
			return
		}
		var err error
		wire, err = io.ReadAll(io.LimitReader(req.Body, dohMaxBody+1))
		if err != nil || len(wire) > dohMaxBody {
			r.refused("doh", "bad")
			http.Error(w, "unreadable or oversized body", http.StatusBadRequest)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	m := new(mdns.Msg)
	if err := m.Unpack(wire); err != nil || m.Response {
		r.refused("doh", "bad")
		http.Error(w, "not a DNS query", http.StatusBadRequest)
		return
	}
	dw := &dohWriter{remote: net.TCPAddrFromAddrPort(ap), local: localAddr(req)}
	r.s.serve(dw, m, "doh", d)
	if dw.out == nil {
		http.Error(w, "no answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/dns-message")
	w.Header().Set("Content-Length", strconv.Itoa(len(dw.out)))
	_, _ = w.Write(dw.out)
}

func localAddr(req *http.Request) net.Addr {
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a
	}
	return &net.TCPAddr{}
}

// dohWriter collects the resolver's answer for the HTTP response.
type dohWriter struct {
	remote, local net.Addr
	out           []byte
}

func (w *dohWriter) LocalAddr() net.Addr  { return w.local }
func (w *dohWriter) RemoteAddr() net.Addr { return w.remote }
func (w *dohWriter) Network() string      { return "tcp" }

func (w *dohWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	w.out = b
	return nil
}

func (w *dohWriter) Write(b []byte) (int, error) {
	w.out = append([]byte(nil), b...) // b is a pooled buffer
	return len(b), nil
}

func (w *dohWriter) Close() error        { return nil }
func (w *dohWriter) TsigStatus() error   { return nil }
func (w *dohWriter) TsigTimersOnly(bool) {}
func (w *dohWriter) Hijack()             {}
