package httpproxy

import (
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestSearchTermSpellings: a self-harm search spelt the ways the engine
// itself reads the same search must be flagged as the plain spelling is.
func TestSearchTermSpellings(t *testing.T) {
	for _, tc := range []struct {
		name, method, host, path, body string
	}{
		{"plus", "GET", "www.google.com", "/search?q=how+to+kill+myself", ""},
		{"percent20 mixed case", "GET", "www.google.com", "/search?q=How%20To%20KiLL%20MySelf", ""},
		// Every server (Google's too) decodes parameter names as it decodes
		// values: ?%71= is ?q=. SafeQuery already treats an escaped
		// "safe" key as the parameter; Term must read an escaped "q".
		{"escaped key", "GET", "www.google.com", "/search?%71=how+to+kill+myself", ""},
		// Fullwidth Latin (what a Japanese keyboard, or a "fancy text" site,
		// types): Google folds it to ASCII (NFKC) and returns the same
		// results.
		{"fullwidth", "GET", "www.google.com", "/search?q=how+to+%EF%BD%8B%EF%BD%89%EF%BD%8C%EF%BD%8C+%EF%BD%8D%EF%BD%99%EF%BD%93%EF%BD%85%EF%BD%8C%EF%BD%86", ""},
		// Google's advanced search form sends its words as as_q (all
		// these words) and as_epq (this exact phrase) to /search.
		{"google as_q", "GET", "www.google.com", "/search?as_q=how+to+kill+myself&as_epq=&as_oq=", ""},
		{"google as_epq", "GET", "www.google.com", "/search?as_q=&as_epq=kill+myself", ""},
		// Yahoo's result links put path parameters in its search path.
		{"yahoo path parameters", "GET", "search.yahoo.com", "/search;_ylt=AwrFQ;_ylu=Y29sbwNiZjEE?p=how+to+kill+myself&vm=p", ""},
		// DuckDuckGo's HTML and lite pages post their search form.
		{"ddg html POST", "POST", "html.duckduckgo.com", "/html/", "q=how+to+kill+myself&b="},
		{"ddg lite POST", "POST", "lite.duckduckgo.com", "/lite/", "q=how+to+kill+myself"},
		// YouTube Music's search page.
		{"youtube music", "GET", "music.youtube.com", "/search?q=how+to+kill+myself", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := searchEnv(t)
			e.res.mu.Lock()
			for _, h := range []string{"html.duckduckgo.com", "lite.duckduckgo.com", "music.youtube.com"} {
				e.res.names[h] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			}
			e.res.mu.Unlock()
			c := e.client("", "", "")
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, _ := http.NewRequest(tc.method, e.originURL(tc.host, tc.path), body)
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			e.s.events.flush(true)
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				for _, ev := range e.sink.events() {
					if isFlag(ev) {
						return
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("%s http://%s%s %s: no watchlist flag; events %v", tc.method, tc.host, tc.path, tc.body, terms(e.sink.events()))
		})
	}
}

func terms(evs []reports.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Action+"/"+ev.Reason+"/"+ev.SearchTerm)
	}
	return out
}
