package httpproxy

// The upstream side of plain-HTTP requests. A GET or HEAD without a body
// (nearly all browsing) is written and its response read on the client's
// own goroutine over a pooled keep-alive connection: net/http's Transport
// hands every request to a write goroutine and every response back from a
// read goroutine, and on a busy 2-core machine those hand-offs are most of
// the proxy's tail latency. Everything else (bodies, upgrades, https://
// URLs sent as plain HTTP) goes through the http.Transport as before.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-filter/gatehouse/policy"
)

// upstream is the pool of idle connections to sites. It holds at most
// perSite idle connections to one site and maxIdle over all sites; to make
// room past maxIdle the least recently used connection is closed.
type upstream struct {
	s           *Server
	perSite     int
	maxIdle     int
	idleTimeout time.Duration
	response    time.Duration // to the first response byte

	mu     sync.Mutex
	idle   map[siteKey][]*upConn // per site, least recently used first
	lru    upConn                // sentinel of the ring of all idle connections, least recently used next
	nIdle  int
	closed bool
}

// siteKey names the connections to one site; target is a safe-search
// endpoint dialled in its place.
type siteKey struct{ host, port, target string }

type upConn struct {
	c          net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	used       time.Time
	key        siteKey
	prev, next *upConn // in upstream.lru while idle
}

func newUpstream(s *Server, perSite, maxIdle int, response time.Duration) *upstream {
	u := &upstream{s: s, perSite: perSite, maxIdle: maxIdle, idleTimeout: 90 * time.Second, response: response, idle: map[siteKey][]*upConn{}}
	u.lru.prev, u.lru.next = &u.lru, &u.lru
	return u
}

// unlink takes pc out of the ring of idle connections.
func (u *upstream) unlink(pc *upConn) {
	pc.prev.next, pc.next.prev = pc.next, pc.prev
	pc.prev, pc.next = nil, nil
	u.nIdle--
}

// drop closes an idle connection and takes it out of the pool.
func (u *upstream) drop(pc *upConn) {
	u.unlink(pc)
	_ = pc.c.Close()
	list := u.idle[pc.key]
	for i, x := range list {
		if x == pc {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			u.setIdle(pc.key, list[:len(list)-1])
			return
		}
	}
}

// roundTrip sends a request that pooled accepts over a pooled connection.
func (u *upstream) roundTrip(req *http.Request, info *reqInfo) (*http.Response, error) {
	key := siteKey{host: info.host, port: info.port, target: info.rewrite} // host normalised (lower case, IDN as punycode)
	if key.port == "" {
		key.port = "80"
	}
	for attempt := 0; ; attempt++ {
		pc, reused := u.get(key)
		if pc == nil {
			var err error
			if pc, err = u.dial(req.Context(), info, key); err != nil {
				return nil, err
			}
		}
		resp, err := u.exchange(pc, req)
		if err == nil {
			resp.Body = &upBody{body: resp.Body, u: u, pc: pc, key: key, keep: !resp.Close && !req.Close}
			return resp, nil
		}
		_ = pc.c.Close()
		if !reused || attempt > 0 || !errors.Is(err, errStale) {
			return nil, err
		}
		// The site closed an idle connection before our request arrived:
		// try once more on a new one (GET and HEAD are safe to repeat).
	}
}

// forward sends an allowed request that pooled accepts and copies the
// answer to w. It does what goproxy's handler does for plain HTTP, less
// its per-request context, log formatting and header copies.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, info *reqInfo) {
	r.RequestURI = ""
	out := r
	if r.Close {
		// "Connection: close" is about the client's connection to the
		// proxy: the pooled connection to the site stays for the next
		// request (a copy, so the front still closes the client's).
		out = r.WithContext(r.Context())
		out.Close = false
	}
	resp, err := s.up.roundTrip(out, info)
	s.relay(w, r, info, resp, err)
}

