package config

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// Watchlists configures the safeguarding watchlists the proxy scores
// search terms against (package watchlist), and the search-engine table it
// reads search terms with. A reload applies them.
type Watchlists struct {
	// Starter includes the embedded starter lists (default true): a
	// starting point for the DSL to review, not a finished list.
	Starter *bool `yaml:"starter"`
	// Files adds lists: one theme per file, "phrase | weight" lines.
	// Other languages are added the same way.
	Files []WatchlistFile `yaml:"files"`
	// Themes changes a theme's severity or report threshold (default 10).
	Themes map[string]WatchlistTheme `yaml:"themes"`
	// SearchEngines adds to the built-in search-engine table; an entry
	// with a built-in engine's host replaces it for that host.
	SearchEngines []SearchEngine `yaml:"search_engines"`
}

// WatchlistFile is one watchlist file.
type WatchlistFile struct {
	Theme string `yaml:"theme"` // self-harm, extremism, bullying, sexual, violence or drugs
	Path  string `yaml:"path"`
}

// WatchlistTheme overrides a theme's defaults.
type WatchlistTheme struct {
	Severity  *blocklists.Severity `yaml:"severity"`
	Threshold int                  `yaml:"threshold"` // 0: the default (10)
	// ContentReport and ContentBlock are the page thresholds of the
	// proxy's content check (defaults 30 and 60); -1 turns one off.
	ContentReport int `yaml:"content_report"`
	ContentBlock  int `yaml:"content_block"`
}

// SearchEngine is a search-engine table entry (watchlist.Engine).
type SearchEngine struct {
	Name           string   `yaml:"name"`
	Hosts          []string `yaml:"hosts"` // "example.com" (and subdomains) or "example.*" (any country domain)
	Paths          []string `yaml:"paths"` // exact search paths, e.g. /search
	Param          string   `yaml:"param"` // query parameter with the term
	SafeParam      string   `yaml:"safe_param"`
	SafeStrict     string   `yaml:"safe_strict"`
	SafeModerate   string   `yaml:"safe_moderate"`
	Header         string   `yaml:"header"`
	HeaderStrict   string   `yaml:"header_strict"`
	HeaderModerate string   `yaml:"header_moderate"`
	// PostsForm: the engine's pages POST their search form; a POST to a
	// search path the proxy cannot read whole is refused.
	PostsForm bool `yaml:"posts_form"`
}

// StarterWatchlists reports whether the embedded starter lists are used.
func (w *Watchlists) StarterWatchlists() bool { return w.Starter == nil || *w.Starter }

// WatchlistSettings is every theme's settings: the defaults with
// watchlists.themes applied.
func (c *Config) WatchlistSettings() [watchlist.NumThemes]watchlist.Settings {
	s := watchlist.DefaultSettings()
	for name, t := range c.Watchlists.Themes {
		th, err := watchlist.ParseTheme(name)
		if err != nil {
			continue // validation reported it
		}
		if t.Severity != nil {
			s[th].Severity = *t.Severity
		}
		if t.Threshold > 0 {
			s[th].Threshold = t.Threshold
		}
		switch {
		case t.ContentReport > 0:
			s[th].ContentReport = t.ContentReport
		case t.ContentReport < 0:
			s[th].ContentReport = 0
		}
		switch {
		case t.ContentBlock > 0:
			s[th].ContentBlock = t.ContentBlock
		case t.ContentBlock < 0:
			s[th].ContentBlock = 0
		}
	}
	return s
}

// SearchEngineTable is the built-in search-engine table with
// watchlists.search_engines after it.
func (c *Config) SearchEngineTable() []watchlist.Engine {
	out := watchlist.DefaultEngines()
	for _, e := range c.Watchlists.SearchEngines {
		out = append(out, watchlist.Engine{
			Name: e.Name, Hosts: e.Hosts, Paths: e.Paths, Param: e.Param,
			SafeParam: e.SafeParam, SafeStrict: e.SafeStrict, SafeModerate: e.SafeModerate,
			Header: e.Header, HeaderStrict: e.HeaderStrict, HeaderModerate: e.HeaderModerate,
			PostsForm: e.PostsForm,
		})
	}
	return out
}

