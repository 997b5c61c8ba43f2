package httpproxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// A "report a mistake" form carries a token (field "t") that binds it to
// the block page it came from: the client address the page was shown to,
// the page's reference, address and category. The proxy answers the
// form's path on every site (the form posts to the blocked site's own
// address), so without it any page a pupil opened could post reports in
// the pupil's name (a form it submits, or fetch in no-cors mode, which
// needs no preflight): flooding IT with notes of its choosing and using
// up the pupil's own reports for the hour. A token is an HMAC under a key
// made when the proxy starts, so a page shown before a restart has to be
// opened again to report from it; a pupil cannot report a mistake with
// another pupil's reference, and no page on any site can make one.

// reportTokenLen is a token's length: 128 bits of HMAC-SHA256 in
// unpadded base64url.
const reportTokenLen = 22

// reportKey is the HMAC key as its two padded blocks (RFC 2104), so a
// token costs two SHA-256 sums and no allocation.
type reportKey struct{ ipad, opad [sha256.BlockSize]byte }

func newReportKey() *reportKey {
	var k [32]byte
	_, _ = rand.Read(k[:]) // never fails (crypto/rand)
	rk := &reportKey{}
	for i := range rk.ipad {
		rk.ipad[i], rk.opad[i] = 0x36, 0x5c
	}
	for i, c := range k {
		rk.ipad[i] ^= c
		rk.opad[i] ^= c
	}
	return rk
}

// formValue is s made fit for a hidden field of the page, so that a
// browser posts back exactly what the token was made for: valid UTF-8
// without NUL (a browser reads an invalid byte as U+FFFD, however many
// in a row; appendHTML writes NUL as U+FFFD). An address never holds a
// control character (net/url refuses them), nor CR or LF, which the
// browser would change.
func formValue(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// appendToken appends the token of a form for client about the block ref
// of url (as the page shows it: cut is appended when it was cut) in
// category.
func (k *reportKey) appendToken(b []byte, client netip.Addr, ref, url, cut, category string) []byte {
	var buf [512]byte
	m := append(buf[:0], k.ipad[:]...)
	ip := client.Unmap().As16()
	m = append(append(m, ip[:]...), ref...)
	m = append(append(append(append(m, 0), url...), cut...), 0)
	m = append(m, category...)
	inner := sha256.Sum256(m)
	o := append(append(buf[:0], k.opad[:]...), inner[:]...)
	sum := sha256.Sum256(o)
	return base64.RawURLEncoding.AppendEncode(b, sum[:16])
}

// token is appendToken as a string.
func (k *reportKey) token(client netip.Addr, ref, url, category string) string {
	return string(k.appendToken(make([]byte, 0, reportTokenLen), client, ref, url, "", category))
}

// valid reports whether tok is the token of a form from client with
// these fields, as posted.
func (k *reportKey) valid(client netip.Addr, ref, url, category, tok string) bool {
	if len(tok) != reportTokenLen {
		return false
	}
	var want [reportTokenLen]byte
	return hmac.Equal(k.appendToken(want[:0], client, ref, url, "", category), []byte(tok))
}