// relay writes a site's answer to r (or the error that stood in for it)
// to w: forward's and forwardTLS's common part.
func (s *Server) relay(w http.ResponseWriter, r *http.Request, info *reqInfo, resp *http.Response, err error) {
	if err != nil {
		if ie := asInternal(err); ie != nil {
			info.url = eventURL(r.URL)
			body, ref := s.refuseInternal(info, info.source(), ie)
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Via", Via)
			h.Set("X-Gatehouse-Ref", ref)
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, body)
			return
		}
		var be *policy.BlockedError
		if errors.As(err, &be) {
			s.lookupBlocked(w, r, info, be)
			return
		}
		status, msg := upstreamError(err)
		s.metrics.upstreamErrors.Inc()
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Via", Via)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, msg+"\n")
		return
	}
	decoded := info.content.decode(resp) // content.go: a gzip answer the check reads
	defer resp.Body.Close()
	stream := s.prepareResponse(resp, r.Method) || decoded
	if info.tls {
		// net/http's server frames the body itself, and Alt-Svc would
		// send the browser to HTTP/3 (QUIC), around the proxy.
		delete(resp.Header, "Transfer-Encoding")
		delete(resp.Header, "Alt-Svc")
		if resp.StatusCode == http.StatusSwitchingProtocols {
			s.relayUpgrade(w, resp)
			return
		}
	}
	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	if _, ok := h["Content-Type"]; !ok {
		// net/http's server (decrypted HTTPS) would add one it sniffed,
		// even past X-Content-Type-Options: nosniff: the browser sniffs
		// for itself, as without the proxy (and the check as it does).
		h["Content-Type"] = nil
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)
	var dst io.Writer = w
	if stream {
		dst = flushWriter{w}
	}
	if _, err := io.Copy(dst, resp.Body); err != nil {
		return
	}
	for k, vs := range resp.Trailer {
		h[http.TrailerPrefix+k] = vs
	}
}

// flushWriter sends each write on at once (bodies of unknown length, such
// as event streams).
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// pooled reports whether req can use the pool: GET or HEAD of an http://
// URL with no body and no upgrade.
func pooled(req *http.Request) bool {
	return req.URL.Scheme == "http" && (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength == 0 &&
		len(req.TransferEncoding) == 0 && req.Header.Get("Upgrade") == "" && req.Header.Get("Expect") == ""
}

// errStale marks a reused connection that failed before any response byte.
var errStale = errors.New("idle upstream connection was closed by the site")

// exchange writes req and reads the response header.
func (u *upstream) exchange(pc *upConn, req *http.Request) (*http.Response, error) {
	if err := req.Write(pc.bw); err != nil {
		return nil, errors.Join(errStale, err)
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, errors.Join(errStale, err)
	}
	if u.response > 0 {
		_ = pc.c.SetReadDeadline(time.Now().Add(u.response))
	}
	if _, err := pc.br.Peek(1); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, err
		}
		return nil, errors.Join(errStale, err)
	}
	for {
		resp, err := http.ReadResponse(pc.br, req)
		if err != nil {
			return nil, fmt.Errorf("reading the site's response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			_ = pc.c.SetReadDeadline(time.Time{})
			return resp, nil
		}
		// 1xx (103 Early Hints and the like): the final response follows.
		_ = resp.Body.Close()
	}
}

func (u *upstream) dial(ctx context.Context, info *reqInfo, key siteKey) (*upConn, error) {
	host := key.host
	if key.target != "" {
		host = key.target
	}
	c, err := u.s.dialHost(ctx, info.client, host, key.port, u.s.o.Config().Proxy.HTTP.IPNetworks)
	if err != nil {
		return nil, err
	}
	// The pool keeps the key while the connection is idle: copies, not
	// strings cut from a request head (reqread.go), which would keep it.
	key.host, key.port = strings.Clone(key.host), strings.Clone(key.port)
	return &upConn{c: c, br: bufio.NewReaderSize(c, 32<<10), bw: bufio.NewWriterSize(c, 4<<10), key: key}, nil
}

