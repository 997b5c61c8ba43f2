package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/identity"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/reports"
	"github.com/gatehouse-filter/gatehouse/tlsinspect"

	"github.com/gatehouse-filter/gatehouse/internal/lograte"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// Via is the pseudonym Gatehouse adds to Via headers.
const Via = "1.1 gatehouse"

// Server is the filtering proxy.
type Server struct {
	o       Options
	noLogin lograte.Limit   // the "no login source" log line (authenticate)
	dirDown lograte.Counted // the "directory login could not be checked" line (authenticate)
	gp      *goproxy.ProxyHttpServer
	tr      *http.Transport
	up      *upstream
	safeTr  sync.Map       // safe-search endpoint → *http.Transport
	tlsTr   sync.Map       // decrypted requests: safe-search endpoint ("" for none) → *http.Transport
	roots   *x509.CertPool // verifies sites' certificates; nil = the system roots
	pins    *pinTracker    // clients failing the handshake with the school's leaf (pins.go)
	front   *front
	limits  *connLimits
	users   *Users
	dir     DirectoryLogin // nil: no directory logins
	dirOn   func() bool    // nil: dir is always on (see DirectoryLogin)
	dirCap  *checkLimit    // bounds directory binds at once
	fails   *loginFailures // wrong logins per client address
	logins  *Logins
	events  *eventLog
	reports *mistakeReports
	metrics *metrics
	local   http.Handler
	term    *tlsinspect.Terminator // decrypted connections (decrypt.go); nil without a CA
	dialer  net.Dialer
	own     *ownListeners // Gatehouse's listeners: never dialled
	log     *slog.Logger
	now     func() time.Time

	tunnelIdle time.Duration
	tlsPort    string // tunnels to this port must start with a ClientHello
	dialAddr   func(ctx context.Context, network, addr string) (net.Conn, error)
	listenPort string
	lastRefuse lograte.Limit               // the "refused a client" lines (logRefused, the transparent loop)
	pages      atomic.Pointer[pageLayouts] // block page layouts for the current config
	stop       chan struct{}
	stopOnce   sync.Once
	workers    sync.Once   // the event log and pool sweeper, started by the first Serve*
	tp         transparent // transparent listeners (transparent.go)
}

// reqInfo travels with a request to the dialer and the event log.
type reqInfo struct {
	client netip.Addr
	user   string // the login, else the identity table's user
	login  string // the request's own proxy login ("" if none): a decrypted connection's requests keep it
	// loginGroup is the group login's source decided (a directory login's
	// membership; "" for none), for when the table names someone else.
	loginGroup string
	who        *identity.Entry // what the identity table knows of client (nil: nothing)
	host       string          // normalised
	port       string
	rewrite    string // safe-search endpoint to dial instead of host
	refused    bool   // answered with 403 at dial time (an internal address)
	tls        bool   // a request on a decrypted HTTPS connection (decrypt.go)
	dec        policy.Decision
	eng        *policy.Engine // the engine dec came from (its watchlist, search engines, safe search)
	search     *searchInfo    // search.go; nil unless the host is a search engine's
	content    *contentWriter // content.go; nil unless the answer may be scored
	method     string
	url        string
	conn       *clientConn
	rw         respWriter
}

type infoKey struct{}

// source is the event source of a request: "http", or "connect" on a
// decrypted connection (whose port was checked as a CONNECT's).
func (info *reqInfo) source() string {
	if info.tls {
		return "connect"
	}
	return "http"
}

// New builds a proxy from the current configuration.
func New(o Options) (*Server, error) {
	if o.Engine == nil {
		return nil, errors.New("httpproxy: Engine is required")
	}
	if o.Config == nil {
		o.Config = func() *config.Config { return o.Engine().Config() }
	}
	if o.Resolver == nil {
		return nil, errors.New("httpproxy: a Resolver is required (Gatehouse's own resolver; never the system one)")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg := o.Config()
	p := cfg.Proxy
	s := &Server{
		o:          o,
		limits:     newConnLimits(p.Limits.Connections, p.Limits.PerClient),
		logins:     NewLogins(p.Auth.LoginTTL.D(), o.Now),
		fails:      newLoginFailures(),
		dir:        o.Directory,
		dirOn:      directoryOn(o.Directory),
		dirCap:     newCheckLimit(dirWorkers, dirQueue),
		log:        o.Log,
		now:        o.Now,
		tunnelIdle: p.Timeouts.Tunnel.D(),
		tlsPort:    "443",
		own:        newOwnListeners(),
		stop:       make(chan struct{}),
	}
	s.logins.table = o.Identity // a login names its address while the table holds it
	s.own.add(p.Listen)
	s.own.add(p.Transparent.HTTPListen)
	s.own.add(p.Transparent.HTTPSListen)
	s.own.add(cfg.Admin.Listen)
	s.own.add(cfg.Identity.Signin.Listen) // through the proxy, the page would name the proxy's address
	for _, a := range cfg.DNS.Listen {
		s.own.add(a)
	}
	for _, a := range cfg.DNS.TLS.Listen {
		s.own.add(a)
	}
	s.roots, s.pins = o.RootCAs, newPinTracker()
	if s.roots == nil && p.UpstreamCAFile != "" {
		pool, err := config.LoadCertPool(p.UpstreamCAFile)
		if err != nil {
			return nil, fmt.Errorf("proxy.upstream_ca_file: %w", err)
		}
		s.roots = pool
	}
	s.dialer = net.Dialer{Timeout: p.Timeouts.Dial.D(), KeepAlive: 30 * time.Second, Control: s.controlDial}
	s.dialAddr = s.dialer.DialContext
	if _, port, err := net.SplitHostPort(p.Listen); err == nil {
		s.listenPort = port
	}
	if p.Auth.UsersFile != "" {
		u, err := LoadUsers(p.Auth.UsersFile)
		if err != nil {
			return nil, err
		}
		s.users = u
	}
	s.metrics = newMetrics(o.Registry, s.limits)
	s.events = newEventLog(o.Sink, func() time.Duration { return o.Config().Proxy.Events.Collapse.D() }, o.Now)
	s.reports = newMistakeReports(o.Now)
	s.tr = s.newTransport(p, nil)
	s.up = newUpstream(s, p.Limits.IdlePerSite, p.Limits.IdleTotal, p.Timeouts.Response.D())

	gp := goproxy.NewProxyHttpServer()
	gp.Verbose = false
	gp.Logger = discardLogger{}
	gp.Tr = s.tr
	gp.KeepAcceptEncoding = true // bodies pass through untouched, not re-compressed
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = s.connectDial
	gp.ConnectionErrHandler = s.connectError
	gp.OnRequest().DoFunc(s.onRequest)
	gp.OnResponse().DoFunc(s.onResponse)
	s.gp = gp
	s.local = s.adminMux()
	gp.NonproxyHandler = s.local

	s.front = newFront(s, p.Timeouts.Header.D(), p.Timeouts.Idle.D(), 64<<10)
	s.term = s.newTerminator(p)
	return s, nil
}

// newTransport builds the upstream transport; safe, if set, is the
// safe-search endpoint every connection goes to.
func (s *Server) newTransport(p config.Proxy, safe *string) *http.Transport {
	dial := s.dialContext
	if safe != nil {
		target := *safe
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return s.dialHost(ctx, clientOf(ctx), target, port, s.o.Config().Proxy.HTTP.IPNetworks)
		}
	}
	return &http.Transport{
		Proxy:                 nil, // never an environment proxy
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   p.Timeouts.Dial.D(),
		ResponseHeaderTimeout: p.Timeouts.Response.D(),
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          p.Limits.IdleTotal, // least recently used closed first
		MaxIdleConnsPerHost:   p.Limits.IdlePerSite,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// Serve accepts proxy connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.own.add(ln.Addr().String())
	s.startWorkers()
	return s.front.serve(&listener{Listener: ln, s: s})
}

func (s *Server) startWorkers() {
	s.workers.Do(func() {
		go s.events.run(s.stop)
		go s.up.run(s.stop)
	})
}

// Shutdown stops accepting, lets requests in flight finish until ctx ends,
// and flushes collapsed events. Tunnels already open run on until idle.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.front.shutdown(ctx)
	if terr := s.tp.shutdown(ctx); err == nil {
		err = terr
	}
	if s.term != nil {
		if terr := s.term.Shutdown(ctx); err == nil {
			err = terr
		}
	}
	s.stopOnce.Do(func() { close(s.stop) })
	s.events.flush(true)
	s.tr.CloseIdleConnections()
	return err
}

