package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/gatehouse-filter/gatehouse/explain"
	"github.com/gatehouse-filter/gatehouse/policy"
	"github.com/gatehouse-filter/gatehouse/watchlist"
)

// checkSearch is what `gatehouse check` shows for a search-engine URL: the
// term the proxy would read, its watchlist score, and the safe-search
// switch the proxy would add for the client's group.
type checkSearch struct {
	Engine     string         `json:"engine"`
	Term       string         `json:"term,omitempty"`
	Theme      string         `json:"theme,omitempty"` // the theme reported (best), when anything matched
	Score      int            `json:"score"`
	Threshold  int            `json:"threshold,omitempty"`
	Severity   string         `json:"severity,omitempty"`
	Reported   bool           `json:"reported"` // the score reaches the threshold: an event (flag) and, if severe enough, an alert
	Scores     map[string]int `json:"scores,omitempty"`
	Matches    []checkMatch   `json:"matches,omitempty"`
	SafeSearch string         `json:"safe_search,omitempty"` // what the proxy adds: "safe=active", "YouTube-Restrict: Strict"
}

type checkMatch struct {
	Theme  string `json:"theme"`
	Phrase string `json:"phrase"`
	Weight int    `json:"weight"`
}

// searchOf works out checkSearch for the URL as typed (input), decided as
// r; nil when the host is not a search engine. Nothing is shown for the
// restricted tier.
func searchOf(eng *policy.Engine, r explain.Result, input string) *checkSearch {
	se, ok := eng.SearchEngines().Lookup(r.Host)
	if !ok || r.Restricted {
		return nil
	}
	out := &checkSearch{Engine: se.Name}
	raw := strings.TrimSpace(input)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return out
	}
	if mode := eng.GroupSafeSearch(r.Group); mode != policy.SafeSearchOff && r.Action != "block" {
		strict := mode == policy.SafeSearchStrict
		var parts []string
		if se.SafeParam != "" {
			v := se.SafeModerate
			if strict {
				v = se.SafeStrict
			}
			parts = append(parts, se.SafeParam+"="+v+" on searches")
		}
		if h, v := se.SafeHeader(strict); h != "" {
			parts = append(parts, h+": "+v)
		}
		out.SafeSearch = strings.Join(parts, ", ")
	}
	term, ok := se.Term(u.EscapedPath(), u.RawQuery)
	if !ok {
		return out
	}
	out.Term = term
	w := eng.Watchlist()
	sc := w.NewScorer()
	res := sc.Score(term)
	for _, m := range res.Matches {
		out.Matches = append(out.Matches, checkMatch{Theme: m.Theme.String(), Phrase: m.Phrase, Weight: m.Weight})
	}
	if len(res.Matches) > 0 {
		out.Scores = map[string]int{}
		for t := watchlist.Theme(0); t < watchlist.NumThemes; t++ {
			if res.Scores[t] != 0 {
				out.Scores[t.String()] = res.Scores[t]
			}
		}
		set := w.Settings(res.Best)
		out.Theme, out.Score, out.Threshold, out.Severity, out.Reported = res.Best.String(), res.Score(), set.Threshold, set.Severity.String(), res.Over
	}
	return out
}

// print writes the search lines of the text form.
func (s *checkSearch) print(w io.Writer) {
	fmt.Fprintf(w, "search engine\t%s\n", s.Engine)
	if s.Term != "" {
		fmt.Fprintf(w, "search term\t%q\n", s.Term)
		switch {
		case s.Theme == "":
			fmt.Fprintf(w, "watchlist\tno phrase matched\n")
		case s.Reported:
			fmt.Fprintf(w, "watchlist\t%s: score %d, threshold %d: REPORTED (severity %s), even if allowed\n", s.Theme, s.Score, s.Threshold, s.Severity)
		default:
			fmt.Fprintf(w, "watchlist\t%s: score %d, under the threshold %d: not reported\n", s.Theme, s.Score, s.Threshold)
		}
		for _, m := range s.Matches {
			fmt.Fprintf(w, "  matched\t%q (%s, %+d)\n", m.Phrase, m.Theme, m.Weight)
		}
	}
	if s.SafeSearch != "" {
		fmt.Fprintf(w, "safe search\tthe proxy adds %s\n", s.SafeSearch)
	}
}
