package blocklists

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// Reasons a name is rejected.
var (
	errEmptyName    = errors.New("empty name")
	errNameTooLong  = errors.New("name longer than 253 characters")
	errLabelTooLong = errors.New("label longer than 63 characters")
	errEmptyLabel   = errors.New("empty label")
	errHyphen       = errors.New("label starts or ends with a hyphen")
	errBadUTF8      = errors.New("invalid UTF-8")
	errNoHost       = errors.New("missing host")
	errBadPort      = errors.New("invalid port")
	errBadBracket   = errors.New("unclosed '[' in host")
	errBadIPv6      = errors.New("invalid IPv6 address")
)

// badCharError reports a byte that may not appear in a name. Being a byte,
// it converts to an error without allocating.
type badCharError byte

func (c badCharError) Error() string {
	switch {
	case c == ' ':
		return "invalid character ' ' (space)"
	case c > ' ' && c < 0x7f:
		return fmt.Sprintf("invalid character '%c'", byte(c))
	}
	return fmt.Sprintf("invalid character 0x%02x", byte(c))
}

// nameByte maps each byte allowed in a name to its lower-case form and
// every other byte to 0.
var nameByte = func() (t [256]byte) {
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c
	}
	for c := byte('a'); c <= 'z'; c++ {
		t[c] = c
		t[c-'a'+'A'] = c
	}
	t['-'], t['_'], t['.'] = '-', '_', '.'
	return t
}()

// idnaProfile maps Unicode names as browsers do for lookup (UTS #46,
// non-transitional) but leaves the ASCII rules (underscores, hyphens,
// lengths) to appendName.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.StrictDomainName(false),
)

// NormalizeDomain appends the normalised form of the name src to dst[:0]
// and returns it: surrounding spaces and one trailing dot removed, ASCII
// lower-cased, internationalised names converted to punycode. It rejects
// names over 253 characters, empty labels, labels over 63 characters,
// labels that start or end with a hyphen and characters other than letters,
// digits, hyphens and underscores. ASCII input does not allocate when dst
// has room.
func NormalizeDomain(dst, src []byte) ([]byte, error) {
	dst = dst[:0]
	s := trimSpace(src)
	if n := len(s); n > 0 && s[n-1] == '.' {
		s = s[:n-1]
	}
	dst, err := appendName(dst, s)
	if err == errNonASCII {
		return appendIDN(dst, s)
	}
	return dst, err
}

// errNonASCII makes NormalizeDomain take the IDN path.
var errNonASCII = errors.New("non-ASCII name")

// appendIDN converts a name with non-ASCII characters to punycode.
func appendIDN(dst, s []byte) ([]byte, error) {
	if !utf8.Valid(s) {
		return dst, errBadUTF8
	}
	a, err := idnaProfile.ToASCII(string(s))
	if err != nil {
		return dst, fmt.Errorf("invalid international name: %v", err)
	}
	// The mapping can turn a final full stop such as U+3002 into a dot.
	if n := len(a); n > 0 && a[n-1] == '.' {
		a = a[:n-1]
	}
	dst, err = appendName(dst, []byte(a))
	if err == errNonASCII { // not expected from ToASCII
		err = errBadUTF8
	}
	return dst, err
}

// appendName appends the ASCII name s lower-cased and checks it. It returns
// errNonASCII if s has a byte outside ASCII.
func appendName(dst, s []byte) ([]byte, error) {
	if len(s) == 0 {
		return dst, errEmptyName
	}
	start := len(dst)
	dst = append(dst, s...)
	name := dst[start:]
	label := 0
	for i, c := range name {
		l := nameByte[c]
		if l == 0 {
			if c >= utf8.RuneSelf {
				return dst[:start], errNonASCII
			}
			return dst[:start], badCharError(c)
		}
		name[i] = l
		if l == '.' {
			if err := checkLabel(name[label:i]); err != nil {
				return dst[:start], err
			}
			label = i + 1
		}
	}
	if err := checkLabel(name[label:]); err != nil {
		return dst[:start], err
	}
	if len(name) > maxNameLen {
		return dst[:start], errNameTooLong
	}
	return dst, nil
}

func checkLabel(l []byte) error {
	switch {
	case len(l) == 0:
		return errEmptyLabel
	case len(l) > maxLabelLen:
		return errLabelTooLong
	case l[0] == '-' || l[len(l)-1] == '-':
		return errHyphen
	}
	return nil
}