// Logins is the login → client address map (for DNS events).
func (s *Server) Logins() *Logins { return s.logins }

// AdminHandler serves /proxy.pac, /wpad.dat, the "report a mistake" form
// and, for any other path, the block page for the request's Host (the
// DNS resolver's block-page address lands here).
func (s *Server) AdminHandler() http.Handler { return s.local }

func (s *Server) allowedClient(ip netip.Addr) bool {
	return inPrefixes(s.o.Config().Clients.Allow, ip)
}

func (s *Server) logRefused(ip netip.Addr) {
	if s.lastRefuse.Allow(time.Now(), 10*time.Second) {
		s.log.Warn("proxy: refused a client outside clients.allow (logged at most every 10s)", "client", ip.String())
	}
}

func infoOf(r *http.Request) *reqInfo {
	if r == nil {
		return nil
	}
	info, _ := r.Context().Value(infoKey{}).(*reqInfo)
	return info
}

func clientOf(ctx context.Context) netip.Addr {
	if info, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return info.client
	}
	return netip.Addr{}
}

// ServeHTTP is the proxy's front: caps, local pages, login, policy; allowed
// requests go on to goproxy.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var cc *clientConn // nil when not served by the front (tests)
	fw, _ := w.(*frontWriter)
	if fw != nil {
		cc = fw.fc.c // found through the writer: no per-request context
	}
	var ip netip.Addr
	if cc != nil {
		ip = cc.ip
		if cc.over {
			s.metrics.refused.WithLabelValues("cap").Inc()
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "5")
			http.Error(w, "503 Service Unavailable: too many connections are open through the school's web filter from your device (or from the whole school). Please try again in a moment.", http.StatusServiceUnavailable)
			return
		}
	} else {
		ip = remoteIP(r)
	}
	connect := r.Method == http.MethodConnect
	if looped(r.Header) {
		// A request that already came through Gatehouse (the proxy asked for
		// its own address): answering it again would loop.
		http.Error(w, "508 Loop Detected: the request came back to the web filter", http.StatusLoopDetected)
		return
	}
	if !connect && !r.URL.IsAbs() {
		s.local.ServeHTTP(w, r)
		return
	}
	if !connect && r.Method == http.MethodPost && r.URL.Path == reportPath {
		s.handleReport(w, r, ip)
		return
	}
	eng := s.o.Engine()
	cfg := eng.Config() // one snapshot: the config this engine was built from
	user, loginGroup, ok := s.authenticate(w, r, ip, eng, cfg)
	if !ok {
		return
	}
	hostport := r.URL.Host
	if connect && hostport == "" {
		hostport = r.Host
	}
	host, port := splitHostPort(hostport)
	nh, addr, err := normHost(host)
	if err != nil || (connect && port == "") {
		http.Error(w, "400 Bad Request: the web filter could not read the site's address", http.StatusBadRequest)
		return
	}
	var info *reqInfo
	if fw != nil {
		info = fw.fc.takeInfo()
	} else {
		info = new(reqInfo)
	}
	info.client, info.user, info.login, info.loginGroup, info.host, info.port, info.method, info.conn, info.eng = ip, user, user, loginGroup, nh, port, r.Method, cc, eng
	var path string
	if !connect {
		path = r.URL.RequestURI()
	}
	req, who := s.whoRequest(ip, user, loginGroup)
	info.who, info.user = who, req.User
	req.Host, req.Path, req.Addr = nh, path, addr
	info.dec = eng.Decide(req)
	if connect {
		s.connect(w, r, info, addr, eng, cfg)
		return
	}
	s.plain(w, r, info, cfg)
}

