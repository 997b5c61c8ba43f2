package config

import (
	"slices"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	a, err := Parse([]byte(`
lists:
  - name: feed
    url: https://lists.example/x.txt?key=secret
    category: gambling
groups:
  students:
    networks: [10.1.0.0/16]
    block: [pornography, games]
`), "a.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(`
lists:
  - name: feed
    url: https://lists.example/y.txt?key=secret
    category: gambling
  - name: local
    path: /etc/gatehouse/extra.txt
    category: drugs
groups:
  students:
    networks: [10.1.0.0/16, 10.3.0.0/16]
    block: [pornography, gambling]
    safe_search: moderate
  guests: ~
categories:
  games: {route: none}
`), "b.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := Diff(a, b)
	for _, want := range []string{
		"groups.students.block: added gambling",
		"groups.students.block: removed games",
		"groups.students.networks: added 10.3.0.0/16",
		"groups.students.safe_search: strict → moderate",
		"groups.guests: removed",
		"lists.feed: changed (gambling from https://lists.example/y.txt)",
		"lists.local: added (drugs from /etc/gatehouse/extra.txt)",
		"categories.games: override changed",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("Diff lacks %q; got:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if strings.Contains(strings.Join(got, "\n"), "secret") || strings.Contains(strings.Join(got, "\n"), "pw@") {
		t.Error("Diff shows credentials")
	}
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("Diff of a config with itself: %v", d)
	}
}
