package httpproxy

import (
	"fmt"
	"github.com/gatehouse-filter/gatehouse/watchlist"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// TestContentCommentEndsAsBrowsers: a comment ends where the browser's
// HTML parser ends it: "<!-->" and "<!--->" are whole (empty) comments
// and "--!>" closes one, so the text after them is shown and scored.
func TestContentCommentEndsAsBrowsers(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	for i, open := range []string{"<!-->", "<!--->", "<!-- note --!>", "<!-- a -- b --!>"} {
		path := "/comment" + strconv.Itoa(i)
		ce.page(path, "text/html", htmlHead+open+"<p>"+harmful7+"</p><!-- end -->", "<p>TAIL</p></body></html>")
		_, body := get(t, c, ce.url("pages.test", path))
		if !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "TAIL") {
			t.Errorf("%q: text after a comment the browser has closed not scored: %q", open, body)
		}
	}
	// A comment that is still open hides its text, as before.
	ce.page("/open", "text/html", htmlHead+"<!-- -> --> <!-- "+harmful7+" --!-> -- > -->", "<p>TAIL</p></body></html>")
	if _, body := get(t, c, ce.url("pages.test", "/open")); !strings.Contains(body, "TAIL") {
		t.Errorf("text in a comment scored: %q", body)
	}
}

// TestContentQuoteOutsideAttributeValue: a quote that does not start an
// attribute value (inside an unquoted value or an attribute's name) is
// part of it, as the browser reads it: the tag still ends at its '>' and
// the text after it is scored.
func TestContentQuoteOutsideAttributeValue(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	for i, tag := range []string{`<p data-x=a"b>`, `<p class=it's>`, `<p a"b>`, `<p title = "ok" x=y'z>`} {
		path := "/quote" + strconv.Itoa(i)
		ce.page(path, "text/html", htmlHead+tag+harmful7+`</p><p title="q">`, `TAIL'"</p></body></html>`)
		_, body := get(t, c, ce.url("pages.test", path))
		if !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "TAIL") {
			t.Errorf("%s: text after the tag not scored: %q", tag, body)
		}
	}
	// A quoted value still hides what is in it, '>' included.
	ce.page("/quoted", "text/html", htmlHead+`<p title = "a > `+harmful7+`" alt='`+harmful7+`'>ok</p>`, "<p>TAIL</p></body></html>")
	if _, body := get(t, c, ce.url("pages.test", "/quoted")); !strings.Contains(body, "TAIL") {
		t.Errorf("an attribute value scored: %q", body)
	}
}

// jsonASCII is s as a JSON string body the way encoders that escape
// everything but ASCII write it (Python's json.dumps, JavaScript's
// JSON.stringify of an escaped string): \uXXXX, a character outside the
// Basic Multilingual Plane as its UTF-16 surrogate pair.
func jsonASCII(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x80:
			b.WriteRune(r)
		default:
			for _, u := range utf16.Encode([]rune{r}) {
				fmt.Fprintf(&b, `\u%04x`, u)
			}
		}
	}
	return b.String()
}

// boldText is s in mathematical bold letters (𝐤𝐢𝐥𝐥), as font generators
// write "fancy text".
func boldText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return 0x1D41A + r - 'a'
		case r >= 'A' && r <= 'Z':
			return 0x1D400 + r - 'A'
		}
		return r
	}, s)
}

