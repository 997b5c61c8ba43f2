package blocklists

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
)

// Canonical URLs. URL-list entries, hashed entries and requests are all
// compared in one form, so that no spelling of a URL that reaches the same
// page escapes its entry:
//
//   - host: lower case, no trailing dot, no port (any port), IDN as punycode;
//     an IPv4 address in any form the WHATWG URL standard accepts (decimal
//     "3232235777", hex "0xC0A80101", octal "0300.0250.01.01", short
//     "192.168.257") as dotted decimal; IPv6 in its usual compressed form
//     without brackets, an IPv4-mapped IPv6 address as IPv4.
//   - path: percent-encoded printable ASCII decoded, except '%', '?', '#'
//     and ';', whose escapes stay, with upper-case hex; an encoded slash
//     (%2F) and a backslash (literal or %5C) are read as '/', as servers
//     that decode them do, so they can neither hide a segment nor split one
//     differently from the server; path parameters (a literal ';' and what
//     follows it up to the next '/', '\', %2F or %5C) dropped from every
//     segment, as Java servers (Tomcat, Jetty) serve "/dir;jsessionid=x/a"
//     as "/dir/a" and "/x/..;/a" as "/a" (an encoded ";", %3B, is part of
//     the segment's name for them, so it stays); dot segments ("." and "..",
//     encoded or not, with or without parameters) resolved; repeated
//     slashes collapsed; ASCII letters lower-cased (squidGuard compares
//     paths without case); spaces, control characters and non-ASCII bytes
//     percent-encoded.
//   - query: kept (prefix matching ignores it unless the entry has one),
//     lower-cased, escapes of unreserved characters decoded and the rest in
//     upper-case hex; a space, "%20" or a raw one, written "+" (servers
//     decode a query's "+" as a space; "%2B", a literal plus, stays); a
//     bare "?" is dropped. The fragment is dropped. (In the path "+" is a
//     literal plus, the same as "%2B".)

// errBadIPv4 is a host the URL standard reads as an IPv4 address (its last
// label is a number) that is not a valid one.
var errBadIPv4 = errors.New("invalid IPv4 address (a host ending in a number must be an IPv4 address)")

// ParseURLIPv4 reads host (no brackets, no port) as the WHATWG URL
// standard's host parser does: a host whose last label is a number
// ("0x" hex included) is an IPv4 address, in decimal, hex or octal parts,
// with 1 to 4 parts (the last filling the remaining bytes). isIPv4 reports
// whether host ends in a number; err is then set when it is not a valid
// address. It does not allocate.
func ParseURLIPv4(host string) (addr netip.Addr, isIPv4 bool, err error) {
	if !endsInNumber(host) {
		return netip.Addr{}, false, nil
	}
	a, ok := parseIPv4Parts(host)
	if !ok {
		return netip.Addr{}, true, errBadIPv4
	}
	return a, true, nil
}

// endsInNumber is the URL standard's "ends in a number" checker.
func endsInNumber(host string) bool {
	s := host
	if n := len(s); n > 1 && s[n-1] == '.' {
		s = s[:n-1]
	}
	last := s[strings.LastIndexByte(s, '.')+1:]
	if last == "" {
		return false
	}
	if allDigitsString(last) {
		return true
	}
	_, ok := ipv4Number(last)
	return ok
}

