package httpproxy

// The proxy's own HTTP/1.1 server for client connections. net/http's
// server starts a goroutine and arms a read deadline for every request to
// notice a client going away; on a 2-core machine with 50 busy keep-alive
// clients that costs a third of the throughput and puts its p99 above
// squid's (bench/http_bench.sh). This loop reads a request, runs the same
// handler (Server.ServeHTTP, goproxy behind it) and writes the response on
// the connection's goroutine alone. CONNECT tunnels and WebSocket upgrades
// hijack the connection exactly as they did under net/http.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// front accepts and serves client connections.
type front struct {
	s         *Server
	handler   http.Handler  // s, except in tests
	header    time.Duration // to read a request's header
	idle      time.Duration // between requests on a keep-alive connection
	maxHeader int64

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*frontConn]struct{}
	closing atomic.Bool
}

func newFront(s *Server, header, idle time.Duration, maxHeader int) *front {
	return &front{s: s, handler: s, header: header, idle: idle, maxHeader: int64(maxHeader), conns: map[*frontConn]struct{}{}}
}

// serve accepts connections from ln until shutdown.
func (f *front) serve(ln net.Listener) error {
	f.mu.Lock()
	if f.closing.Load() {
		f.mu.Unlock()
		return ln.Close()
	}
	f.ln = ln
	f.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if f.closing.Load() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and try again.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			f.s.log.Warn("proxy: accept failed; retrying", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		cc, ok := c.(*clientConn)
		if !ok {
			_ = c.Close()
			continue
		}
		fc := &frontConn{f: f, c: cc}
		if !f.track(fc) {
			_ = cc.Close()
			continue
		}
		go fc.serve()
	}
}

func (f *front) track(fc *frontConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	f.conns[fc] = struct{}{}
	return true
}

func (f *front) untrack(fc *frontConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
}

// shutdown stops accepting, closes idle connections and waits for the
// requests in flight (not hijacked tunnels) until ctx ends.
func (f *front) shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.closing.Store(true)
	if f.ln != nil {
		_ = f.ln.Close()
	}
	f.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if f.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// closeIdle closes connections waiting for a request and returns how many
// connections are still open.
func (f *front) closeIdle() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fc := range f.conns {
		if fc.state.CompareAndSwap(connIdle, connClosing) {
			_ = fc.c.Conn.Close() // the connection's goroutine releases it
		}
	}
	return len(f.conns)
}

// frontConn is one client connection.
type frontConn struct {
	f        *front
	c        *clientConn
	lr       io.LimitedReader // caps header bytes
	br       *bufio.Reader
	bw       *bufio.Writer
	remote   string
	hijacked bool
	// state is connIdle, connActive or connClosing: a connection's own
	// goroutine and closeIdle change it without a shared lock, so that
	// busy connections do not queue on one (each request changes it twice).
	state atomic.Int32

	contMu     sync.Mutex // orders "100 Continue" against the response
	started    bool       // the response has begun
	keepReader bool       // br may still be read by another goroutine

	// The writer and its header map are reused from one request to the
	// next on a keep-alive connection (a handler must not touch them after
	// it returns; a hijacked or abandoned connection never reuses them).
	w frontWriter
	h http.Header

	// The request's parts (reqread.go) and its reqInfo are reused after a
	// request the proxy answered by itself (frontWriter.local): nothing
	// else can hold them then.
	rr       reqReader
	info     *reqInfo
	infoFree bool
}

// frontConn.state values.
const (
	connIdle    = iota // waiting for a request
	connActive         // a request is being served
	connClosing        // closed by closeIdle
)

var (
	frontReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
	frontWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
)