// TestContentAIChatSurrogatePairs: an AI answer in fancy text (letters
// outside the Basic Multilingual Plane) whose JSON escapes each as a
// \uXXXX surrogate pair is read as the letters it shows, so it scores as
// the plain words; a lone surrogate is a word break, as U+FFFD.
func TestContentAIChatSurrogatePairs(t *testing.T) {
	ce := newContentEnv(t, "")
	var pieces []string
	for _, tok := range strings.SplitAfter(boldText(harmful7), " ") {
		pieces = append(pieces, `data: {"choices":[{"delta":{"content":"`+jsonASCII(tok)+`"}}]}`+"\n\n")
	}
	pieces = append(pieces, "data: [DONE]\n\n")
	ce.page("/backend-api/conversation", "text/event-stream", pieces...)
	_, body := get(t, ce.client("", "", ""), ce.url("chatgpt.com", "/backend-api/conversation"))
	if !strings.Contains(body, "web filter blocked the rest of this answer") || strings.Contains(body, "[DONE]") {
		t.Errorf("fancy text in surrogate pairs not scored: %q", body)
	}
	// Split across pieces between and inside the two halves.
	ce.page("/api/split", "application/json", `{"text":"I will `+jsonASCII(boldText("ki"))+`\ud835`, `\udc25`+jsonASCII(boldText("ll myself"))+`. I want to die. I want to end my life."}`)
	_, body = get(t, ce.client("", "", ""), ce.url("chatgpt.com", "/api/split"))
	evs := ce.contentEvents()
	if len(evs) != 2 || evs[1].Action != "flag" || !strings.Contains(evs[1].Entry, "kill myself") {
		t.Fatalf("split surrogate pair: %q, events %+v", body, evs)
	}
	// Lone surrogates break words: "ki\ud835ll" is not "kill".
	ce.page("/api/lone", "application/json", `{"text":"I will ki\ud835ll myself. I will ki\udc25ll myself. I want to die."}`)
	get(t, ce.client("", "", ""), ce.url("chatgpt.com", "/api/lone"))
	if evs := ce.contentEvents(); len(evs) != 2 {
		t.Fatalf("lone surrogates joined a word: events %+v", evs)
	}
}

// TestContentNumericReferencesAsBrowsers: numeric character references
// are read as the browser reads them: any number of leading zeros, and
// the ';' optional (the digits end the reference), so a page spelt in
// them ("&#000107&#105ll") is scored as the words it shows.
func TestContentNumericReferencesAsBrowsers(t *testing.T) {
	ce := newContentEnv(t, "")
	c := ce.client("", "", "")
	dec := func(s string) string { // every letter as &#0000000DDD, no ';'
		var b strings.Builder
		for _, r := range s {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				fmt.Fprintf(&b, "&#%010d", r)
				continue
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	hex := strings.NewReplacer("k", "&#x000000006B;", "l", "&#X6c;", "m", "&#x0006d").Replace(harmful7)
	for i, text := range []string{dec(harmful7), hex} {
		path := "/refs" + strconv.Itoa(i)
		ce.page(path, "text/html", htmlHead+"<p>"+text+"</p>", "<p>TAIL</p></body></html>")
		_, body := get(t, c, ce.url("pages.test", path))
		if !strings.Contains(body, "The rest of this page is blocked") || strings.Contains(body, "TAIL") {
			t.Errorf("page %d spelt in character references not scored: %q", i, body)
		}
	}
	// Split across pieces inside a reference; and what is no reference
	// ("&#;", "&#x;", "&#xyz") is text, a word break.
	page := htmlHead + "<p>I will &#000107ill myself. I want to d&#105e. I want to end my life. ki&#;ll ki&#x;ll ki&#xyzll</p></body></html>"
	for cut := len(htmlHead); cut < len(page); cut++ {
		cw, _ := ce.check(t, "text/html")
		_, _ = cw.Write([]byte(page[:cut]))
		_, _ = cw.Write([]byte(page[cut:]))
		if cw.blocked || !strings.Contains(cw.phrases(watchlist.SelfHarm), "kill myself") {
			t.Fatalf("cut at %d: %q", cut, cw.phrases(watchlist.SelfHarm))
		}
		if p := cw.phrases(watchlist.SelfHarm); strings.Count(p, ",") != 2 {
			t.Fatalf("cut at %d: phrases %q, want 3", cut, p)
		}
		cw.finish()
	}
}

// TestContentReferenceAtEnd: a page that ends inside a numeric character
// reference ("… mysel&#102") has its last letter read.
func TestContentReferenceAtEnd(t *testing.T) {
	ce := newContentEnv(t, "")
	ce.page("/end", "text/html", htmlHead+"<p>I want to die. I want to end my life. I will kill mysel", "&#102")
	get(t, ce.client("", "", ""), ce.url("pages.test", "/end"))
	evs := ce.contentEvents()
	if len(evs) != 1 || evs[0].Action != "flag" || !strings.Contains(evs[0].Entry, "kill myself") {
		t.Fatalf("events %+v", evs)
	}
}