// takeBlock makes a lookup refused by policy (a blocked CNAME target or
// address in the site's DNS answer) the request's decision.
func (info *reqInfo) takeBlock(be *policy.BlockedError) {
	id := info.dec.Identity
	info.dec = be.Decision
	info.dec.Identity = id
	if info.dec.Entry == "" && !info.dec.Restricted {
		info.dec.Entry = be.Target
	}
}

// lookupBlocked answers a plain-HTTP request whose site's lookup policy
// refused, as a block of the site: block page and event.
func (s *Server) lookupBlocked(w http.ResponseWriter, req *http.Request, info *reqInfo, be *policy.BlockedError) {
	info.takeBlock(be)
	info.url = eventURL(req.URL)
	s.metrics.httpBlock.Inc()
	s.blockPage(w, req, info, s.o.Config(), info.url, info.source())
}

// pageWriter collects a block page for goproxy, which wants a Response.
type pageWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (p *pageWriter) Header() http.Header {
	if p.h == nil {
		p.h = http.Header{}
	}
	return p.h
}
func (p *pageWriter) WriteHeader(code int)        { p.status = code }
func (p *pageWriter) Write(b []byte) (int, error) { return p.body.Write(b) }

func (p *pageWriter) response(req *http.Request) *http.Response {
	return &http.Response{
		Status: fmt.Sprintf("%d %s", p.status, http.StatusText(p.status)), StatusCode: p.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: p.Header(),
		Body: io.NopCloser(bytes.NewReader(p.body.Bytes())), ContentLength: int64(p.body.Len()), Request: req,
	}
}

// plain is the per-request path every request the proxy sees in the clear
// takes once info.dec holds its decision (Engine.Decide on the full URL):
// plain-HTTP proxy requests (ServeHTTP) and requests on decrypted HTTPS
// connections (serveDecrypted, info.tls). It answers blocks with the block
// page, applies rewrites, forwards the rest and records the events. Hooks
// that look at or change requests (search terms, safe search) go here, so
// both kinds of request get them.
func (s *Server) plain(w http.ResponseWriter, r *http.Request, info *reqInfo, cfg *config.Config) {
	d := &info.dec
	src := info.source()
	s.searchRequest(r, info) // search.go: the term, for events and the watchlist
	s.flagSearch(info, src)
	if info.search != nil && info.search.unread && d.Action != policy.Block {
		s.refuseSearchForm(w, r, info, cfg, src)
		return
	}
	if d.Action != policy.Block && !info.tls && !portAllowed(cfg.Proxy.HTTP.Ports, plainPort(r.URL.Scheme, info.port)) {
		info.url = eventURL(r.URL)
		s.refusePort(w, info, cfg)
		return
	}
	switch d.Action {
	case policy.Block:
		s.metrics.httpBlock.Inc()
		info.url = requestURL(w, r)
		s.blockPage(w, r, info, cfg, info.url, src) // the event is durable before the page goes
		answeredHere(w)
		return
	case policy.Rewrite:
		info.rewrite = d.Rewrite
		s.metrics.httpRewrite.Inc()
	default:
		s.metrics.httpAllow.Inc()
	}
	cleanHopByHop(r.Header, isUpgrade(r.Header))
	s.safeSearch(r, info) // search.go: after hop-by-hop, so a Connection header cannot drop it
	r.Header.Add("Via", Via)
	info.rw = respWriter{ResponseWriter: w, status: http.StatusOK}
	cw := &info.rw
	var out http.ResponseWriter = cw
	cc := s.contentCheck(cw, r, info, cfg) // content.go: nil when the answer is not scored
	if cc != nil {
		out = cc
	}
	switch {
	case info.tls:
		s.forwardTLS(out, r, info) // decrypt.go
	case pooled(r):
		s.forward(out, r, info)
	default:
		s.gp.ServeHTTP(out, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
	}
	if cc != nil && cc.finish() {
		return // the rest of the answer was blocked: its event is recorded
	}
	if !cfg.Proxy.Events.LogAllowed || info.refused || d.Action == policy.Block { // refused, or blocked by the site's lookup
		return
	}
	info.url = eventURL(r.URL)
	action := "allow"
	if d.Action == policy.Rewrite {
		action = "rewrite"
	}
	s.event(info, src, action, cw.status, cw.n)
}

// eventURL is the URL as events and the block page show it: without any
// user name or password written in it.
func eventURL(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	c.User = nil
	return c.String()
}

// requestURL is eventURL(r.URL), without building it again when the
// front's fast path read r: its target is that URL's String already, with
// no user name in it (FuzzReadRequest).
func requestURL(w http.ResponseWriter, r *http.Request) string {
	if fw, ok := w.(*frontWriter); ok && fw.fc.rr.fast(r) && r.URL == fw.fc.rr.u {
		return r.RequestURI
	}
	return eventURL(r.URL)
}

// looped reports whether a request already passed through Gatehouse.
func looped(h http.Header) bool {
	for _, v := range h["Via"] {
		if strings.Contains(v, "gatehouse") {
			return true
		}
	}
	return false
}

// onRequest sends requests for safe-search hosts to their safe endpoint.
func (s *Server) onRequest(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	if info, ok := r.Context().Value(infoKey{}).(*reqInfo); ok && info.rewrite != "" {
		tr := s.safeTransport(info.rewrite)
		ctx.RoundTripper = goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
			return tr.RoundTrip(req)
		})
	}
	return r, nil
}

func (s *Server) safeTransport(target string) *http.Transport {
	if t, ok := s.safeTr.Load(target); ok {
		return t.(*http.Transport)
	}
	t, _ := s.safeTr.LoadOrStore(target, s.newTransport(s.o.Config().Proxy, &target))
	return t.(*http.Transport)
}