func (fc *frontConn) serve() {
	f, c := fc.f, fc.c
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				f.s.log.Error("proxy: internal error while serving a client; its connection was closed",
					"client", c.ip.String(), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
			fc.keepReader, fc.bw = true, nil // in an unknown state: not reused
		}
		if fc.hijacked {
			return // the hijacker owns the connection and its buffers
		}
		_ = c.Close()
		f.untrack(fc)
		if fc.br != nil && !fc.keepReader {
			fc.br.Reset(nil)
			frontReaders.Put(fc.br)
		}
		if fc.bw != nil {
			fc.bw.Reset(nil)
			frontWriters.Put(fc.bw)
		}
	}()
	fc.remote = c.RemoteAddr().String()
	fc.lr.R = c
	fc.br = frontReaders.Get().(*bufio.Reader)
	fc.br.Reset(&fc.lr)
	for first := true; ; first = false {
		wait := f.idle
		if first {
			wait = f.header
		}
		fc.lr.N = f.maxHeader + 4096
		deadline(c, wait)
		if _, err := fc.br.Peek(1); err != nil {
			return
		}
		if !fc.state.CompareAndSwap(connIdle, connActive) {
			return // closeIdle got there first: shutting down
		}
		if !first {
			deadline(c, f.header)
		}
		host, known := hasHost(fc.br)
		var tee *headerTee
		if !known {
			// A header longer than the buffer (rare): keep a copy of it
			// as it is read, and look for Host once it is whole.
			tee = newHeaderTee(fc.br, c)
			fc.lr.R = tee
		}
		req, err := fc.rr.read(fc.br)
		if tee != nil {
			fc.lr.R = c
			host, _ = scanHost(tee.b)
		}
		if err != nil {
			fc.refuse(err)
			return
		}
		if !host && req.ProtoAtLeast(1, 1) {
			// RFC 9112 3.2, for every HTTP/1.1 request (http.ReadRequest
			// drops the field, and takes the host of an absolute URL).
			fc.plainError(http.StatusBadRequest, "400 Bad Request: the Host header is missing")
			return
		}
		if hasFragment(req) {
			fc.plainError(http.StatusBadRequest, fragmentError)
			return
		}
		fc.lr.N = math.MaxInt64 // bodies are not capped here
		deadline(c, 0)
		if !fc.serveRequest(req) {
			return
		}
		fc.state.Store(connIdle)
	}
}

// hasFragment reports a '#' in the request-target, which RFC 9112 does
// not allow there (browsers never send the fragment). Net/http keeps a
// raw one in the query, where the URL lists' canonical form would take it
// as the fragment's start and ignore what follows, while the site reads
// the parameters after it: "?x#&img=1" is img=1 to a Go or Java server.
func hasFragment(r *http.Request) bool { return strings.IndexByte(r.RequestURI, '#') >= 0 }

const fragmentError = "400 Bad Request: the address holds a '#', which no browser sends"

// deadline sets the read deadline d from now (none for 0).
func deadline(c net.Conn, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = c.SetReadDeadline(t)
}

