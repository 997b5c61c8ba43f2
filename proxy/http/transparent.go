package httpproxy

// Transparent mode: listeners for port-80 and port-443 traffic the
// school's firewall redirects to Gatehouse (proxy.transparent), for devices
// that cannot be given the explicit proxy. The site is named by the Host
// header or the TLS ClientHello's server name (read without consuming it:
// the bytes are replayed); the decision, events, block pages and upstream
// dials are the explicit proxy's.
//
// What is dialled is what was decided. A redirected connection's original
// destination (SO_ORIGINAL_DST) is never dialled in place of the name: the
// name is resolved through Gatehouse's resolver and each address passes
// the dial guard, exactly as for the explicit proxy. A pupil who sends an
// allowed Host or server name on a connection to a blocked address reaches
// the allowed site, not the address. The original destination is still
// decided against the IP lists (a connection to a listed address is
// blocked and recorded as a bypass attempt whatever name it carries), and
// it is the destination of connections that name no site (a ClientHello
// without a server name, an HTTP/1.0 request without Host), which then get
// the tunnel rules of a CONNECT to a bare address.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// transparent tracks the transparent listeners and their fronts, for
// Shutdown.
type transparent struct {
	mu      sync.Mutex
	closing bool
	lns     []net.Listener
	fronts  []*front
	tlsPort string // the site's port for a connection not redirected ("" = 443; tests change it)
	// upLocal holds the local address of each upstream connection a
	// transparent HTTPS tunnel is opening, until the tunnel ends: a
	// client connection coming from one of them is Gatehouse's own,
	// redirected back to it by a firewall rule that should exclude it.
	upLocal sync.Map // netip.AddrPort → struct{}
}

func (t *transparent) add(ln net.Listener, f *front) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if f != nil {
		t.fronts = append(t.fronts, f) // its shutdown closes ln
	} else {
		t.lns = append(t.lns, ln)
	}
	return true
}

func (t *transparent) isClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// shutdown closes the listeners and shuts the HTTP fronts down (requests
// in flight may finish until ctx ends). Tunnels already open run on until
// idle, as CONNECT tunnels do.
func (t *transparent) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closing = true
	lns, fronts := t.lns, t.fronts
	t.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
	var err error
	for _, f := range fronts {
		if ferr := f.shutdown(ctx); err == nil {
			err = ferr
		}
	}
	return err
}

// ServeTransparentHTTP serves port-80 traffic redirected to ln until
// Shutdown: the same front, decisions and upstream path as the explicit
// proxy, with each request's URL made absolute from its Host header.
func (s *Server) ServeTransparentHTTP(ln net.Listener) error {
	s.startWorkers()
	s.own.add(ln.Addr().String())
	p := s.o.Config().Proxy
	f := newFront(s, p.Timeouts.Header.D(), p.Timeouts.Idle.D(), 64<<10)
	f.handler = http.HandlerFunc(s.serveTransparent)
	if !s.tp.add(ln, f) {
		return ln.Close()
	}
	err := f.serve(&tListener{Listener: ln, s: s})
	if s.tp.isClosing() {
		return nil
	}
	return err
}

// ServeTransparentTLS serves port-443 traffic redirected to ln until
// Shutdown: each connection is decided on its ClientHello's server name
// as a CONNECT to that name would be, then tunnelled to the site,
// answered with the block page over HTTPS (the school's CA, groups that
// decrypt) or refused with a TLS alert.
func (s *Server) ServeTransparentTLS(ln net.Listener) error {
	s.startWorkers()
	s.own.add(ln.Addr().String())
	if !s.tp.add(ln, nil) {
		return ln.Close()
	}
	tl := &tListener{Listener: ln, s: s}
	var delay time.Duration
	for {
		c, err := tl.Accept()
		if err != nil {
			if s.tp.isClosing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("proxy: transparent HTTPS accept failed; retrying", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		go s.serveTLSConn(c.(*clientConn))
	}
}

// tListener admits the clients allowed to use the transparent listeners
// (proxy.transparent.allow, else clients.allow), counts their connections
// with the explicit proxy's, and notes where each was sent.
type tListener struct {
	net.Listener
	s *Server
}

// origConn is a transparent client connection and the destination the
// client sent it to, when the firewall redirected it on this machine.
type origConn struct {
	net.Conn
	orig netip.AddrPort // invalid when not redirected
}

func (l *tListener) Accept() (net.Conn, error) {
	s := l.s
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		if !inPrefixes(s.o.Config().TransparentClients(), ip) {
			s.metrics.refused.WithLabelValues("acl").Inc()
			s.logRefused(ip)
			_ = c.Close()
			continue
		}
		over, total := s.limits.acquire(ip)
		if over && total > 2*s.limits.max {
			s.limits.release(ip)
			s.metrics.refused.WithLabelValues("cap").Inc()
			_ = c.Close()
			continue
		}
		oc := &origConn{Conn: c}
		tcp, _ := c.(*net.TCPConn)
		if tcp != nil {
			oc.orig = redirectedTo(tcp)
		}
		return &clientConn{Conn: oc, tcp: tcp, ip: ip, over: over, limits: s.limits}, nil
	}
}

// redirectedTo is the original destination of a redirected connection;
// invalid when the connection was not redirected (SO_ORIGINAL_DST unknown,
// or the address it was accepted on).
func redirectedTo(c *net.TCPConn) netip.AddrPort {
	orig, ok := originalDst(c)
	if !ok {
		return netip.AddrPort{}
	}
	orig = netip.AddrPortFrom(orig.Addr().Unmap(), orig.Port())
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		if local := la.AddrPort(); netip.AddrPortFrom(local.Addr().Unmap(), local.Port()) == orig {
			return netip.AddrPort{}
		}
	}
	return orig
}

