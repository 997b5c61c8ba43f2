package httpproxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// searchInfo is what a request to a search engine carries: the engine,
// the term, and the watchlist themes its terms reached, if any.
type searchInfo struct {
	engine *watchlist.Engine // nil: not a search engine's host
	onPath bool              // the request's path is one of the engine's search paths
	// term is the request's search term, "" when it is not a search: the
	// worst-scoring of the terms it carries (a POSTed form's and the
	// URL's can differ), else the form's, else the URL's.
	term string
	hits []watchHit // each term that reached a theme's threshold, worst first
	// The start of a POSTed URL-encoded form (formBody), read once for
	// the term and for safe search: formRead once read, formWhole when
	// form is the whole body.
	form                string
	formRead, formWhole bool
	// unread: a POST to the search path of an engine that posts its
	// searches whose form could not be read whole (refuseSearchForm).
	unread bool
}

// formOf returns the start of r's URL-encoded form body, reading it (and
// putting it back) the first time it is asked for, and whether it is the
// whole body.
func (si *searchInfo) formOf(r *http.Request) (string, bool) {
	if !si.formRead {
		si.formRead = true
		si.form, si.formWhole = formBody(r)
	}
	return si.form, si.formWhole
}

// flagged reports whether a term of the search was flagged for theme t.
func (si *searchInfo) flagged(t watchlist.Theme) bool {
	for i := range si.hits {
		if si.hits[i].theme == t {
			return true
		}
	}
	return false
}

// watchHit is a search term's report: its best theme over the threshold.
type watchHit struct {
	term     string
	theme    watchlist.Theme
	severity bl.Severity
	score    int
	phrases  string // the entries found, "kill myself, how to"
}

// searchRequest reads the search term of a request to a search engine and
// scores it; every front door that sees a full URL (plain HTTP, and
// decrypted HTTPS, which goes through the same per-request path) calls it
// once, after the policy decision and before anything is answered, so
// block pages and events carry the term. A host that is not a search
// engine costs one table lookup. The restricted tier's requests get no
// term: nothing about them is stored in plain text.
func (s *Server) searchRequest(r *http.Request, info *reqInfo) {
	eng := s.engineOf(info)
	se, ok := eng.SearchEngines().Lookup(info.host)
	if !ok {
		return
	}
	path := r.URL.EscapedPath()
	onPath := se.SearchPath(path)
	info.search = &searchInfo{engine: se, onPath: onPath}
	if info.dec.Restricted {
		return
	}
	// Every term the request carries is scored: a POSTed form's (what the
	// form searches for) and the URL's, which need not be the same.
	var terms [2]string
	n := 0
	switch {
	case onPath:
		if r.Method == http.MethodPost {
			// A search form that posts (DuckDuckGo's html and lite pages).
			form, whole := info.search.formOf(r)
			if se.PostsForm && !whole && !emptyBody(r) {
				info.search.unread = true
			}
			if t, ok := se.QueryTerm(form); ok {
				terms[n], n = t, n+1
			}
		}
		if t, ok := se.QueryTerm(r.URL.RawQuery); ok && (n == 0 || t != terms[0]) {
			terms[n], n = t, n+1
		}
	case r.Method == http.MethodPost && se.JSONPath(path):
		// A search POSTed as JSON (YouTube's /youtubei/v1/search).
		if b, _ := peekBody(r, maxJSONPeek); len(b) > 0 {
			if t, ok := se.JSONTerm(b); ok {
				terms[n], n = t, n+1
			}
		}
	}
	if n == 0 {
		return
	}
	for _, term := range terms[:n] {
		if d, ok := eng.RestrictedTerm(policy.Request{Client: info.client, User: info.user}, term); ok {
			// A search for a site on the restricted tier (its address typed
			// into the search box) is that site's block: it is never
			// stored in plain text (the term is in the URL too), and the
			// DSL hears of it as of a visit.
			info.takeBlock(&policy.BlockedError{Decision: d})
			return
		}
	}
	info.search.term = terms[0]
	w := eng.Watchlist()
	sc := w.Get()
	for _, term := range terms[:n] {
		if h, ok := scoreTerm(w, sc, term); ok {
			info.search.hits = append(info.search.hits, h)
		}
	}
	w.Put(sc)
	if h := info.search.hits; len(h) == 2 && (h[1].severity > h[0].severity || h[1].severity == h[0].severity && h[1].score > h[0].score) {
		h[0], h[1] = h[1], h[0]
	}
	if len(info.search.hits) > 0 {
		info.search.term = info.search.hits[0].term
	}
}