// refuse answers a request that could not be read, unless the client just
// went away or was too slow.
func (fc *frontConn) refuse(err error) {
	var ne net.Error
	switch {
	case fc.lr.N <= 0:
		fc.plainError(http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large: the request's headers are too long")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.As(err, &ne) && ne.Timeout():
	default:
		var oe *net.OpError
		if errors.As(err, &oe) {
			return // reset by the client
		}
		fc.plainError(http.StatusBadRequest, "400 Bad Request: the web filter could not read the request")
	}
}

// plainError writes a final error response straight to the connection.
func (fc *frontConn) plainError(code int, msg string) {
	_ = fc.c.SetWriteDeadline(time.Now().Add(time.Second))
	writeRawError(fc.c, code, msg+"\n")
}

// serveRequest runs the handler for req and reports whether the
// connection can carry another request.
func (fc *frontConn) serveRequest(req *http.Request) bool {
	f := fc.f
	fc.contMu.Lock()
	fc.started = false
	fc.contMu.Unlock()
	if code, msg := checkRequest(req); code != 0 {
		fc.plainError(code, msg)
		return false
	}
	var body *reqBody
	if req.Body != http.NoBody {
		// The handler may hand the body to another goroutine (net/http's
		// Transport writes request bodies from its own): it is fenced off
		// when the handler returns.
		body = &reqBody{body: req.Body, fc: fc}
		req.Body = body
	}
	if e, ok := req.Header["Expect"]; ok {
		if len(e) != 1 || !strings.EqualFold(e[0], "100-continue") || !req.ProtoAtLeast(1, 1) {
			fc.plainError(http.StatusExpectationFailed, "417 Expectation Failed: only 100-continue is understood")
			return false
		}
		if body != nil {
			body.expect = true
		}
	}
	req.RemoteAddr = fc.remote
	if fc.bw == nil {
		fc.bw = frontWriters.Get().(*bufio.Writer)
		fc.bw.Reset(fc.c)
	}
	if fc.h == nil {
		fc.h = make(http.Header, 8)
	} else {
		clear(fc.h)
	}
	fc.w = frontWriter{fc: fc, req: req, h: fc.h}
	w := &fc.w
	f.handler.ServeHTTP(w, req)
	if w.hijacked {
		return false
	}
	if fc.rr.fast(req) {
		fc.rr.free = w.local && body == nil
	}
	if w.tookInfo {
		fc.infoFree = w.local
	}
	fenced := body == nil || body.fence()
	if !fenced {
		// Another goroutine is still reading the body (a site that answered
		// before taking the whole upload): finish the answer, then close.
		fc.keepReader = true
	}
	if err := w.finish(); err != nil || !fenced {
		return false
	}
	if w.close || req.Close || f.closing.Load() {
		return false
	}
	if body != nil {
		if body.expect && !body.continued {
			return false // the client may still be waiting to send the body
		}
		if !drained(fc.c, body.body, f.header) {
			return false
		}
	}
	// Between requests the writer goes back to the pool: thousands of idle
	// keep-alive connections hold only their read buffer.
	if fc.br.Buffered() == 0 {
		fc.bw.Reset(nil)
		frontWriters.Put(fc.bw)
		fc.bw = nil
	}
	return true
}

// drained reads what the handler left of a request body (at most 256 KiB,
// in at most d) so the next request can be read.
func drained(c net.Conn, body io.Reader, d time.Duration) bool {
	deadline(c, d)
	defer deadline(c, 0)
	n, err := io.CopyN(io.Discard, body, 256<<10+1)
	return n <= 256<<10 && (err == io.EOF || (err == nil && n == 0))
}

// hasHost reports whether the request at the front of br has a Host
// header field. It looks at the header as far as br's buffer holds it
// (4 KiB), reading more from the connection only while the header is
// incomplete, and allocates nothing. known is false when the header is
// longer than the buffer and no Host field came first: the caller decides
// once the whole header is read (headerTee).
func hasHost(br *bufio.Reader) (found, known bool) {
	for {
		buf, _ := br.Peek(br.Buffered())
		if f, done := scanHost(buf); done {
			return f, true
		}
		if br.Buffered() >= br.Size() {
			return false, false
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return true, true // http.ReadRequest reports it
		}
	}
}

// headerTee keeps a copy of a request header too long for the front's
// buffer: the part already buffered, then every byte read from the
// connection while http.ReadRequest reads the rest (bounded by the
// header cap, fc.lr), so that scanHost can see the whole header.
type headerTee struct {
	r io.Reader
	b []byte
}

func newHeaderTee(br *bufio.Reader, r io.Reader) *headerTee {
	buf, _ := br.Peek(br.Buffered())
	return &headerTee{r: r, b: append(make([]byte, 0, 2*len(buf)), buf...)}
}

func (t *headerTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.b = append(t.b, p[:n]...)
	return n, err
}

// scanHost looks for a Host field in the header lines at the front of buf;
// done is false when the header does not end within buf.
func scanHost(buf []byte) (found, done bool) {
	for line := 0; ; {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return false, false
		}
		l := bytes.TrimSuffix(buf[:i], []byte{'\r'})
		buf = buf[i+1:]
		switch {
		case len(l) == 0 && line == 0:
			continue // blank lines before the request line
		case len(l) == 0:
			return false, true
		case line > 0 && len(l) >= 5 && l[4] == ':' && bytes.EqualFold(l[:4], []byte("host")):
			return true, true
		}
		line++
	}
}

