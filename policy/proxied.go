package policy

import (
	"net/url"
	"strings"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// proxySuffixes are the domains under which a proxy serves any site
// under a name of its own, the site's host with its "-" written "--" and
// its "." written "-": Google Translate's website proxy
// (www-example-com.translate.goog is www.example.com, fetched by Google
// and shown translated) and the AMP cache
// (www-example-com.cdn.ampproject.org).
var proxySuffixes = [...]string{".translate.goog", ".cdn.ampproject.org"}

// ProxiedHost is the site a name stands for when it is a web proxy's
// address for that site (proxySuffixes), as Google Translate's
// www-example-com.translate.goog is www.example.com; ok is false for any
// other name. A pupil need not want a translation: the proxy serves the
// site whole, so the decision of the name is also the decision of the
// site (decide). It allocates only for such a name.
func ProxiedHost(host string) (site string, ok bool) {
	if n := len(host); n < 5 || host[n-1] != 'g' { // .goog, .org: one comparison for most names
		return "", false
	}
	var label string
	for _, suffix := range proxySuffixes {
		if l, found := strings.CutSuffix(host, suffix); found {
			label = l
			break
		}
	}
	if label == "" || strings.IndexByte(label, '.') >= 0 {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(label))
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c != '-' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(label) && label[i+1] == '-' {
			b.WriteByte('-')
			i++
		} else {
			b.WriteByte('.')
		}
	}
	site = b.String()
	if strings.IndexByte(site, '.') < 0 || site[0] == '.' || site[len(site)-1] == '.' || strings.Contains(site, "..") {
		return "", false
	}
	return site, true
}

// ProxiedURL is the page a request to a web proxy or archive stands for,
// when the site carries it in its URL: the Wayback Machine's
// web.archive.org/web/20200101000000/https://www.example.com/page,
// DuckDuckGo's image proxy external-content.duckduckgo.com/iu/?u=URL and
// Google Translate's translate.google.*/translate?u=URL (and /website). host
// is normalised and path canonical; site comes back normalised and
// sitePath as written (Decide makes it canonical). ok is false for any
// other request. It allocates only for such a request.
func ProxiedURL(host, path string) (site, sitePath string, ok bool) {
	var inner string
	switch {
	case host == "web.archive.org" || host == "wayback.archive.org":
		rest, found := strings.CutPrefix(path, "/web/")
		if !found {
			return "", "", false
		}
		// A capture's time and kind ("20200101000000", "2020*",
		// "20200101000000im_", "*"), unless the URL comes at once.
		if seg, after, cut := strings.Cut(rest, "/"); cut && strings.Trim(seg, "0123456789*_abcdefghijklmnopqrstuvwxyz") == "" {
			rest = after
		}
		inner = rest
	case host == "external-content.duckduckgo.com" && strings.HasPrefix(path, "/iu/"),
		strings.HasPrefix(host, "translate.google.") && (strings.HasPrefix(path, "/translate?") || strings.HasPrefix(path, "/website?")):
		_, query, _ := strings.Cut(path, "?")
		// (A copy: ParseQuery's values may share path's bytes, which
		// Decide keeps on its stack.)
		q, _ := url.ParseQuery(strings.Clone(query))
		inner = q.Get("u")
	default:
		return "", "", false
	}
	// The scheme, with however many slashes are left of its "//" (a
	// canonical path has one).
	if i := strings.IndexByte(inner, ':'); i > 0 && strings.Trim(strings.ToLower(inner[:i]), "abcdefghijklmnopqrstuvwxyz") == "" {
		inner = inner[i+1:]
	}
	inner = strings.TrimLeft(inner, "/\\")
	if inner == "" {
		return "", "", false
	}
	site, sitePath, err := bl.NormalizeSite(inner)
	if err != nil || strings.IndexByte(site, '.') < 0 && strings.IndexByte(site, ':') < 0 {
		return "", "", false
	}
	return site, sitePath, true
}
