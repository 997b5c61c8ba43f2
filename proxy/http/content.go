package httpproxy

// The real-time content check: the text of an answer (HTML, plain text,
// and the JSON or event stream of an AI chat service) is scored against
// the watchlists while it streams to the client. Nothing is held (but
// the first 512 bytes of an untyped answer, sniffed as browsers sniff
// them; a compressed answer is decoded as it streams): each piece the
// site sends is scanned (visible text only, fed to a streaming
// Aho-Corasick scorer whose state carries over from piece to piece) and
// then written on. A page whose score for a theme reaches the theme's
// content_block threshold gets, instead of the rest of it, the block
// notice (the block event is durable first); one that ends over
// content_report is a flag event for the DSL.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// contentKind is how an answer's body is read.
type contentKind uint8

const (
	kindNone contentKind = iota // not scored
	kindHTML
	kindText
	kindJSON // an AI chat service's JSON or event stream: string values of text fields
)

// errContentBlocked ends the copy of an answer whose rest was blocked.
var errContentBlocked = errors.New("the rest of the answer was blocked by the content check")

// contentWriter scores an answer's body on its way to the client. It sits
// between the forwarders (forward, forwardTLS, goproxy) and the request's
// respWriter.
type contentWriter struct {
	w    *respWriter
	s    *Server
	info *reqInfo
	r    *http.Request
	cfg  *config.Config
	wl   *watchlist.Watchlist
	sc   *watchlist.Scorer
	ai   bool  // the host is an AI chat service
	doc  bool  // a page's request: an untyped answer is sniffed (rendered)
	left int64 // bytes still to score (the size cap)
	cut  bool  // past the cap: counted (cutOff)

	kind    contentKind
	started bool // WriteHeader seen
	blocked bool
	scored  int64 // bytes scanned

	// An untyped answer (sniffable): its header and first bytes are held
	// until sniffed decides.
	sniff bool
	code  int // the status held
	nheld int
	held  [sniffLen]byte

	// An HTML or text answer waits for its first bytes (at most a byte
	// order mark's) before its header goes: a UTF-16 one (by its BOM, or
	// by its charset when it has none) is read, and sent on, as UTF-8.
	bom bool              // the header is held until the first bytes say whether a BOM starts the body
	cs  textEnc           // what the Content-Type's charset says (encAsIs: not UTF-16)
	u16 *transform.Writer // a UTF-16 answer's decoder: its UTF-8 goes on to write (scoredText)

	x textState // the text extractor's state between pieces
}

var contentWriters = sync.Pool{New: func() any { return new(contentWriter) }}

// contentCheck decides, before a request goes upstream, whether its answer
// may be scored, and if so returns the writer to answer it through: for
// groups with content_check on, allowed GET and POST requests that are no
// upgrade, to hosts that are neither exempt (support services) nor on the
// never-decrypt list. Whether the answer is read is then up to its
// Content-Type (WriteHeader). For a page or a frame (Sec-Fetch-Dest
// document, iframe, frame, or none sent) and an AI chat service's fetches
// (empty), Accept-Encoding is removed, so the site answers uncompressed;
// other requests (images, scripts, styles, other sites' fetches) keep
// gzip only, the cheapest to decode. A site that answers compressed all
// the same has its answer decoded (decode); one in an encoding decode
// cannot undo passes unscored, counted as content-unscored. The
// restricted tier never gets here: its requests are blocked.
func (s *Server) contentCheck(w *respWriter, r *http.Request, info *reqInfo, cfg *config.Config) *contentWriter {
	if info.dec.Restricted || !cfg.ContentCheck(info.dec.Group) ||
		(r.Method != http.MethodGet && r.Method != http.MethodPost) || isUpgrade(r.Header) {
		return nil
	}
	ai := cfg.AIHost(info.host)
	if cfg.ContentExempt(info.host) {
		return nil
	}
	wl := s.engineOf(info).Watchlist()
	if wl == nil || wl.Len() == 0 {
		return nil
	}
	dest := r.Header.Get("Sec-Fetch-Dest")
	switch dest {
	case "", "document", "iframe", "frame":
		delete(r.Header, "Accept-Encoding") // identity: the text can be read
	case "empty": // a script's fetch: an AI chat service's is read
		if ai {
			delete(r.Header, "Accept-Encoding")
			break
		}
		fallthrough
	default:
		// Images, scripts, styles, other sites' fetches: compression
		// stays, but only one the proxy can read (a client claiming a
		// page is an image still has it scored).
		gzipOnly(r.Header)
	}
	c := contentWriters.Get().(*contentWriter)
	*c = contentWriter{w: w, s: s, info: info, r: r, cfg: cfg, wl: wl, ai: ai, left: cfg.ContentMaxBytes(), doc: rendered(dest)}
	info.content = c
	return c
}

// rendered reports whether a request's answer is one a browser renders as
// a page when it sniffs it as HTML or text (Sec-Fetch-Dest: none sent, a
// page, a frame, an object or embed): those of images, scripts, styles
// and scripts' fetches it does not, so they are not sniffed.
func rendered(dest string) bool {
	switch dest {
	case "", "document", "iframe", "frame", "object", "embed":
		return true
	}
	return false
}

var hdrGzip = []string{"gzip"}

// gzipOnly keeps gzip as the only encoding a request accepts, if it
// accepted gzip at all (decode reads br, zstd and deflate too, should a
// site send them unasked; gzip alone is asked for, as every site offers
// it and it is cheap to decode).
func gzipOnly(h http.Header) {
	vs, ok := h["Accept-Encoding"]
	if !ok {
		return
	}
	gz := false
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(t), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") && !refused(params) {
				gz = true
			}
		}
	}
	if gz {
		h["Accept-Encoding"] = hdrGzip[:1:1]
		return
	}
	delete(h, "Accept-Encoding")
}

// refused reports whether an Accept-Encoding entry's parameters give it
// a weight of 0 (q=0, q=0.0, q=0.000; RFC 9110 12.4.2).
func refused(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}

// coding is a content coding the check can undo, as browsers do.
type coding uint8

const (
	codingGzip    coding = iota + 1 // gzip, x-gzip
	codingDeflate                   // deflate: zlib-wrapped, or raw as browsers also accept
	codingBr                        // Brotli (RFC 7932), windows up to 16 MiB
	codingZstd                      // Zstandard (RFC 9659), windows up to 8 MiB as for browsers
)

// maxCodings bounds the encodings stacked on one answer ("gzip, br" is
// two) that are undone: an answer with more is not passed on (decode).
const maxCodings = 2

// zstdMaxWindow is the largest Zstandard window decoded: RFC 9659's limit
// for the zstd content coding, which browsers enforce too.
const zstdMaxWindow = 8 << 20

