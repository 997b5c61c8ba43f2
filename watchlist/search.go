package watchlist

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Engine is a search engine: where its URLs carry a search term, and how
// to turn on its own safe search.
type Engine struct {
	Name string // "Google", as reports say it
	// Hosts the engine answers on. "bing.com" matches bing.com and any
	// subdomain; "google.*" matches google. followed by a country domain
	// (google.com, google.co.uk, google.com.au), and its subdomains.
	Hosts []string
	// Paths are the paths whose query carries the term ("/search"),
	// compared in their canonical form (SearchPath).
	Paths []string
	Param string // query parameter holding the term ("q")
	// AltParams are other parameters the engine reads the words of a
	// search from when Param is absent or empty (Google's advanced
	// search: as_q, as_epq, as_oq); their values are joined.
	AltParams []string
	// SafeParam, if set, is the query parameter that turns on the
	// engine's safe search, with its values for strict and moderate
	// (Google: safe=active for both).
	SafeParam                string
	SafeStrict, SafeModerate string
	// Header, if set, is a request header that turns on safe search, with
	// its values (YouTube: YouTube-Restrict: Strict or Moderate).
	Header                       string
	HeaderStrict, HeaderModerate string
	// PostsForm: the engine's own pages POST their search form
	// (DuckDuckGo's html and lite pages), so a POST to a search path is a
	// search; the proxy refuses one it cannot read whole (a body that is
	// not a URL-encoded form, or longer than it reads), whose term it
	// could neither score nor make safe.
	PostsForm bool
	// JSONPaths are paths a search is POSTed to as a JSON object whose
	// top-level field JSONField holds the term (YouTube's web page, after
	// its first load, and its apps: /youtubei/v1/search with
	// {"context":{...},"query":"..."}).
	JSONPaths []string
	JSONField string
	// DataPaths are paths that return a search's results as data to the
	// engine's own page (DuckDuckGo's links.duckduckgo.com/d.js, and its
	// i.js, v.js and news.js for images, videos and news), which a client
	// can ask for directly: safe search is forced there too (SafeData),
	// on every host of the engine. No term is read from them: the page's
	// own search, already read, asks for them.
	DataPaths []DataPath
	// DataParams are the parameters that set safe search on DataPaths
	// (DuckDuckGo: p, ex, and kp), every copy of which the client sent is
	// removed before a DataPath's own are added.
	DataParams []string

	// The canonical forms of Paths, JSONPaths and DataPaths (canonPaths),
	// made by NewEngines; nil for an Engine made otherwise.
	paths, jsonPaths, dataPaths []string
}

// DataPath is one of an engine's DataPaths: the path, and the query
// pairs ("p=1&kp=1") that make its results strict or moderate.
type DataPath struct {
	Path             string
	Strict, Moderate string
}

// MaxTerm bounds a search term's length (bytes); longer terms are cut.
const MaxTerm = 256

// DefaultEngines is the built-in table. Ecosia documents no URL parameter
// for safe search (it is a setting kept in a cookie), so only its terms
// are read. Autocomplete endpoints are left out on purpose: they send
// every keystroke ("s", "su", "sui", ...), which would report one search
// many times over. YouTube's hosts are those Google names for its
// YouTube-Restrict header; YouTube Music's search page is
// music.youtube.com/search?q=.
func DefaultEngines() []Engine {
	return []Engine{
		{Name: "Google", Hosts: []string{"google.*"}, Paths: []string{"/search", "/webhp"}, Param: "q", AltParams: []string{"as_q", "as_epq", "as_oq"},
			SafeParam: "safe", SafeStrict: "active", SafeModerate: "active"},
		{Name: "Bing", Hosts: []string{"bing.com"}, Paths: []string{"/search", "/images/search", "/videos/search", "/news/search"}, Param: "q",
			SafeParam: "adlt", SafeStrict: "strict", SafeModerate: "moderate"},
		{Name: "DuckDuckGo", Hosts: []string{"duckduckgo.com"}, Paths: []string{"/", "/html", "/lite"}, Param: "q",
			SafeParam: "kp", SafeStrict: "1", SafeModerate: "-1", PostsForm: true,
			// Its page's results come from d.js (web, on
			// links.duckduckgo.com), i.js, v.js and news.js, whose safe
			// search is p=1 (strict) or, for web results, ex=-1
			// (moderate; ex=-2 is off), for videos and news p=-1; images
			// have no moderate, so get p=1 (moderate hides explicit
			// images). kp, DuckDuckGo's documented setting for every
			// page, is set too.
			DataPaths: []DataPath{
				{Path: "/d.js", Strict: "p=1&kp=1", Moderate: "ex=-1&kp=-1"},
				{Path: "/i.js", Strict: "p=1&kp=1", Moderate: "p=1&kp=-1"},
				{Path: "/v.js", Strict: "p=1&kp=1", Moderate: "p=-1&kp=-1"},
				{Path: "/news.js", Strict: "p=1&kp=1", Moderate: "p=-1&kp=-1"},
			},
			DataParams: []string{"p", "ex", "kp"}},
		{Name: "YouTube", Hosts: []string{"youtube.com", "youtube-nocookie.com", "youtubei.googleapis.com", "youtube.googleapis.com"}, Paths: []string{"/results", "/search"}, Param: "search_query", AltParams: []string{"q"},
			Header: "YouTube-Restrict", HeaderStrict: "Strict", HeaderModerate: "Moderate",
			JSONPaths: []string{"/youtubei/v1/search"}, JSONField: "query"},
		{Name: "Yahoo", Hosts: []string{"search.yahoo.com"}, Paths: []string{"/search", "/search/images", "/search/video"}, Param: "p",
			SafeParam: "vm", SafeStrict: "r", SafeModerate: "i"},
		{Name: "Ecosia", Hosts: []string{"ecosia.org"}, Paths: []string{"/search", "/images", "/videos", "/news"}, Param: "q"},
		{Name: "Wikipedia", Hosts: []string{"wikipedia.org"}, Paths: []string{"/w/index.php", "/wiki/Special:Search"}, Param: "search"},
	}
}