// addrPortOf is a TCP address as an AddrPort (IPv4-mapped unmapped).
func addrPortOf(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// origOf is the original destination of a transparent connection.
func origOf(cc *clientConn) netip.AddrPort {
	if cc == nil {
		return netip.AddrPort{}
	}
	if oc, ok := cc.Conn.(*origConn); ok {
		return oc.orig
	}
	return netip.AddrPort{}
}

// serveTransparent serves a request on the transparent HTTP listener: the
// explicit proxy's ServeHTTP less the login (a redirected browser answers
// no 407), with the URL made absolute from the Host header (the original
// destination's address when an HTTP/1.0 request has none).
func (s *Server) serveTransparent(w http.ResponseWriter, r *http.Request) {
	fw, ok := w.(*frontWriter)
	if !ok {
		http.Error(w, "500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	cc := fw.fc.c
	ip := cc.ip
	if cc.over {
		s.metrics.refused.WithLabelValues("cap").Inc()
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "5")
		http.Error(w, "503 Service Unavailable: too many connections are open through the school's web filter from your device (or from the whole school). Please try again in a moment.", http.StatusServiceUnavailable)
		return
	}
	if looped(r.Header) {
		http.Error(w, "508 Loop Detected: the request came back to the web filter", http.StatusLoopDetected)
		return
	}
	if r.Method == http.MethodConnect {
		http.Error(w, "405 Method Not Allowed: this port of the web filter takes redirected web traffic, not CONNECT", http.StatusMethodNotAllowed)
		return
	}
	orig := origOf(cc)
	if !r.URL.IsAbs() {
		host := r.Host
		if host == "" && orig.IsValid() {
			host = orig.String()
			r.Host = host
		}
		if host == "" {
			http.Error(w, "400 Bad Request: the request names no site (no Host header)", http.StatusBadRequest)
			return
		}
		r.URL.Scheme, r.URL.Host = "http", host
	}
	if r.Method == http.MethodPost && r.URL.Path == reportPath {
		s.handleReport(w, r, ip) // the block page's form posts to the blocked site's own address
		return
	}
	eng := s.o.Engine()
	cfg := eng.Config()
	host, port := splitHostPort(r.URL.Host)
	nh, addr, err := normHost(host)
	if err != nil {
		http.Error(w, "400 Bad Request: the web filter could not read the site's address", http.StatusBadRequest)
		return
	}
	info := &reqInfo{client: ip, host: nh, port: port, method: r.Method, conn: cc}
	req, who := s.whoRequest(ip, "", "") // no login: the identity table's user and group, as on the explicit proxy
	info.who, info.user = who, req.User
	req.Host, req.Path, req.Addr = nh, r.URL.RequestURI(), addr
	info.dec = eng.Decide(req)
	s.decideOrig(info, orig, eng)
	s.plain(w, r, info, cfg)
}

// decideOrig blocks a connection whose original destination is on an IP
// list the client's group blocks, whatever name it carries (a bypass
// attempt: an allowed name sent to a listed address).
func (s *Server) decideOrig(info *reqInfo, orig netip.AddrPort, eng *policy.Engine) {
	d := &info.dec
	if !orig.IsValid() || d.Action == policy.Block || !d.CheckAddrs() {
		return
	}
	od, i, _ := eng.DecideAddrs(info.request(), []netip.Addr{orig.Addr()})
	if i < 0 {
		return
	}
	id := d.Identity
	*d = od
	d.Identity = id
	d.Bypass = true
	if d.Entry == "" && !d.Restricted {
		d.Entry = orig.Addr().String()
	}
}

// serveTLSConn decides one redirected HTTPS connection.
func (s *Server) serveTLSConn(cc *clientConn) {
	handedOff := false
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("proxy: internal error on a transparent HTTPS connection; it was closed",
				"client", cc.ip.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			handedOff = false
		}
		if !handedOff {
			_ = cc.Close()
		}
	}()
	if cc.over {
		s.metrics.refused.WithLabelValues("cap").Inc()
		return
	}
	deadline(cc, s.front.header)
	raw, hello, err := readClientHello(cc)
	deadline(cc, 0)
	eng := s.o.Engine()
	cfg := eng.Config()
	orig := origOf(cc)
	port := cmp.Or(s.tp.tlsPort, "443")
	if orig.IsValid() {
		port = strconv.Itoa(int(orig.Port()))
	}
	info := &reqInfo{client: cc.ip, port: port, method: http.MethodConnect, conn: cc}
	req, who := s.whoRequest(cc.ip, "", "") // no login: the identity table's user and group, as on the explicit proxy
	info.who, info.user = who, req.User
	info.dec.Identity = eng.IdentifyRequest(req)
	if errors.Is(err, errHelloNotTLS) || errors.Is(err, errBadHello) {
		handedOff = s.transparentNonTLS(cc, raw, info, orig, eng, cfg)
		return
	}
	if err != nil {
		return // gone, or too slow to send a ClientHello
	}
	if _, loop := s.tp.upLocal.Load(addrPortOf(cc.RemoteAddr())); loop {
		// The ClientHello is one this proxy is replaying: its own
		// upstream connection came back through the redirect.
		s.metrics.refused.WithLabelValues("loop").Inc()
		if s.lastRefuse.Allow(time.Now(), 10*time.Second) {
			s.log.Warn("proxy: Gatehouse's own HTTPS connection was redirected back to its transparent listener; exclude Gatehouse's traffic from the firewall's redirect rule (README: Transparent mode)")
		}
		return
	}
	host, hostAddr := hello.host()
	reason := ""
	switch {
	case host == "":
		reason = "no-sni"
	case hello.ech && cfg.Proxy.Transparent.IsECHName(host):
		reason = "ech" // the real site is in the encrypted inner hello
	}
	if reason != "" {
		var proceed bool
		if host, hostAddr, proceed, handedOff = s.nameless(cc, raw, info, orig, host, reason, eng, cfg); !proceed {
			return
		}
	}
	info.host = host
	d := &info.dec
	if reason != "no-sni" { // nameless decided the bare address
		req.Host, req.Addr = host, hostAddr
		*d = eng.Decide(req)
	}
	plan := PlanTunnel
	if reason == "no-sni" { // let through by no_sni to its bare address
		reason = s.tunnelRules(info, hostAddr, true, eng, cfg)
	} else {
		// The CONNECT rules and what to decrypt, as for the explicit proxy.
		plan, reason = s.decideConnect(info, hostAddr, eng, cfg)
	}
	s.decideOrig(info, orig, eng)
	switch {
	case d.Action == policy.Block:
		handedOff = s.tlsBlock(cc, raw, info, reason, cfg)
	case plan == PlanDecrypt:
		s.serveTLS(&replayConn{Conn: cc, raw: raw}, info, hostAddr, "")
		handedOff = true // the terminator owns (or has closed) it
	case plan == PlanRefuse: // a pinned search engine or video site
		s.metrics.connectBlock.Inc()
		s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, newRef())
		tlsAlert(cc, alertAccessDenied)
	default:
		handedOff = s.tlsTunnel(cc, raw, info, cfg)
	}
}

