package blocklists

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse-filter/gatehouse/bench/benchdata"
)

// million loads the 1,000,000-domain benchmark list through a Manager, as
// `gatehouse serve` does.
func million(tb testing.TB) (*Manager, []string) {
	tb.Helper()
	path, realNames, err := benchdata.Million()
	if err != nil {
		tb.Skip("benchmark data:", err)
	}
	m := NewManager(filepath.Join(tb.TempDir(), "cache"), []Source{{Name: "bench-1m", Path: path, Category: Pornography}}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return m, realNames
}

// BenchmarkLoad1M measures load + index of a 1,000,000-domain list and the
// heap the index keeps.
func BenchmarkLoad1M(b *testing.B) {
	path, _, err := benchdata.Million()
	if err != nil {
		b.Skip("benchmark data:", err)
	}
	dir := b.TempDir()
	var heap uint64
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		m := NewManager(filepath.Join(dir, "cache"), []Source{{Name: "bench-1m", Path: path, Category: Pornography}}, nil, nil)
		ix, err := m.Load(context.Background())
		if err != nil || ix.Stats().Domains < 999_000 {
			b.Fatalf("load: %v, %d domains", err, ix.Stats().Domains)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap = m1.HeapAlloc - m0.HeapAlloc + uint64(ix.Stats().OffHeap) // the table may be outside the heap
		runtime.KeepAlive(ix)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}

// lookupNames returns names that hit (subdomains of listed names, so the
// walk goes up one level) and names that miss (popular real names, walked
// all the way up).
func lookupNames(tb testing.TB, realNames []string, ix *Index) (hits, misses []string) {
	rng := rand.New(rand.NewPCG(1, 2))
	for len(hits) < 4096 {
		hits = append(hits, "www."+realNames[rng.IntN(len(realNames))])
	}
	popular, err := benchdata.Popular()
	if err != nil {
		tb.Skip(err)
	}
	for _, p := range popular {
		if ix.Lookup(p) == 0 {
			misses = append(misses, p)
		}
		if len(misses) == 4096 {
			break
		}
	}
	return hits, misses
}

var benchOnce sync.Once
var benchM *Manager
var benchReal []string

func benchIndex(b *testing.B) (*Index, []string) {
	benchOnce.Do(func() { benchM, benchReal = million(b) })
	if benchM == nil {
		b.Skip("no benchmark data")
	}
	return benchM.Index(), benchReal
}

func BenchmarkLookupHit(b *testing.B) {
	ix, realNames := benchIndex(b)
	hits, _ := lookupNames(b, realNames, ix)
	i := 0
	for b.Loop() {
		if ix.Lookup(hits[i&4095]) == 0 {
			b.Fatal("miss")
		}
		i++
	}
}

func BenchmarkLookupMiss(b *testing.B) {
	ix, realNames := benchIndex(b)
	_, misses := lookupNames(b, realNames, ix)
	i := 0
	for b.Loop() {
		if ix.Lookup(misses[i&4095]) != 0 {
			b.Fatal("hit")
		}
		i++
	}
}

// TestManagerSwapUnderLookups rebuilds through the Manager while readers
// look names up: every lookup must see a whole index. Run with -race.
func TestManagerSwapUnderLookups(t *testing.T) {
	path, realNames, err := benchdata.Million()
	if err != nil {
		t.Skip("benchmark data:", err)
	}
	if testing.Short() {
		t.Skip("loads a million names")
	}
	m := NewManager(filepath.Join(t.TempDir(), "cache"), []Source{{Name: "bench-1m", Path: path, Category: Pornography}}, nil, nil)
	if _, err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	probe := []string{realNames[0], realNames[len(realNames)/2], realNames[len(realNames)-1], "nordvpn.com"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for {
				select {
				case <-stop:
					if n == 0 {
						t.Error("reader made no lookups")
					}
					return
				default:
				}
				ix := m.Index()
				for _, p := range probe {
					if ix.Lookup("x."+p) == 0 {
						t.Errorf("lookup of %s missed during a swap", p)
						return
					}
				}
				n++
			}
		}()
	}
	for range 2 {
		if _, err := m.Rebuild(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// BenchmarkBaselineGoMapLoad1M is the same-run baseline for BenchmarkLoad1M:
// the naive design, every name as a string key in a Go map.
func BenchmarkBaselineGoMapLoad1M(b *testing.B) {
	path, _, err := benchdata.Million()
	if err != nil {
		b.Skip("benchmark data:", err)
	}
	var heap uint64
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		m := map[string]CategorySet{}
		for _, line := range strings.Split(string(data), "\n") {
			if line != "" {
				m[strings.Clone(line)] |= SetOf(Pornography)
			}
		}
		data = nil
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		heap = m1.HeapAlloc - m0.HeapAlloc
		runtime.KeepAlive(m)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}

// BenchmarkBaselineGoMapLookupHit is the same-run baseline for
// BenchmarkLookupHit: a parent walk over a Go map of the million names.
func BenchmarkBaselineGoMapLookupHit(b *testing.B) {
	ix, realNames := benchIndex(b)
	hits, _ := lookupNames(b, realNames, ix)
	m := make(map[string]CategorySet, len(realNames))
	for _, n := range realNames {
		m[n] = SetOf(Pornography)
	}
	i := 0
	for b.Loop() {
		name := hits[i&4095]
		var set CategorySet
		for {
			set |= m[name]
			j := strings.IndexByte(name, '.')
			if j < 0 {
				break
			}
			name = name[j+1:]
		}
		if set == 0 {
			b.Fatal("miss")
		}
		i++
	}
}