// onResponse turns upstream failures into a clear page and drops
// hop-by-hop headers from responses.
func (s *Server) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	if resp == nil {
		if ie, info := asInternal(ctx.Error), infoOf(ctx.Req); ie != nil && info != nil {
			info.url = eventURL(ctx.Req.URL)
			body, ref := s.refuseInternal(info, "http", ie)
			r := goproxy.NewResponse(ctx.Req, goproxy.ContentTypeText, http.StatusForbidden, body)
			r.Header.Set("Via", Via)
			r.Header.Set("X-Gatehouse-Ref", ref)
			return r
		}
		var be *policy.BlockedError
		if info := infoOf(ctx.Req); info != nil && errors.As(ctx.Error, &be) {
			var pw pageWriter
			s.lookupBlocked(&pw, ctx.Req, info, be)
			return pw.response(ctx.Req)
		}
		status, msg := upstreamError(ctx.Error)
		s.metrics.upstreamErrors.Inc()
		r := goproxy.NewResponse(ctx.Req, goproxy.ContentTypeText, status, msg+"\n")
		r.Header.Set("Via", Via)
		return r
	}
	s.prepareResponse(resp, ctx.Req.Method)
	if info := infoOf(ctx.Req); info != nil {
		info.content.decode(resp) // content.go: a gzip answer the check reads
	}
	return resp
}

// prepareResponse drops hop-by-hop headers from a site's response and adds
// Via. It reports whether the body is of unknown length, to be sent on as
// it arrives (chunked, or an event stream).
func (s *Server) prepareResponse(resp *http.Response, method string) bool {
	cleanHopByHop(resp.Header, resp.StatusCode == http.StatusSwitchingProtocols)
	resp.Header.Add("Via", Via)
	if resp.ContentLength < 0 && bodyAllowed(method, resp.StatusCode) {
		// goproxy flushes each write of a response marked chunked.
		resp.Header.Set("Transfer-Encoding", "chunked")
		return true
	}
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
}

func bodyAllowed(method string, status int) bool {
	return method != http.MethodHead && status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// upstreamError explains why a site could not be reached.
func upstreamError(err error) (int, string) {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.As(err, &cv), errors.As(err, &ua), err != nil && strings.Contains(err.Error(), "x509:"):
		return http.StatusBadGateway, "502 Bad Gateway: the site's security certificate could not be verified, so the school's web filter did not connect to it."
	case errors.As(err, &dnsErr):
		return http.StatusBadGateway, "502 Bad Gateway: the site's name could not be found."
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, "504 Gateway Timeout: the site did not answer in time."
	}
	return http.StatusBadGateway, "502 Bad Gateway: the site could not be reached."
}

// connect handles a CONNECT request: decideConnect (decrypt.go) says
// whether to tunnel it (goproxy opens the tunnel through connectDial),
// decrypt it, or refuse it.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, info *reqInfo, addr netip.Addr, eng *policy.Engine, cfg *config.Config) {
	d := &info.dec
	plan, reason := s.decideConnect(info, addr, eng, cfg)
	if d.Action == policy.Block {
		s.metrics.connectBlock.Inc()
		if plan == PlanDecrypt && s.decrypt(w, info, addr, reason) { // the block page over HTTPS
			return
		}
		s.refuseConnect(w, info, cfg.School.Name, connectWhy(d, reason), reason) // the event is durable before the answer
		return
	}
	if plan == PlanRefuse { // a search engine this device keeps failing the handshake for
		d.Severity, d.Route = bl.SeverityLow, bl.RouteIT
		s.refuseConnect(w, info, cfg.School.Name, connectWhy(d, reason), reason)
		return
	}
	s.metrics.connectAllow.Inc()
	if plan == PlanDecrypt && s.decrypt(w, info, addr, "") {
		return
	}
	if d.Action == policy.Rewrite {
		info.rewrite = d.Rewrite
	}
	s.gp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
}

func connectWhy(d *policy.Decision, reason string) string {
	switch {
	case reason == "ip-literal":
		return "going to a bare IP address instead of a site name can get around the filter"
	case reason == "port":
		return "that port is not used for normal web browsing"
	case reason == "pinned":
		return "this device does not accept the web filter's certificate, which the school needs to check this site"
	case d.Restricted:
		return "this site is not available"
	case d.HasCategory:
		return d.Category.Info().Title
	}
	return "not allowed by the school"
}

// connectDial opens the site end of an allowed tunnel.
func (s *Server) connectDial(req *http.Request, network, addr string) (net.Conn, error) {
	info, _ := req.Context().Value(infoKey{}).(*reqInfo)
	if info == nil {
		return nil, errors.New("tunnel without a decision")
	}
	host := info.host
	if info.rewrite != "" {
		host = info.rewrite
	}
	c, err := s.dialHost(req.Context(), info.client, host, info.port, s.o.Config().Proxy.Connect.IPNetworks)
	if err != nil {
		return nil, err
	}
	t := &tunnel{s: s, idle: s.tunnelIdle, client: info.conn, info: info, checkTLS: info.port == s.tlsPort}
	t.last.Store(time.Now().UnixNano())
	tc := &targetConn{Conn: c, tun: t}
	tc.tcp, _ = c.(*net.TCPConn)
	return tc, nil
}

// connectError answers a tunnel whose site could not be reached, or whose
// lookup policy refused (403 and an event, as a blocked site).
func (s *Server) connectError(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
	if ie, info := asInternal(err), infoOf(ctx.Req); ie != nil && info != nil {
		body, _ := s.refuseInternal(info, "connect", ie)
		writeRawError(w, http.StatusForbidden, body)
		return
	}
	var be *policy.BlockedError
	if info := infoOf(ctx.Req); info != nil && errors.As(err, &be) {
		info.takeBlock(be)
		s.metrics.connectBlock.Inc()
		ref := newRef()
		b := appendConnectBlock(nil, info.host, s.o.Config().School.Name, connectWhy(&info.dec, ""), ref)
		if first := s.eventRef(info, "connect", "block", http.StatusForbidden, int64(len(b)), "", ref); first != ref { // durable before the answer
			replaceRef(b, ref, first)
			ref = first
		}
		body := string(b)
		_, _ = fmt.Fprintf(w, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nX-Gatehouse-Ref: %s\r\nVia: %s\r\nConnection: close\r\n\r\n%s",
			len(body), ref, Via, body)
		return
	}
	status, msg := upstreamError(err)
	writeRawError(w, status, msg)
}

// writeRawError writes a whole plain-text error response, after which the
// connection closes (for connections no ResponseWriter serves).
func writeRawError(w io.Writer, code int, body string) {
	_, _ = fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nVia: %s\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), len(body), Via, body)
}