// nameless handles a ClientHello that names no site (reason "no-sni") or
// hides it with Encrypted Client Hello ("ech"), by
// proxy.transparent.no_sni for the client's group. A bare address inside
// proxy.connect.ip_networks (the school's own servers) is let through as a
// CONNECT to it would be. It returns the name (or the original
// destination's address) to go on with and proceed, or else whether it
// handed the connection on (false: the caller closes it).
func (s *Server) nameless(cc *clientConn, raw []byte, info *reqInfo, orig netip.AddrPort, host, reason string, eng *policy.Engine, cfg *config.Config) (_ string, addr netip.Addr, proceed, handedOff bool) {
	d := &info.dec
	if reason == "no-sni" {
		if !orig.IsValid() {
			// Not redirected and no name: there is nowhere to send it.
			info.host = ""
			s.refuseNameless(cc, info, reason)
			return "", addr, false, false
		}
		addr = orig.Addr()
		host = addr.String()
		req := info.request()
		req.Host, req.Addr = host, addr
		*d = eng.Decide(req)
		if inPrefixes(cfg.Proxy.Connect.IPNetworks, addr) {
			return host, addr, true, false
		}
	}
	info.host = host
	if cfg.Proxy.Transparent.NoSNIFor(d.Group) == config.NoSNIBlock {
		if reason == "no-sni" {
			// The bare address's block page (a browser sends no server
			// name for https://192.0.2.1/) when the group decrypts.
			d.Action = policy.Block
			markBypass(d)
			return "", addr, false, s.tlsBlock(cc, raw, info, reason, cfg)
		}
		s.refuseNameless(cc, info, reason)
		return "", addr, false, false
	}
	// Allowed by policy: recorded for IT all the same.
	s.metrics.requests.WithLabelValues("connect", reason+"-flag").Inc()
	ev := *info
	markBypass(&ev.dec)
	s.eventRef(&ev, "connect", "flag", 0, 0, reason, "")
	return host, addr, true, false
}

