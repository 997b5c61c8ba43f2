// Package benchdata builds benchmark inputs from the real lists in
// ../shared/data/blocklists: a 1,000,000-domain blocklist mix and query
// names, the same way the peer harness (shared/bench/gen_data.py) does.
// Nothing it reads or writes is committed to the repository.
package benchdata

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// SharedData finds shared/data/blocklists by walking up from the working
// directory; ok is false when it is not there.
func SharedData() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		p := filepath.Join(dir, "..", "shared", "data", "blocklists")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return filepath.Clean(p), true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*\.[a-z]{2,}$`)

// Size of the benchmark blocklist.
const Size = 1_000_000

var (
	once    sync.Once
	mixPath string
	real    []string
	mixErr  error
)

// Million returns the path of a 1,000,000-domain plain list built from the
// real category lists (padded with generated names) and the real names in
// it. The file is written once per machine into the temp directory.
func Million() (path string, realNames []string, err error) {
	once.Do(func() { mixPath, real, mixErr = build() })
	return mixPath, real, mixErr
}

func build() (string, []string, error) {
	data, ok := SharedData()
	if !ok {
		return "", nil, errors.New("shared/data/blocklists not found")
	}
	var files []string
	err := filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		if d.IsDir() || !strings.HasSuffix(p, ".gz") || strings.Contains(rel, "umbrella") ||
			strings.Contains(d.Name(), "url") || strings.Contains(rel, "ips") || strings.Contains(d.Name(), "ipv") {
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	sort.Strings(files)
	seen := make(map[string]struct{}, Size)
	var order []string
	for _, f := range files {
		if err := readNames(f, func(d string) {
			if _, dup := seen[d]; !dup {
				seen[d] = struct{}{}
				order = append(order, d)
			}
		}); err != nil {
			return "", nil, err
		}
	}
	realNames := order
	if len(realNames) > Size {
		realNames = realNames[:Size]
	}
	rng := rand.New(rand.NewPCG(42, 42))
	const alpha = "abcdefghijklmnopqrstuvwxyz0123456789"
	tlds := []string{".com", ".net", ".xyz", ".info", ".co.uk"}
	out := append([]string(nil), realNames...)
	for len(out) < Size {
		n := 6 + rng.IntN(9)
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		d := string(b) + tlds[rng.IntN(len(tlds))]
		if _, dup := seen[d]; !dup {
			seen[d] = struct{}{}
			out = append(out, d)
		}
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("gatehouse-bench-1m-%d.txt", len(realNames)))
	if _, err := os.Stat(path); err == nil {
		return path, realNames, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		return "", nil, err
	}
	return path, realNames, os.Rename(tmp, path)
}

func readNames(path string, add func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.ToLower(strings.TrimSpace(sc.Text()))
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		parts := strings.Fields(line)
		d := parts[0]
		if len(parts) > 1 && (parts[0] == "0.0.0.0" || parts[0] == "127.0.0.1") {
			d = parts[1]
		}
		d = strings.TrimRight(strings.TrimLeft(strings.Trim(d, "|^"), "*."), ".")
		if nameRE.MatchString(d) {
			add(d)
		}
	}
	return sc.Err()
}

// Popular returns the Umbrella top-100k names (real DNS query shapes) in
// rank order.
func Popular() ([]string, error) {
	data, ok := SharedData()
	if !ok {
		return nil, errors.New("shared/data/blocklists not found")
	}
	var out []string
	err := readNames(filepath.Join(data, "umbrella-top", "umbrella-top-100k.txt.gz"), func(d string) { out = append(out, d) })
	return out, err
}
