package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/bench/benchdata"
	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
)

// benchEngine loads the 1,000,000-domain list as the students' pornography
// list, with the default groups and networks for two groups.
func benchEngine(b *testing.B) (*Engine, []string, []string) {
	return benchEngineWith(b, "")
}

// benchHashed is a restricted-tier list of 10,000 hashed entries, half
// names and half URLs (as IWF's), for benchEngineWith.
const benchHashed = `
  - name: iwf
    path: {{dir}}/iwf.txt
    category: iwf
    format: sha256
`

// benchEngineWith is benchEngine with extra lists (a config fragment
// under lists:; benchHashed writes its file).
func benchEngineWith(b *testing.B, extra string) (*Engine, []string, []string) {
	path, realNames, err := benchdata.Million()
	if err != nil {
		b.Skip("benchmark data:", err)
	}
	popular, err := benchdata.Popular()
	if err != nil {
		b.Skip("benchmark data:", err)
	}
	dir := b.TempDir()
	if extra == benchHashed {
		var sb strings.Builder
		for i := range 5000 {
			for _, s := range []string{fmt.Sprintf("abuse%d.example", i), fmt.Sprintf("host%d.example/path/page%d.html", i, i)} {
				h := sha256.Sum256([]byte(s))
				sb.WriteString(hex.EncodeToString(h[:]) + "\n")
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "iwf.txt"), []byte(sb.String()), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cfg, err := config.Parse([]byte(strings.NewReplacer("{{dir}}", dir, "{{list}}", path).Replace(`
database: {{dir}}/gatehouse.db
lists:
  - name: bench-1m
    path: {{list}}
    category: pornography`+extra+`
groups:
  students:
    networks: [10.1.0.0/16]
    block: [pornography, vpn, web-proxy, doh, tor, private-relay]
    schedules:
      - block: [games]
        when: [{days: [weekdays], from: "08:45", to: "15:20"}]
    safe_search: strict
  staff:
    networks: [10.2.0.0/16]
    block: [pornography]
`)), filepath.Join(dir, "bench.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	sources, err := Sources(cfg)
	if err != nil {
		b.Fatal(err)
	}
	m := bl.NewManager(filepath.Join(dir, "cache"), sources, cfg.Location(), nil)
	if _, err := m.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	e, err := New(cfg, m.Index())
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var hits, misses []string
	for len(hits) < 4096 {
		hits = append(hits, "www."+realNames[rng.IntN(len(realNames))])
	}
	ix := m.Index()
	for _, p := range popular {
		if ix.Lookup(p) == 0 && SafeSearchTarget(p, SafeSearchStrict) == "" {
			misses = append(misses, p)
			if len(misses) == 4096 {
				break
			}
		}
	}
	runtime.GC() // the set-up's garbage must not be collected during the timed loop
	return e, hits, misses
}

// BenchmarkDecideHit: a blocked name one level below a listed entry.
func BenchmarkDecideHit(b *testing.B) {
	e, hits, _ := benchEngine(b)
	client := netip.MustParseAddr("10.1.4.4")
	now := time.Now()
	i := 0
	for b.Loop() {
		d := e.Decide(Request{Client: client, Host: hits[i&4095], Time: now})
		if d.Action != Block {
			b.Fatal("not blocked:", hits[i&4095])
		}
		i++
	}
}

// BenchmarkDecideMiss: a popular allowed name, walked to the top.
func BenchmarkDecideMiss(b *testing.B) {
	e, _, misses := benchEngine(b)
	decideMisses(b, e, misses)
}

// decideMisses decides the allowed names misses in turn.
func decideMisses(b *testing.B, e *Engine, misses []string) {
	client := netip.MustParseAddr("10.1.4.4")
	now := time.Now()
	i := 0
	for b.Loop() {
		d := e.Decide(Request{Client: client, Host: misses[i&4095], Time: now})
		if d.Action != Allow {
			b.Fatal("not allowed:", misses[i&4095], d.Reason)
		}
		i++
	}
}

// BenchmarkUntilScheduled: how long until a lesson blocks games, asked
// before it (what the DNS resolver asks for every answer of such a name).
func BenchmarkUntilScheduled(b *testing.B) {
	e, _ := setup(b, testConfig, testFiles)
	at := time.Date(2026, 11, 23, 8, 40, 0, 0, time.UTC)
	games := bl.SetOf(bl.Games)
	for b.Loop() {
		if _, ok := e.UntilScheduled("students", games, at); !ok {
			b.Fatal("no lesson")
		}
	}
}

// BenchmarkDecideMissHashed is BenchmarkDecideMiss with the restricted
// tier's hashed list loaded: what a DNS query costs a school with IWF's
// list.
func BenchmarkDecideMissHashed(b *testing.B) {
	e, _, misses := benchEngineWith(b, benchHashed)
	decideMisses(b, e, misses)
}
