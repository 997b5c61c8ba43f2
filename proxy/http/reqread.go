package httpproxy

// Reading request heads on the front. net/http's http.ReadRequest makes a
// new Request, URL, header map and value slice and a string per line for
// every request: about ten allocations and a kilobyte, most of a blocked
// request's garbage (a bypass tool retrying, a page full of blocked ad
// hosts), and under that load the collector ran six times a second. The
// common head is read here instead, into parts the connection reuses once
// a request has been answered by the proxy itself; anything else goes to
// http.ReadRequest, which sees the same bytes. FuzzReadRequest checks that
// the two read every head the fast path takes alike.

import (
	"bufio"
	"net/http"
	"net/textproto"
	"net/url"

	"golang.org/x/net/http/httpguts"
)

// reqReader reads the requests of one client connection.
type reqReader struct {
	req  *http.Request
	u    *url.URL
	h    http.Header
	vals []string
	// free: req, u, h and vals may be written over. The front sets it once
	// the handler has answered a request by itself (a block), when
	// nothing can still hold them; a forwarded request's parts may still
	// be in the transport's hands.
	free bool
}

// maxFastFields is the most header fields the fast path reads.
const maxFastFields = 32

// field is a header field's key and value as offsets in the head.
type field struct{ k0, k1, v0, v1 uint16 }

// read returns the next request on br.
func (rr *reqReader) read(br *bufio.Reader) (*http.Request, error) {
	buf, _ := br.Peek(br.Buffered())
	if n := headEnd(buf); n > 0 {
		if req := rr.parse(buf[:n]); req != nil {
			_, _ = br.Discard(n)
			return req, nil
		}
	}
	return http.ReadRequest(br)
}

// fast reports whether req was read by the fast path (its parts are the
// reader's).
func (rr *reqReader) fast(req *http.Request) bool { return req != nil && req == rr.req }

// headEnd returns the length of the head at the front of buf (through its
// blank line), or 0 when the head does not end within buf or is too long
// for the offsets.
func headEnd(buf []byte) int {
	for i := 3; i < len(buf) && i < 1<<16-1; i++ {
		if buf[i] == '\n' && buf[i-1] == '\r' && buf[i-2] == '\n' && buf[i-3] == '\r' {
			return i + 1
		}
	}
	return 0
}