// nonTLS handles a tunnel to port 443 whose first bytes are not TLS; it
// reports whether to close it.
func (s *Server) nonTLS(t *tunnel, first []byte) bool {
	block := s.o.Config().Proxy.Connect.NonTLS != "flag"
	action := "flag"
	if block {
		action = "block"
	}
	s.metrics.requests.WithLabelValues("connect", "not-tls-"+action).Inc()
	info := *t.info
	markBypass(&info.dec)
	s.eventRef(&info, "connect", action, 0, 0, "not-tls", "") // a block waits until durable, then the tunnel closes
	return block
}

// markBypass marks a decision as a bypass attempt found by one of the
// proxy's own rules (a non-TLS tunnel, a port, a nameless or ECH-hidden
// connection): severity medium, routed to the DSL. Whether it blocks is
// the caller's to set.
func markBypass(d *policy.Decision) {
	d.Bypass = true
	d.Severity, d.Route = bl.SeverityMedium, bl.RouteDSL
}

// sniBlocked decides the server name of a tunnel's ClientHello when it is
// not the CONNECT's host: a CDN serves whichever site the SNI names, so a
// CONNECT to an allowed name could otherwise carry a blocked one (domain
// fronting by SNI). A blocked name is recorded as a bypass attempt (reason
// "sni", durable before the tunnel closes) and the tunnel closed; so is
// an allowed name the client's group decrypts (allowedPlan), which the
// tunnel would carry past safe search, search terms, URL lists and the
// content check. An ECH front (proxy.transparent.ech_names) with Encrypted Client Hello hides
// the real site, whether the front is the outer name or the CONNECT's host
// (the tunnel then reaches the front's edge, which decrypts the inner hello
// whatever outer name, or none, the hello carries): that follows
// proxy.transparent.no_sni for the group, as on the transparent listener
// (reason "ech"). A browser puts the real site in the outer name, with
// GREASE ECH, and in the CONNECT, so only a tool hiding a site gets there.
func (s *Server) sniBlocked(t *tunnel, hello helloInfo) bool {
	info := t.info
	eng := s.o.Engine()
	cfg := eng.Config()
	nh, addr := hello.host()
	front := ""
	if hello.ech {
		switch {
		case nh != "" && cfg.Proxy.Transparent.IsECHName(nh):
			front = nh
		case cfg.Proxy.Transparent.IsECHName(info.host):
			front = info.host
		}
	}
	other := nh != "" && nh != info.host && (info.rewrite == "" || nh != info.rewrite)
	if front == "" && !other {
		return false
	}
	req, _ := s.whoRequest(info.client, info.user, info.loginGroup)
	name := nh
	if other {
		req.Host, req.Addr = nh, addr
	} else {
		name = front
		req.Host = front
	}
	d := eng.Decide(req)
	reason := "sni"
	if other && d.Action != policy.Block {
		// An allowed name the client's group decrypts (or refuses, when
		// pinned): a tunnel must not carry it past what decryption
		// applies (safe search, search terms, URL lists, the content
		// check). A browser names the CONNECT's host; only a tool gets
		// here.
		if plan, _ := s.allowedPlan(info.client, d.Group, nh, addr, cfg); plan != PlanTunnel {
			markBypass(&d)
			d.Action = policy.Block
		}
	}
	if d.Action != policy.Block {
		if front == "" {
			return false
		}
		if front != name { // an allowed outer name through the front: the front is where it goes
			name = front
			req.Host, req.Addr = front, netip.Addr{}
			d = eng.Decide(req)
		}
	}
	if d.Action != policy.Block {
		reason = "ech"
		markBypass(&d)
		if cfg.Proxy.Transparent.NoSNIFor(d.Group) != config.NoSNIBlock {
			s.metrics.requests.WithLabelValues("connect", "ech-flag").Inc()
			ev := *info
			ev.host, ev.dec = name, d
			s.eventRef(&ev, "connect", "flag", 0, 0, reason, "")
			return false
		}
		d.Action = policy.Block
	}
	s.metrics.connectBlock.Inc()
	ev := *info
	ev.host, ev.dec = name, d
	ev.dec.Bypass = true
	s.eventRef(&ev, "connect", "block", http.StatusForbidden, 0, reason, newRef())
	return true
}

// finish records an allowed tunnel when full logging is on.
func (t *tunnel) finish() {
	if !t.s.o.Config().Proxy.Events.LogAllowed {
		return
	}
	t.s.event(t.info, "connect", "allow", http.StatusOK, t.up.Load()+t.down.Load())
}

// dialContext dials for the plain-HTTP transport.
func (s *Server) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port := splitHostPort(addr)
	return s.dialHost(ctx, clientOf(ctx), host, port, s.o.Config().Proxy.HTTP.IPNetworks)
}

// dialHost connects to host:port, resolving names through the Resolver
// and trying each address in turn. Every upstream connection is opened
// here: each address is checked (checkAddr) just before it is dialled,
// with nets the configured non-public networks for the kind of request.
// When no address could be dialled and one was refused, the refusal
// (*internalError) is returned.
func (s *Server) dialHost(ctx context.Context, client netip.Addr, host, port string, nets []netip.Prefix) (net.Conn, error) {
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q", port)
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if err := s.checkAddr(a, uint16(pn), nets); err != nil {
			return nil, err
		}
		return s.dialAddr(ctx, "tcp", net.JoinHostPort(a.String(), port))
	}
	dctx, cancel := context.WithTimeout(ctx, s.dialer.Timeout)
	defer cancel()
	addrs, err := s.o.Resolver.LookupNetIP(dctx, client, host)
	if err != nil {
		if errors.Is(err, policy.ErrBlocked) {
			return nil, err // answered as a block of the site
		}
		return nil, &net.DNSError{Err: err.Error(), Name: host, IsNotFound: true}
	}
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
	}
	var first, refused error
	tries := 0
	for _, a := range addrs {
		if err := s.checkAddr(a, uint16(pn), nets); err != nil {
			if refused == nil {
				refused = err
			}
			continue
		}
		if tries++; tries > 4 {
			break
		}
		c, err := s.dialAddr(dctx, "tcp", net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if dctx.Err() != nil {
			break
		}
	}
	if refused != nil {
		return nil, refused
	}
	return nil, first
}

