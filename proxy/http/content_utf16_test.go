package httpproxy

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// enc16 is s in UTF-16 (little-endian unless be), after the byte order
// mark if bom.
func enc16(s string, be, bom bool) []byte {
	var b []byte
	if bom {
		s = "\uFEFF" + s
	}
	for _, u := range utf16.Encode([]rune(s)) {
		if be {
			b = append(b, byte(u>>8), byte(u))
		} else {
			b = append(b, byte(u), byte(u>>8))
		}
	}
	return b
}

// TestContentUTF16: a UTF-16 page (by its byte order mark, which wins
// over the header, or by its charset) is read, and sent on, as UTF-8:
// over the block threshold the pupil gets the block notice (in UTF-8)
// and a block event is stored; over the report threshold the page
// arrives whole as UTF-8 with charset=utf-8 (the other parameters kept)
// and is flagged. Untyped and sniffed: text/plain; charset=utf-8 said.
func TestContentUTF16(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	head, tail := htmlHead, "<p>THE END OF THE PAGE</p></div></body></html>"
	serve := func(path, ctype string, be, bom bool, pieces ...string) {
		var raw []string
		for i, p := range pieces {
			raw = append(raw, string(enc16(p, be, bom && i == 0)))
		}
		ce.page(path, ctype, raw...)
	}
	serve("/le-bom", "text/html", false, true, head, "<p>"+harmful7+"</p>", tail)
	serve("/be", "text/html; charset=utf-16be", true, false, head, "<p>"+harmful7+"</p>", tail)
	serve("/utf16-bom", `text/plain; charset="UTF-16"`, true, true, "Notes. ", harmful7, " THE END OF THE PAGE") // BOM: big-endian
	serve("/untyped", "", false, true, "Notes. "+harmful7+" THE END OF THE PAGE "+strings.Repeat("x ", 300))
	// What came before the notice (the proxy may read the pieces as one)
	// is the start of the page, in UTF-8.
	htmlPage, textPage := head+"<p>"+harmful7+"</p>"+tail, "Notes. "+harmful7+" THE END OF THE PAGE"
	for i, tc := range []struct{ path, ctype, notice, page string }{
		{"/le-bom", "text/html; charset=utf-8", `<div id="gatehouse-block"`, htmlPage},
		{"/be", "text/html; charset=utf-8", `<div id="gatehouse-block"`, htmlPage},
		{"/utf16-bom", `text/plain; charset=utf-8`, "\n\n[Test Academy's web filter blocked the rest of this answer", textPage},
		{"/untyped", "text/plain; charset=utf-8", "\n\n[Test Academy's web filter blocked the rest of this answer", textPage},
	} {
		resp, body := get(t, c, ce.url("pages.test", tc.path))
		at := strings.Index(body, tc.notice)
		if resp.StatusCode != 200 || at < 0 || !strings.HasPrefix(tc.page, body[:at]) ||
			strings.Contains(body, "THE END") || !utf8.ValidString(body) || strings.ContainsRune(body, 0) {
			t.Errorf("%s: %d %q", tc.path, resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, ct, tc.ctype)
		}
		evs := ce.contentEvents()
		if len(evs) != i+1 || evs[i].Action != "block" || evs[i].Category != "self-harm" || !strings.Contains(evs[i].Entry, "kill myself") ||
			evs[i].URL != ce.url("pages.test", tc.path) || !strings.Contains(body, evs[i].Ref) {
			t.Fatalf("%s: events %+v", tc.path, evs)
		}
	}

	flag := head + "<p>Caf\u00e9 \U0001F30B " + harmful4 + "</p>" + tail
	serve("/flag", "text/html; charset=UTF-16LE; profile=x", false, false, flag[:100], flag[100:])
	resp, body := get(t, c, ce.url("pages.test", "/flag"))
	if body != flag || resp.Header.Get("Content-Type") != "text/html; charset=utf-8; profile=x" {
		t.Errorf("flagged UTF-16 page: %v %q", resp.Header, body)
	}
	if evs := ce.contentEvents(); len(evs) != 5 || evs[4].Action != "flag" || !strings.Contains(evs[4].Entry, "end my life") {
		t.Fatalf("flag event %+v", evs)
	}
}