// parseCodings reads an answer's Content-Encoding values, in the order the
// site applied them (empty entries skipped), as a browser does: when they
// name any encoding it does not know (identity, "compress", "utf-8", …)
// Chromium shows the body as it came, so none is to be undone (n is 0, ok
// true) and the body is read as it came. ok is false when the answer
// cannot be read the one way every browser will show it: known encodings
// mixed with others ("gzip, identity": Chromium shows it as it came,
// Firefox undoes the gzip) or more than maxCodings of them (browsers undo
// them all).
func parseCodings(vs []string) (cs [maxCodings]coding, n int, ok bool) {
	other, tooMany := false, false
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.Trim(t, " \t")
			var c coding
			switch {
			case t == "":
				continue
			case strings.EqualFold(t, "gzip") || strings.EqualFold(t, "x-gzip"):
				c = codingGzip
			case strings.EqualFold(t, "deflate"):
				c = codingDeflate
			case strings.EqualFold(t, "br"):
				c = codingBr
			case strings.EqualFold(t, "zstd"):
				c = codingZstd
			default:
				other = true
				continue
			}
			if n == maxCodings {
				tooMany = true
				continue
			}
			cs[n] = c
			n++
		}
	}
	switch {
	case other && n == 0:
		return cs, 0, true // shown as it came
	case other || tooMany:
		return cs, 0, false
	}
	return cs, n, true
}

// decode makes a compressed answer that is to be scored (by its type, or
// sniffed) readable before its header is relayed: the body is decompressed
// on its way, as the browser would (gzip, deflate, br, zstd, and up to
// maxCodings of them stacked, the last applied undone first, each through
// a pooled decoder that streams), and sent without Content-Encoding and
// Content-Length. It reports whether it did. An encoding it cannot undo
// is left as it came, as is a gzip answer that is not gzip after all; both
// then pass unscored (WriteHeader). A stream that breaks (a corrupt or
// truncated one, a Zstandard window over 8 MiB) ends the answer there, as
// it ends in the browser: nothing undecoded goes on. An answer
// parseCodings cannot read as the browser will (known encodings mixed
// with unknown ones, more than maxCodings) is not passed on at all: its
// header goes without Content-Encoding and its body ends at once,
// counted as content-unscored. One naming only encodings browsers do not
// know is left to be read as it came. A nil check does nothing.
func (c *contentWriter) decode(resp *http.Response) bool {
	if c == nil || resp.Body == nil || resp.Body == http.NoBody || !bodyAllowed(c.r.Method, resp.StatusCode) {
		return false
	}
	vs := resp.Header["Content-Encoding"]
	if len(vs) == 0 {
		return false
	}
	cs, n, ok := parseCodings(vs)
	if ok && n == 0 {
		return false
	}
	if ct := resp.Header.Get("Content-Type"); kindOf(ct, c.ai) == kindNone && !(c.doc && sniffable(ct, resp.Header)) {
		return false
	}
	db := &decodedBody{orig: resp.Body}
	resp.Body = db
	if !ok {
		c.s.metrics.requests.WithLabelValues(c.info.source(), "content-unscored").Inc()
		db.err = errUnreadable
		n = 0
	}
	if slices.ContainsFunc(cs[:n], func(c coding) bool { return c == codingBr || c == codingZstd }) {
		// Their windows are large: wait for one of maxBigDecoders.
		select {
		case bigDecoders <- struct{}{}:
			db.big = true
		case <-c.r.Context().Done():
			db.err = c.r.Context().Err() // the client went away: the answer ends
			n = 0
		}
	}
	var src io.Reader = db.orig
	for i := n - 1; i >= 0; i-- {
		l := &db.layers[db.n]
		db.n++
		l.c = cs[i]
		var err error
		switch cs[i] {
		case codingGzip:
			l.buf = decodeBuf(src)
			if i == n-1 {
				if m, err := l.buf.Peek(2); err != nil || m[0] != 0x1f || m[1] != 0x8b {
					db.r = l.buf
					return false // not gzip after all: passed on as it came (through buf), unscored
				}
			}
			zr, _ := gzipReaders.Get().(*gzip.Reader)
			if zr == nil {
				zr, err = gzip.NewReader(l.buf)
			} else {
				err = zr.Reset(l.buf)
			}
			if zr != nil {
				l.dec = zr
			}
		case codingDeflate:
			l.buf = decodeBuf(src)
			l.dec, l.zlib, err = deflateReader(l.buf)
		case codingBr:
			brr := brReaders.Get().(*brotli.Reader) // the pool makes one when empty
			err = brr.Reset(src)
			l.dec = brr
		case codingZstd:
			var zd *zstd.Decoder
			if zd, _ = zstdReaders.Get().(*zstd.Decoder); zd != nil {
				err = zd.Reset(src)
			} else {
				zd, err = zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow))
			}
			if zd != nil {
				l.dec = zd
			}
		}
		if err != nil {
			db.err = err // a broken header: the answer ends here
			break
		}
		src = l.dec
	}
	db.r = src
	delete(resp.Header, "Content-Encoding")
	delete(resp.Header, "Content-Length")
	resp.ContentLength = -1
	return true
}

// deflateReader reads the deflate coding: zlib-wrapped as the standard
// says, or raw deflate, which browsers accept too (told apart by the zlib
// header, as they do).
func deflateReader(b *bufio.Reader) (io.Reader, bool, error) {
	if m, err := b.Peek(2); err == nil && m[0]&0x0f == 8 && m[0]>>4 <= 7 && (uint(m[0])<<8|uint(m[1]))%31 == 0 {
		if zr, ok := zlibReaders.Get().(zlibReader); ok {
			return zr, true, zr.Reset(b, nil)
		}
		zr, err := zlib.NewReader(b)
		if err != nil {
			return nil, true, err
		}
		return zr, true, nil
	}
	if fr, ok := flateReaders.Get().(flateReader); ok {
		return fr, false, fr.Reset(b, nil)
	}
	return flate.NewReader(b), false, nil
}

// zlibReader and flateReader are what zlib.NewReader and flate.NewReader
// return: readers that can be reset for the next answer.
type (
	zlibReader interface {
		io.Reader
		zlib.Resetter
	}
	flateReader interface {
		io.Reader
		flate.Resetter
	}
)

func decodeBuf(src io.Reader) *bufio.Reader {
	b := decodeBufs.Get().(*bufio.Reader)
	b.Reset(src)
	return b
}

// maxBigDecoders bounds the answers decoded from Brotli or Zstandard at
// once: each may need a window of up to 16 MiB (Brotli) plus 8 MiB
// (Zstandard), so at most about 400 MiB at work; another such answer waits
// for one of them to end, or ends with its request. Sites send these only
// when they ignore the Accept-Encoding the check strips, so few answers
// ever wait.
const maxBigDecoders = 16

var bigDecoders = make(chan struct{}, maxBigDecoders)

