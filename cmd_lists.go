package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/config"
)

// listStat is one row of `gatehouse lists stats`.
type listStat struct {
	Name     string   `json:"name"`
	Source   string   `json:"source"`
	Category string   `json:"category"`
	Format   string   `json:"format,omitempty"`
	Entries  int      `json:"entries"`
	Invalid  int      `json:"invalid"`
	Samples  []string `json:"invalid_samples,omitempty"`
	Error    string   `json:"error,omitempty"`
	// Warning: a loaded feed whose last download failed (its cached copy
	// is in use), with the error and the count in a row.
	Warning string `json:"warning,omitempty"`
}

// statsReport is the JSON form of `gatehouse lists stats`.
type statsReport struct {
	Lists       []listStat `json:"lists"`
	Domains     int        `json:"domains"`
	URLs        int        `json:"urls"`
	Prefixes    int        `json:"ip_prefixes"`
	Hashed      int        `json:"hashed"`
	IndexBytes  int64      `json:"index_bytes"`
	HeapBytes   int64      `json:"index_heap_bytes"`
	RSSBytes    int64      `json:"rss_bytes"`
	LoadSeconds float64    `json:"load_seconds"`
}

func (c *cli) listsStats(args []string) int {
	fs := c.flags("lists stats")
	asJSON := fs.Bool("json", false, "print JSON")
	if pos, err := parse(fs, args); err != nil || len(pos) > 0 {
		return exitUsage
	}
	_, lists, code := c.configAndLists("lists stats")
	if code != exitOK {
		return code
	}
	lists.NoFetch = true
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	start := time.Now()
	ix, err := lists.Load(context.Background())
	took := time.Since(start)
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse lists stats: %v\n", err)
		return exitFailure
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	st := ix.Stats()
	rep := statsReport{
		Domains: st.Domains, URLs: st.URLs, Prefixes: st.Prefixes, Hashed: st.Hashed, IndexBytes: st.Bytes,
		HeapBytes: int64(m1.HeapAlloc) - int64(m0.HeapAlloc) + st.OffHeap, RSSBytes: rssBytes(), LoadSeconds: took.Seconds(),
	}
	failed := false
	status := map[string]bl.ListStatus{}
	for _, st := range lists.Status() {
		status[st.Name] = st
	}
	for _, l := range ix.Lists() {
		s := listStat{Name: l.Name, Source: l.Source, Category: categoryName(l.Category), Format: string(l.Format),
			Entries: l.Entries, Invalid: l.Invalid, Error: l.Err}
		// The download status is kept beside the cached copy (it is not
		// what this load did): a feed failing for days says so here too.
		if st := status[l.Source]; st.Feed && st.Failing() && l.Err == "" {
			s.Warning = fmt.Sprintf("last download failed at %s%s: %s", st.LastErrorAt.UTC().Format(time.RFC3339), inARow(st.Failures), st.LastError)
			if !st.LastSuccess.IsZero() {
				s.Warning += "; last good download " + st.LastSuccess.UTC().Format(time.RFC3339)
			}
		}
		if l.Restricted {
			s.Category = "restricted (" + l.Category.String() + ")"
		} else {
			for _, e := range l.Errors {
				s.Samples = append(s.Samples, e.Error())
			}
		}
		failed = failed || l.Err != ""
		rep.Lists = append(rep.Lists, s)
	}
	// Sources that never made it into the index, with the reason.
	loaded := map[string]bool{}
	for _, l := range ix.Lists() {
		loaded[l.Source] = true
	}
	for _, s := range lists.Sources() {
		if loaded[s.Name] {
			continue
		}
		why := "not loaded: " + status[s.Name].LastError
		if s.Feed != nil && status[s.Name].LastError == "" || strings.Contains(why, "not downloaded yet") {
			why = "not loaded: no local copy (run `gatehouse lists update`)"
		}
		cat := categoryName(s.Category)
		if s.Format == bl.FormatSquidGuard {
			cat = "(squidGuard tree)"
		}
		rep.Lists = append(rep.Lists, listStat{Name: s.Name, Source: s.Name, Category: cat, Format: string(s.Format), Error: why})
		failed = true
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "LIST\tCATEGORY\tFORMAT\tENTRIES\tINVALID\tSTATUS")
		for _, s := range rep.Lists {
			status := "ok"
			if s.Error != "" {
				status = s.Error
			} else if s.Warning != "" {
				status = "ok, but " + s.Warning
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Category, s.Format, thousands(int64(s.Entries)), thousands(int64(s.Invalid)), status)
		}
		_ = tw.Flush()
		for _, s := range rep.Lists {
			for _, e := range s.Samples {
				fmt.Fprintf(c.stdout, "  invalid: %s\n", e)
			}
		}
		fmt.Fprintf(c.stdout, "\nindex: %s domains, %s URL rules, %s IP prefixes, %s hashed entries\n",
			thousands(int64(rep.Domains)), thousands(int64(rep.URLs)), thousands(int64(rep.Prefixes)), thousands(int64(rep.Hashed)))
		fmt.Fprintf(c.stdout, "load + index: %.2f s; index memory %.1f MiB (structures %.1f MiB); process RSS %.1f MiB\n",
			rep.LoadSeconds, mib(rep.HeapBytes), mib(rep.IndexBytes), mib(rep.RSSBytes))
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

// configAndLists loads the config and prepares its blocklist manager for
// a one-shot command.
func (c *cli) configAndLists(cmd string) (*config.Config, *bl.Manager, int) {
	cfg, code := c.loadConfig()
	if code != exitOK {
		return nil, nil, code
	}
	lists, err := newLists(cfg, quietLogger(c.stderr))
	if err != nil {
		fmt.Fprintf(c.stderr, "gatehouse %s: %v\n", cmd, err)
		return nil, nil, exitUsage
	}
	return cfg, lists, exitOK
}

func categoryName(c bl.Category) string {
	if c >= bl.FirstListBit {
		return "(allow/deny list)"
	}
	return c.String()
}

func (c *cli) listsUpdate(args []string) int {
	fs := c.flags("lists update")
	names, err := parse(fs, args)
	if err != nil {
		return exitUsage
	}
	_, lists, code := c.configAndLists("lists update")
	if code != exitOK {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bar := newProgress(c.stderr)
	results, err := lists.Update(ctx, names, bar.update)
	bar.done()
	failed := err != nil
	for _, r := range results {
		switch {
		case r.Err != nil:
			failed = true
			fmt.Fprintf(c.stdout, "%s: FAILED: %v\n", r.Name, r.Err)
		case r.NotModified:
			fmt.Fprintf(c.stdout, "%s: not modified, %s entries\n", r.Name, thousands(int64(r.Entries)))
		case r.Changed:
			fmt.Fprintf(c.stdout, "%s: updated, %s entries (was %s), %.1f MiB in %.1f s\n", r.Name,
				thousands(int64(r.Entries)), thousands(int64(r.Previous)), mib(r.Bytes), r.Took.Seconds())
		default:
			fmt.Fprintf(c.stdout, "%s: local file, %s entries\n", r.Name, thousands(int64(r.Entries)))
		}
	}
	if err != nil {
		fmt.Fprintf(c.stdout, "index not rebuilt: %v\n", err)
	}
	if len(results) == 0 {
		fmt.Fprintln(c.stdout, "no lists configured (built-in lists need no update)")
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

// progress draws a one-line progress bar on a terminal, and nothing
// otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p
}

func (p *progress) update(name string, done, total int64) {
	if !p.tty || (time.Since(p.last) < 100*time.Millisecond && done != total) {
		return
	}
	p.last = time.Now()
	const width = 30
	bar := strings.Repeat("?", width)
	size := fmt.Sprintf("%.1f MiB", mib(done))
	if total > 0 {
		n := int(float64(width) * float64(done) / float64(total))
		bar = strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		size = fmt.Sprintf("%.1f/%.1f MiB", mib(done), mib(total))
	}
	fmt.Fprintf(p.w, "\r\033[K[%s] %s %s", bar, name, size)
	p.shown = true
}

func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// thousands formats n with comma separators.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// rssBytes reads the process's resident set size (Linux); 0 if unknown.
func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// quietLogger logs warnings and errors only, for one-shot commands.
func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