// checkRequest applies the rules net/http's server applies after
// http.ReadRequest (which has already refused repeated Host headers).
func checkRequest(req *http.Request) (int, string) {
	switch {
	case req.ProtoMajor != 1:
		return http.StatusHTTPVersionNotSupported, "505 HTTP Version Not Supported: the web filter speaks HTTP/1.x to browsers"
	case req.Host != "" && !httpguts.ValidHostHeader(req.Host):
		return http.StatusBadRequest, "400 Bad Request: the Host header is not valid"
	case req.Host == "" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect:
		return http.StatusBadRequest, "400 Bad Request: the Host header is missing"
	}
	return 0, ""
}

// reqBody is a request body as the handler sees it. It sends "100
// Continue" when first read if the client asked for it, and fence stops
// all reads once the handler has returned.
type reqBody struct {
	mu        sync.Mutex
	body      io.ReadCloser
	fc        *frontConn
	fenced    bool
	expect    bool
	continued bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fenced {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.expect && !b.continued {
		b.continued = true
		if !b.fc.sendContinue() {
			return 0, errors.New("the response has started; the request body is not wanted")
		}
	}
	return b.body.Read(p)
}

// Close leaves the rest of the body to the connection's loop.
func (b *reqBody) Close() error { return nil }

// fence stops further reads; false when a read is still in progress on
// another goroutine, and the connection must then close.
func (b *reqBody) fence() bool {
	if !b.mu.TryLock() {
		return false
	}
	b.fenced = true
	b.mu.Unlock()
	return true
}

// sendContinue writes "100 Continue" unless the response has begun.
func (fc *frontConn) sendContinue() bool {
	fc.contMu.Lock()
	defer fc.contMu.Unlock()
	if fc.started {
		return false
	}
	_, _ = fc.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return fc.bw.Flush() == nil
}

// start marks the response as begun: no "100 Continue" after this.
func (fc *frontConn) start() {
	fc.contMu.Lock()
	fc.started = true
	fc.contMu.Unlock()
}

// frontWriter is the http.ResponseWriter for one request.
type frontWriter struct {
	fc      *frontConn
	req     *http.Request
	h       http.Header
	status  int
	wrote   bool    // the status is set
	sent    bool    // the header is in the write buffer
	noBody  bool    // HEAD, 1xx, 204, 304
	chunked bool    // body sent in chunks
	length  int64   // declared Content-Length, -1 when unknown
	n       int64   // body bytes written
	close   bool    // close the connection after this response
	failed  bool    // a write to the client failed
	held    []byte  // body held back before the header (holdMax)
	heldp   *[]byte // held's pooled buffer
	fixed   string  // header lines written as they are after the map's (setFixedHeader)

	hijacked bool
	trailers []string

	local    bool // answered by the proxy itself, which kept nothing of the request (answeredHere)
	tookInfo bool // the handler took the connection's reqInfo (takeInfo)
}

// answeredHere tells the front that the handler answers the request by
// itself (a block) and keeps no reference to it, its parts or its
// reqInfo once it returns, so the connection may reuse them.
func answeredHere(w http.ResponseWriter) {
	if fw, ok := w.(*frontWriter); ok {
		fw.local = true
	}
}

// takeInfo returns a zeroed reqInfo for the request: the connection's
// last one when the request before was answered here, else a new one.
func (fc *frontConn) takeInfo() *reqInfo {
	if fc.info == nil || !fc.infoFree {
		fc.info = new(reqInfo)
	} else {
		*fc.info = reqInfo{}
	}
	fc.infoFree = false
	fc.w.tookInfo = true
	return fc.info
}

func (w *frontWriter) Header() http.Header { return w.h }

// setFixedHeader adds header lines ("Name: value\r\n" each, already valid)
// that are written as they are, without going through the map; false
// when the header has already been sent.
func (w *frontWriter) setFixedHeader(lines string) bool {
	if w.sent || w.hijacked {
		return false
	}
	w.fixed = lines
	return true
}

func (w *frontWriter) WriteHeader(code int) {
	if w.hijacked || w.wrote {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: sent at once; the final response follows.
		w.fc.start()
		bw := w.fc.bw
		_, _ = bw.WriteString(statusLine(w.req, code))
		if code != http.StatusContinue {
			writeFields(bw, w.h, nil)
		}
		_, _ = bw.WriteString("\r\n")
		_ = bw.Flush()
		return
	}
	w.wrote, w.status = true, code
}

// sendHeader frames the response and puts its header in the buffer.
func (w *frontWriter) sendHeader() {
	if w.sent {
		return
	}
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.sent = true
	w.fc.start()
	h, req, code := w.h, w.req, w.status
	w.noBody = req.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	w.length = -1
	if v := h["Content-Length"]; len(v) > 0 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 && len(v) == 1 {
			w.length = n
		} else {
			delete(h, "Content-Length")
		}
	}
	delete(h, "Transfer-Encoding")
	keepAlive := req.ProtoAtLeast(1, 1) || !req.Close
	switch {
	case code == http.StatusSwitchingProtocols:
	case w.noBody:
		if code < 200 || code == http.StatusNoContent {
			delete(h, "Content-Length")
		}
	case w.length >= 0:
	case req.ProtoAtLeast(1, 1):
		w.chunked = true
	default:
		keepAlive = false // an HTTP/1.0 body of unknown length ends when the connection does
	}
	if !keepAlive || req.Close || w.fc.f.closing.Load() || hasToken(h["Connection"], "close") {
		w.close = true
	}
	if code != http.StatusSwitchingProtocols {
		switch {
		case w.close:
			h["Connection"] = []string{"close"}
		case !req.ProtoAtLeast(1, 1):
			h["Connection"] = []string{"keep-alive"}
		}
	}
	if w.chunked {
		for _, v := range h["Trailer"] {
			for _, k := range strings.Split(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					w.trailers = append(w.trailers, textproto.CanonicalMIMEHeaderKey(k))
				}
			}
		}
	}
	bw := w.fc.bw
	_, _ = bw.WriteString(statusLine(req, code))
	if _, ok := h["Date"]; !ok {
		_, _ = bw.WriteString("Date: ")
		_, _ = bw.Write(time.Now().UTC().AppendFormat(bw.AvailableBuffer(), http.TimeFormat)) // in place when it fits
		_, _ = bw.WriteString("\r\n")
	}
	writeFields(bw, h, w.trailers)
	_, _ = bw.WriteString(w.fixed)
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

