package watchlist

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Theme is a safeguarding theme a phrase belongs to.
type Theme uint8

// The themes. Each has a default severity and report threshold, which the
// config can change (watchlists.themes).
const (
	SelfHarm  Theme = iota // self-harm and suicide
	Extremism              // extremism and radicalisation
	Bullying               // bullying
	Sexual                 // sexual content
	Violence               // weapons and violence
	Drugs                  // drugs
	NumThemes
)

type themeInfo struct {
	name, title, category string
	severity              bl.Severity
}

var themes = [NumThemes]themeInfo{
	SelfHarm:  {"self-harm", "self-harm and suicide", bl.SelfHarm.String(), bl.SeverityCritical},
	Extremism: {"extremism", "extremism and radicalisation", bl.Extremism.String(), bl.SeverityHigh},
	Bullying:  {"bullying", "bullying", "bullying", bl.SeverityMedium},
	Sexual:    {"sexual", "sexual content", bl.Pornography.String(), bl.SeverityMedium},
	Violence:  {"violence", "weapons and violence", bl.Violence.String(), bl.SeverityHigh},
	Drugs:     {"drugs", "drugs", bl.Drugs.String(), bl.SeverityMedium},
}

// DefaultThreshold is every theme's default report threshold: the score at
// which a text is reported. The starter lists give a phrase that is enough
// on its own a weight of 10.
const DefaultThreshold = 10

func (t Theme) String() string {
	if t < NumThemes {
		return themes[t].name
	}
	return "theme(" + strconv.Itoa(int(t)) + ")"
}

// Title is the theme as a sentence names it ("self-harm and suicide").
func (t Theme) Title() string { return themes[t].title }

// Category is the category name events for the theme carry: the catalogue
// category it corresponds to ("self-harm", "extremism", "pornography",
// "violence", "drugs"), or "bullying", which the catalogue has no list for.
func (t Theme) Category() string { return themes[t].category }

// DefaultSeverity is the theme's severity unless the config changes it.
func (t Theme) DefaultSeverity() bl.Severity { return themes[t].severity }

// ThemeNames lists the theme names in order.
func ThemeNames() []string {
	out := make([]string, NumThemes)
	for i := range out {
		out[i] = themes[i].name
	}
	return out
}

// ParseTheme reads a theme name.
func ParseTheme(s string) (Theme, error) {
	for i := range themes {
		if strings.EqualFold(s, themes[i].name) {
			return Theme(i), nil
		}
	}
	return 0, fmt.Errorf("unknown watchlist theme %q (want one of %s)", s, strings.Join(ThemeNames(), ", "))
}

// Settings is how a theme is reported.
type Settings struct {
	Severity  bl.Severity
	Threshold int // a score at or above it is reported; at least 1
	// ContentReport and ContentBlock are the thresholds of the proxy's
	// content check for a page's text (a page scores higher than a search
	// term): at ContentReport the page is reported, at ContentBlock the
	// rest of it is blocked. 0 turns either off.
	ContentReport int
	ContentBlock  int
}

// Default page thresholds of the content check.
const (
	DefaultContentReport = 30
	DefaultContentBlock  = 60
)

// DefaultSettings returns every theme's default settings.
func DefaultSettings() [NumThemes]Settings {
	var s [NumThemes]Settings
	for i := range s {
		s[i] = Settings{Severity: themes[i].severity, Threshold: DefaultThreshold, ContentReport: DefaultContentReport, ContentBlock: DefaultContentBlock}
	}
	return s
}

// Entry is one line of a watchlist file: a phrase and its spellings, all
// counted once, with a weight.
type Entry struct {
	Theme    Theme
	Variants []string // as written; a trailing * matches any word ending ("suicid*")
	Weight   int      // -100..100, not 0; negative weights mark innocent contexts ("suicide squad")
	Source   string   // file:line, for messages
}

// Bounds of a watchlist.
const (
	MaxWeight     = 100
	MaxPhraseLen  = 200     // bytes, normalised
	MaxEntries    = 100_000 // lines, all files together
	maxFileErrors = 20
)