// NormalizeHost reads a host name from a URL ("https://user@Example.COM:8443/x")
// or a host with an optional port ("Example.com:80", "[2001:db8::1]:443") and
// returns it normalised as NormalizeDomain does. IP addresses come back in
// their usual text form, IPv6 without brackets. Unlike NormalizeURL it keeps
// a leading "www.".
func NormalizeHost(s string) (string, error) {
	host, v6, _, err := splitURL([]byte(s))
	if err != nil {
		return "", err
	}
	b, err := appendHost(nil, host, v6)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// NormalizeSite is NormalizeHost that also returns what follows the host
// in s (path, query and fragment as written, starting with "/"; "/" when
// nothing follows), for a caller that decides the page:
// policy.Engine.Decide makes the path canonical.
func NormalizeSite(s string) (host, path string, err error) {
	h, v6, rest, err := splitURL([]byte(s))
	if err != nil {
		return "", "", err
	}
	b, err := appendHost(nil, h, v6)
	if err != nil {
		return "", "", err
	}
	path = string(rest)
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	return string(b), path, nil
}

// NormalizeURL reduces a URL to the canonical "host/path?query" form used
// by URL lists and for matching requests against them (see canonical.go),
// e.g. "http://user@WWW.Example.com:80/a/./B%41?x#top" becomes
// "example.com/a/ba?x". It drops the scheme, user information, port (any
// port: an entry names a site, not a service), fragment and a leading
// "www." (or "www2." and so on, as squidGuard does, when a registrable name
// remains). The host is normalised as by NormalizeHost. A URL without a
// path gets "/".
func NormalizeURL(s string) (hostPath string, err error) {
	b, err := appendURL(nil, []byte(s), false)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendURL appends the normalised form of the URL s to dst[:0]. With
// bareHost, a URL without a path stays a bare host ("example.com") instead
// of getting "/"; URL-list entries use that form, and both forms match every
// path on the host.
func appendURL(dst, s []byte, bareHost bool) ([]byte, error) {
	host, v6, rest, err := splitURL(s)
	if err != nil {
		return dst[:0], err
	}
	dst, err = appendHost(dst, host, v6)
	if err != nil {
		return dst, err
	}
	if !v6 && !isIPv4Text(dst) {
		dst = stripWWW(dst)
	}
	if i := bytes.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	if len(rest) == 0 {
		if !bareHost {
			dst = append(dst, '/')
		}
		return dst, nil
	}
	return appendCanonPath(dst, string(rest)), nil
}

const upperHex = "0123456789ABCDEF"

// splitURL finds the host in a URL or host[:port] and returns it with what
// follows the authority (path, query, fragment). v6 reports a bracketed or
// bare IPv6 literal.
func splitURL(s []byte) (host []byte, v6 bool, rest []byte, err error) {
	s = trimSpace(s)
	if i := schemeEnd(s); i > 0 {
		s = s[i:]
	}
	end := len(s)
	for i, c := range s {
		if c == '/' || c == '?' || c == '#' || c == '\\' {
			end = i
			break
		}
	}
	auth, rest := s[:end], s[end:]
	if i := bytes.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:]
	}
	if len(auth) == 0 {
		return nil, false, nil, errNoHost
	}
	if auth[0] == '[' {
		j := bytes.IndexByte(auth, ']')
		if j < 0 {
			return nil, false, nil, errBadBracket
		}
		if tail := auth[j+1:]; len(tail) > 0 && (tail[0] != ':' || !allDigits(tail[1:])) {
			return nil, false, nil, errBadPort
		}
		return auth[1:j], true, rest, nil
	}
	if i := bytes.IndexByte(auth, ':'); i >= 0 {
		if bytes.IndexByte(auth[i+1:], ':') >= 0 {
			return auth, true, rest, nil // bare IPv6 literal
		}
		if !allDigits(auth[i+1:]) {
			return nil, false, nil, errBadPort
		}
		auth = auth[:i]
	}
	return auth, false, rest, nil
}

// schemeEnd returns the length of a leading "scheme://", or 0.
func schemeEnd(s []byte) int {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		case c == ':' && i > 0 && bytes.HasPrefix(s[i:], []byte("://")):
			return i + 3
		default:
			return 0
		}
	}
	return 0
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendHost writes a normalised host to dst[:0]: an IPv6 literal in
// canonical form (IPv4-mapped addresses as IPv4), an IPv4 address in any
// form the URL standard accepts as dotted decimal, or a name checked by
// NormalizeDomain.
func appendHost(dst, host []byte, v6 bool) ([]byte, error) {
	if !v6 {
		if a, v4, err := ParseURLIPv4(string(host)); v4 {
			if err != nil {
				return dst[:0], err
			}
			return a.AppendTo(dst[:0]), nil
		}
		return NormalizeDomain(dst, host)
	}
	a, err := netip.ParseAddr(string(host))
	if err != nil || !a.Is6() || a.Zone() != "" {
		return dst[:0], errBadIPv6
	}
	return a.Unmap().AppendTo(dst[:0]), nil
}

// isIPv4Text reports whether b is a dotted-decimal IPv4 address as
// appendHost writes it.
func isIPv4Text(b []byte) bool {
	for _, c := range b {
		if c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return len(b) > 0
}

// stripWWW removes a leading "www." or "www<digits>." when at least two
// labels remain.
func stripWWW(name []byte) []byte {
	if len(name) < 4 || name[0] != 'w' || name[1] != 'w' || name[2] != 'w' {
		return name
	}
	i := 3
	for i < len(name) && name[i] >= '0' && name[i] <= '9' {
		i++
	}
	if i >= len(name) || name[i] != '.' || bytes.IndexByte(name[i+1:], '.') < 0 {
		return name
	}
	return name[:copy(name, name[i+1:])]
}

// trimSpace removes ASCII white space at both ends.
func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}