// holdMax is how much body the writer holds back before the header is
// sent, so that a short answer of unknown length (an error page, a refused
// tunnel) goes out with a Content-Length, as net/http's server does.
const holdMax = 2 << 10

func (w *frontWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.sent {
		if !w.wrote {
			w.WriteHeader(http.StatusOK)
		}
		if w.canHold() && len(w.held)+len(p) <= holdMax {
			if w.held == nil {
				w.heldp = heldBufs.Get().(*[]byte)
				w.held = (*w.heldp)[:0]
			}
			w.held = append(w.held, p...)
			return len(p), nil
		}
		w.sendHeader()
		if err := w.sendHeld(); err != nil {
			return 0, err
		}
	}
	return w.writeBody(p)
}

// canHold reports whether the body may be held back: its length is not
// declared, the answer has a body, and no trailers are announced (those
// need chunks).
func (w *frontWriter) canHold() bool {
	_, declared := w.h["Content-Length"]
	_, trailers := w.h["Trailer"]
	return !declared && !trailers && bodyAllowed(w.req.Method, w.status)
}

// sendHeld writes the held-back body after the header.
func (w *frontWriter) sendHeld() error {
	if len(w.held) == 0 {
		return nil
	}
	b := w.held
	w.held = nil
	_, err := w.writeBody(b) // copied into the connection's buffer
	if w.heldp != nil {
		heldBufs.Put(w.heldp)
		w.heldp = nil
	}
	return err
}