// Parse reads a watchlist file for theme: one entry a line, written
//
//	phrase | weight
//	spelling one, spelling two, spelling three | weight
//
// Blank lines and lines starting with # are ignored. Spellings of one
// phrase are separated by commas and counted once. A phrase is matched on
// word boundaries in normalised form (see Normalize); a trailing * lets
// its last word run on ("suicid*" matches "suicidal"). name is used in
// errors, which give the file and line: "name:12: ...".
func Parse(r io.Reader, name string, theme Theme) ([]Entry, error) {
	var out []Entry
	var errs []error
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	bad := func(format string, args ...any) {
		if len(errs) < maxFileErrors {
			errs = append(errs, fmt.Errorf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
		}
	}
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if line == 1 {
			text = strings.TrimPrefix(text, "\uFEFF")
		}
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		phrase, weight, ok := strings.Cut(text, "|")
		if !ok {
			bad("want \"phrase | weight\", got %q", text)
			continue
		}
		w, err := strconv.Atoi(strings.TrimSpace(weight))
		if err != nil || w == 0 || w < -MaxWeight || w > MaxWeight {
			bad("weight %q: want a whole number from -%d to %d, not 0", strings.TrimSpace(weight), MaxWeight, MaxWeight)
			continue
		}
		e := Entry{Theme: theme, Weight: w, Source: name + ":" + strconv.Itoa(line)}
		for _, v := range strings.Split(phrase, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if err := checkPhrase(v); err != nil {
				bad("%q: %v", v, err)
				continue
			}
			e.Variants = append(e.Variants, v)
		}
		if len(e.Variants) == 0 {
			bad("no phrase before the |")
			continue
		}
		if len(out) >= MaxEntries {
			bad("more than %d entries", MaxEntries)
			break
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s:%d: %v", name, line+1, err))
	}
	return out, errors.Join(errs...)
}

// checkPhrase reports why a written phrase cannot be matched.
func checkPhrase(v string) error {
	n := AppendNormalized(nil, strings.TrimSuffix(v, "*"))
	switch {
	case len(n) == 0:
		return errors.New("has no letters or digits once normalised")
	case len(n) > MaxPhraseLen:
		return fmt.Errorf("longer than %d bytes", MaxPhraseLen)
	case strings.Contains(strings.TrimSuffix(v, "*"), "*"):
		return errors.New("* is allowed only at the end")
	}
	return nil
}

// Watchlist is a compiled set of weighted phrases: immutable, safe for
// concurrent use. Score with a Scorer (one per goroutine, or Get/Put).
type Watchlist struct {
	settings [NumThemes]Settings
	ac       *automaton
	patFirst []int32 // pattern p's entries: patList[patFirst[p]:patFirst[p+1]]
	patList  []int32
	entries  []entry
	phrases  int
	pool     sync.Pool
}

type entry struct {
	theme  Theme
	weight int32
	phrase string // the first spelling, for reports
}

// Compile builds a watchlist from entries with the given theme settings.
func Compile(entries []Entry, settings [NumThemes]Settings) (*Watchlist, error) {
	if len(entries) > MaxEntries {
		return nil, fmt.Errorf("watchlists: %d entries, more than %d", len(entries), MaxEntries)
	}
	for t, s := range settings {
		if s.Threshold < 1 {
			return nil, fmt.Errorf("watchlists: theme %s: threshold must be at least 1", Theme(t))
		}
	}
	w := &Watchlist{settings: settings, entries: make([]entry, 0, len(entries))}
	index := map[string]int32{}
	var lists [][]int32
	var patterns []string
	var buf []byte
	for i, e := range entries {
		if e.Theme >= NumThemes || e.Weight == 0 || len(e.Variants) == 0 {
			return nil, fmt.Errorf("%s: invalid entry", e.Source)
		}
		w.entries = append(w.entries, entry{theme: e.Theme, weight: int32(e.Weight), phrase: e.Variants[0]})
		for _, v := range e.Variants {
			if err := checkPhrase(v); err != nil {
				return nil, fmt.Errorf("%s: %q: %v", e.Source, v, err)
			}
			prefix := strings.HasSuffix(v, "*")
			buf = append(buf[:0], ' ')
			buf = AppendNormalized(buf, strings.TrimSuffix(v, "*"))
			if !prefix {
				buf = append(buf, ' ')
			}
			p, ok := index[string(buf)]
			if !ok {
				p = int32(len(patterns))
				index[string(buf)] = p
				patterns = append(patterns, string(buf))
				lists = append(lists, nil)
			}
			if l := lists[p]; len(l) == 0 || l[len(l)-1] != int32(i) {
				lists[p] = append(l, int32(i))
			}
		}
	}
	w.phrases = len(patterns)
	w.patFirst = make([]int32, len(patterns)+1)
	for p, l := range lists {
		w.patFirst[p] = int32(len(w.patList))
		w.patList = append(w.patList, l...)
	}
	w.patFirst[len(patterns)] = int32(len(w.patList))
	w.ac = buildAutomaton(patterns)
	return w, nil
}

// Settings returns a theme's settings.
func (w *Watchlist) Settings(t Theme) Settings { return w.settings[t] }

// Len is the number of entries; Phrases the number of distinct
// normalised spellings.
func (w *Watchlist) Len() int     { return len(w.entries) }
func (w *Watchlist) Phrases() int { return w.phrases }

// Match is one entry found in a text.
type Match struct {
	Theme  Theme
	Phrase string // the entry's first spelling
	Weight int
}

// Result is a text's score.
type Result struct {
	Scores [NumThemes]int // the sum of the weights of the entries found, per theme
	// Best is the theme to report: of the themes at or over their
	// threshold, the most severe (then the highest score); if none is
	// over, the highest score. Meaningless when Matches is empty.
	Best Theme
	Over bool // Scores[Best] reached Best's threshold: report it
	// Matches lists the entries found, each once, in text order. It is
	// the Scorer's buffer: valid until its next Score.
	Matches []Match
}

// Score is the best theme's score.
func (r *Result) Score() int { return r.Scores[r.Best] }

// Scorer scores texts against a watchlist. It reuses its buffers, so a
// warmed-up Scorer does not allocate; it is not safe for concurrent use.
type Scorer struct {
	w       *Watchlist
	buf     []byte
	seen    []uint32 // entry → gen when counted
	gen     uint32
	matches []Match

	stream streamState // a streamed text (stream.go)
	res    Result
	fold   []byte
}

// NewScorer makes a Scorer for w.
func (w *Watchlist) NewScorer() *Scorer {
	return &Scorer{w: w, seen: make([]uint32, len(w.entries)), buf: make([]byte, 0, 256)}
}

// Get takes a Scorer from w's pool; Put returns it.
func (w *Watchlist) Get() *Scorer {
	if s, ok := w.pool.Get().(*Scorer); ok {
		return s
	}
	return w.NewScorer()
}

// Put returns s to its watchlist's pool; s and its last Result must not be
// used afterwards.
func (w *Watchlist) Put(s *Scorer) {
	if s != nil && s.w == w {
		w.pool.Put(s)
	}
}

// Normalized is the text the last Score matched (normalised, with a space
// at each end).
func (s *Scorer) Normalized() string { return string(s.buf) }

// Score scores text.
func (s *Scorer) Score(text string) Result {
	w := s.w
	var r Result
	s.matches = s.matches[:0]
	if s.gen++; s.gen == 0 { // wrapped: forget every mark
		clear(s.seen)
		s.gen = 1
	}
	s.buf = append(s.buf[:0], ' ')
	s.buf = AppendNormalized(s.buf, text)
	s.buf = append(s.buf, ' ')
	a := w.ac
	st := int32(0)
	for _, b := range s.buf {
		st = a.step(st, b)
		x := &a.states[st]
		if x.out >= 0 {
			s.found(&r, x.out)
		}
		for d := x.dict; d >= 0; d = a.states[d].dict {
			s.found(&r, a.states[d].out)
		}
	}
	r.Matches = s.matches
	s.best(&r)
	return r
}

// best sets r.Best and r.Over from r.Scores.
func (s *Scorer) best(r *Result) {
	w := s.w
	if len(r.Matches) == 0 {
		return
	}
	best, bestOver := Theme(0), false
	for t := Theme(0); t < NumThemes; t++ {
		over := r.Scores[t] >= w.settings[t].Threshold
		switch {
		case over && !bestOver:
			best, bestOver = t, true
		case over && bestOver:
			if w.settings[t].Severity > w.settings[best].Severity ||
				w.settings[t].Severity == w.settings[best].Severity && r.Scores[t] > r.Scores[best] {
				best = t
			}
		case !bestOver && r.Scores[t] > r.Scores[best]:
			best = t
		}
	}
	r.Best, r.Over = best, bestOver
}

func (s *Scorer) found(r *Result, p int32) {
	w := s.w
	for _, ei := range w.patList[w.patFirst[p]:w.patFirst[p+1]] {
		if s.seen[ei] == s.gen {
			continue
		}
		s.seen[ei] = s.gen
		e := &w.entries[ei]
		r.Scores[e.theme] += int(e.weight)
		s.matches = append(s.matches, Match{Theme: e.theme, Phrase: e.phrase, Weight: int(e.weight)})
	}
}