// refuseNameless records a refused nameless connection and closes it with
// a TLS alert.
func (s *Server) refuseNameless(cc *clientConn, info *reqInfo, reason string) {
	d := &info.dec
	d.Action = policy.Block
	markBypass(d)
	s.metrics.connectBlock.Inc()
	s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, newRef()) // durable before the close
	tlsAlert(cc, alertAccessDenied)
}

// tunnelRules applies the tunnel rules to an allowed decision, for a
// CONNECT (decideConnect) and a transparent connection alike: a bare
// address outside proxy.connect.ip_networks and a port outside
// proxy.connect.ports are bypass attempts (bareOK: a nameless connection
// no_sni let through goes to its bare address). On an IP list the group
// does not block, the address's category is the block's. It returns the
// reason, if one applied.
func (s *Server) tunnelRules(info *reqInfo, addr netip.Addr, bareOK bool, eng *policy.Engine, cfg *config.Config) string {
	d := &info.dec
	if d.Action == policy.Block {
		return ""
	}
	pc := cfg.Proxy.Connect
	reason := ""
	if addr.IsValid() && !inPrefixes(pc.IPNetworks, addr) && !bareOK {
		reason = "ip-literal"
		if d.Matched != 0 {
			d.Category, d.HasCategory = worstOf(eng, d.Matched), true
		}
	} else if !portAllowed(pc.Ports, info.port) {
		reason = "port"
	}
	if reason != "" {
		d.Action = policy.Block
		markBypass(d)
		if d.HasCategory {
			d.Severity, d.Route = eng.Severity(d.Category), eng.Route(d.Category)
		}
	}
	return reason
}

// tlsBlock answers a blocked transparent HTTPS connection: the block page
// over HTTPS when the school's CA is loaded and the group decrypts (not
// for a port bypass, which need not be TLS), else a TLS alert. Either way
// the block is recorded. It reports whether the connection was handed to
// the terminator.
func (s *Server) tlsBlock(cc *clientConn, raw []byte, info *reqInfo, reason string, cfg *config.Config) bool {
	s.metrics.connectBlock.Inc()
	if s.term != nil && reason != "port" && reason != "ech" && info.host != "" && !cfg.NeverDecrypt(info.host) &&
		!s.pins.held(info.client, info.host, s.now()) {
		if g := cfg.Groups[info.dec.Group]; g != nil && g.DecryptMode() != config.DecryptOff {
			addr, _ := netip.ParseAddr(info.host)                           // a bare address (no SNI)
			s.serveTLS(&replayConn{Conn: cc, raw: raw}, info, addr, reason) // records a failed handshake
			return true                                                     // the terminator owns (or has closed) the connection
		}
	}
	s.eventRef(info, "connect", "block", http.StatusForbidden, 0, reason, newRef()) // durable before the close
	tlsAlert(cc, alertAccessDenied)
	return false
}

