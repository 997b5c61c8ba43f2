package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// searchSet is what an engine holds for search terms: the compiled
// watchlist and search-engine table of its config.
type searchSet struct {
	watch   *watchlist.Watchlist
	engines *watchlist.Engines
}

// compiled caches the search set of the last few configs. New runs for
// every list refresh with the same config; the watchlist files are read
// and compiled once per config (a reload), not per refresh.
var compiled struct {
	mu   sync.Mutex
	keys [4]*config.Config
	sets [4]searchSet
	next int
}

// searchSetFor compiles (or finds) cfg's watchlist and engine table. A
// watchlist file that cannot be read or parsed is an error naming its file
// and line: the reload is rejected, the running snapshot stays.
func searchSetFor(cfg *config.Config) (searchSet, error) {
	compiled.mu.Lock()
	defer compiled.mu.Unlock()
	for i, k := range compiled.keys {
		if k == cfg {
			return compiled.sets[i], nil
		}
	}
	entries, err := cfg.ReadWatchlists()
	if err != nil {
		return searchSet{}, fmt.Errorf("watchlists: %w", err)
	}
	w, err := watchlist.Compile(entries, cfg.WatchlistSettings())
	if err != nil {
		return searchSet{}, err
	}
	t, err := watchlist.NewEngines(cfg.SearchEngineTable())
	if err != nil {
		return searchSet{}, fmt.Errorf("watchlists.search_engines: %w", err)
	}
	s := searchSet{watch: w, engines: t}
	compiled.keys[compiled.next], compiled.sets[compiled.next] = cfg, s
	compiled.next = (compiled.next + 1) % len(compiled.keys)
	return s, nil
}

// Watchlist is the compiled watchlist of the engine's config.
func (e *Engine) Watchlist() *watchlist.Watchlist { return e.search.watch }

// SearchEngines is the search-engine table of the engine's config.
func (e *Engine) SearchEngines() *watchlist.Engines { return e.search.engines }

// GroupSafeSearch is a group's safe-search mode (off for an unknown
// group). The DNS rewrite and the proxy's safe parameters both read it,
// so one setting governs both.
func (e *Engine) GroupSafeSearch(group string) SafeSearch {
	if g, ok := e.groups[group]; ok {
		return g.safeSearch
	}
	return SafeSearchOff
}

// RestrictedTerm decides a search term that reads as a site's address
// ("abuse.example/dir/page.html", with or without a scheme) for r's client,
// and returns the decision when the site is on the restricted tier: a
// search for it is that site's block (the proxy, `gatehouse check`). A
// term with a space or without a dot is not an address and costs two byte
// scans.
func (e *Engine) RestrictedTerm(r Request, term string) (Decision, bool) {
	t := strings.TrimSpace(term)
	if t == "" || strings.ContainsAny(t, " \t\r\n") || !strings.Contains(t, ".") {
		return Decision{}, false
	}
	host, path, err := bl.NormalizeSite(strings.TrimPrefix(t, "//"))
	if err != nil {
		return Decision{}, false
	}
	r.Host, r.Path = host, path
	r.Addr, _ = netip.ParseAddr(host)
	d := e.Decide(r)
	return d, d.Restricted
}