// plainPort is the port a plain request goes to.
func plainPort(scheme, port string) string {
	switch {
	case port != "":
		return port
	case scheme == "https":
		return "443"
	}
	return "80"
}

// refusePort answers a plain request to a port outside proxy.http.ports
// with 403 and a bypass event, as a tunnel to a port outside
// proxy.connect.ports gets.
func (s *Server) refusePort(w http.ResponseWriter, info *reqInfo, cfg *config.Config) {
	s.refuseBypass(w, info, "http", "port", func(ref string) string {
		return fmt.Sprintf("403 Forbidden: %s is blocked by %s's web filter (%s). Reference %s.\n", info.host, cfg.School.Name, connectWhy(&info.dec, "port"), ref)
	})
}

// refuseBypass answers a request refused as a bypass attempt with a plain
// 403 (body from msg, given the reference code) and records the block
// with reason.
func (s *Server) refuseBypass(w http.ResponseWriter, info *reqInfo, source, reason string, msg func(ref string) string) {
	d := &info.dec
	d.Action = policy.Block
	markBypass(d)
	s.metrics.httpBlock.Inc()
	ref := newRef()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Gatehouse-Ref", ref)
	h.Set("Via", Via)
	w.WriteHeader(http.StatusForbidden)
	n, _ := io.WriteString(w, msg(ref))
	s.eventRef(info, source, "block", http.StatusForbidden, int64(n), reason, ref)
}

// refuseInternal records a request refused at dial time because its site
// resolved to (or was written as) an address on the school's own network
// or the Gatehouse machine: a bypass event for IT with the address in
// Entry. It returns the answer's body and reference code.
func (s *Server) refuseInternal(info *reqInfo, source string, ie *internalError) (string, string) {
	info.refused = true
	s.metrics.refused.WithLabelValues("internal-address").Inc()
	ev := *info
	d := &ev.dec
	d.Action, d.Bypass = policy.Block, true
	d.Severity, d.Route = bl.SeverityMedium, bl.RouteIT
	d.Entry, d.List = ie.addr.String(), ""
	d.HasCategory = false
	ref := newRef()
	body := fmt.Sprintf("403 Forbidden: %s is on the school's own network (%s), which the web filter does not reach. Reference %s.\n", info.host, ie.what, ref)
	s.eventRef(&ev, source, "block", http.StatusForbidden, int64(len(body)), "internal-address", ref)
	return body, ref
}

// event records a block or allowed request.
func (s *Server) event(info *reqInfo, source, action string, status int, bytes int64) {
	s.eventRef(info, source, action, status, bytes, "", "")
}

// eventRef records an event; for a block it returns once the event (or the
// first of its kind, for a collapsed repeat) is durable, so that the answer
// written next never reaches a client whose block a crash could forget. It
// returns the reference code stored for it: ref, or for a collapsed
// repeat the first event's, which the answer should quote.
func (s *Server) eventRef(info *reqInfo, source, action string, status int, bytes int64, reason, ref string) string {
	ev := s.newEvent(info, source, action, status, bytes, reason, ref)
	seq, stored := s.events.recordRef(ev)
	if action == "block" {
		s.events.durable(seq)
	}
	return stored
}

// newEvent is the event for a request as info describes it.
func (s *Server) newEvent(info *reqInfo, source, action string, status int, bytes int64, reason, ref string) reports.Event {
	d := &info.dec
	ev := reports.Event{
		Time:       s.now().UTC(),
		Source:     source,
		Protocol:   "http",
		Client:     info.client,
		Device:     d.Device,
		User:       info.user,
		Group:      d.Group,
		Name:       info.host,
		URL:        info.url,
		Method:     info.method,
		Status:     status,
		Bytes:      bytes,
		Action:     action,
		Reason:     d.Reason.String(),
		Severity:   d.Severity,
		Route:      d.Route,
		List:       d.List,
		Entry:      d.Entry,
		Restricted: d.Restricted,
		Bypass:     d.Bypass,
		Probe:      d.Probe,
		Ref:        ref,
		Count:      1,
	}
	if source == "connect" {
		ev.Protocol = "https"
		if info.port != "443" {
			ev.Name = net.JoinHostPort(info.host, info.port)
		}
	}
	if reason != "" {
		ev.Reason = reason
	}
	if d.HasCategory {
		ev.Category = d.Category.String()
	}
	if d.Restricted {
		// Restricted names and URLs are never stored (reports.Redact
		// makes sure); the matched entry's hash is.
		ev.URL, ev.Entry = "", d.EntryHash()
	} else if info.search != nil && info.search.term != "" {
		ev.SearchTerm, ev.SearchEngine = info.search.term, info.search.engine.Name
	}
	ev.IDSource = identity.Describe(&ev, info.who)
	return ev
}

// whoRequest is the policy request of a client with user (its login, ""
// if none; group is the group the login's source decided, a directory
// login's membership) and what the identity table knows: it names the
// user where the request carries no login, their group, and the device
// from its lease. A login the table does not name at the address (another
// person logged in there since: a terminal server, a NAT'd classroom)
// keeps its own group (Table.GroupOf), never the address's network group
// (TestLoginGroupFollowsLoginOnSharedAddress).
func (s *Server) whoRequest(ip netip.Addr, user, group string) (policy.Request, *identity.Entry) {
	req := policy.Request{Client: ip, User: user}
	who := s.o.Identity.Lookup(ip, s.now().UnixNano())
	if who != nil {
		req.Device, req.MAC = who.Device, who.MAC
		if req.User == "" {
			req.User = who.User
		}
	}
	switch {
	case who != nil && who.User == req.User:
		req.Group = who.Group
	case user != "":
		req.Group = s.o.Identity.GroupOf(user, group)
	}
	return req, who
}

// request is the policy request of info's client as whoRequest named it
// (info.user and info.who), without a second lookup: for the decisions a
// connection takes after its first (its original destination, a nameless
// connection's address).
func (info *reqInfo) request() policy.Request {
	req := policy.Request{Client: info.client, User: info.user}
	if w := info.who; w != nil {
		req.Device, req.MAC = w.Device, w.MAC
		if w.User == req.User {
			req.Group = w.Group
		}
	}
	return req
}