// Engines is a compiled engine table, immutable.
type Engines struct {
	list   []Engine
	exact  map[string]int32 // "bing.com" → engine
	anyTLD map[string]int32 // "google" → engine (for "google.*")
}

// NewEngines compiles a table. Later entries win for the same host, so
// a config entry can replace a built-in one.
func NewEngines(list []Engine) (*Engines, error) {
	list = slices.Clone(list)
	t := &Engines{list: list, exact: map[string]int32{}, anyTLD: map[string]int32{}}
	for i := range list {
		list[i].paths, list[i].jsonPaths = canonPaths(list[i].Paths), canonPaths(list[i].JSONPaths)
		var data []string
		for _, d := range list[i].DataPaths {
			data = append(data, d.Path)
		}
		list[i].dataPaths = canonPaths(data)
	}
	for i, e := range list {
		if e.Name == "" || e.Param == "" || len(e.Hosts) == 0 || len(e.Paths) == 0 {
			return nil, fmt.Errorf("search engine %d (%q): name, hosts, paths and param are required", i+1, e.Name)
		}
		all := append(e.Paths[:len(e.Paths):len(e.Paths)], e.JSONPaths...)
		for _, d := range e.DataPaths {
			all = append(all, d.Path)
		}
		for _, p := range all {
			if !strings.HasPrefix(p, "/") {
				return nil, fmt.Errorf("search engine %s: path %q must start with /", e.Name, p)
			}
		}
		if len(e.JSONPaths) > 0 && e.JSONField == "" {
			return nil, fmt.Errorf("search engine %s: JSON search paths need the field holding the term", e.Name)
		}
		for _, h := range e.Hosts {
			h = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
			if base, ok := strings.CutSuffix(h, ".*"); ok && base != "" && !strings.ContainsAny(base, ".*") {
				t.anyTLD[base] = int32(i)
				continue
			}
			if h == "" || strings.Contains(h, "*") || !strings.Contains(h, ".") {
				return nil, fmt.Errorf("search engine %s: host %q: want a domain (bing.com) or name.* (google.*)", e.Name, h)
			}
			t.exact[h] = int32(i)
		}
	}
	return t, nil
}

// Lookup finds the engine for host (lower case, no port, no trailing
// dot). It does not allocate; a host of no engine costs a map lookup or
// two per label.
func (t *Engines) Lookup(host string) (*Engine, bool) {
	if t == nil {
		return nil, false
	}
	for s := host; s != ""; {
		if i, ok := t.exact[s]; ok {
			return &t.list[i], true
		}
		j := strings.IndexByte(s, '.')
		if j < 0 {
			break
		}
		if len(t.anyTLD) > 0 && tldLike(s[j+1:]) {
			if i, ok := t.anyTLD[s[:j]]; ok {
				return &t.list[i], true
			}
		}
		s = s[j+1:]
	}
	return nil, false
}

