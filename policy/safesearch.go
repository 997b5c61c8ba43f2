package policy

import (
	"fmt"
	"strings"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// SafeSearch is a group's safe-search mode.
type SafeSearch uint8

const (
	SafeSearchOff SafeSearch = iota
	SafeSearchModerate
	SafeSearchStrict
)

func (s SafeSearch) String() string {
	switch s {
	case SafeSearchModerate:
		return "moderate"
	case SafeSearchStrict:
		return "strict"
	}
	return "off"
}

// ParseSafeSearch reads a mode name ("" is off).
func ParseSafeSearch(s string) (SafeSearch, error) {
	switch strings.ToLower(s) {
	case "", "off":
		return SafeSearchOff, nil
	case "moderate":
		return SafeSearchModerate, nil
	case "strict":
		return SafeSearchStrict, nil
	}
	return 0, fmt.Errorf("unknown safe_search mode %q (want off, moderate or strict)", s)
}

// SafeSearchTarget returns the enforced-safe host for name under mode, or
// "" when name is not a search engine host or mode is off.
func SafeSearchTarget(name string, mode SafeSearch) string {
	if mode == SafeSearchOff {
		return ""
	}
	t, ok := bl.SafeSearchRow(name)
	if !ok {
		return ""
	}
	if mode == SafeSearchStrict {
		return t.Strict
	}
	return t.Moderate
}