// WhoRequest is the policy request of a client as the proxy and the
// resolver see it: its proxy login, else the identity table's user, with
// their group and the device (for the HTTPS block page's certificates).
func (s *Server) WhoRequest(ip netip.Addr) policy.Request {
	req, _ := s.whoRequest(ip, s.logins.UserFor(ip), "")
	return req
}

// authenticate checks the proxy login. It returns the user ("" when none),
// the group the login's source decided (a directory login's membership;
// "" for none) and false after answering 407.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, ip netip.Addr, eng *policy.Engine, cfg *config.Config) (string, string, bool) {
	h := r.Header.Get("Proxy-Authorization")
	if s.users == nil && s.directory() == nil {
		// No login source is running. Config check refuses a proxy_login
		// group without one, but a reload can turn the directory off
		// while the users file it adds waits for a restart: such a group
		// is refused, never let through unnamed.
		if g := cfg.Groups[eng.Identify(ip, "").Group]; g != nil && g.ProxyLogin {
			s.metrics.refused.WithLabelValues("auth-unavailable").Inc()
			if s.noLogin.Allow(s.now(), time.Minute) {
				s.log.Error("proxy login needed but no login source is running: clients of groups with proxy_login get 503 (restart Gatehouse to load proxy.auth.users_file)", "client", ip.String())
			}
			w.Header().Set("Via", Via)
			http.Error(w, "503 Service Unavailable: the web filter cannot check logins at the moment. Please tell IT.", http.StatusServiceUnavailable)
			return "", "", false
		}
		return "", "", true // no logins configured: credentials are ignored (and never forwarded)
	}
	if h == "" {
		g := cfg.Groups[eng.Identify(ip, "").Group]
		if g == nil || !g.ProxyLogin {
			return "", "", true
		}
		s.challenge(w, cfg, "Please log in to use the school's web filter.")
		return "", "", false
	}
	name, pass, ok := parseBasic(h)
	if ok && s.fails.blocked(ip, s.now()) {
		s.metrics.refused.WithLabelValues("auth-limit").Inc()
		s.challenge(w, cfg, "Too many wrong logins from this computer. Please wait a minute and try again.")
		return "", "", false
	}
	var person *identity.Person
	parsed := ok
	if ok {
		var err error
		// A password a check passed before (the users file's bcrypt, the
		// directory's cache) is answered at once: it waits for no bcrypt
		// or bind, so neither a flood of logins nor a directory that does
		// not answer holds it up (TestProxyLDAPRememberedWhileBusy).
		// Any other check is reserved against the address's and the
		// name's budgets of wrong logins before it starts; a user's
		// logins from the address they are logged in at are not held to
		// the name's (a guesser elsewhere never locks the teacher's own
		// computer out).
		if user, p, known := s.remembered(name, pass); known {
			name, person = user, p
		} else {
			var done func(bool)
			loggedIn := username.Canon(s.logins.UserFor(ip)) == username.Canon(name)
			if done, err = s.fails.begin(ip, name, !loggedIn, s.now()); err == nil {
				name, ok, person, err = s.verify(name, pass)
				done(err == nil && !ok)
			}
		}
		switch {
		case errors.Is(err, errTooManyWrong):
			s.metrics.refused.WithLabelValues("auth-limit").Inc()
			s.challenge(w, cfg, "Too many wrong logins from this computer. Please wait a minute and try again.")
			return "", "", false
		case errors.Is(err, errAccountLimited):
			s.metrics.refused.WithLabelValues("auth-limit").Inc()
			s.challenge(w, cfg, "Too many wrong logins for this user name. Please wait a minute and try again.")
			return "", "", false
		}
		if err != nil {
			if errors.Is(err, ErrBusy) {
				s.metrics.refused.WithLabelValues("auth-busy").Inc()
			} else {
				// The directory could not be asked (down, TLS refused): the
				// error names the server and the reason, never the password.
				// Every login asked while it is down fails so (a pupil can
				// send them with made-up names): one line every 10 s.
				s.metrics.refused.WithLabelValues("auth-directory").Inc()
				if ok, held := s.dirDown.Allow(s.now(), 10*time.Second); ok {
					s.log.Warn("directory login could not be checked; logins get 503 (logged at most every 10s)",
						"error", err.Error(), "failed_since_last_log", held)
				}
			}
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Via", Via)
			http.Error(w, "503 Service Unavailable: the web filter cannot check logins at the moment. Please try again in a moment.", http.StatusServiceUnavailable)
			return "", "", false
		}
	}
	if !ok {
		if !parsed { // a login that was checked was counted by done
			s.fails.add(ip, s.now())
		}
		s.metrics.refused.WithLabelValues("auth").Inc()
		s.challenge(w, cfg, "The user name or password was not right. Please try again.")
		return "", "", false
	}
	if s.logins.Set(ip, name) && s.o.Identity != nil {
		// The login names the address for login_ttl, for the DNS front
		// door and every other source's lookups too; a directory login
		// brings the group its membership decides (the table's Directory
		// gives the display name, year and class).
		m := identity.Mapping{Addr: ip, Source: identity.SourceLogin, User: name,
			Expires: s.now().Add(cfg.Proxy.Auth.LoginTTL.D())}
		if person != nil {
			m.Group = person.Group
		}
		s.o.Identity.Set(m)
	}
	if person != nil {
		return name, person.Group, true
	}
	return name, "", true
}

