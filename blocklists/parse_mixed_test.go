package blocklists

import (
	"slices"
	"testing"
)

// TestDomainsWithPaths: a domains (or wildcard) list reads "host/path"
// lines as URL prefixes, as a group's allow: and deny: entries do, and
// auto-detection picks domains for a list mixing names and host/path
// lines, so that its names count in DNS too.
func TestDomainsWithPaths(t *testing.T) {
	in := "school.example\n*.kids.example\nsite.example/forbidden\nother.example/games/\nwww.third.example/x?y=1\n"
	want := []string{"sub:school.example", "sub:kids.example", "url:site.example/forbidden", "url:other.example/games/", "url:third.example/x?y=1"}
	for _, f := range []Format{FormatDomains, FormatWildcard, FormatAuto} {
		res, got, err := parseString(in, f)
		if err != nil || res.Invalid != 0 || !slices.Equal(got, want) {
			t.Errorf("%s: %v, %d invalid %v, got %q; want %q", f, err, res.Invalid, res.Errors, got, want)
		}
		if f == FormatAuto && res.Format != FormatDomains {
			t.Errorf("auto on a mixed list: %s, want domains", res.Format)
		}
	}
	// A list of host/path lines only is still a urls list.
	if res, _, _ := parseString("a.example/x\nb.example/y\n", FormatAuto); res.Format != FormatURLs {
		t.Errorf("auto on host/path lines: %s", res.Format)
	}
}