// get takes the most recently used idle connection to key.
func (u *upstream) get(key siteKey) (*upConn, bool) {
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	list := u.idle[key]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		u.unlink(pc)
		if now.Sub(pc.used) < u.idleTimeout {
			u.setIdle(pc.key, list) // the map takes the key it is given: the connection's copy
			return pc, true
		}
		_ = pc.c.Close() // the rest are older still
		for i, old := range list {
			u.unlink(old)
			_ = old.c.Close()
			list[i] = nil
		}
		list = nil
	}
	u.setIdle(key, list)
	return nil, false
}

func (u *upstream) setIdle(key siteKey, list []*upConn) {
	if len(list) == 0 {
		delete(u.idle, key)
		return
	}
	u.idle[key] = list
}

// put returns a connection whose response was read to the end.
func (u *upstream) put(key siteKey, pc *upConn) {
	now := time.Now()
	u.mu.Lock()
	pc.used = now
	list := u.idle[key]
	if u.closed || len(list) >= u.perSite || pc.br.Buffered() > 0 {
		u.mu.Unlock()
		_ = pc.c.Close()
		return
	}
	if u.nIdle >= u.maxIdle {
		u.drop(u.lru.next) // the least recently used, to any site
		list = u.idle[key]
	}
	u.idle[pc.key] = append(list, pc) // the connection's copy of key (dial)
	pc.prev, pc.next = u.lru.prev, &u.lru
	pc.prev.next, u.lru.prev = pc, pc
	u.nIdle++
	u.mu.Unlock()
}

// sweep closes connections idle for longer than the idle timeout.
func (u *upstream) sweep() {
	cut := time.Now().Add(-u.idleTimeout)
	u.mu.Lock()
	defer u.mu.Unlock()
	for pc := u.lru.next; pc != &u.lru && pc.used.Before(cut); pc = u.lru.next {
		u.drop(pc)
	}
}

// run sweeps the pool until stop closes, then closes every idle connection.
func (u *upstream) run(stop <-chan struct{}) {
	t := time.NewTicker(u.idleTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			u.sweep()
		case <-stop:
			u.closeIdle()
			return
		}
	}
}

func (u *upstream) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closed = true
	for pc := u.lru.next; pc != &u.lru; pc = u.lru.next {
		u.drop(pc)
	}
}

// upBody returns its connection to the pool once the body has been read
// to the end, and closes it otherwise.
type upBody struct {
	body io.ReadCloser
	u    *upstream
	pc   *upConn
	key  siteKey
	keep bool
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.release(true)
	} else if err != nil {
		b.release(false)
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		b.release(b.body == http.NoBody)
	}
	return nil
}

func (b *upBody) release(finished bool) {
	b.done = true
	_ = b.body.Close()
	if finished && b.keep {
		b.u.put(b.key, b.pc)
		return
	}
	_ = b.pc.c.Close()
}

// relayUpgrade completes a protocol switch (a WebSocket) on a decrypted
// HTTP/1.1 connection: the 101 goes to the client, then bytes flow both
// ways until either side closes or stays idle past the tunnel timeout.
func (s *Server) relayUpgrade(w http.ResponseWriter, resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		http.Error(w, "502 Bad Gateway: the site's protocol switch could not be completed.", http.StatusBadGateway)
		return
	}
	defer up.Close()
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	resp.Body = nil
	if err := resp.Write(brw); err != nil || brw.Flush() != nil {
		return
	}
	done := make(chan struct{}, 2)
	idle := s.tunnelIdle
	pipe := func(dst io.Writer, src io.Reader, conn net.Conn) {
		buf := make([]byte, 16<<10)
		for {
			if idle > 0 {
				_ = conn.SetReadDeadline(time.Now().Add(idle))
			}
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(up, brw.Reader, c)
	go pipe(c, up, c)
	<-done
	_ = c.Close()
	_ = up.Close()
	<-done
}
