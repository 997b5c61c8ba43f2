package httpproxy

import (
	"strconv"
	"strings"
	"testing"
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