// parse reads the head b (ending in CRLF CRLF) when it has the common
// shape, else returns nil. The shape: "GET", "HEAD" or "CONNECT" with
// "HTTP/1.1"; for GET and HEAD the target an absolute "http://" URL with
// a path, for CONNECT a host and port; host names of letters, digits,
// '.', '-' and '_' with an optional port; a path of characters a URL
// carries as they are; every field name a token followed at once by ':',
// every value printable ASCII or tabs; one Host field; no
// Content-Length, Transfer-Encoding, Trailer or Pragma field (a body, or
// rewriting by net/http) and no "close" in Connection. Nothing else.
func (rr *reqReader) parse(b []byte) *http.Request {
	// The request line.
	var method string
	switch {
	case hasPrefix(b, "GET "):
		method = http.MethodGet
	case hasPrefix(b, "HEAD "):
		method = http.MethodHead
	case hasPrefix(b, "CONNECT "):
		method = http.MethodConnect
	default:
		return nil
	}
	t0 := len(method) + 1
	t1 := t0
	for t1 < len(b) && b[t1] != ' ' && b[t1] != '\r' {
		t1++
	}
	if !hasPrefix(b[t1:], " HTTP/1.1\r\n") {
		return nil
	}
	target := b[t0:t1]
	var hostEnd, pathEnd int // in target
	if method == http.MethodConnect {
		hostEnd, pathEnd = len(target), len(target)
		if !authority(target, true) {
			return nil
		}
	} else {
		if !hasPrefix(target, "http://") {
			return nil
		}
		hostEnd = len("http://")
		for hostEnd < len(target) && target[hostEnd] != '/' {
			hostEnd++
		}
		if hostEnd == len(target) || !authority(target[len("http://"):hostEnd], false) {
			return nil
		}
		pathEnd = hostEnd
		for pathEnd < len(target) && target[pathEnd] != '?' {
			if !pathChar(target[pathEnd]) {
				return nil
			}
			pathEnd++
		}
		if pathEnd < len(target) {
			if pathEnd+1 == len(target) {
				return nil // "?" alone: ForceQuery
			}
			for _, c := range target[pathEnd+1:] {
				if c <= ' ' || c >= 0x7f || c == '#' {
					return nil
				}
			}
		}
	}

	// The fields.
	var fields [maxFastFields]field
	nf, hosts, conn := 0, 0, false
	i := t1 + len(" HTTP/1.1\r\n")
	for {
		e := i
		for b[e] != '\r' {
			e++
		}
		if b[e+1] != '\n' {
			return nil // a bare CR
		}
		if e == i {
			break // the blank line
		}
		if nf == maxFastFields {
			return nil
		}
		k1 := i
		for k1 < e && tokenChar(b[k1]) {
			k1++
		}
		if k1 == i || k1 == e || b[k1] != ':' {
			return nil
		}
		v0, v1 := k1+1, e
		for v0 < v1 && (b[v0] == ' ' || b[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (b[v1-1] == ' ' || b[v1-1] == '\t') {
			v1--
		}
		for _, c := range b[v0:v1] {
			if (c < ' ' && c != '\t') || c >= 0x7f {
				return nil
			}
		}
		switch k := b[i:k1]; {
		case equalFold(k, "host"):
			hosts++
		case equalFold(k, "content-length"), equalFold(k, "transfer-encoding"), equalFold(k, "trailer"), equalFold(k, "pragma"):
			return nil
		case equalFold(k, "connection"):
			conn = true
		}
		fields[nf] = field{uint16(i), uint16(k1), uint16(v0), uint16(v1)}
		nf++
		i = e + 2
	}
	if hosts != 1 || i+2 != len(b) {
		return nil
	}

	// One string holds every part of the head.
	s := string(b)
	if conn {
		for _, f := range fields[:nf] {
			if equalFold(b[f.k0:f.k1], "connection") && httpguts.HeaderValuesContainsToken([]string{s[f.v0:f.v1]}, "close") {
				return nil // net/http's reader drops the field and marks the request Close
			}
		}
	}
	if !rr.free || rr.req == nil {
		rr.req, rr.u, rr.h, rr.vals = new(http.Request), new(url.URL), make(http.Header, nf), make([]string, 0, nf)
	} else {
		clear(rr.h)
		clear(rr.vals[:cap(rr.vals)]) // drop the last request's strings
		rr.vals = rr.vals[:0]
	}
	rr.free = false
	h := rr.h
	for _, f := range fields[:nf] {
		k := textproto.CanonicalMIMEHeaderKey(s[f.k0:f.k1]) // the same string when it is canonical already
		if k == "Host" {
			continue // http.ReadRequest drops it (req.Host is the URL's)
		}
		v := s[f.v0:f.v1]
		if vv := h[k]; vv != nil {
			h[k] = append(vv, v)
			continue
		}
		rr.vals = append(rr.vals, v)
		h[k] = rr.vals[len(rr.vals)-1 : len(rr.vals) : len(rr.vals)]
	}
	uri := s[t0:t1]
	u := rr.u
	if method == http.MethodConnect {
		*u = url.URL{Host: uri}
	} else {
		*u = url.URL{Scheme: "http", Host: uri[len("http://"):hostEnd], Path: uri[hostEnd:pathEnd]}
		if pathEnd < len(uri) {
			u.RawQuery = uri[pathEnd+1:]
		}
	}
	*rr.req = http.Request{
		Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, Host: u.Host, RequestURI: uri,
	}
	return rr.req
}

// authority reports whether a is a host name (letters, digits, '.', '-',
// '_') with a port of 1-5 digits, which CONNECT needs (needPort).
func authority(a []byte, needPort bool) bool {
	i := 0
	for i < len(a) && hostChar(a[i]) {
		i++
	}
	if i == 0 {
		return false
	}
	if i == len(a) {
		return !needPort
	}
	if a[i] != ':' || len(a)-i-1 < 1 || len(a)-i-1 > 5 {
		return false
	}
	for _, c := range a[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func hostChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_'
}

// pathChar: the characters net/url keeps as they are in a path (no '%'
// to decode, nothing it would escape, so RawPath stays empty).
func pathChar(c byte) bool {
	if hostChar(c) {
		return true
	}
	switch c {
	case '/', '~', '$', '&', '+', ',', ':', ';', '=', '@':
		return true
	}
	return false
}

// tokenChar: RFC 9110's tchar.
func tokenChar(c byte) bool {
	return c < 0x80 && httpguts.IsTokenRune(rune(c))
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// equalFold compares b with the lower-case ASCII s in any case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
