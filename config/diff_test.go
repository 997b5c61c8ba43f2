package config

import (
	"fmt"
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
	var got []string
	for _, c := range Diff(a, b) {
		got = append(got, c.Text)
		if !strings.HasPrefix(c.Text, c.Path+": ") {
			t.Errorf("change %q does not start with its path %q", c.Text, c.Path)
		}
	}
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

// Sections outside the filtering rules are compared setting by setting, so
// a reload can say which of them it applies; a reorder of lists is a line
// of its own (it moves the bits of allow and deny lists).
func TestDiffSettings(t *testing.T) {
	parse := func(src string) *Config {
		t.Helper()
		c, err := Parse([]byte(src), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := parse(`
dns: {listen: ["127.0.0.1:5353"], rate_limit: {qps: 100, burst: 200}}
proxy: {listen: "127.0.0.1:3128", auth: {realm: A}}
lists:
  - {name: one, path: /tmp/one.txt, category: gambling}
  - {name: two, path: /tmp/two.txt, category: drugs}
`)
	b := parse(`
dns: {listen: ["127.0.0.1:5354"], rate_limit: {qps: 50, burst: 200}}
proxy: {listen: "127.0.0.1:3128", auth: {realm: B}}
lists:
  - {name: two, path: /tmp/two.txt, category: drugs}
  - {name: one, path: /tmp/one.txt, category: gambling}
`)
	got := map[string]string{}
	for _, c := range Diff(a, b) {
		got[c.Path] = c.Text
	}
	want := map[string]string{
		"dns.listen":         "dns.listen: changed",
		"dns.rate_limit.qps": "dns.rate_limit.qps: changed",
		"proxy.auth.realm":   "proxy.auth.realm: changed",
		"lists":              "lists: reordered",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Diff:\n got %v\nwant %v", got, want)
	}
}