// ReadWatchlists reads the watchlist entries cfg names: the starter lists
// (unless turned off) and watchlists.files. Errors name the file and line.
func (c *Config) ReadWatchlists() ([]watchlist.Entry, error) {
	var out []watchlist.Entry
	if c.Watchlists.StarterWatchlists() {
		es, err := watchlist.Starter()
		if err != nil {
			return nil, err
		}
		out = es
	}
	for _, f := range c.Watchlists.Files {
		es, err := readWatchlistFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}

func readWatchlistFile(f WatchlistFile) ([]watchlist.Entry, error) {
	th, err := watchlist.ParseTheme(f.Theme)
	if err != nil {
		return nil, err
	}
	r, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	es, err := watchlist.Parse(r, f.Path, th)
	if err == nil && len(es) == 0 {
		// Most likely caught while being written (truncated first), or
		// emptied by mistake: taking it would drop the theme's phrases.
		return nil, fmt.Errorf("%s has no phrases: refused, as a file being written would drop its theme's words (remove it from watchlists.files instead)", f.Path)
	}
	return es, err
}

// watchlists validates watchlists:. With checkFiles the files are read and
// parsed too, each problem at its file and line.
func (v *validator) watchlists() {
	w := &v.c.Watchlists
	themes := watchlist.ThemeNames()
	for i := range w.Files {
		f := &w.Files[i]
		at := joinIndex("watchlists.files", i)
		f.Theme = strings.ToLower(strings.TrimSpace(f.Theme))
		f.Path = strings.TrimSpace(f.Path)
		if _, err := watchlist.ParseTheme(f.Theme); err != nil {
			v.errf(joinKey(at, "theme"), "%v%s", err, didYouMean(f.Theme, themes))
		}
		if f.Path == "" {
			v.errf(joinKey(at, "path"), "must not be empty")
			continue
		}
		if v.checkFiles && v.readable(joinKey(at, "path"), f.Path, "watchlist file") {
			if _, err := readWatchlistFile(*f); err != nil {
				v.errf(joinKey(at, "path"), "%v", err)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(w.Themes)) {
		at := joinKey("watchlists.themes", name)
		if _, err := watchlist.ParseTheme(name); err != nil {
			v.errf(at, "%v%s", err, didYouMean(name, themes))
			continue
		}
		if sev := w.Themes[name].Severity; name == watchlist.SelfHarm.String() && sev != nil && *sev < blocklists.SeverityCritical {
			v.warnf(joinKey(at, "severity"), "suicide-related searches are then %s, not critical: the DSL may no longer get an immediate alert", sev)
		}
		if t := w.Themes[name].Threshold; t < 0 || t > 10_000 {
			v.errf(joinKey(at, "threshold"), "must be between 1 and 10000 (0 or unset: the default, %d)", watchlist.DefaultThreshold)
		}
		th := w.Themes[name]
		if t := th.ContentReport; t < -1 || t > 10_000 {
			v.errf(joinKey(at, "content_report"), "must be between 1 and 10000, or -1 for off (0 or unset: the default, %d)", watchlist.DefaultContentReport)
		}
		if t := th.ContentBlock; t < -1 || t > 10_000 {
			v.errf(joinKey(at, "content_block"), "must be between 1 and 10000, or -1 for off (0 or unset: the default, %d)", watchlist.DefaultContentBlock)
		} else if rep := cmp.Or(th.ContentReport, watchlist.DefaultContentReport); th.ContentBlock != -1 && rep > 0 && cmp.Or(th.ContentBlock, watchlist.DefaultContentBlock) <= rep {
			v.errf(joinKey(at, "content_block"), "must be higher than content_report (%d): a page is reported before its rest is blocked", rep)
		}
	}
	for i, e := range w.SearchEngines {
		at := joinIndex("watchlists.search_engines", i)
		if _, err := watchlist.NewEngines([]watchlist.Engine{{Name: e.Name, Hosts: e.Hosts, Paths: e.Paths, Param: e.Param}}); err != nil {
			v.errf(at, "%v", err)
		}
		if e.SafeParam != "" && (e.SafeStrict == "" || e.SafeModerate == "") || e.SafeParam == "" && (e.SafeStrict != "" || e.SafeModerate != "") {
			v.errf(joinKey(at, "safe_param"), "safe_param needs safe_strict and safe_moderate, and they need it")
		}
		if e.Header != "" && !headerRE.MatchString(e.Header) {
			v.errf(joinKey(at, "header"), "invalid header name %q", e.Header)
		}
		if e.Header != "" && (e.HeaderStrict == "" || e.HeaderModerate == "") || e.Header == "" && (e.HeaderStrict != "" || e.HeaderModerate != "") {
			v.errf(joinKey(at, "header"), "header needs header_strict and header_moderate, and they need it")
		}
	}
}