// errUnreadable ends an answer whose encodings the check cannot read as
// the browser would (parseCodings).
var errUnreadable = errors.New("content check: the answer's Content-Encoding cannot be read as a browser reads it")

// The decoders, pooled: a Brotli reader keeps its ring buffer (up to
// 16 MiB) and a Zstandard decoder its window and tables from one answer
// to the next.
var (
	gzipReaders  sync.Pool // *gzip.Reader
	zlibReaders  sync.Pool // zlibReader
	flateReaders sync.Pool // flateReader
	zstdReaders  sync.Pool // *zstd.Decoder
	brReaders    = sync.Pool{New: func() any { return brotli.NewReader(nil) }}
	decodeBufs   = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
)

// decodedBody decompresses a site's answer through its layers (the last
// encoding applied first), or passes on one that turned out not to be
// gzip (r is then the buffer).
type decodedBody struct {
	r      io.Reader // the innermost layer: what Read reads
	err    error
	big    bool // holds one of bigDecoders until Close
	orig   io.ReadCloser
	n      int
	layers [maxCodings]decodeLayer
}

// decodeLayer is one encoding undone: its decoder and, for gzip and
// deflate, the buffer it reads through.
type decodeLayer struct {
	c    coding
	buf  *bufio.Reader
	dec  io.Reader
	zlib bool // deflate: zlib-wrapped
}

func (b *decodedBody) Read(p []byte) (int, error) {
	switch {
	case b.err != nil:
		return 0, b.err
	case b.r != nil:
		return b.r.Read(p)
	}
	return 0, io.EOF
}

func (b *decodedBody) Close() error {
	for i := range b.layers[:b.n] {
		l := &b.layers[i]
		if l.dec != nil {
			switch l.c {
			case codingGzip:
				gzipReaders.Put(l.dec)
			case codingDeflate:
				if l.zlib {
					zlibReaders.Put(l.dec)
				} else {
					flateReaders.Put(l.dec)
				}
			case codingBr:
				if brr, ok := l.dec.(*brotli.Reader); ok {
					_ = brr.Reset(nil) // let go of the site's body
					brReaders.Put(brr)
				}
			case codingZstd:
				if zd, ok := l.dec.(*zstd.Decoder); ok {
					_ = zd.Reset(nil)
					zstdReaders.Put(zd)
				}
			}
		}
		if l.buf != nil {
			l.buf.Reset(nil)
			decodeBufs.Put(l.buf)
		}
		*l = decodeLayer{}
	}
	b.n, b.r = 0, nil
	if b.big {
		b.big = false
		<-bigDecoders
	}
	b.err = io.ErrUnexpectedEOF
	return b.orig.Close()
}

func (c *contentWriter) Header() http.Header { return c.w.Header() }

// WriteHeader decides from the answer's header whether its body is
// scored: HTML (text/html, application/xhtml+xml), text/plain, and for AI
// chat services JSON (application/json, application/x-ndjson) and event
// streams. Anything else (images, video, binary, and any body still
// encoded: an encoding decode could not undo) passes untouched. An answer
// without a type, or with one of the types a browser sniffs (sniffable),
// to a page's request (rendered), waits for its first bytes: the header
// is held until sniffed decides. A
// scored body loses its Content-Length, since the block notice may change
// its length: it is sent chunked (HTTP/1.1) or framed by HTTP/2.
func (c *contentWriter) WriteHeader(code int) {
	if c.started {
		return
	}
	c.started = true
	h := c.w.Header()
	if bodyAllowed(c.r.Method, code) {
		ct := h.Get("Content-Type")
		c.kind = kindOf(ct, c.ai)
		c.sniff = c.kind == kindNone && c.doc && sniffable(ct, h)
	}
	if c.kind != kindNone || c.sniff {
		if _, n, ok := parseCodings(h["Content-Encoding"]); !ok || n > 0 {
			c.kind, c.sniff = kindNone, false // still encoded: not read
			c.s.metrics.requests.WithLabelValues(c.info.source(), "content-unscored").Inc()
		}
	}
	if c.sniff {
		c.code = code
		return
	}
	if c.kind == kindHTML || c.kind == kindText {
		c.bom, c.cs, c.code = true, charsetOf(h.Get("Content-Type")), code
		return
	}
	c.begin(code)
}

// begin starts the scorer for a scored kind and sends the header on.
func (c *contentWriter) begin(code int) {
	if c.kind != kindNone {
		delete(c.w.Header(), "Content-Length")
		c.sc = c.wl.Get()
		c.sc.Begin()
	}
	c.w.WriteHeader(code)
}

// sniffLen is how much of an untyped answer is held to sniff its type: as
// much as browsers read for it.
const sniffLen = 512

// sniffable reports whether a browser sniffs an answer with this
// Content-Type (the WHATWG MIME Sniffing Standard's "unknown" types: none,
// one that is no type/subtype, unknown/unknown, application/unknown, */*)
// and headers (no X-Content-Type-Options: nosniff).
func sniffable(ct string, h http.Header) bool {
	essence, _, _ := strings.Cut(ct, ";")
	essence = strings.Trim(essence, " \t")
	typ, sub, slash := strings.Cut(essence, "/")
	if essence != "" && slash && typ != "" && sub != "" && !strings.EqualFold(essence, "unknown/unknown") &&
		!strings.EqualFold(essence, "application/unknown") && essence != "*/*" {
		return false
	}
	if vs := h["X-Content-Type-Options"]; len(vs) > 0 {
		first, _, _ := strings.Cut(vs[0], ",")
		if strings.EqualFold(strings.Trim(first, " \t"), "nosniff") {
			return false
		}
	}
	return true
}

// sniffed ends the hold of an untyped answer: its first bytes (up to
// sniffLen; fewer if the body ended or was flushed first) are classified
// as the browser classifies them (net/http.DetectContentType implements
// the standard's rules for an unknown type), the header goes on unchanged
// (the browser sniffs the same bytes), and the bytes held are scored and
// written as any piece of an HTML or text answer.
func (c *contentWriter) sniffed() error {
	c.sniff = false
	held := c.held[:c.nheld]
	if len(held) > 0 {
		switch ct := http.DetectContentType(held); {
		case hasPrefixFold(ct, "text/html"):
			c.kind = kindHTML
		case hasPrefixFold(ct, "text/plain"):
			c.kind = kindText
		}
	}
	strip := 0
	if c.kind == kindHTML || c.kind == kindText {
		strip, _ = c.decide(held, true)
	}
	return c.release(strip, nil)
}