// tlsTunnel connects an allowed transparent HTTPS connection to its site
// (the decided name, through the resolver and the dial guard), replays
// the ClientHello and splices the two sockets until either side closes or
// neither moves for proxy.timeouts.tunnel. It reports whether it took the
// connection (true: closed when done).
func (s *Server) tlsTunnel(cc *clientConn, raw []byte, info *reqInfo, cfg *config.Config) bool {
	host := info.host
	if info.dec.Action == policy.Rewrite {
		info.rewrite = info.dec.Rewrite
		host = info.rewrite
	}
	up, err := s.dialHost(context.Background(), info.client, host, info.port, cfg.Proxy.Connect.IPNetworks)
	if err != nil {
		var be *policy.BlockedError
		switch ie := asInternal(err); {
		case ie != nil:
			_, _ = s.refuseInternal(info, "connect", ie)
			tlsAlert(cc, alertAccessDenied)
		case errors.As(err, &be):
			info.takeBlock(be)
			return s.tlsBlock(cc, raw, info, "", cfg)
		default:
			s.metrics.upstreamErrors.Inc()
			tlsAlert(cc, alertInternalError)
		}
		return false
	}
	s.metrics.connectAllow.Inc()
	t := &tunnel{s: s, idle: s.tunnelIdle, client: cc, info: info}
	t.last.Store(time.Now().UnixNano())
	local := addrPortOf(up.LocalAddr())
	s.tp.upLocal.Store(local, struct{}{}) // before the ClientHello goes: see serveTLSConn
	go func() {
		defer func() {
			s.tp.upLocal.Delete(local)
			t.closed.Do(t.finish)
			_ = up.Close()
			_ = cc.Close()
		}()
		_ = up.SetWriteDeadline(time.Now().Add(s.tunnelIdle))
		n, err := up.Write(raw)
		t.up.Add(int64(n))
		if err != nil {
			return
		}
		_ = up.SetWriteDeadline(time.Time{})
		s.splice(t, cc, up)
	}()
	return true
}

// splice copies both ways between a transparent client and its site,
// half-closing each direction as it ends.
func (s *Server) splice(t *tunnel, cc *clientConn, up net.Conn) {
	ut, _ := up.(*net.TCPConn)
	if cc.tcp == nil || ut == nil { // not TCP (tests on pipes): plain copies
		done := make(chan struct{})
		go func() {
			n, _ := io.Copy(up, cc)
			t.up.Add(n)
			close(done)
		}()
		n, _ := io.Copy(cc, up)
		t.down.Add(n)
		_ = cc.Close()
		<-done
		return
	}
	done := make(chan error, 1)
	go func() {
		_, err := t.pipe(ut, cc.tcp, &t.up)
		_ = ut.CloseWrite()
		done <- err
	}()
	_, err := t.pipe(cc.tcp, ut, &t.down)
	_ = cc.tcp.CloseWrite()
	if err != nil { // reset or idle: the other direction ends too
		_ = cc.tcp.Close()
		_ = ut.Close()
	}
	<-done
}

// transparentNonTLS handles a transparent HTTPS connection whose first
// bytes are not a TLS ClientHello, by proxy.connect.non_tls: block closes
// it, flag sends it on to its original destination (if redirected) under
// the tunnel rules for a bare address; a bypass event either way. It
// reports whether it took the connection.
func (s *Server) transparentNonTLS(cc *clientConn, raw []byte, info *reqInfo, orig netip.AddrPort, eng *policy.Engine, cfg *config.Config) bool {
	block := cfg.Proxy.Connect.NonTLS != "flag" || !orig.IsValid()
	action := "flag"
	if block {
		action = "block"
	}
	s.metrics.requests.WithLabelValues("connect", "not-tls-"+action).Inc()
	if orig.IsValid() {
		info.host = orig.Addr().String()
	}
	ev := *info
	ev.dec.Action = policy.Block
	markBypass(&ev.dec)
	s.eventRef(&ev, "connect", action, 0, 0, "not-tls", "")
	if block {
		return false
	}
	a := orig.Addr()
	req := info.request()
	req.Host, req.Addr = a.String(), a
	info.dec = eng.Decide(req)
	if info.dec.Action == policy.Block {
		s.metrics.connectBlock.Inc()
		s.eventRef(info, "connect", "block", http.StatusForbidden, 0, "", newRef())
		return false
	}
	return s.tlsTunnel(cc, raw, info, cfg)
}

// replayConn reads the bytes already read from a connection (the
// ClientHello) before the rest.
type replayConn struct {
	net.Conn
	raw []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.raw) > 0 {
		n := copy(p, c.raw)
		c.raw = c.raw[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// TLS alert descriptions (RFC 8446 6).
const (
	alertAccessDenied  = 49
	alertInternalError = 80
)

// tlsAlert sends a fatal TLS alert: what a client that sent a ClientHello
// understands as "refused" (a browser shows its own error page).
func tlsAlert(c net.Conn, desc byte) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{21, 3, 3, 0, 2, 2, desc})
}
