package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// Validation of a decoded, normalised Config as a whole. Every problem is
// reported, each at the position of the value it is about (from the
// decoder's key-path map; a value that came from the defaults has none).
//
// Decisions worth knowing:
//
//   - Lists: exactly one of path: and url:. refresh: is allowed on path lists
//     too and means "re-read the file" on that schedule. Lists without a
//     category are group allow/deny lists and must be used by a group; lists
//     with a category (or a squidguard tree) cannot be allow/deny lists, since
//     their entries are indexed under the category, not the list.
//   - The restricted tier (iwf, ctiru) cannot be overridden: no allow list
//     may feed it, its categories: entry may not change the route from dsl
//     or the severity from critical, and its lists must use format domains,
//     urls or sha256 (never adblock or hosts, whose "@@" exceptions could
//     unblock) and, for feeds, https.
//   - Network prefixes: a single address is a /32 or /128; host bits after
//     the mask are an error. The same prefix in two groups is an error;
//     overlapping prefixes are fine (the most specific wins).
//   - Listen addresses: host:port where host is an IP, "localhost" or empty
//     (all addresses). Upstreams: IP:port (a bare IP gets port 53).
type validator struct {
	c     *Config
	file  string
	pos   positions
	bad   map[string]bool
	errs  Errors
	warns Errors

	checkFiles bool // also check that named files can be read (files.go)
}

func newValidator(c *Config, file string, pos positions, bad map[string]bool) *validator {
	return &validator{c: c, file: file, pos: pos, bad: bad}
}

// where finds the position of path, or of its nearest ancestor that has
// one (not the document root).
func (v *validator) where(path string) position {
	for p := path; p != ""; p = parentPath(p) {
		if pos, ok := v.pos[p]; ok {
			return pos
		}
	}
	return position{}
}

func (v *validator) has(path string) bool { _, ok := v.pos[path]; return ok }