// kindOf reads a Content-Type without allocating.
func kindOf(ct string, ai bool) contentKind {
	switch {
	case hasPrefixFold(ct, "text/html"), hasPrefixFold(ct, "application/xhtml+xml"):
		return kindHTML
	case hasPrefixFold(ct, "text/plain"):
		return kindText
	case ai && (hasPrefixFold(ct, "application/json") || hasPrefixFold(ct, "text/event-stream") || hasPrefixFold(ct, "application/x-ndjson")):
		return kindJSON
	}
	return kindNone
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// Write scans p (up to the size cap) and writes it on, unless the page
// reached a block threshold in p: then the block notice is written
// instead (its event durable first) and errContentBlocked returned.
func (c *contentWriter) Write(p []byte) (int, error) {
	if c.blocked {
		return 0, errContentBlocked
	}
	if !c.started {
		c.WriteHeader(http.StatusOK)
	}
	if c.sniff {
		k := copy(c.held[c.nheld:], p)
		c.nheld += k
		if c.nheld < sniffLen {
			return len(p), nil
		}
		if err := c.sniffed(); err != nil {
			return 0, err
		}
		m, err := c.body(p[k:])
		return k + m, err
	}
	if c.bom {
		return c.bomWrite(p)
	}
	return c.body(p)
}

// write is Write once the answer's kind is known.
func (c *contentWriter) write(p []byte) (int, error) {
	if c.blocked {
		return 0, errContentBlocked
	}
	if c.kind == kindNone {
		return c.w.Write(p)
	}
	if c.left <= 0 {
		c.cutOff()
		return c.w.Write(p)
	}
	q := p
	if int64(len(q)) > c.left {
		q = q[:c.left]
		c.cutOff()
	}
	c.left -= int64(len(q))
	c.scored += int64(len(q))
	before := c.x // to close what the client saw, if this piece is not sent
	c.scan(q)
	if t, ok := c.over(true); ok {
		c.block(t, &before)
		return 0, errContentBlocked
	}
	return c.w.Write(p)
}

// cutOff counts, once, an answer whose rest passes unscored past
// proxy.content_check.max_bytes (content-cut): IT can see how often pages
// are longer than what is read, and raise it.
func (c *contentWriter) cutOff() {
	if !c.cut {
		c.cut = true
		c.s.metrics.requests.WithLabelValues(c.info.source(), "content-cut").Inc()
	}
}

// ReadFrom copies a body through a pooled buffer (io.Copy would allocate
// 32 KiB per answer).
func (c *contentWriter) ReadFrom(src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			m, werr := c.Write(buf[:k])
			n += int64(m)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Flush sends what was written. An untyped answer being held is sniffed
// on what has come so far; with nothing yet, there is nothing to send.
func (c *contentWriter) Flush() {
	if c.sniff {
		if c.nheld == 0 || c.nheld == 1 && (c.held[0] == 0xfe || c.held[0] == 0xff) {
			return // nothing yet, or half a UTF-16 byte order mark: wait, as the browser does
		}
		_ = c.sniffed() // blocked: Write says so next
	}
	if c.bom {
		return // the start of a byte order mark, or nothing yet: wait, as the browser does
	}
	c.w.Flush()
}

func (c *contentWriter) Unwrap() http.ResponseWriter { return c.w }

// over reports the theme whose score reached its block threshold (block)
// or report threshold (!block), the most severe if several did.
func (c *contentWriter) over(block bool) (watchlist.Theme, bool) {
	scores := c.sc.Scores()
	best, found := watchlist.Theme(0), false
	for t := watchlist.Theme(0); t < watchlist.NumThemes; t++ {
		set := c.wl.Settings(t)
		limit := set.ContentReport
		if block {
			limit = set.ContentBlock
		}
		if limit <= 0 || scores[t] < limit {
			continue
		}
		if !found || set.Severity > c.wl.Settings(best).Severity ||
			set.Severity == c.wl.Settings(best).Severity && scores[t] > scores[best] {
			best, found = t, true
		}
	}
	return best, found
}

// finish ends the check once the answer has been relayed (or abandoned):
// a page that ended over a theme's report threshold, unblocked, is a flag
// event. Unless its search term already was flagged for the same theme
// (a search results page names what was searched for).
func (c *contentWriter) finish() (blocked bool) {
	if c.sniff {
		_ = c.sniffed() // the body ended within sniffLen
	}
	if c.bom {
		_ = c.bomEnd() // the body ended within a byte order mark's length
	}
	if c.u16 != nil {
		if !c.blocked {
			_ = c.u16.Close() // a broken last code unit: U+FFFD, as in the browser
		}
		c.u16 = nil
	}
	blocked = c.blocked
	c.info.content = nil
	if c.sc != nil {
		if !c.blocked {
			if c.kind == kindHTML {
				c.x.endText(c.sc) // a reference the page ends in
			}
			c.sc.Result() // the last word ends the text
			if t, ok := c.over(false); ok {
				if h := c.info.search; h == nil || !h.flagged(t) {
					_ = c.event(t, "flag")
				}
			}
		}
		c.wl.Put(c.sc)
	}
	*c = contentWriter{}
	contentWriters.Put(c)
	return blocked
}

// event records the content check's event for theme t: a flag (the page
// went through; durable before its end when high or critical) or a block
// (durable before the notice is written).
func (c *contentWriter) event(t watchlist.Theme, action string) (ref string) {
	info := c.info
	info.url = eventURL(c.r.URL)
	src := info.source()
	c.s.metrics.requests.WithLabelValues(src, "content-"+action).Inc()
	ev := c.s.newEvent(info, src, action, c.w.status, c.w.n, "content", "")
	set := c.wl.Settings(t)
	ev.Category = t.Category()
	ev.Severity, ev.Route = set.Severity, bl.RouteDSL
	ev.List, ev.Entry = "watchlist:"+t.String(), c.phrases(t)
	ev.Restricted, ev.Bypass, ev.Probe = false, false, false
	if action == "block" {
		ev.Ref = newRef()
	}
	seq, stored := c.s.events.recordRef(ev) // a collapsed repeat: the first event's reference
	if action == "block" || ev.Severity >= bl.SeverityHigh {
		// A flag of high or critical severity (an alert) is durable before
		// the page's end goes (finish runs before the handler returns).
		c.s.events.durable(seq)
	}
	return stored
}

// phrases lists the entries of theme t found so far ("kill myself, suicide").
func (c *contentWriter) phrases(t watchlist.Theme) string {
	r := c.sc.Result()
	var b strings.Builder
	for _, m := range r.Matches {
		if m.Theme != t || m.Weight <= 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		if b.Len() > 400 {
			b.WriteString("…")
			break
		}
		b.WriteString(m.Phrase)
	}
	return b.String()
}

// block ends the answer with the block notice for theme t: for HTML, what
// the client's parser has open (a tag, a quoted attribute, a comment, a
// script or style) is closed as before says, then the notice covers the
// page; for text, a paragraph saying so. The event is durable first.
func (c *contentWriter) block(t watchlist.Theme, before *textState) {
	c.blocked = true
	ref := c.event(t, "block")
	cfg := c.cfg
	nd := noticeData{
		School: cfg.School.Name, Host: c.info.host, URL: truncate(formValue(eventURL(c.r.URL)), 200), Title: t.Title(),
		When: c.s.now().In(cfg.Location()).Format(whenLayout), Who: who(&c.info.dec, c.info.user, c.info.client),
		Ref: ref, Contact: cfg.Proxy.BlockPage.Contact, Action: reportPath, SelfHarm: t == watchlist.SelfHarm,
		Category: t.Category(),
	}
	nd.Token = c.s.reports.key.token(c.info.client, ref, nd.URL, nd.Category)
	nd.Rule = defaultRules[bl.KindInappropriate]
	if r := cfg.Proxy.BlockPage.Rules[t.Category()]; r != "" {
		nd.Rule = r
	}
	var b strings.Builder
	if c.kind == kindHTML {
		nd.Close = template.HTML(before.closer())
		_ = noticeTmpl.Execute(&b, nd)
	} else {
		_ = textNoticeTmpl.Execute(&b, nd)
	}
	_, _ = io.WriteString(c.w, b.String())
	c.w.Flush()
}

type noticeData struct {
	Close                                                                            template.HTML
	School, Host, URL, Title, Rule, When, Who, Ref, Contact, Action, Category, Token string
	SelfHarm                                                                         bool
}

// noticeTmpl is the HTML block notice: styled inline (the page's own
// style sheet is not ours), covering the window, and hiding the rest of
// the page already shown.
var noticeTmpl = template.Must(template.New("notice").Parse(`{{.Close}}<div id="gatehouse-block" role="alert" lang="en-GB" style="all:initial;display:block;position:fixed;top:0;left:0;right:0;bottom:0;z-index:2147483647;overflow:auto;background:#f3f4f6;color:#111;font:1.1rem/1.5 system-ui,-apple-system,'Segoe UI',Arial,sans-serif">
<div style="max-width:38rem;margin:0 auto;padding:1.5rem 1rem">
<p style="font-weight:600;color:#1f3a5f;margin:0">{{.School}}</p>
<h1 style="font-size:1.6rem;margin:.2rem 0 1rem">The rest of this page is blocked</h1>
<p>The school's web filter stopped the rest of this page on <strong>{{.Host}}</strong> because it contains content about <strong>{{.Title}}</strong>.</p>
<p>{{.Rule}}</p>
{{if .SelfHarm}}<p>If you are finding things hard, talk to a member of staff you trust, or call Childline free on 0800 1111.</p>
{{end}}<p>Address: {{.URL}}<br>Time: {{.When}}<br>Computer or user: {{.Who}}<br>Reference: <strong>{{.Ref}}</strong></p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="ref" value="{{.Ref}}"><input type="hidden" name="url" value="{{.URL}}"><input type="hidden" name="category" value="{{.Category}}"><input type="hidden" name="t" value="{{.Token}}">
<label for="gatehouse-why" style="display:block;font-weight:600">Is this a mistake? Say why you need this page:</label>
<textarea id="gatehouse-why" name="why" maxlength="1000" required style="width:100%;min-height:5rem"></textarea>
<button type="submit">Report a mistake</button>
</form>
{{if .Contact}}<p>For help, contact {{.Contact}}.</p>{{end}}
</div></div><style>body *{visibility:hidden!important}#gatehouse-block,#gatehouse-block *{visibility:visible!important}</style>
`))

// textNoticeTmpl ends a blocked plain-text or JSON answer (an AI app shows
// it as an error or a cut-off answer).
var textNoticeTmpl = template.Must(template.New("text").Parse(`

[{{.School}}'s web filter blocked the rest of this answer from {{.Host}}: it contains content about {{.Title}}. Reference {{.Ref}}.{{if .Contact}} For help, contact {{.Contact}}.{{end}}]
`))

// scan feeds the visible text of p to the scorer.
func (c *contentWriter) scan(p []byte) {
	switch c.kind {
	case kindHTML:
		c.x.html(c.sc, p)
	case kindJSON:
		c.x.json(c.sc, p)
	default:
		c.sc.Feed(p)
	}
}

// textState is the text extractor's state between pieces of a body: a
// few bytes, no copy of the page. HTML: text is scored; tags, attribute
// values, comments and script and style contents are not; the common
// character references are decoded; a tag breaks words unless it is an
// inline one (b, i, span, a, …), so "sui<b>cide</b>" is one word. JSON:
// the string values of text fields (content, text, delta, parts, …) are
// scored, joined as they stream.
type textState struct {
	st    uint8
	quote byte     // the open attribute quote
	end   bool     // the tag is an end tag
	name  [10]byte // tag name, lower case (truncated)
	nlen  uint8
	raw   uint8    // script/style: bytes of "</script" matched so far
	rawOf uint8    // 1 script, 2 style
	dash  uint8    // comment: where in its end (cText, cDash, …)
	ent   [10]byte // an unfinished named character reference
	elen  uint8
	num   rune // a numeric reference's value so far (saturated past U+10FFFF)
	ndig  uint8
	// JSON
	esc    uint8 // 0 none; 1 after '\\'; 2..5 reading \uXXXX digits
	uni    rune
	hi     rune // a \uXXXX high surrogate waiting for its low half
	key    [12]byte
	klen   uint8
	inKey  bool
	depth  uint8
	objs   uint64 // bit d set: depth d is an object
	colon  bool   // a ':' since the last key: the next string is a value
	textOK bool   // the current value belongs to a text field
}

// HTML tokenizer states.
const (
	hData uint8 = iota
	hEntity
	hTagOpen    // after '<'
	hTagName    // reading the name
	hTag        // inside a tag, after its name
	hAttrQuote  // inside a quoted attribute value
	hMarkup     // after "<!"
	hComment    // inside <!-- -->
	hBogus      // <!DOCTYPE …>, <?xml …?>: up to '>'
	hRaw        // script or style contents
	hMarkupDash // after "<!-"
	// The attributes, as the HTML standard's tokenizer reads them: a
	// quote starts a quoted value only where a value starts (after '='),
	// and elsewhere (in a name, in an unquoted value) is part of it, so
	// the tag still ends at its '>'. hTag is the before-attribute-name
	// state (and after a quoted value).
	hAttrName    // in an attribute's name
	hAfterName   // after a name: '=' or the next name
	hBeforeValue // after '='
	hUnquoted    // in an unquoted value
	// Numeric character references, as the browser reads them: after
	// "&#", any number of digits (leading zeros too); the first byte that
	// is no digit ends the reference, and is read as text unless it is
	// its ';'.
	hNumRef // after "&#"
	hDecRef // "&#" and decimal digits
	hHexRef // "&#x" and hexadecimal digits
)

// Comment states (textState.dash), as the HTML standard's tokenizer has
// them, so a comment ends where the browser ends it: "<!-->" and "<!--->"
// are whole comments and "--!>" closes one as "-->" does. From cEnd on,
// '>' closes the comment.
const (
	cText      uint8 = iota // comment state
	cDash                   // comment end dash state: after one '-'
	cEnd                    // comment end state: after "--"
	cBang                   // comment end bang state: after "--!"
	cStart                  // comment start state: just after "<!--"
	cStartDash              // comment start dash state: after "<!---"
)

// commentNext is the comment state after byte b in state st (b is not a
// '>' that closes the comment).
func commentNext(st, b byte) uint8 {
	switch b {
	case '-':
		switch st {
		case cText, cBang:
			return cDash
		case cStart:
			return cStartDash
		}
		return cEnd // after "--", "---", "<!---"
	case '!':
		if st == cEnd {
			return cBang
		}
	}
	return cText
}

// JSON states.
const (
	jOut uint8 = iota
	jString
)

var rawEnds = [3]string{"", "</script", "</style"}

func (x *textState) html(sc *watchlist.Scorer, p []byte) {
	start := -1 // start of the current run of text in p
	flush := func(i int) {
		if start >= 0 {
			sc.Feed(p[start:i])
			start = -1
		}
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch x.st {
		case hData:
			if b != '<' && b != '&' {
				// Skip the run of text to the next '<' or '&' at once.
				if start < 0 {
					start = i
				}
				j := bytes.IndexByte(p[i:], '<')
				if j < 0 {
					j = len(p) - i
				}
				if k := bytes.IndexByte(p[i:i+j], '&'); k >= 0 {
					j = k
				}
				i += j - 1
				continue
			}
			switch b {
			case '<':
				flush(i)
				x.st = hTagOpen
			case '&':
				flush(i)
				x.st, x.elen = hEntity, 0
			default:
				if start < 0 {
					start = i
				}
			}
		case hEntity:
			if b == '#' && x.elen == 0 {
				x.st, x.num, x.ndig = hNumRef, 0, 0
				continue
			}
			if b == ';' || int(x.elen) == len(x.ent) || !(isAlnum(b) || b == '#') {
				x.entity(sc)
				x.st = hData
				if b != ';' {
					i-- // not part of the reference: read it again as text
				}
				continue
			}
			x.ent[x.elen] = b
			x.elen++
		case hNumRef:
			x.st = hDecRef
			if b == 'x' || b == 'X' {
				x.st = hHexRef
				continue
			}
			i-- // the first digit, or no reference
		case hDecRef, hHexRef:
			v := rune(-1)
			switch {
			case b >= '0' && b <= '9':
				v = rune(b - '0')
			case x.st == hHexRef && b|0x20 >= 'a' && b|0x20 <= 'f':
				v = rune(b|0x20-'a') + 10
			}
			if v >= 0 {
				base := rune(10)
				if x.st == hHexRef {
					base = 16
				}
				x.num = min(x.num*base+v, utf8.MaxRune+1)
				x.ndig = 1
				continue
			}
			x.numRef(sc)
			x.st = hData
			if b != ';' || x.ndig == 0 {
				i-- // not part of the reference: read it again as text
			}
		case hTagOpen:
			switch {
			case b == '!':
				x.st = hMarkup
			case b == '/':
				x.st, x.end, x.nlen = hTagName, true, 0
			case b == '?':
				x.st = hBogus
			case isAlpha(b):
				x.st, x.end, x.nlen = hTagName, false, 0
				x.name[0], x.nlen = b|0x20, 1
			default: // a lone '<' is text
				sc.Break()
				x.st = hData
				i--
			}
		case hTagName:
			switch {
			case b == '>':
				x.tagEnd(sc)
			case b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '/':
				x.st = hTag
			default:
				if int(x.nlen) < len(x.name) {
					x.name[x.nlen] = b | 0x20
				}
				if x.nlen < 255 {
					x.nlen++
				}
			}
		case hTag, hAttrName, hAfterName:
			switch b {
			case '>':
				x.tagEnd(sc)
			case ' ', '\t', '\n', '\r', '\f':
				if x.st == hAttrName {
					x.st = hAfterName
				}
			case '/':
				x.st = hTag // self-closing, or read again as before a name
			case '=':
				if x.st == hTag {
					x.st = hAttrName // a name that starts with '='
				} else {
					x.st = hBeforeValue
				}
			default:
				x.st = hAttrName
			}
		case hBeforeValue:
			switch b {
			case '>':
				x.tagEnd(sc)
			case ' ', '\t', '\n', '\r', '\f':
			case '"', '\'':
				x.st, x.quote = hAttrQuote, b
			default:
				x.st = hUnquoted
			}
		case hUnquoted:
			switch b {
			case '>':
				x.tagEnd(sc)
			case ' ', '\t', '\n', '\r', '\f':
				x.st = hTag
			}
		case hAttrQuote:
			j := bytes.IndexByte(p[i:], x.quote)
			if j < 0 {
				i = len(p)
				continue
			}
			i += j
			x.st = hTag
		case hMarkup:
			if b == '-' {
				x.st = hMarkupDash
			} else {
				x.st = hBogus
				i--
			}
		case hMarkupDash:
			if b == '-' {
				x.st, x.dash = hComment, cStart
			} else {
				x.st = hBogus
				i--
			}
		case hComment:
			if b == '>' && x.dash >= cEnd {
				x.st = hData
				sc.Break()
				continue
			}
			x.dash = commentNext(x.dash, b)
		case hBogus:
			if b == '>' {
				x.st = hData
				sc.Break()
			}
		case hRaw:
			if x.raw == 0 && b != '<' {
				j := bytes.IndexByte(p[i:], '<')
				if j < 0 {
					i = len(p)
					continue
				}
				i += j
				b = '<'
			}
			end := rawEnds[x.rawOf]
			switch {
			case lower(b) == end[x.raw]:
				x.raw++
				if int(x.raw) == len(end) {
					x.st, x.end, x.nlen = hTag, true, 0 // the rest of the end tag
				}
			case b == '<':
				x.raw = 1
			default:
				x.raw = 0
			}
		}
	}
	flush(len(p))
}

// tagEnd is the '>' of a tag.
func (x *textState) tagEnd(sc *watchlist.Scorer) {
	x.st = hData
	n := x.name[:min(int(x.nlen), len(x.name))]
	if int(x.nlen) > len(x.name) {
		n = nil
	}
	if !x.end {
		switch string(n) { // no allocation: the compiler compares in place
		case "script":
			x.st, x.rawOf, x.raw = hRaw, 1, 0
		case "style":
			x.st, x.rawOf, x.raw = hRaw, 2, 0
		}
	}
	if !inlineTag(n) {
		sc.Break()
	}
	x.nlen = 0
}

// inlineTag reports whether a tag leaves a word whole.
func inlineTag(n []byte) bool {
	switch string(n) {
	case "a", "b", "i", "u", "s", "em", "strong", "span", "small", "sub", "sup", "mark", "font", "abbr", "code", "q", "cite", "del", "ins", "wbr", "bdi", "bdo", "kbd", "samp", "var", "tt", "big":
		return true
	}
	return false
}

// endText ends the HTML text at the end of the body: a character
// reference left open is read, as the browser reads it at the end.
func (x *textState) endText(sc *watchlist.Scorer) {
	switch x.st {
	case hEntity:
		x.entity(sc)
	case hDecRef, hHexRef:
		x.numRef(sc)
	}
	x.st = hData
}

// numRef ends a numeric character reference: its character (U+FFFD for
// 0, a surrogate or past U+10FFFF, as in the browser; EncodeRune makes
// them so), or, with no digit ("&#;", "&#x"), the text "&#", a word
// break.
func (x *textState) numRef(sc *watchlist.Scorer) {
	if x.ndig == 0 {
		sc.Break()
		if x.st == hHexRef { // "&#xyz": the x is text too
			b := [1]byte{'x'}
			sc.Feed(b[:])
		}
		return
	}
	r := x.num
	if r == 0 {
		r = utf8.RuneError
	}
	var b [utf8.UTFMax]byte
	n := utf8.EncodeRune(b[:], r)
	sc.Feed(b[:n])
}

// entity decodes the named character reference in x.ent (without & and ;).
func (x *textState) entity(sc *watchlist.Scorer) {
	e := x.ent[:x.elen]
	x.elen = 0
	var b [1]byte
	switch string(e) {
	case "amp":
		b[0] = '&'
	case "apos", "rsquo", "lsquo":
		return // an apostrophe: dropped, as the normaliser drops it
	case "shy", "zwj", "zwnj":
		return // invisible: the word goes on
	default: // lt, gt, quot, nbsp and the rest: a word break
		sc.Break()
		return
	}
	sc.Feed(b[:])
}

// closer is what closes whatever the client's HTML parser has open at
// this state, so that the notice after it is read as markup.
func (x *textState) closer() string {
	switch x.st {
	case hAttrQuote:
		if x.quote == '\'' {
			return "'>"
		}
		return `">`
	case hTagName, hTag, hAttrName, hAfterName, hBeforeValue, hUnquoted, hBogus:
		return ">"
	case hComment, hMarkup, hMarkupDash:
		return "-->"
	case hRaw:
		return rawEnds[x.rawOf] + ">"
	}
	return ""
}

// textKeys are the JSON fields whose string values carry the words of an
// AI chat (OpenAI's content, Anthropic's text and delta, Gemini's text,
// ChatGPT's parts and v, …).
func textKey(k []byte) bool {
	switch string(k) {
	case "content", "text", "delta", "parts", "message", "response", "answer", "completion", "output", "prompt", "v", "query":
		return true
	}
	return false
}

// json feeds the string values of text fields in p.
func (x *textState) json(sc *watchlist.Scorer, p []byte) {
	start := -1
	flush := func(i int) {
		if start >= 0 {
			sc.Feed(p[start:i])
			start = -1
		}
	}
	for i := 0; i < len(p); i++ {
		b := p[i]
		if x.st == jOut {
			switch b {
			case '{':
				if x.depth < 63 {
					x.depth++
					x.objs |= 1 << x.depth
				}
				x.colon = false
			case '[':
				if x.depth < 63 {
					x.depth++
					x.objs &^= 1 << x.depth
				}
			case '}', ']':
				if x.depth > 0 {
					x.depth--
				}
				x.colon = false
			case ',':
				if x.objs&(1<<x.depth) != 0 {
					x.colon = false
				}
			case ':':
				x.colon = true
			case '"':
				x.st, x.esc = jString, 0
				x.inKey = x.objs&(1<<x.depth) != 0 && !x.colon
				if x.inKey {
					x.klen = 0
				} else {
					x.textOK = textKey(x.key[:min(int(x.klen), len(x.key))]) && int(x.klen) <= len(x.key)
				}
			}
			continue
		}
		// In a string.
		if x.hi != 0 && x.esc == 0 && b != '\\' || x.esc == 1 && b != 'u' {
			x.loneSurrogate(sc) // a high surrogate not followed by \uXXXX
		}
		if x.esc == 1 {
			x.esc = 0
			switch b {
			case 'u':
				x.esc, x.uni = 2, 0
			case 'n', 't', 'r', 'b', 'f':
				if x.textOK && !x.inKey {
					sc.Break()
				}
			default: // \" \\ \/
				if x.textOK && !x.inKey {
					sc.Feed(p[i : i+1])
				}
			}
			start = -1
			continue
		}
		if x.esc >= 2 {
			v := rune(-1)
			switch {
			case b >= '0' && b <= '9':
				v = rune(b - '0')
			case b|0x20 >= 'a' && b|0x20 <= 'f':
				v = rune(b|0x20-'a') + 10
			}
			if v < 0 {
				x.esc = 0
				i--
				continue
			}
			x.uni = x.uni*16 + v
			if x.esc++; x.esc == 6 {
				x.esc = 0
				r := x.uni
				switch {
				case r >= 0xd800 && r < 0xdc00: // a high surrogate: its pair's low half should follow
					x.loneSurrogate(sc)
					x.hi = r
					continue
				case x.hi != 0 && r >= 0xdc00 && r < 0xe000:
					r = utf16.DecodeRune(x.hi, r) // as JSON.parse joins them
					x.hi = 0
				case x.hi != 0:
					x.loneSurrogate(sc)
				}
				if x.textOK && !x.inKey {
					var u [utf8.UTFMax]byte
					n := utf8.EncodeRune(u[:], r) // a lone low surrogate: U+FFFD
					sc.Feed(u[:n])
				}
			}
			continue
		}
		switch b {
		case '\\':
			flush(i)
			x.esc = 1
		case '"':
			flush(i)
			x.st = jOut
			if x.inKey {
				x.colon = false
			}
		default:
			switch {
			case x.inKey:
				if int(x.klen) < len(x.key) {
					x.key[x.klen] = b
				}
				if x.klen < 255 {
					x.klen++
				}
			case x.textOK && start < 0:
				start = i
			}
		}
	}
	if x.st == jString && !x.inKey && x.textOK {
		flush(len(p))
	}
}

// loneSurrogate ends a high surrogate that no low one followed: U+FFFD,
// a word break.
func (x *textState) loneSurrogate(sc *watchlist.Scorer) {
	if x.hi != 0 {
		x.hi = 0
		if x.textOK && !x.inKey {
			sc.Break()
		}
	}
}

func isAlpha(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }
func isAlnum(b byte) bool { return isAlpha(b) || b >= '0' && b <= '9' }
func lower(b byte) byte {
	if b >= 'A' && b <= 'Z' {
		return b | 0x20
	}
	return b
}

// textEnc is how a scored answer's bytes are read: as they come (UTF-8,
// or a single-byte charset read byte by byte), or as UTF-16, which is
// transcoded to UTF-8 on its way (the browser reads it the same).
type textEnc uint8

const (
	encAsIs textEnc = iota
	encUTF16LE
	encUTF16BE
)

// charsetOf reads a Content-Type's charset parameter, as far as UTF-16
// goes: the WHATWG Encoding Standard's labels of UTF-16LE (utf-16 among
// them) and UTF-16BE. Without allocating.
func charsetOf(ct string) textEnc {
	_, params, more := cutParam(ct)
	for more {
		var p string
		p, params, more = cutParam(params)
		k, v, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.Trim(k, " \t"), "charset") {
			continue
		}
		v = strings.Trim(v, " \t")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		switch {
		case strings.EqualFold(v, "utf-16"), strings.EqualFold(v, "utf-16le"), strings.EqualFold(v, "unicode"),
			strings.EqualFold(v, "ucs-2"), strings.EqualFold(v, "csunicode"), strings.EqualFold(v, "iso-10646-ucs-2"),
			strings.EqualFold(v, "unicodefeff"):
			return encUTF16LE
		case strings.EqualFold(v, "utf-16be"), strings.EqualFold(v, "unicodefffe"):
			return encUTF16BE
		}
		return encAsIs // the first charset is the one read
	}
	return encAsIs
}

// cutParam cuts a Content-Type at its first ';' outside a quoted string:
// before is the type (or a parameter), after the parameters that follow;
// found is false when there is no such ';'.
func cutParam(s string) (before, after string, found bool) {
	quoted, esc := false, false
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case esc:
			esc = false
		case quoted && ch == '\\':
			esc = true
		case ch == '"':
			quoted = !quoted
		case ch == ';' && !quoted:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// bomPrefix reports whether b could still become a byte order mark.
func bomPrefix(b []byte) bool {
	switch len(b) {
	case 0:
		return true
	case 1:
		return b[0] == 0xfe || b[0] == 0xff || b[0] == 0xef
	case 2:
		return b[0] == 0xef && b[1] == 0xbb
	}
	return false
}

// decide reads the start of an HTML or text answer's body as browsers do
// (the Encoding Standard's BOM sniff, which wins over the header): a
// UTF-16 byte order mark says UTF-16 of its byte order, a UTF-8 one
// UTF-8; without one the charset decides. strip is the length of a
// UTF-16 BOM, dropped. Unless final, b that may yet be a BOM is not
// enough (ok false). For UTF-16 the transcoder is set up and the header
// (not yet sent) says charset=utf-8 instead.
func (c *contentWriter) decide(b []byte, final bool) (strip int, ok bool) {
	c.bom = false
	enc := c.cs
	switch {
	case len(b) >= 2 && b[0] == 0xfe && b[1] == 0xff:
		enc, strip = encUTF16BE, 2
	case len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe:
		enc, strip = encUTF16LE, 2
	case len(b) >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf:
		enc = encAsIs
	case !final && bomPrefix(b):
		c.bom = true
		return 0, false
	}
	if enc == encAsIs {
		return 0, true
	}
	order := unicode.LittleEndian
	if enc == encUTF16BE {
		order = unicode.BigEndian
	}
	// The writer keeps a code unit or surrogate pair cut by the end of a
	// piece for the next; a lone surrogate becomes U+FFFD.
	c.u16 = transform.NewWriter(scoredText{c}, unicode.UTF16(order, unicode.IgnoreBOM).NewDecoder())
	h := c.w.Header()
	if ct := h.Get("Content-Type"); kindOf(ct, c.ai) != kindNone {
		h.Set("Content-Type", withCharsetUTF8(ct))
	} else if c.kind == kindHTML { // sniffed: the type it was sniffed as, said
		h.Set("Content-Type", "text/html; charset=utf-8")
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	return strip, true
}

// bomWrite is Write while the header waits for the body's first bytes:
// a piece that decides goes on at once; the start of a BOM (at most two
// bytes) is held.
func (c *contentWriter) bomWrite(p []byte) (int, error) {
	if c.nheld == 0 {
		if strip, ok := c.decide(p, false); ok {
			c.begin(c.code)
			m, err := c.body(p[strip:])
			return strip + m, err
		}
	}
	k := copy(c.held[c.nheld:3], p)
	c.nheld += k
	strip, ok := c.decide(c.held[:c.nheld], false)
	if !ok {
		return len(p), nil // k == len(p): what may be a BOM is held
	}
	if err := c.release(strip, p[k:]); err != nil {
		return k, err
	}
	return len(p), nil // held, then the rest: all of p
}

// bomEnd sends what was held when the body ended (or was cut short)
// within a byte order mark's length.
func (c *contentWriter) bomEnd() error {
	strip, _ := c.decide(c.held[:c.nheld], true)
	return c.release(strip, nil)
}

// release ends a hold (sniffed, a byte order mark): it sends the header,
// then the bytes held (less a UTF-16 BOM's strip) and rest.
func (c *contentWriter) release(strip int, rest []byte) error {
	held := c.held[strip:c.nheld]
	c.nheld = 0
	c.begin(c.code)
	if len(held) > 0 {
		if _, err := c.body(held); err != nil {
			return err
		}
	}
	if len(rest) > 0 {
		_, err := c.body(rest)
		return err
	}
	return nil
}

// body is write for a body whose encoding is decided: UTF-16 is
// transcoded first.
func (c *contentWriter) body(p []byte) (int, error) {
	if c.u16 != nil {
		return c.u16.Write(p)
	}
	return c.write(p)
}

// scoredText is write as an io.Writer, for the UTF-16 decoder's output.
type scoredText struct{ c *contentWriter }

func (s scoredText) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return s.c.write(p)
}

// withCharsetUTF8 is a Content-Type with its charset parameters (outside
// quoted values) said as utf-8, the type and the other parameters as they
// came; one without a charset gets it.
func withCharsetUTF8(ct string) string {
	var b strings.Builder
	found := false
	typ, params, more := cutParam(ct)
	b.WriteString(typ)
	for more {
		var p string
		p, params, more = cutParam(params)
		b.WriteByte(';')
		if k, _, _ := strings.Cut(p, "="); strings.EqualFold(strings.Trim(k, " \t"), "charset") {
			found = true
			b.WriteString(" charset=utf-8")
			continue
		}
		b.WriteString(p)
	}
	if !found {
		b.WriteString("; charset=utf-8")
	}
	return b.String()
}