// verify checks a login: against the users file if it lists the name,
// else against the directory. user is the name the login is recorded
// under: as typed for the file's users; in the one form names are
// compared in (username.Canon) for the directory's, which takes names
// without case, width or surrounding spaces (else "Amira.Khan" or
// "amira.khan " would be another user than "amira.khan", and escape her
// clients.users entry: TestDirectoryLoginSpellings). person is the directory's answer (nil for the file's users).
// err is ErrBusy when too many checks are running, or the directory's
// failure.
func (s *Server) verify(name, pass string) (user string, ok bool, person *identity.Person, err error) {
	dir := s.directory()
	if s.users != nil && (dir == nil || s.users.Knows(name)) {
		ok, err = s.users.Verify(name, pass)
		return name, ok, nil, err
	}
	if dir == nil {
		return name, false, nil, nil
	}
	var p identity.Person
	var lerr error
	if err := s.dirCap.do(func() { p, lerr = dir.Login(name, pass) }); err != nil {
		return name, false, nil, err
	}
	switch {
	case lerr == nil:
		if p.User != "" { // the directory's name for the login (its realm stripped)
			return p.User, true, &p, nil
		}
		return username.Canon(name), true, &p, nil
	case errors.Is(lerr, identity.ErrBadLogin):
		return name, false, nil, nil
	}
	return name, false, nil, lerr
}

// remembered answers a login whose password a check passed before,
// without checking it again: the users file's remembered digest for the
// names it lists, else the directory's cache (a DirectoryLogin with a
// Remembered method). user and person are as verify's.
func (s *Server) remembered(name, pass string) (user string, person *identity.Person, ok bool) {
	dir := s.directory()
	if s.users != nil && (dir == nil || s.users.Knows(name)) {
		return name, nil, s.users.remembered(name, pass)
	}
	r, _ := dir.(interface {
		Remembered(name, password string) (identity.Person, bool)
	})
	if r == nil {
		return name, nil, false
	}
	p, ok := r.Remembered(name, pass)
	if !ok {
		return name, nil, false
	}
	if p.User != "" {
		return p.User, &p, true
	}
	return username.Canon(name), &p, true
}

// directory is the directory logins are checked against, nil when off.
func (s *Server) directory() DirectoryLogin {
	if s.dirOn != nil && !s.dirOn() {
		return nil
	}
	return s.dir
}

func directoryOn(d DirectoryLogin) func() bool {
	if e, ok := d.(interface{ Enabled() bool }); ok {
		return e.Enabled
	}
	return nil
}

func (s *Server) challenge(w http.ResponseWriter, cfg *config.Config, msg string) {
	w.Header().Set("Proxy-Authenticate", `Basic realm="`+cfg.Proxy.Auth.Realm+`", charset="UTF-8"`)
	w.Header().Set("Via", Via)
	http.Error(w, "407 Proxy Authentication Required: "+msg, http.StatusProxyAuthRequired)
}

// splitHostPort splits "host:port", "[v6]:port" or a bare host.
func splitHostPort(hp string) (host, port string) {
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return h, canonicalPort(p)
	}
	return strings.Trim(hp, "[]"), ""
}

// canonicalPort drops a port's leading zeros: the dialler reads "0443" as
// 443, so every check that compares ports (the non-TLS check on tunnels
// to 443, decryption, the 421 for another site) must see "443" too.
func canonicalPort(p string) string {
	for len(p) > 1 && p[0] == '0' {
		p = p[1:]
	}
	return p
}

// normHost normalises a request host as a browser's URL parser would;
// addr is set for IP literals, in any spelling the URL standard accepts
// (IPv4-mapped IPv6, "3232235777", "0xC0A80101", "0300.0250.01.01",
// "192.168.257"), so that they are decided and dialled as addresses.
func normHost(host string) (string, netip.Addr, error) {
	var buf [256]byte
	b, addr, err := bl.CanonicalHost(buf[:0], host)
	if err != nil {
		return "", netip.Addr{}, err
	}
	if string(b) == host {
		return host, addr, nil // already canonical: no copy
	}
	return string(b), addr, nil
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func portAllowed(ports []int, port string) bool {
	n, err := strconv.Atoi(port)
	if err != nil {
		return false
	}
	for _, p := range ports {
		if p == n {
			return true
		}
	}
	return false
}

// worstOf picks the most severe category of cats.
func worstOf(eng *policy.Engine, cats bl.CategorySet) bl.Category {
	best, sev := bl.Category(0), -1
	for _, c := range cats.Slice() {
		if c >= bl.FirstListBit {
			continue
		}
		if v := int(eng.Severity(c)); v > sev {
			best, sev = c, v
		}
	}
	return best
}

// hopByHop are the RFC 9110 connection-specific fields (7.6.1) plus the
// legacy Proxy-Connection. Trailer stays: goproxy forwards trailers.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Transfer-Encoding", "Upgrade"}

// cleanHopByHop drops hop-by-hop fields and those named in Connection;
// for a WebSocket upgrade, Connection and Upgrade stay.
func cleanHopByHop(h http.Header, upgrade bool) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" || (upgrade && strings.EqualFold(f, "upgrade")) {
				continue
			}
			h.Del(f)
		}
	}
	for _, k := range hopByHop {
		if upgrade && (k == "Connection" || k == "Upgrade") {
			continue
		}
		delete(h, k)
	}
}

// isUpgrade reports whether a request asks to switch to WebSocket, the
// only protocol switch relayed. Any other (h2c above all: HTTP/2 requests
// on the switched connection would never be decided, each free to ask for
// a path the URL lists block) has its Upgrade dropped with the other
// hop-by-hop fields, and the request is answered as an ordinary one.
func isUpgrade(h http.Header) bool {
	if !hasToken(h["Connection"], "upgrade") {
		return false
	}
	ws := false
	for _, v := range h["Upgrade"] {
		for v != "" {
			var p string
			p, v, _ = strings.Cut(v, ",")
			switch p = strings.TrimSpace(p); {
			case strings.EqualFold(p, "websocket"):
				ws = true
			case p != "":
				return false
			}
		}
	}
	return ws
}

// respWriter is the ResponseWriter responses are written through (by
// forward or goproxy). It counts bytes and status (for full logging), and
// copies bodies through a pooled buffer instead of io.Copy's fresh 32 KiB.
type respWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (c *respWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *respWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ReadFrom is what io.Copy(w, body) calls.
func (c *respWriter) ReadFrom(src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(writerOnly{c}, src, *bp)
	copyBufs.Put(bp)
	return n, err
}

type writerOnly struct{ io.Writer }

func (c *respWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *respWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(c.ResponseWriter).Hijack()
}

func (c *respWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}