// tldLike reports whether s looks like a country or generic domain:
// "com", "de", or two labels whose first is short ("co.uk", "com.au").
func tldLike(s string) bool {
	a, b, two := strings.Cut(s, ".")
	if !two {
		return len(a) >= 2 && len(a) <= 6
	}
	return len(a) >= 2 && len(a) <= 3 && len(b) == 2 && !strings.Contains(b, ".")
}

// SearchPath reports whether path (without the query, as sent:
// url.URL.EscapedPath) is one of e's search paths. Both are compared in
// their canonical form (blocklists.AppendCanonicalPath: path parameters
// ";..." dropped, dot segments resolved, repeated slashes collapsed, no
// case, a final slash ignored), as the engine's server reads them:
// Yahoo's own result links ask for "/search;_ylt=...;_ylu=...?p=...".
// For an Engine from NewEngines (its paths made canonical once) it does
// not allocate for a path under about 680 bytes.
func (e *Engine) SearchPath(path string) bool {
	if e.paths == nil {
		return onPaths(path, canonPaths(e.Paths))
	}
	return onPaths(path, e.paths)
}

// JSONPath reports whether path (as SearchPath takes it) is one of e's
// JSON search paths, compared as SearchPath compares.
func (e *Engine) JSONPath(path string) bool {
	if e.jsonPaths == nil {
		return onPaths(path, canonPaths(e.JSONPaths))
	}
	return onPaths(path, e.jsonPaths)
}

// canonPaths returns the canonical forms of paths, each without a final
// slash (but "/"); nil for none.
func canonPaths(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, string(trimSlash(bl.AppendCanonicalPath(nil, p))))
	}
	return out
}

// onPaths reports whether path's canonical form, without a final slash,
// is one of canon (canonPaths).
func onPaths(path string, canon []string) bool {
	if len(canon) == 0 {
		return false
	}
	var buf [2048]byte
	dst := buf[:0]
	if 3*len(path)+1 > len(buf) {
		dst = nil
	}
	c := trimSlash(bl.AppendCanonicalPath(dst, path))
	for _, p := range canon {
		if p == string(c) {
			return true
		}
	}
	return false
}

// trimSlash drops a canonical path's final slash, but not the root's.
func trimSlash(p []byte) []byte {
	if n := len(p); n > 1 && p[n-1] == '/' {
		return p[:n-1]
	}
	return p
}

// Term returns the search term in a request for path?rawQuery, cut to
// MaxTerm bytes; false when the request is not a search.
func (e *Engine) Term(path, rawQuery string) (string, bool) {
	if rawQuery == "" || !e.SearchPath(path) {
		return "", false
	}
	return e.QueryTerm(rawQuery)
}

// QueryTerm returns the search term in a query (or a URL-encoded form) of
// a request to one of e's search paths: Param, else the AltParams joined.
// Every copy of Param is read and the copies joined (a repeat once), as
// JSONTerm reads every copy of its field: which copy an engine searches
// for is its server's choice (MediaWiki, in PHP, takes the last; others
// the first), so a harmless first copy cannot hide the term searched for.
func (e *Engine) QueryTerm(rawQuery string) (string, bool) {
	var vals, alt []string
	for q := rawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		// A server decodes a parameter's name as it decodes its value:
		// ?%71= is ?q=.
		if safeKey(k, e.Param) {
			if v := termValue(v); v != "" && !slices.Contains(vals, v) {
				vals = append(vals, v)
			}
			continue
		}
		if len(vals) > 0 {
			continue
		}
		for _, p := range e.AltParams {
			if safeKey(k, p) {
				if v := termValue(v); v != "" {
					alt = append(alt, v)
				}
				break
			}
		}
	}
	switch {
	case len(vals) == 1:
		return vals[0], true
	case len(vals) > 1:
		return cleanTerm(strings.Join(vals, " ")), true
	case len(alt) > 0:
		return cleanTerm(strings.Join(alt, " ")), true
	}
	return "", false
}

// JSONTerm returns the search term in the JSON body of a search POSTed to
// one of e's JSONPaths: the string value of its top-level JSONField (of
// every copy of it, joined), cut to MaxTerm bytes. body may be the start
// of a longer body: the fields before the cut are read.
func (e *Engine) JSONTerm(body []byte) (string, bool) {
	if e.JSONField == "" {
		return "", false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return "", false
	}
	var vals []string
	for d.More() {
		t, err := d.Token()
		if err != nil {
			break
		}
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			break
		}
		var v string
		if k, _ := t.(string); k == e.JSONField && json.Unmarshal(raw, &v) == nil {
			if v = cleanTerm(v); v != "" {
				vals = append(vals, v)
			}
		}
	}
	if len(vals) == 0 {
		return "", false
	}
	return cleanTerm(strings.Join(vals, " ")), true
}