// parseIPv4Parts is the URL standard's IPv4 parser.
func parseIPv4Parts(host string) (netip.Addr, bool) {
	s := host
	if n := len(s); n > 1 && s[n-1] == '.' {
		s = s[:n-1]
	}
	var nums [4]uint64
	count := 0
	for {
		i := strings.IndexByte(s, '.')
		part := s
		if i >= 0 {
			part = s[:i]
		}
		if count == 4 {
			return netip.Addr{}, false
		}
		v, ok := ipv4Number(part)
		if !ok {
			return netip.Addr{}, false
		}
		nums[count] = v
		count++
		if i < 0 {
			break
		}
		s = s[i+1:]
	}
	for i := 0; i < count-1; i++ {
		if nums[i] > 255 {
			return netip.Addr{}, false
		}
	}
	last := nums[count-1]
	if last >= 1<<(8*(5-count)) {
		return netip.Addr{}, false
	}
	v := uint32(last)
	for i := 0; i < count-1; i++ {
		v |= uint32(nums[i]) << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// ipv4Number is the URL standard's IPv4 number parser: decimal, "0x" hex
// or "0" octal. Values past 2^32 come back as 2^33 (too big either way).
func ipv4Number(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		s, base = s[2:], 16
	case len(s) >= 2 && s[0] == '0':
		s, base = s[1:], 8
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		d := uint64(hexVal(s[i]))
		if d >= base {
			return 0, false
		}
		if v <= 1<<32 {
			v = v*base + d
		}
	}
	return min(v, 1<<33), true
}

// hexVal is the value of a hex digit, or 255.
func hexVal(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

func allDigitsString(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CanonicalHost appends the canonical form of a request's host (no port;
// brackets around IPv6 optional) to dst[:0]: an IP literal in its usual
// text form (addr is then set, IPv4-mapped IPv6 unmapped; IPv4 read in any
// form the URL standard accepts, see ParseURLIPv4), or a name as
// NormalizeDomain gives it. A name does not allocate when dst has room.
func CanonicalHost(dst []byte, host string) ([]byte, netip.Addr, error) {
	dst = dst[:0]
	if n := len(host); n > 1 && host[0] == '[' {
		if host[n-1] != ']' {
			return dst, netip.Addr{}, errBadBracket
		}
		host = host[1 : n-1]
		if strings.IndexByte(host, ':') < 0 {
			return dst, netip.Addr{}, errBadIPv6
		}
	}
	if strings.IndexByte(host, ':') >= 0 {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return dst, netip.Addr{}, errBadIPv6
		}
		a = a.Unmap()
		return a.AppendTo(dst), a, nil
	}
	if a, v4, err := ParseURLIPv4(host); v4 {
		if err != nil {
			return dst, netip.Addr{}, err
		}
		return a.AppendTo(dst), a, nil
	}
	var buf [maxNameLen + 2]byte
	b := append(buf[:0], host...)
	dst, err := NormalizeDomain(dst, b)
	return dst, netip.Addr{}, err
}

// AppendCanonicalPath appends the canonical form of a URL's path and
// query, as sent ("/a/./B%41?x#f"), to dst: see the rules above. The
// result starts with '/'. It does not allocate when dst has room (at most
// three times len(raw)+1 bytes are needed).
func AppendCanonicalPath(dst []byte, raw string) []byte {
	return appendCanonPath(dst, raw)
}

// canonPathClass says what a path byte becomes: 0 literal (lower case),
// 1 separator, 2 escaped, 3 (a literal ';') the start of path parameters,
// dropped; a decoded ';' (%3B) is escaped.
var canonPathClass = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c <= ' ' || c >= 0x7f || c == '%' || c == '?' || c == '#':
			t[c] = 2
		case c == '/' || c == '\\':
			t[c] = 1
		case c == ';':
			t[c] = 3
		}
	}
	return t
}()