// TestContentUTF16Split: a UTF-16 page whose pieces end inside the byte
// order mark, inside a code unit and inside a surrogate pair (an emoji)
// still scores and arrives intact; a lone surrogate and an odd last byte
// become U+FFFD, as in the browser. Over the network, then at every cut
// of two writes.
func TestContentUTF16Split(t *testing.T) {
	ce := newContentEnv(t, "")
	text := htmlHead + "<p>\U0001F600 Caf\u00e9 " + harmful4 + " \U0001F30B</p>" + "<p>THE END OF THE PAGE</p></div></body></html>"
	raw := enc16(text, false, true)
	pair := bytes.Index(raw, enc16("\U0001F600", false, false))
	pieces := []string{string(raw[:1]), string(raw[1 : pair+1]), string(raw[pair+1 : pair+3]), string(raw[pair+3 : pair+5]), string(raw[pair+5:])}
	ce.page("/split", "text/html", pieces...)
	broken := append(enc16("<p>ok", false, true), 0x3d, 0xd8, 'A', 0, 0x42) // a lone high surrogate, "A", half a "B"
	ce.page("/broken", "text/plain", string(broken[:len(broken)-3]), string(broken[len(broken)-3:]))
	c := ce.client("", "", "")
	resp, body := get(t, c, ce.url("pages.test", "/split"))
	if body != text || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("split page: %v %q", resp.Header, body)
	}
	if evs := ce.contentEvents(); len(evs) != 1 || evs[0].Action != "flag" {
		t.Fatalf("split page: events %+v", evs)
	}
	if _, body := get(t, c, ce.url("pages.test", "/broken")); body != "<p>ok\uFFFDA\uFFFD" {
		t.Errorf("broken UTF-16: %q", body)
	}

	bad := enc16(htmlHead+"<p>\U0001F600 "+harmful7+"</p><p>THE END OF THE PAGE</p></div></body></html>", true, true)
	for cut := 0; cut <= len(raw); cut++ {
		cw, rec := ce.check(t, "text/html")
		// Each write takes all it is given (io.Copy, which relays the
		// site's answer, stops at a short write: the page was cut off
		// unscored when its first piece was a byte or two).
		if n, err := cw.Write(raw[:cut]); err != nil || n != cut {
			t.Fatalf("cut at %d: first write %d, %v", cut, n, err)
		}
		if n, err := cw.Write(raw[cut:]); err != nil || n != len(raw)-cut {
			t.Fatalf("cut at %d: second write %d of %d, %v", cut, n, len(raw)-cut, err)
		}
		cw.finish()
		if rec.Body.String() != text || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("cut at %d: %v %q", cut, rec.Header(), rec.Body.String())
		}
	}
	for cut := 0; cut <= len(bad); cut++ {
		cw, rec := ce.check(t, "text/html")
		_, err1 := cw.Write(bad[:cut])
		_, err2 := cw.Write(bad[cut:])
		if !cw.finish() || (err1 == nil && err2 == nil) || !strings.Contains(rec.Body.String(), "The rest of this page is blocked") {
			t.Fatalf("cut at %d: not blocked: %q", cut, rec.Body.String())
		}
	}
}

// TestContentUTF8Untouched: a UTF-8 page (with or without a UTF-8 byte
// order mark, even one whose header says UTF-16: the BOM wins) arrives
// byte for byte, its header as it came; so does a body too short to
// hold a BOM.
func TestContentUTF8Untouched(t *testing.T) {
	ce := newContentEnv(t, "")
	page := htmlHead + "<p>Caf\u00e9 \U0001F30B " + harmful1 + "</p></div></body></html>"
	ce.page("/utf8", "text/html; charset=utf-8", page[:1], page[1:7], page[7:])
	ce.page("/bom", "text/html; charset=utf-16", "\xef", "\xbb\xbf"+page)
	c := ce.client("", "", "")
	for p, want := range map[string]string{"/utf8": page, "/bom": "\xef\xbb\xbf" + page} {
		resp, body := fetch(t, c, http.MethodGet, ce.url("pages.test", p))
		if string(body) != want || resp.Header.Get("Content-Type") != map[string]string{"/utf8": "text/html; charset=utf-8", "/bom": "text/html; charset=utf-16"}[p] {
			t.Errorf("%s changed: %v %q", p, resp.Header, body)
		}
	}
	// A body shorter than a BOM, or none: the header still goes.
	for _, b := range []string{"", "\xef", "\xff"} {
		cw, rec := ce.check(t, "text/html")
		_, _ = cw.Write([]byte(b))
		cw.Flush()
		if cw.finish() || rec.Code != 200 || rec.Body.String() != b || rec.Header().Get("Content-Type") != "text/html" {
			t.Errorf("%q: %d %v %q", b, rec.Code, rec.Header(), rec.Body.String())
		}
	}
}

// TestCharsetUTF16: the charset parameter read, and rewritten.
func TestCharsetUTF16(t *testing.T) {
	for ct, want := range map[string]textEnc{
		"text/html":                                      encAsIs,
		"text/html; charset=utf-8":                       encAsIs,
		"text/html; charset=utf-16":                      encUTF16LE,
		"text/html;charset=\"UTF-16LE\"":                 encUTF16LE,
		"text/plain; format=x; charset=ucs-2":            encUTF16LE,
		"text/html; charset=utf-16be":                    encUTF16BE,
		"text/html; charset=utf-8; charset=utf-16be":     encAsIs,
		"text/html; x=\"a;charset=utf-16\"":              encAsIs,    // not a charset: a quoted value's text
		"text/plain; q=\"x;charset=y\"; charset=unicode": encUTF16LE, // the charset after a quoted ';'
	} {
		if got := charsetOf(ct); got != want {
			t.Errorf("charsetOf(%q) = %d, want %d", ct, got, want)
		}
	}
	for ct, want := range map[string]string{
		"text/html":                                    "text/html; charset=utf-8",
		"text/html; charset=utf-16":                    "text/html; charset=utf-8",
		"text/html;CHARSET=\"utf-16be\";a=b":           "text/html; charset=utf-8;a=b",
		`text/plain; q="x;charset=y"; charset=unicode`: `text/plain; q="x;charset=y"; charset=utf-8`,
	} {
		if got := withCharsetUTF8(ct); got != want {
			t.Errorf("withCharsetUTF8(%q) = %q, want %q", ct, got, want)
		}
	}
}