// termValue is a raw query value as a term (cleanTerm of it unescaped).
func termValue(v string) string {
	return cleanTerm(unescapeLenient(v))
}

// unescapeLenient decodes a raw query value as servers do: '+' is a
// space, each valid %XX its byte, and a '%' that starts no escape is kept
// as it is, with the rest still decoded (url.QueryUnescape refuses the
// whole value, which would leave "%6Bill%20myself%" unmatched while the
// engine searches for "kill myself%").
func unescapeLenient(v string) string {
	if strings.IndexByte(v, '%') < 0 && strings.IndexByte(v, '+') < 0 {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]):
			b = append(b, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// cleanTerm collapses a term's spaces and cuts it to MaxTerm bytes of
// valid UTF-8.
func cleanTerm(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if len(v) > MaxTerm {
		n := MaxTerm
		for n > 0 && !utf8.RuneStart(v[n]) {
			n--
		}
		v = v[:n]
	}
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	return v
}

// SafeQuery returns rawQuery with e's safe-search parameter set (every
// copy of it the client sent removed first), and true; false when e has
// no such parameter.
func (e *Engine) SafeQuery(rawQuery string, strict bool) (string, bool) {
	if e.SafeParam == "" {
		return rawQuery, false
	}
	val := e.SafeModerate
	if strict {
		val = e.SafeStrict
	}
	return setParams(rawQuery, []string{e.SafeParam}, url.QueryEscape(e.SafeParam)+"="+url.QueryEscape(val)), true
}

// SafeData returns rawQuery, of a request for path (as SearchPath takes
// it), with the safe-search parameters of e's DataPaths set: every copy of
// DataParams the client sent removed, in any escaping, and the path's own
// pairs added; false when path is none of e's DataPaths.
func (e *Engine) SafeData(path, rawQuery string, strict bool) (string, bool) {
	if len(e.DataPaths) == 0 {
		return rawQuery, false
	}
	canon := e.dataPaths
	if canon == nil {
		for _, d := range e.DataPaths {
			canon = append(canon, canonPaths([]string{d.Path})...)
		}
	}
	for i, d := range e.DataPaths {
		if !onPaths(path, canon[i:i+1]) {
			continue
		}
		add := d.Moderate
		if strict {
			add = d.Strict
		}
		return setParams(rawQuery, e.DataParams, add), true
	}
	return rawQuery, false
}

// setParams returns rawQuery without any pair naming one of drop (in any
// escaping and case), with add (raw pairs) at its end.
func setParams(rawQuery string, drop []string, add string) string {
	var b strings.Builder
	b.Grow(len(rawQuery) + len(add) + 1)
	for q := rawQuery; q != ""; {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if strings.IndexByte(kv, ';') >= 0 {
			kv = dropSafe(kv, drop) // servers that split on ';' too
		}
		k, _, _ := strings.Cut(kv, "=")
		if kv == "" || safeKeyOf(k, drop) {
			continue
		}
		b.WriteString(kv)
		b.WriteByte('&')
	}
	b.WriteString(add)
	return b.String()
}

// dropSafe removes the ';'-separated pairs of kv that name one of params:
// some servers split a query on ';' as well as '&' (the old HTML 4
// advice), so "q=x;kp=-2" could carry a safe-search value past the '&'
// pairs.
func dropSafe(kv string, params []string) string {
	var b strings.Builder
	for kv != "" {
		var p string
		p, kv, _ = strings.Cut(kv, ";")
		if k, _, _ := strings.Cut(p, "="); safeKeyOf(k, params) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(p)
	}
	return b.String()
}

// safeKeyOf reports whether a raw query key names one of params (safeKey).
func safeKeyOf(k string, params []string) bool {
	for _, p := range params {
		if safeKey(k, p) {
			return true
		}
	}
	return false
}

// safeKey reports whether a raw query key names param, in any escaping
// and any case (a server may read names without case).
func safeKey(k, param string) bool {
	if strings.EqualFold(k, param) {
		return true
	}
	u, err := url.QueryUnescape(k)
	return err == nil && strings.EqualFold(u, param)
}

// SafeHeader returns the header and value that turn on e's safe search,
// or "" when e has none.
func (e *Engine) SafeHeader(strict bool) (string, string) {
	if e.Header == "" {
		return "", ""
	}
	if strict {
		return e.Header, e.HeaderStrict
	}
	return e.Header, e.HeaderModerate
}
