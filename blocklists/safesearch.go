package blocklists

import (
	_ "embed"
	"strings"
)

//go:embed embedded/google-domains.txt
var googleDomains string

// Safe-search endpoints: a search host is answered as a CNAME to its
// enforced-safe host, resolved through the upstream.
const (
	GoogleSafe      = "forcesafesearch.google.com"
	YouTubeStrict   = "restrict.youtube.com"
	YouTubeModerate = "restrictmoderate.youtube.com"
	BingSafe        = "strict.bing.com"
	DuckDuckGoSafe  = "safe.duckduckgo.com"
)

// SafeTarget is one row of the safe-search table: where a host goes in
// moderate and in strict mode.
type SafeTarget struct{ Moderate, Strict string }

// safeSearchTable is the built-in rewrite table: Google (every country
// domain), YouTube, Bing and DuckDuckGo.
var safeSearchTable = func() map[string]SafeTarget {
	t := map[string]SafeTarget{}
	for _, line := range strings.Split(googleDomains, "\n") {
		d := strings.TrimSpace(line)
		if d == "" || d[0] == '#' {
			continue
		}
		t[d] = SafeTarget{GoogleSafe, GoogleSafe}
		t["www."+d] = SafeTarget{GoogleSafe, GoogleSafe}
	}
	for _, d := range []string{"www.youtube.com", "m.youtube.com", "youtubei.googleapis.com", "youtube.googleapis.com", "www.youtube-nocookie.com"} {
		t[d] = SafeTarget{YouTubeModerate, YouTubeStrict}
	}
	for _, d := range []string{"www.bing.com", "bing.com", "edgeservices.bing.com"} {
		t[d] = SafeTarget{BingSafe, BingSafe}
	}
	// html. and lite. are the same front-ends (the app is chosen by
	// Host), whose pages otherwise keep a pupil's kp=-2 in DNS-only schools.
	for _, d := range []string{"duckduckgo.com", "www.duckduckgo.com", "start.duckduckgo.com", "html.duckduckgo.com", "lite.duckduckgo.com"} {
		t[d] = SafeTarget{DuckDuckGoSafe, DuckDuckGoSafe}
	}
	return t
}()

// SafeSearchRow returns the safe-search row for host (exact name).
func SafeSearchRow(host string) (SafeTarget, bool) {
	t, ok := safeSearchTable[host]
	return t, ok
}

// SafeSearchHosts counts the table's rows.
func SafeSearchHosts() int { return len(safeSearchTable) }

// addSafeSearch marks every host of the table in b as an exact
// SearchEngine entry, so one index lookup also tells the policy engine
// whether a rewrite may apply.
func addSafeSearch(b *Builder) error {
	info, sink, err := b.AddList(ListInfo{Name: "embedded/safe-search", Source: "embedded", Category: SearchEngine, Format: FormatDomains})
	if err != nil {
		return err
	}
	for host := range safeSearchTable {
		sink.Domain([]byte(host), ModeExact)
	}
	info.Entries = len(safeSearchTable)
	return nil
}