// scoreTerm scores a search term with sc: its report when it reaches a
// theme's threshold.
func scoreTerm(w *watchlist.Watchlist, sc *watchlist.Scorer, term string) (watchHit, bool) {
	res := sc.Score(term)
	if !res.Over {
		return watchHit{}, false
	}
	hit := watchHit{term: term, theme: res.Best, severity: w.Settings(res.Best).Severity, score: res.Score()}
	var b strings.Builder
	for _, m := range res.Matches {
		if m.Theme != res.Best || m.Weight <= 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.Phrase)
	}
	hit.phrases = b.String()
	return hit, true
}

// emptyBody reports whether a request declares no body.
func emptyBody(r *http.Request) bool {
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
}

// refuseSearchForm answers a POST to the search path of an engine that
// posts its searches (DuckDuckGo) whose form could not be read whole: not
// a URL-encoded form, or longer than maxFormPeek. Neither its term could
// be scored nor its safe-search field forced, and the engine's own pages
// never send one, so it goes no further: 403 and a bypass event (reason
// "search-form").
func (s *Server) refuseSearchForm(w http.ResponseWriter, r *http.Request, info *reqInfo, cfg *config.Config, source string) {
	info.url = eventURL(r.URL)
	s.refuseBypass(w, info, source, "search-form", func(ref string) string {
		return fmt.Sprintf("403 Forbidden: %s's web filter could not check this search (the form sent was too long or of an unknown kind). Search from the page itself. Reference %s.\n", cfg.School.Name, ref)
	})
}

// maxFormPeek bounds the part of a POSTed search form read for its term.
const maxFormPeek = 8 << 10

// maxJSONPeek bounds the part of a search POSTed as JSON read for its
// term (a YouTube search's body, its client context and the query, is a
// few KiB).
const maxJSONPeek = 16 << 10

// formBody returns the start (up to maxFormPeek bytes) of a request's
// URL-encoded form body, and puts it back in front of the rest of the
// body for the site; whole reports that it is all of the body (its
// declared length, or, for a chunked body, less than maxFormPeek bytes
// before the end).
func formBody(r *http.Request) (form string, whole bool) {
	if emptyBody(r) {
		return "", false
	}
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded") {
		return "", false
	}
	b, whole := peekBody(r, maxFormPeek)
	return string(b), whole
}

// peekBody reads the start (up to limit bytes) of a request's body and
// puts it back in front of the rest of the body for the site, which gets
// it byte for byte; whole reports that it is all of the body (its
// declared length, or, for a chunked body, less than limit bytes before
// the end).
func peekBody(r *http.Request, limit int) (b []byte, whole bool) {
	if emptyBody(r) {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)))
	r.Body = readCloser{io.MultiReader(bytes.NewReader(b), errReader{err}, r.Body), r.Body}
	if r.ContentLength > 0 {
		whole = int64(len(b)) == r.ContentLength
	} else {
		whole = len(b) < limit
	}
	return b, whole && err == nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// errReader gives a read error of the peeked part to the body's reader
// (nil: reading goes on to the rest).
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