// isPathSep reports whether raw[i:] starts with what the canonical path
// reads as a separator: '/', '\', %2F or %5C (either case), within end.
func isPathSep(raw string, i, end int) bool {
	switch raw[i] {
	case '/', '\\':
		return true
	case '%':
		return i+2 < end && raw[i+1] == '2' && (raw[i+2] == 'F' || raw[i+2] == 'f') ||
			i+2 < end && raw[i+1] == '5' && (raw[i+2] == 'C' || raw[i+2] == 'c')
	}
	return false
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func appendCanonPath(dst []byte, raw string) []byte {
	end := len(raw)
	query := -1
	for i := 0; i < len(raw); i++ {
		if raw[i] == '#' {
			end = i
			break
		}
		if raw[i] == '?' && query < 0 {
			query = i
		}
	}
	pathEnd := end
	if query >= 0 {
		pathEnd = query
	}
	// The path, kept as "/seg/seg/" while it is built: each segment is
	// written after the last slash and checked when it ends.
	root := len(dst)
	dst = append(dst, '/')
	seg := len(dst)
	lastNormal := false // the final segment is a plain one (no slash after it)
	for i := 0; i <= pathEnd; i++ {
		c := byte('/')
		class := uint8(1)
		if i < pathEnd {
			c = raw[i]
			class = canonPathClass[c]
			if c == '%' {
				if i+2 < pathEnd && hexVal(raw[i+1]) < 16 && hexVal(raw[i+2]) < 16 {
					c = hexVal(raw[i+1])<<4 | hexVal(raw[i+2])
					class = canonPathClass[c]
					if class == 3 {
						class = 2 // %3B: a ';' in the segment's name
					}
					i += 2
				}
			}
		}
		switch class {
		case 0:
			dst = append(dst, lowerASCII(c))
		case 2:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		case 1:
			s := dst[seg:]
			switch {
			case len(s) == 0:
				// empty segment: repeated or final slash
				lastNormal = false
			case len(s) == 1 && s[0] == '.':
				dst, lastNormal = dst[:seg], false
			case len(s) == 2 && s[0] == '.' && s[1] == '.':
				dst = dst[:seg-1] // drop "/" before ".."
				if len(dst) > root {
					for len(dst) > root && dst[len(dst)-1] != '/' {
						dst = dst[:len(dst)-1]
					}
				} else {
					dst = append(dst, '/')
				}
				lastNormal = false
			default:
				dst, lastNormal = append(dst, '/'), i == pathEnd
			}
			seg = len(dst)
		case 3:
			// Path parameters: skip to the next separator, which ends
			// the segment as usual.
			for i+1 < pathEnd && !isPathSep(raw, i+1, pathEnd) {
				i++
			}
		}
	}
	if lastNormal {
		dst = dst[:len(dst)-1]
	}
	if query < 0 || query+1 >= end {
		return dst
	}
	dst = append(dst, '?')
	for i := query + 1; i < end; i++ {
		c := raw[i]
		switch {
		case c == '%' && i+2 < end && hexVal(raw[i+1]) < 16 && hexVal(raw[i+2]) < 16:
			d := hexVal(raw[i+1])<<4 | hexVal(raw[i+2])
			i += 2
			switch {
			case isUnreserved(d):
				dst = append(dst, lowerASCII(d))
			case d == ' ':
				dst = append(dst, '+') // %20 is a space, as '+' is
			default:
				dst = append(dst, '%', upperHex[d>>4], upperHex[d&15])
			}
		case c == ' ':
			dst = append(dst, '+')
		case c < ' ' || c >= 0x7f || c == '%':
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		default:
			dst = append(dst, lowerASCII(c))
		}
	}
	return dst
}

// sortedQuery returns a canonical path (AppendCanonicalPath) with its
// query's parameters sorted (bytewise) and empty ones dropped: the form
// a URL entry with a query is kept in, and that a hashed entry with
// several parameters is expected in (a site reads its parameters in any
// order, so an entry names a set of them; see urlForms). A path without
// a query, or with one parameter, comes back as it is.
func sortedQuery(path string) string {
	q := strings.IndexByte(path, '?')
	if q < 0 || strings.IndexByte(path[q:], '&') < 0 {
		return path
	}
	var params []string
	for _, p := range strings.Split(path[q+1:], "&") {
		if p != "" {
			params = append(params, p)
		}
	}
	slices.Sort(params)
	if len(params) == 0 {
		return path[:q]
	}
	return path[:q+1] + strings.Join(params, "&")
}