func (v *validator) errf(path, format string, args ...any) {
	for p := path; p != ""; p = parentPath(p) {
		if v.bad[p] {
			return // the decoder already reported this value
		}
	}
	pos := v.where(path)
	v.errs = append(v.errs, Error{File: v.file, Line: pos.Line, Column: pos.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// between checks that d is within lo..hi.
func (v *validator) between(path string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		v.errf(path, "must be between %s and %s", fmtDur(lo), fmtDur(hi))
	}
}

func (v *validator) warnf(path, format string, args ...any) {
	pos := v.where(path)
	v.warns = append(v.warns, Error{File: v.file, Line: pos.Line, Column: pos.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

const restrictedMsg = "the restricted tier (IWF/CTIRU) cannot be overridden"

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	headerRE = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
)

func (v *validator) run() {
	defer func() { v.errs.sort(); v.warns.sort() }()
	v.school()
	v.log()
	if strings.TrimSpace(v.c.Database) == "" {
		v.errf("database", "must not be empty (e.g. /var/lib/gatehouse/gatehouse.db)")
	}
	v.listeners()
	v.upstreams()
	v.dnsSection()
	v.blockPage() // blockpage.go
	v.proxySection()
	v.inspect()
	v.contentCheck() // content.go
	v.transparent()
	v.adminSection()
	v.consoleSection() // console.go
	v.reports()
	v.categories()
	v.watchlists() // watchlists.go
	lists := v.lists()
	used := v.groups(lists)
	v.applyManaged() // managed.go
	v.clients()
	v.identitySection() // identity.go
	if v.checkFiles {
		v.files()
		v.identityFiles()
	}
	own := 0 // lists without a category: each takes one of MaxListBits bits
	for i := range v.c.Lists {
		l := &v.c.Lists[i]
		if l.Category != "" || l.Format == string(blocklists.FormatSquidGuard) {
			continue
		}
		if own++; own == blocklists.MaxListBits+1 {
			v.errf(joinIndex("lists", i), "more than %d lists without a category (allow/deny lists); merge some", blocklists.MaxListBits)
		}
		if l.Name != "" && !used[l.Name] {
			v.errf(joinIndex("lists", i), "list %q has no category and no group uses it in allow_lists or deny_lists (give it a category: or use it)", l.Name)
		}
	}
}

func (v *validator) school() {
	s := &v.c.School
	if strings.TrimSpace(s.Name) == "" {
		v.errf("school.name", "must not be empty")
	}
	switch tz := s.Timezone; {
	case tz == "":
		v.errf("school.timezone", "must not be empty (e.g. Europe/London)")
	default:
		loc, err := time.LoadLocation(tz)
		if err != nil {
			v.errf("school.timezone", "unknown time zone %q (want an IANA name such as Europe/London)", tz)
			return
		}
		v.c.loc = loc
	}
}

func (v *validator) log() {
	if l := v.c.Log.Level; !slices.Contains([]string{"debug", "info", "warn", "error"}, l) {
		v.errf("log.level", "unknown log level %q (want debug, info, warn or error)%s", l, didYouMean(l, []string{"debug", "info", "warn", "error"}))
	}
	if f := v.c.Log.Format; f != "text" && f != "json" {
		v.errf("log.format", "unknown log format %q (want text or json)", f)
	}
}

// listenAddr checks a listen address and returns it as host:port with the
// host canonical, or "" if it is invalid.
func (v *validator) listenAddr(path, addr string) string {
	if addr == "" {
		v.errf(path, "must not be empty (want host:port, e.g. 127.0.0.1:3128)")
		return ""
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(path, "invalid address %q: %s (want host:port, e.g. 127.0.0.1:3128)", addr, addrErr(err))
		return ""
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		v.errf(path, "invalid port %q in %q", port, addr)
		return ""
	}
	switch host {
	case "", "localhost":
	default:
		a, err := netip.ParseAddr(host)
		if err != nil {
			v.errf(path, "invalid address %q: the host must be an IP address, localhost, or empty for all addresses", addr)
			return ""
		}
		host = a.Unmap().String()
	}
	return net.JoinHostPort(host, port)
}

func addrErr(err error) string {
	if ae, ok := err.(*net.AddrError); ok {
		return ae.Err
	}
	return err.Error()
}

func (v *validator) listeners() {
	c := v.c
	if len(c.DNS.Listen) == 0 {
		v.errf("dns.listen", "at least one address is needed (e.g. 127.0.0.1:53)")
	}
	seen := map[string]string{}
	check := func(path, addr string) {
		if a := v.listenAddr(path, addr); a != "" && !strings.HasSuffix(a, ":0") { // port 0: any free port
			if first, dup := seen[a]; dup {
				if !v.has(path) && v.has(first) {
					path, first = first, path // cite the one written in the file
				}
				v.errf(path, "address %s is also used by %s", addr, first)
			} else {
				seen[a] = path
			}
		}
	}
	for i, a := range c.DNS.Listen {
		check(joinIndex("dns.listen", i), a)
	}
	check("proxy.listen", c.Proxy.Listen)
	if t := c.Proxy.Transparent; t.HTTPListen != "" || t.HTTPSListen != "" {
		if t.HTTPListen != "" {
			check("proxy.transparent.http_listen", t.HTTPListen)
		}
		if t.HTTPSListen != "" {
			check("proxy.transparent.https_listen", t.HTTPSListen)
		}
	}
	check("admin.listen", c.Admin.Listen)
	if !v.c.ConsoleOff() {
		check("console.listen", c.Console.Listen)
	}
	if l := c.Identity.Signin.Listen; l != "" {
		check("identity.signin.listen", l)
	}
	if ttl := c.DNS.BlockTTL.D(); ttl > 24*time.Hour {
		v.errf("dns.block_ttl", "must be at most 24h")
	}
	if r := c.DNS.BlockResponse; r != "nxdomain" && r != "null" && r != "blockpage" {
		v.errf("dns.block_response", "unknown block response %q (want nxdomain, null or blockpage)", r)
	}
}

func (v *validator) upstreams() {
	v.plainUpstreams("dns.upstreams", v.c.DNS.Upstreams)
}

// plainUpstreams checks IP:port upstreams at path (bare IPs were given
// port 53 when the file was read): a valid address, not Gatehouse's own
// listener, not listed twice.
func (v *validator) plainUpstreams(at string, ups []string) {
	seen := map[string]bool{}
	for i, u := range ups {
		path := joinIndex(at, i)
		host, port, err := net.SplitHostPort(u)
		if err != nil {
			v.errf(path, "invalid upstream %q: %s (want IP:port, e.g. 9.9.9.9:53)", u, addrErr(err))
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil {
			v.errf(path, "invalid upstream %q: the host must be an IP address (Gatehouse cannot look a name up before it has an upstream)", u)
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			v.errf(path, "invalid port %q in upstream %q", port, u)
			continue
		}
		ap := netip.AddrPortFrom(a.Unmap(), uint16(p))
		if isSelf(ap, v.c.DNS.Listen, nil) {
			v.errf(path, "upstream %s is Gatehouse's own listen address (queries would loop)", u)
		}
		if seen[ap.String()] {
			v.errf(path, "upstream %s is listed twice", u)
		}
		seen[ap.String()] = true
	}
}

// categoryNamesAll is the catalogue's names, for suggestions.
var categoryNamesAll = func() []string {
	var out []string
	for _, c := range blocklists.Categories() {
		out = append(out, c.String())
	}
	return out
}()

// categorySynonyms are names people write for catalogue categories
// (UT1 and other lists' names among them).
var categorySynonyms = map[string]string{
	"adult": "pornography", "porn": "pornography", "porno": "pornography", "sex": "pornography", "xxx": "pornography", "nsfw": "pornography",
	"social": "social-media", "social_networks": "social-media", "socialnetworks": "social-media",
	"proxy": "web-proxy", "proxies": "web-proxy", "redirector": "web-proxy", "anonymizer": "web-proxy", "anonymiser": "web-proxy",
	"gaming": "games", "game": "games",
	"gamble": "gambling", "betting": "gambling",
	"drogue":  "drugs",
	"suicide": "self-harm", "eating-disorders": "self-harm",
	"hacking": "malware", "malicious": "malware",
	"scam": "phishing", "scams": "phishing", "fraud": "phishing",
	"warez": "piracy", "copyright": "piracy",
	"video": "streaming", "music": "streaming", "audio-video": "streaming",
	"terrorism": "extremism", "radicalisation": "extremism", "radicalization": "extremism",
	"racism":    "discrimination",
	"fake-news": "misinformation", "fakenews": "misinformation", "disinformation": "misinformation",
	"weapons": "violence", "agressif": "violence", "aggressive": "violence",
	"chatbot": "ai", "chatbots": "ai", "genai": "ai",
	"messaging": "chat",
	"csam":      "iwf", "csa": "iwf",
	"dot": "doh", "encrypted-dns": "doh",
	"relay": "private-relay", "icloud-private-relay": "private-relay",
}

// category checks a catalogue category name.
func (v *validator) category(path, name string) (blocklists.Category, bool) {
	c, err := blocklists.ParseCategory(name)
	if err == nil && c.Info().Kind == blocklists.KindMarker {
		v.errf(path, "%q marks search engines for safe search; it is not a category to block or list (use safe_search)", name)
		return 0, false
	}
	if err == nil {
		return c, true
	}
	switch hint := categorySynonyms[strings.ToLower(name)]; {
	case strings.TrimSpace(name) == "":
		v.errf(path, "empty category name")
	case hint != "":
		v.errf(path, "unknown category %q (did you mean %q?)", name, hint)
	default:
		if hint := didYouMean(name, categoryNamesAll); hint != "" {
			v.errf(path, "unknown category %q%s", name, hint)
		} else {
			v.errf(path, "%v", err)
		}
	}
	return 0, false
}

func (v *validator) categories() {
	for _, name := range slices.Sorted(maps.Keys(v.c.Categories)) {
		prefs := v.c.Categories[name]
		path := joinKey("categories", name)
		cat, ok := v.category(path, name)
		routes := []string{string(blocklists.RouteDSL), string(blocklists.RouteIT), string(blocklists.RouteHeadteacher), string(blocklists.RouteNone)}
		if prefs.Route != "" && !slices.Contains(routes, prefs.Route) {
			v.errf(joinKey(path, "route"), "unknown route %q (want dsl, it, headteacher or none)%s", prefs.Route, didYouMean(prefs.Route, routes))
			continue
		}
		if !ok || !cat.Restricted() {
			continue
		}
		if prefs.Route != "" && prefs.Route != string(blocklists.RouteDSL) {
			v.errf(joinKey(path, "route"), "%s: its hits always go to the DSL (route dsl)", restrictedMsg)
		}
		if prefs.Severity != nil && *prefs.Severity != blocklists.SeverityCritical {
			v.errf(joinKey(path, "severity"), "%s: its severity is always critical", restrictedMsg)
		}
	}
}

// lists checks lists: and returns their indexes by name.
func (v *validator) lists() map[string]int {
	byName := map[string]int{}
	for i := range v.c.Lists {
		l := &v.c.Lists[i]
		p := joinIndex("lists", i)
		at := func(key string) string { return joinKey(p, key) }
		switch {
		case l.Name == "":
			v.errf(p, "a list needs a name:")
		case !nameRE.MatchString(l.Name):
			v.errf(at("name"), "list name %q: use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit", l.Name)
		default:
			if first, dup := byName[l.Name]; dup {
				v.errf(at("name"), "duplicate list name %q (also lists[%d])", l.Name, first)
			} else {
				byName[l.Name] = i
			}
		}

		format, err := blocklists.ParseFormat(l.Format)
		if err != nil {
			v.errf(at("format"), "%v", err)
		}
		squid := format == blocklists.FormatSquidGuard

		hasPath, hasURL := strings.TrimSpace(l.Path) != "", strings.TrimSpace(l.URL) != ""
		https := false
		switch {
		case hasPath && hasURL:
			v.errf(p, "a list takes path: or url:, not both")
		case !hasPath && !hasURL && !v.bad[at("path")] && !v.bad[at("url")]:
			v.errf(p, "a list needs path: (a local file or directory) or url: (a feed to download)")
		case hasURL:
			https = v.feedURL(at("url"), l.URL)
			if squid {
				v.errf(at("url"), "a squidguard list is a directory tree: use path:")
			}
		}

		var cat blocklists.Category
		catOK := false
		if l.Category != "" {
			cat, catOK = v.category(at("category"), l.Category)
			if squid {
				v.errf(at("category"), "a squidguard list maps its sub-directories to categories with categories:, not category:")
			}
		}
		if len(l.Categories) > 0 && !squid && err == nil {
			v.errf(at("categories"), "categories: is only for squidguard lists (set format: squidguard)")
		}
		for _, dir := range slices.Sorted(maps.Keys(l.Categories)) {
			dp := joinKey(at("categories"), dir)
			if !nameRE.MatchString(dir) {
				v.errf(dp, "sub-directory name %q: use a plain directory name", dir)
			}
			if c, ok := v.category(dp, l.Categories[dir]); ok && c.Restricted() {
				v.errf(dp, "%s: restricted lists must be separate lists with format domains, urls or sha256", restrictedMsg)
			}
		}
		if catOK && cat.Restricted() && err == nil {
			switch format {
			case blocklists.FormatDomains, blocklists.FormatURLs, blocklists.FormatSHA256:
			default:
				fp := at("format")
				if !v.has(fp) {
					fp = at("category")
				}
				v.errf(fp, "%s: a restricted list (iwf, ctiru) must set format: domains, urls or sha256", restrictedMsg)
			}
		}
		if catOK && cat.Restricted() && hasURL && !https {
			v.errf(at("url"), "a restricted list must be downloaded over https")
		}

		if l.Refresh != "" {
			if _, err := parseCron(l.Refresh); err != nil {
				v.errf(at("refresh"), "invalid refresh schedule %q: %v (want a cron spec such as \"0 3 * * *\" or \"@daily\")", l.Refresh, err)
			}
		}
		if r := l.MinRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
			v.errf(at("min_ratio"), "must be between 0 and 1")
		}
		if l.Auth != nil {
			v.auth(at("auth"), l.Auth, hasURL, https)
		}
	}
	return byName
}

// feedURL checks a list's url and reports whether it is https. The URL is
// never quoted in errors: feeds often carry keys in their query strings.
func (v *validator) feedURL(path, s string) (https bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		v.errf(path, "invalid url")
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		https = true
	case "http":
	default:
		v.errf(path, "url must start with https:// or http://")
		return false
	}
	if u.User != nil {
		v.errf(path, "credentials must not be written in the url; use auth: with a secret file or variable")
	}
	if u.Hostname() == "" {
		v.errf(path, "url has no host")
	}
	return https
}

func (v *validator) auth(path string, a *FeedAuth, hasURL, https bool) {
	at := func(key string) string { return joinKey(path, key) }
	if !hasURL {
		v.errf(path, "auth: is only used by url lists")
	} else if !https {
		v.errf(path, "credentials must not be sent over plain http: use an https url")
	}
	basic := a.Username != "" || a.Password != nil || v.bad[at("password")]
	header := a.Header != "" || a.Token != nil || v.bad[at("token")]
	switch {
	case !basic && !header:
		v.errf(path, "auth needs username: and password:, or header: and token:")
	case a.Username == "" && a.Password != nil:
		v.errf(at("password"), "password: needs username:")
	case a.Username != "" && a.Password == nil && !v.bad[at("password")]:
		v.errf(at("username"), "username: needs password:")
	}
	if strings.Contains(a.Username, ":") {
		v.errf(at("username"), "a username cannot contain ':'")
	}
	switch {
	case a.Header != "" && a.Token == nil && !v.bad[at("token")]:
		v.errf(at("header"), "header: needs token: (the secret holding the header's value)")
	case a.Header == "" && a.Token != nil:
		v.errf(at("token"), "token: needs header: (e.g. Authorization)")
	case a.Header != "" && !headerRE.MatchString(a.Header):
		v.errf(at("header"), "invalid HTTP header name %q", a.Header)
	}
	v.secret(at("password"), a.Password)
	v.secret(at("token"), a.Token)
}

func (v *validator) secret(path string, s *Secret) {
	switch {
	case s == nil:
	case s.File != "" && s.Env != "":
		v.errf(path, `a secret takes either "file:" or "env:", not both`)
	case s.File == "" && s.Env == "":
		v.errf(path, `a secret needs "file: /path/to/secret" or "env: VARIABLE_NAME"`)
	case s.Env != "" && !envRE.MatchString(s.Env):
		v.errf(joinKey(path, "env"), "invalid environment variable name %q", s.Env)
	}
}

// groups checks groups: and returns the names of the lists groups use.
func (v *validator) groups(lists map[string]int) map[string]bool {
	used := map[string]bool{}
	c := v.c
	if len(c.Groups) == 0 {
		v.errf("groups", "at least one group is needed")
	}
	type owner struct{ group, path string }
	nets := map[netip.Prefix]owner{}
	for _, name := range slices.Sorted(maps.Keys(c.Groups)) {
		g := c.Groups[name]
		p := joinKey("groups", name)
		at := func(key string) string { return joinKey(p, key) }
		if !nameRE.MatchString(name) {
			v.errf(p, "group name %q: use up to 64 letters, digits, '.', '_' and '-', starting with a letter or digit", name)
		}
		// A group written in the file replaces the built-in one whole, so
		// one written without block: would block nothing but the
		// restricted tier at all times (its schedules aside), however it
		// was meant; block: [] says so on purpose. (Configs built in code
		// have no positions: not checked.)
		if v.has(p) && !v.has(at("block")) && !v.bad[p] {
			msg := "has no block: list, so it blocks nothing but the restricted tier"
			if _, builtIn := defaults().Groups[name]; builtIn {
				msg = "replaces the built-in " + name + " group whole, and without block: it blocks nothing but the restricted tier"
			}
			v.errf(p, "%s: list the categories to block, or write block: [] to block nothing on purpose", msg)
		}
		for i, n := range g.Networks {
			np := joinIndex(at("networks"), i)
			if !n.IsValid() {
				v.errf(np, "empty network")
				continue
			}
			n = n.Masked()
			if o, dup := nets[n]; dup {
				if o.group == name {
					v.errf(np, "network %s is listed twice", n)
				} else {
					v.errf(np, "network %s is also claimed by group %q (%s); a network belongs to one group", n, o.group, o.path)
				}
				continue
			}
			nets[n] = owner{name, np}
			if !v.allowed(n) {
				v.warnf(np, "network %s is not inside clients.allow, so its clients are refused", n)
			}
		}
		for i, b := range g.Block {
			v.category(joinIndex(at("block"), i), b)
		}
		for i := range g.Schedules {
			v.schedule(joinIndex(at("schedules"), i), &g.Schedules[i])
		}
		allow := map[string]bool{}
		for i, e := range g.Allow {
			if n, msg := checkEntry(e); msg != "" {
				v.errf(joinIndex(at("allow"), i), "%s", msg)
			} else {
				allow[n] = true
			}
		}
		for i, e := range g.Deny {
			ep := joinIndex(at("deny"), i)
			if n, msg := checkEntry(e); msg != "" {
				v.errf(ep, "%s", msg)
			} else if allow[n] {
				v.errf(ep, "%q is in both allow and deny", e)
			}
		}
		inGroup := map[string]string{}
		for _, kind := range []string{"allow_lists", "deny_lists"} {
			names := g.AllowLists
			if kind == "deny_lists" {
				names = g.DenyLists
			}
			for i, ln := range names {
				lp := joinIndex(at(kind), i)
				if first, dup := inGroup[ln]; dup {
					v.errf(lp, "list %q is already in %s", ln, first)
					continue
				}
				inGroup[ln] = kind
				used[ln] = true
				li, ok := lists[ln]
				if !ok {
					v.errf(lp, "no list named %q%s", ln, didYouMean(ln, slices.Sorted(maps.Keys(lists))))
					continue
				}
				l := &c.Lists[li]
				if cat, err := blocklists.ParseCategory(l.Category); err == nil && cat.Restricted() {
					if kind == "allow_lists" {
						v.errf(lp, "%s: list %q feeds %s and cannot be an allow list", restrictedMsg, ln, cat)
					} else {
						v.errf(lp, "list %q feeds the restricted tier, which is always blocked; remove it from deny_lists", ln)
					}
					continue
				}
				if l.Category != "" || l.Format == string(blocklists.FormatSquidGuard) {
					v.errf(lp, "list %q has categories of its own; %s take lists without a category (block categories with block: instead)", ln, kind)
				}
			}
		}
		if s := g.SafeSearch; s != "off" && s != "moderate" && s != "strict" {
			v.errf(at("safe_search"), "unknown safe_search mode %q (want off, moderate or strict)", s)
		}
	}
	return used
}

func (v *validator) schedule(p string, s *Schedule) {
	at := func(key string) string { return joinKey(p, key) }
	if len(s.Block) == 0 {
		v.errf(at("block"), "a schedule needs block: (the categories it blocks)")
	}
	for i, b := range s.Block {
		v.category(joinIndex(at("block"), i), b)
	}
	if len(s.When) == 0 {
		v.errf(at("when"), "a schedule needs when: (days and times)")
	}
	for i := range s.When {
		w := &s.When[i]
		wp := joinIndex(at("when"), i)
		if len(w.Days) == 0 {
			v.errf(joinKey(wp, "days"), "needs days: (e.g. [weekdays] or [mon, wed])")
		}
		for j, d := range w.Days {
			if _, err := ParseDays([]string{d}); err != nil {
				v.errf(joinIndex(joinKey(wp, "days"), j), "%v", err)
			}
		}
		switch {
		case w.From == 24*60:
			v.errf(joinKey(wp, "from"), "from: cannot be 24:00")
		case w.From == w.To:
			v.errf(joinKey(wp, "to"), "from: and to: are the same time (%s), so the window is empty (use 00:00 to 24:00 for all day)", w.To)
		}
	}
}

func (v *validator) clients() {
	c := v.c
	groups := slices.Sorted(maps.Keys(c.Groups))
	groupRef := func(path, name string) {
		if _, ok := c.Groups[name]; !ok {
			v.errf(path, "no group named %q%s", name, didYouMean(name, groups))
		}
	}
	if len(c.Clients.Allow) == 0 {
		v.errf("clients.allow", "is empty, so every client would be refused; list the networks that may use Gatehouse")
	}
	if c.Clients.DefaultGroup == "" {
		v.errf("clients.default_group", "must name a group (e.g. students)")
	} else {
		groupRef("clients.default_group", c.Clients.DefaultGroup)
	}

	names := map[string]string{}
	ips := map[netip.Addr]string{}
	macs := map[string]string{}
	for i := range c.Clients.Devices {
		d := &c.Clients.Devices[i]
		p := joinIndex("clients.devices", i)
		at := func(key string) string { return joinKey(p, key) }
		if n := strings.ToLower(strings.TrimSpace(d.Name)); n == "" {
			v.errf(at("name"), "a device needs a name:")
		} else if first, dup := names[n]; dup {
			v.errf(at("name"), "duplicate device name %q (also %s)", d.Name, first)
		} else {
			names[n] = p
		}
		if !d.IP.IsValid() && d.MAC == "" && !v.bad[at("ip")] && !v.bad[at("mac")] {
			v.errf(p, "a device needs ip: or mac:")
		}
		if d.IP.IsValid() {
			if first, dup := ips[d.IP]; dup {
				v.errf(at("ip"), "IP address %s is also %s", d.IP, first)
			} else {
				ips[d.IP] = p
			}
			if !v.allowed(netip.PrefixFrom(d.IP, d.IP.BitLen())) {
				v.warnf(at("ip"), "device address %s is not inside clients.allow, so it is refused", d.IP)
			}
		}
		if d.MAC != "" {
			hw, err := net.ParseMAC(d.MAC)
			if err != nil || len(hw) != 6 {
				v.errf(at("mac"), "invalid MAC address %q (want e.g. 3c:22:fb:12:34:56)", d.MAC)
			} else if first, dup := macs[hw.String()]; dup {
				v.errf(at("mac"), "MAC address %s is also %s", d.MAC, first)
			} else {
				macs[hw.String()] = p
			}
		}
		if d.Group != "" {
			groupRef(at("group"), d.Group)
		}
	}

	users := map[string]string{}
	for i := range c.Clients.Users {
		u := &c.Clients.Users[i]
		p := joinIndex("clients.users", i)
		if n := username.Canon(u.Name); n == "" { // as the policy keys them
			v.errf(joinKey(p, "name"), "a user needs a name:")
		} else if first, dup := users[n]; dup {
			v.errf(joinKey(p, "name"), "duplicate user name %q (also %s)", u.Name, first)
		} else {
			users[n] = p
		}
		if u.Group != "" {
			groupRef(joinKey(p, "group"), u.Group)
		}
	}
}

// allowed reports whether all of p is inside clients.allow.
func (v *validator) allowed(p netip.Prefix) bool {
	for _, a := range v.c.Clients.Allow {
		if a.Bits() <= p.Bits() && a.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// checkEntry checks a groups.*.allow / deny entry: a domain (which covers
// its subdomains; a leading "*." is accepted and means the same), an IP
// address, or a host/path URL prefix, optionally with http:// or https://.
// It returns the entry normalised as the policy engine indexes it
// (blocklists.NormalizeURL with a path, NormalizeHost without), or a
// problem.
func checkEntry(s string) (norm, problem string) {
	e := strings.TrimSpace(s)
	if e == "" {
		return "", "empty entry"
	}
	if i := strings.Index(e, "://"); i >= 0 {
		if scheme := strings.ToLower(e[:i]); scheme != "http" && scheme != "https" {
			return "", fmt.Sprintf("invalid entry %q: only http:// and https:// addresses can be listed", s)
		}
	}
	e = strings.TrimPrefix(e, "*.")
	var err error
	if strings.Contains(e, "/") {
		norm, err = blocklists.NormalizeURL(e)
	} else {
		norm, err = blocklists.NormalizeHost(e)
	}
	if err != nil {
		return "", fmt.Sprintf("invalid entry %q: %v", s, err)
	}
	return norm, ""
}

func (v *validator) warnings() []string {
	out := make([]string, len(v.warns))
	for i, w := range v.warns {
		out[i] = w.Error()
	}
	return out
}
