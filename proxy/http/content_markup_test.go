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