// flagSearch records a search whose term reached a watchlist theme's
// threshold: an event with the theme's category and severity (Action
// "flag"), whatever was decided about the request itself, so the DSL
// hears about a suicide-related search even when it was allowed (critical:
// an immediate alert). It is recorded before the answer goes; one of high
// or critical severity (an alert) is also durable by then, as a block
// is, so a crash right after cannot lose it (a repeat in its collapse
// window waits for nothing: the first is stored).
func (s *Server) flagSearch(info *reqInfo, source string) {
	if info.search == nil {
		return
	}
	for i := range info.search.hits {
		h := &info.search.hits[i]
		s.metrics.requests.WithLabelValues(source, "search-flag").Inc()
		ev := s.newEvent(info, source, "flag", 0, 0, "watchlist", "")
		ev.SearchTerm = h.term
		ev.Category = h.theme.Category()
		ev.Severity, ev.Route = h.severity, bl.RouteDSL
		ev.List, ev.Entry = "watchlist:"+h.theme.String(), h.phrases
		ev.Restricted, ev.Bypass, ev.Probe = false, false, false
		ev.Status, ev.Bytes = 0, 0
		if seq := s.events.record(ev); ev.Severity >= bl.SeverityHigh {
			s.events.durable(seq)
		}
	}
}

// safeSearch turns on the engine's own safe search for a request the
// group's safe_search covers (the same setting as the DNS rewrite): the
// engine's safe parameter on its search paths (in the URL, and in a
// POSTed URL-encoded form: safeForm), its data paths' parameters on
// those (watchlist.Engine.SafeData: DuckDuckGo's d.js), and its header
// (YouTube's YouTube-Restrict) on every request to it. A client's own
// value for any of them is replaced.
func (s *Server) safeSearch(r *http.Request, info *reqInfo) {
	if info.search == nil {
		return
	}
	se := info.search.engine
	mode := s.engineOf(info).GroupSafeSearch(info.dec.Group)
	if mode == policy.SafeSearchOff {
		return
	}
	strict := mode == policy.SafeSearchStrict
	switch {
	case se.SafeParam != "" && info.search.onPath:
		r.URL.RawQuery, _ = se.SafeQuery(r.URL.RawQuery, strict)
		if r.Method == http.MethodPost {
			safeForm(r, info.search, strict)
		}
	case len(se.DataPaths) > 0:
		// The endpoints that return results as data to the engine's own
		// page (DuckDuckGo's links.duckduckgo.com/d.js), which a client
		// can ask for directly.
		if q, ok := se.SafeData(r.URL.EscapedPath(), r.URL.RawQuery, strict); ok {
			r.URL.RawQuery = q
		}
	}
	if h, v := se.SafeHeader(strict); h != "" {
		r.Header.Set(h, v)
	}
}

// safeForm sets the engine's safe-search parameter in a search form
// POSTed to its search path (DuckDuckGo's html and lite pages post theirs,
// and a body field such as kp=-2 would otherwise turn safe search off):
// every copy the client sent is removed, the safe value added, and the
// body's length fixed. A body that is not URL-encoded, or longer than the
// part formBody reads (maxFormPeek), is passed on as it is; the parameter
// in the URL still holds for it.
func safeForm(r *http.Request, si *searchInfo, strict bool) {
	form, whole := si.formOf(r)
	if !whole {
		return
	}
	safe, _ := si.engine.SafeQuery(form, strict)
	body := r.Body // the peeked part put back (and the end of the client's body): closed with it
	r.Body = readCloser{strings.NewReader(safe), body}
	r.ContentLength = int64(len(safe))
	r.TransferEncoding = nil
	if _, ok := r.Header["Content-Length"]; ok {
		r.Header.Set("Content-Length", strconv.Itoa(len(safe)))
	}
	si.form = safe
}

// engineOf is the policy engine the request was decided with; a reqInfo
// made without one (a front door that does not set it) gets the current
// engine rather than a nil pointer.
func (s *Server) engineOf(info *reqInfo) *policy.Engine {
	if info.eng != nil {
		return info.eng
	}
	return s.o.Engine()
}