// heldBufs are the hold-back buffers, pooled: a keep-alive connection
// keeps none between answers.
var heldBufs = sync.Pool{New: func() any { b := make([]byte, 0, holdMax); return &b }}

// writeBody writes p after the header, framed.
func (w *frontWriter) writeBody(p []byte) (int, error) {
	if w.noBody || w.status == http.StatusSwitchingProtocols {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	var tooLong error
	if w.length >= 0 && w.n+int64(len(p)) > w.length {
		p, tooLong = p[:w.length-w.n], http.ErrContentLength
	}
	bw := w.fc.bw
	var n int
	var err error
	if w.chunked {
		var b [20]byte
		_, _ = bw.Write(append(strconv.AppendUint(b[:0], uint64(len(p)), 16), '\r', '\n'))
		n, err = bw.Write(p)
		_, _ = bw.WriteString("\r\n")
	} else {
		n, err = bw.Write(p)
	}
	w.n += int64(n)
	if err != nil {
		w.failed = true
		return n, err
	}
	return n, tooLong
}

func (w *frontWriter) Flush() {
	if w.hijacked {
		return
	}
	if !w.sent {
		w.sendHeader()
		if w.sendHeld() != nil {
			return
		}
	}
	if err := w.fc.bw.Flush(); err != nil {
		w.failed = true
	}
}

// Hijack hands the connection over (CONNECT tunnels, WebSocket); a status
// already set, such as 101, is sent first.
func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	fc := w.fc
	fc.start()
	if w.wrote && !w.sent {
		w.sendHeader()
		if err := w.sendHeld(); err != nil {
			return nil, nil, err
		}
	}
	if err := fc.bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked, fc.hijacked = true, true
	fc.f.untrack(fc)
	_ = fc.c.SetDeadline(time.Time{})
	fc.lr.N = math.MaxInt64
	return fc.c, bufio.NewReadWriter(fc.br, fc.bw), nil
}

// finish completes the response: a body held back whole goes out with its
// Content-Length; otherwise the last chunk and trailers.
func (w *frontWriter) finish() error {
	if !w.sent {
		if !w.wrote {
			w.WriteHeader(http.StatusOK)
		}
		if w.canHold() {
			// The whole body is held: its length is known now.
			w.h["Content-Length"] = []string{strconv.Itoa(len(w.held))}
		}
		w.sendHeader()
		if err := w.sendHeld(); err != nil {
			return err
		}
	}
	bw := w.fc.bw
	if w.chunked {
		_, _ = bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			writeValues(bw, k, w.h[k])
		}
		for k, vs := range w.h {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				writeValues(bw, name, vs)
			}
		}
		_, _ = bw.WriteString("\r\n")
	} else if w.length >= 0 && w.n < w.length && !w.noBody {
		w.close = true // the client would wait for the rest
	}
	if err := bw.Flush(); err != nil || w.failed {
		return errors.Join(err, errors.New("write to client failed"))
	}
	return nil
}

var statusLines sync.Map // code → "HTTP/1.1 200 OK\r\n"

func statusLine(req *http.Request, code int) string {
	if !req.ProtoAtLeast(1, 1) {
		return "HTTP/1.0 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
	}
	if v, ok := statusLines.Load(code); ok {
		return v.(string)
	}
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	line := "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
	statusLines.Store(code, line)
	return line
}

// writeFields writes the header fields, leaving out invalid names, trailer
// values and the fields in skip (declared trailers).
func writeFields(bw *bufio.Writer, h http.Header, skip []string) {
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) || contains(skip, k) {
			continue
		}
		writeValues(bw, k, vs)
	}
}

func writeValues(bw *bufio.Writer, k string, vs []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	for _, v := range vs {
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v) // no response splitting
		}
		_, _ = bw.WriteString(k)
		_, _ = bw.WriteString(": ")
		_, _ = bw.WriteString(strings.TrimSpace(v))
		_, _ = bw.WriteString("\r\n")
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// hasToken reports whether a comma-separated field lists token.
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
