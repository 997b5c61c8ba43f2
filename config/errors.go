package config

import (
	"sort"
	"strconv"
	"strings"
)

// Error is one problem found in a configuration file, at the position of the
// offending YAML node. Line and Column are 1-based; 0 means unknown (for
// example a problem with a value that came from the embedded defaults).
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // key path, e.g. groups.students.block[2]; "" for syntax errors
	Msg    string

	cause error // the underlying error, if any (a file that cannot be read)
}

// Unwrap returns the underlying error, if any.
func (e Error) Unwrap() error { return e.cause }

// Error formats the problem as "file:line:column: key.path: message",
// leaving out the parts that are not known.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, sorted by position. Load and
// Parse return it (as error) when the file is not valid.
type Errors []Error

// Error lists the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each Error to errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sort orders by position; problems without a line come last, and problems
// at the same position keep the order they were found in.
func (es Errors) sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// suggest returns the candidate closest to s, or "" if none is close enough
// to be worth a "did you mean".
func suggest(s string, candidates []string) string {
	if s == "" {
		return ""
	}
	flat := func(x string) string {
		x = strings.ToLower(x)
		return strings.NewReplacer("-", "", "_", "", " ", "").Replace(x)
	}
	fs := flat(s)
	for _, c := range candidates {
		if flat(c) == fs {
			return c
		}
	}
	best, bestD := "", 0
	limit := 1
	switch {
	case len(fs) > 8:
		limit = 3
	case len(fs) > 4:
		limit = 2
	}
	for _, c := range candidates {
		if d := levenshtein(fs, flat(c)); d <= limit && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	if best != "" {
		return best
	}
	if len(fs) >= 3 {
		for _, c := range candidates {
			if fc := flat(c); strings.HasPrefix(fc, fs) || (len(fc) >= 3 && strings.HasPrefix(fs, fc)) {
				return c
			}
		}
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// didYouMean formats a suggestion suffix, or "" if there is none.
func didYouMean(s string, candidates []string) string {
	if c := suggest(s, candidates); c != "" {
		return " (did you mean " + strconv.Quote(c) + "?)"
	}
	return ""
}
