package blocklists

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// Source is one configured list: a local file, a squidGuard directory or a
// downloaded feed.
type Source struct {
	Name string
	Path string // local file or squidGuard directory
	Feed *Feed  // set for URL lists

	// Category of every entry. Lists without a catalogue category (group
	// allow/deny lists) get a list bit from FirstListBit up.
	Category Category
	// SquidCategories maps squidGuard sub-directories to categories
	// (nil: UT1Categories).
	SquidCategories map[string]Category
	Format          Format
	Refresh         string   // cron spec; "" = never
	MinRatio        *float64 // refuse a list that shrinks below this share of its last count (nil: 0.5; 0: never)
}

// minRatio is the share of its last count below which the source is
// refused (Source.MinRatio).
func (s *Source) minRatio() float64 {
	if s.MinRatio == nil {
		return 0.5
	}
	return *s.MinRatio
}

// origin names where a local source's entries come from: a list keeps its
// last count across a reload only while its file and format stay the same.
func (s *Source) origin() string {
	return s.Path + "|" + string(s.Format)
}

// shrunk reports whether n entries are too few after prev at ratio.
func shrunk(n, prev int, ratio float64) bool {
	return prev > 0 && float64(n) < ratio*float64(prev)
}

// Restricted reports whether the source feeds the restricted tier.
func (s *Source) Restricted() bool { return s.Category < FirstListBit && s.Category.Restricted() }

// UpdateResult is the outcome of refreshing one list.
type UpdateResult struct {
	Name        string
	Changed     bool
	NotModified bool
	Entries     int // entries in the list now
	Previous    int // entries before the refresh
	Bytes       int64
	Took        time.Duration
	Err         error
}

// Manager loads every source into an Index, rebuilds it when lists change
// and runs scheduled refreshes. It does not make an index live by itself:
// every index it builds goes to its publisher (SetPublisher; SetSources
// takes its own), which builds whatever is decided with it (Gatehouse's
// policy engine) around it. Builds, refreshes, source changes and their
// publishing are serialised by one lock, so an index built for old sources
// can never be published after a source change. Index() returns the last
// index published, for tools and metrics.
type Manager struct {
	// NoFetch makes Load use cached copies only (for offline tools).
	NoFetch bool
	// FetchInBackground makes Load publish what is on disk at once and
	// download never-fetched feeds afterwards (for serve).
	FetchInBackground bool

	log     *slog.Logger
	fetcher *Fetcher
	dir     string

	mu      sync.Mutex // serialises builds, refreshes, source changes and publishing
	sources []Source
	state   map[string]listState
	// stamps are the size and modification time of each local file the
	// published index was built from: one unchanged since is not waited
	// on to settle (settle.go).
	stamps  map[string]fileStamp
	settles atomic.Int64    // files waited on to settle (for tests)
	cron    *cron.Cron      // the scheduled refreshes; nil before Start and once its context ends
	runCtx  context.Context // Start's: it ends the refreshes and cancels a running one
	loc     *time.Location
	publish func(*Index) error // guarded by mu

	current atomic.Pointer[Index]
	status  statusBook // per-list outcomes (status.go)
}

type listState struct {
	Entries int       `json:"entries"`
	Updated time.Time `json:"updated"`
	Origin  string    `json:"origin,omitempty"` // a local source's Source.origin at that count
	// Parts are a squidGuard tree's entries per file ("gambling",
	// "gambling/urls"): each is a category of its own, checked against
	// min_ratio like the whole tree.
	Parts map[string]int `json:"parts,omitempty"`
}

// NewManager prepares a manager whose feed cache lives in cacheDir. It does
// not load anything; call Load.
func NewManager(cacheDir string, sources []Source, loc *time.Location, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if loc == nil {
		loc = time.UTC
	}
	m := &Manager{
		log: log, dir: cacheDir, fetcher: &Fetcher{Dir: cacheDir},
		sources: sources, loc: loc, state: map[string]listState{},
	}
	m.readState()
	return m
}

// Fetcher returns the downloader, so tests and tools can point it at their
// own HTTP client.
func (m *Manager) Fetcher() *Fetcher { return m.fetcher }

// Index returns the last index published (nil before the first Load).
func (m *Manager) Index() *Index { return m.current.Load() }

// SetPublisher sets the function that makes a newly built index live
// (Load, Rebuild, Update, scheduled refreshes and background downloads).
// It runs under the manager's lock, once per build, in build order, so it
// must not wait for anything that waits for the manager. If it returns an
// error the index is dropped: the previous one and the recorded list
// state stay. Without a publisher an index is only kept for Index().
func (m *Manager) SetPublisher(f func(*Index) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.publish = f
}

// Sources returns the configured sources.
func (m *Manager) Sources() []Source {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Source(nil), m.sources...)
}

// Load builds the first index. Feeds never downloaded are fetched first
// (each bounded by its timeout) unless NoFetch is set; with
// FetchInBackground the index from local files and cached copies is
// published at once and those feeds are fetched afterwards, so a front
// door can start filtering while a slow feed downloads. Lists that cannot
// be loaded are reported in the index's ListInfo and logged, and the rest
// still load: filtering starts with what is there.
func (m *Manager) Load(ctx context.Context) (*Index, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var missing []Source
	for _, s := range m.sources {
		if s.Feed == nil || m.NoFetch {
			continue
		}
		if _, _, ok := m.fetcher.Cached(s.Name); !ok {
			missing = append(missing, s)
		}
	}
	if m.FetchInBackground && len(missing) > 0 {
		ix, st, err := m.build(false)
		if err == nil {
			err = m.commit(ix, st, m.publish)
		}
		if err != nil {
			return nil, err
		}
		names := make([]string, len(missing))
		for i, s := range missing {
			names[i] = s.Name
		}
		m.log.Info("downloading lists not cached yet", "lists", names)
		go func() {
			if _, err := m.Update(ctx, names, nil); err != nil {
				m.log.Error("first download of lists failed", "err", err)
			}
		}()
		return ix, nil
	}
	for _, s := range missing {
		if r := m.update(ctx, s, nil); r.Err != nil {
			m.log.Error("list download failed and no cached copy exists", "list", s.Name, "err", r.Err)
		}
	}
	ix, st, err := m.build(false)
	if err == nil {
		err = m.commit(ix, st, m.publish)
	}
	if err != nil {
		return nil, err
	}
	return ix, nil
}

// Rebuild re-reads every source and swaps in the new index. If a list that
// loaded before now fails, the running index is kept and the error
// returned.
func (m *Manager) Rebuild() (*Index, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ix, st, err := m.build(true)
	if err == nil {
		err = m.commit(ix, st, m.publish)
	}
	if err != nil {
		return m.current.Load(), err
	}
	return ix, nil
}

// SetSources replaces the configured sources (on config reload), builds an
// index for them and hands it to publish (nil: the publisher), all under
// the manager's lock. If the build or publish fails, the previous sources
// and index stay.
func (m *Manager) SetSources(sources []Source, publish func(*Index) error) (*Index, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if publish == nil {
		publish = m.publish
	}
	old := m.sources
	m.sources = sources
	ix, st, err := m.build(true)
	if err == nil {
		err = m.commit(ix, st, publish)
	}
	if err != nil {
		m.sources = old
		return m.current.Load(), err
	}
	if m.cron != nil {
		m.scheduleLocked()
	}
	return ix, nil
}

// Update downloads the named feeds now (all feeds when names is empty),
// then rebuilds the index once if anything changed. Local files are
// re-read by the rebuild. progress, if set, is called as bytes arrive.
func (m *Manager) Update(ctx context.Context, names []string, progress func(name string, done, total int64)) ([]UpdateResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var results []UpdateResult
	changed := false
	for _, s := range m.sources {
		if len(want) > 0 && !want[s.Name] {
			continue
		}
		delete(want, s.Name)
		if s.Feed == nil {
			results = append(results, UpdateResult{Name: s.Name, Entries: m.state[s.Name].Entries, Previous: m.state[s.Name].Entries})
			changed = true // local files are re-read
			continue
		}
		var p func(done, total int64)
		if progress != nil {
			name := s.Name
			p = func(done, total int64) { progress(name, done, total) }
		}
		r := m.update(ctx, s, p)
		results = append(results, r)
		changed = changed || r.Changed
	}
	for n := range want {
		results = append(results, UpdateResult{Name: n, Err: fmt.Errorf("no list named %q in the config", n)})
	}
	if !changed && m.current.Load() != nil {
		return results, nil
	}
	ix, st, err := m.build(m.current.Load() != nil)
	if err == nil {
		err = m.commit(ix, st, m.publish)
	}
	if err != nil {
		return results, err
	}
	for i := range results {
		if results[i].Err == nil {
			results[i].Entries = m.state[results[i].Name].Entries
		}
	}
	return results, nil
}

// update fetches one feed, refusing bodies that do not parse or that shrink
// below MinRatio of the last good count.
func (m *Manager) update(ctx context.Context, s Source, progress func(done, total int64)) UpdateResult {
	start := time.Now()
	prev := m.state[s.Name].Entries
	r := UpdateResult{Name: s.Name, Previous: prev, Entries: prev}
	ratio := s.minRatio()
	// Line errors name the feed, not the temporary file checked (gone by
	// the time anyone reads them).
	where := "list " + s.Name + " download"
	if u, err := url.Parse(s.Feed.URL); err == nil {
		where = redactFeedURL(u)
	}
	validate := func(tmp string) error {
		var c countSink
		fh, err := os.Open(tmp)
		if err != nil {
			return err
		}
		defer fh.Close()
		res, err := Parse(fh, where, s.Format, &c)
		if err != nil {
			if s.Restricted() {
				return withholdLines(err)
			}
			return err
		}
		if res.Entries == 0 {
			return fmt.Errorf("list %s: download has no entries", s.Name)
		}
		if shrunk(res.Entries, prev, ratio) {
			return fmt.Errorf("list %s: refresh refused: %d entries, previously %d (under %.0f%%); keeping the last good copy",
				s.Name, res.Entries, prev, ratio*100)
		}
		r.Entries = res.Entries
		return nil
	}
	fr, err := m.fetcher.Fetch(ctx, *s.Feed, validate, progress)
	r.Took, r.Bytes, r.Changed, r.NotModified = time.Since(start), fr.Bytes, fr.Changed, fr.NotModified
	if err != nil && s.Restricted() {
		err = withholdLines(err)
	}
	m.restoreStatus([]Source{s}) // the count goes on from the last run's
	m.status.fetched(s.Name, err, time.Now())
	m.saveStatus(s.Name)
	if err != nil {
		r.Err = err
		r.Entries = prev
		m.log.Error("list refresh failed", "list", s.Name, "err", err)
		return r
	}
	m.log.Info("list refreshed", "list", s.Name, "changed", fr.Changed, "entries", r.Entries, "previous", prev, "bytes", fr.Bytes, "took", r.Took.Round(time.Millisecond))
	return r
}

// build loads the embedded lists and every source into a new index and
// returns it with the list state and status it would record (see commit). With strict
// set, a source that loaded before and fails now aborts the build.
//
// Local files are read once they have settled (settle.go), so a build can
// wait up to settleMax for one being written, holding the manager's lock;
// a build during which one changed is started again.
func (m *Manager) build(strict bool) (*Index, *built, error) {
	run := &buildRun{strict: strict, settleBy: time.Now().Add(settleMax)}
	for attempt := 1; ; attempt++ {
		run.last = attempt >= buildAttempts
		ix, b, err := m.buildOnce(run)
		if run.last || !errors.Is(err, errFileChanged) {
			return ix, b, err
		}
		m.log.Info("list file changed while it was read; reading the lists again", "err", err)
	}
}

func (m *Manager) buildOnce(run *buildRun) (*Index, *built, error) {
	strict := run.strict
	run.stamps = map[string]fileStamp{}
	start := time.Now()
	hint := 0
	for _, st := range m.state {
		hint += st.Entries
	}
	b := NewBuilder(hint)
	if err := addEmbedded(b); err != nil {
		return nil, nil, err
	}
	var failed []string
	newState := map[string]listState{}
	loaded, errs := map[string]loadedList{}, map[string]error{}
	for _, s := range m.sources {
		n, parts, err := m.loadSource(b, s, run)
		if err != nil && !run.last && errors.Is(err, errFileChanged) {
			return nil, nil, err // build starts again
		}
		if err != nil {
			errs[s.Name] = err
			m.log.Error("list not loaded", "list", s.Name, "err", err)
			if strict && m.state[s.Name].Entries > 0 {
				failed = append(failed, fmt.Sprintf("%s: %v", s.Name, err))
			}
			if st, ok := m.state[s.Name]; ok {
				newState[s.Name] = st
			}
			continue
		}
		st := m.state[s.Name]
		if err := localShrunk(s, st, n, parts); err != nil && !strict {
			// At start there are no running lists to keep: load what is there.
			m.log.Warn("list loaded smaller than when last loaded", "list", s.Name, "err", err)
		} else if err != nil {
			// A local file or squidGuard tree that lost most of its entries is
			// most likely being written, or was emptied by mistake: loading it
			// would unblock what it held until the next rebuild.
			errs[s.Name] = err
			m.log.Error("list not loaded", "list", s.Name, "err", err)
			failed = append(failed, err.Error())
			newState[s.Name] = st
			continue
		}
		if s.Feed == nil {
			st.Origin = s.origin()
		}
		st.Parts = parts
		if st.Entries != n || st.Updated.IsZero() {
			st.Updated = time.Now().UTC()
		}
		st.Entries = n
		newState[s.Name] = st
		l := loadedList{entries: n, feed: s.Feed != nil}
		if l.feed {
			_, meta, _ := m.fetcher.Cached(s.Name)
			l.fetched = meta.Fetched
		}
		loaded[s.Name] = l
	}
	if len(failed) > 0 {
		m.status.refused(errs, time.Now())
		return nil, nil, fmt.Errorf("rebuild refused, keeping the running lists: %s", strings.Join(failed, "; "))
	}
	ix, err := b.Build()
	if err != nil {
		return nil, nil, err
	}
	names := make([]string, len(m.sources))
	for i, s := range m.sources {
		names[i] = s.Name
	}
	bs := &built{state: newState, stamps: run.stamps, names: names, loaded: loaded, errs: errs}
	st := ix.Stats()
	m.log.Info("blocklists loaded", "domains", st.Domains, "urls", st.URLs, "prefixes", st.Prefixes,
		"hashed", st.Hashed, "lists", st.ListCount, "took", time.Since(start).Round(time.Millisecond))
	return ix, bs, nil
}

// localShrunk refuses a local source (file or squidGuard tree) read with
// n entries that is under its minimum ratio of the count it last loaded
// with from the same path and format, and a squidGuard tree one of whose
// files still mapped to a category (parts) is: a tree's total hides a
// small category emptied or removed beside a large one. A feed's downloads
// are checked when they arrive (update).
func localShrunk(s Source, st listState, n int, parts map[string]int) error {
	if s.Feed != nil || st.Origin != s.origin() {
		return nil
	}
	if !shrunk(n, st.Entries, s.minRatio()) {
		mapping := s.squidCategories()
		var cut []string
		for _, key := range slices.Sorted(maps.Keys(st.Parts)) {
			dir, _, _ := strings.Cut(key, "/")
			if _, mapped := mapping[dir]; mapped && shrunk(parts[key], st.Parts[key], s.minRatio()) {
				cut = append(cut, fmt.Sprintf("%s has %d entries, previously %d", filepath.Join(s.Path, key), parts[key], st.Parts[key]))
			}
		}
		if len(cut) == 0 {
			return nil
		}
		return fmt.Errorf("list %s: %s (under %.0f%%; a missing file counts as empty): refused, keeping the running lists "+
			"(a tree being copied or emptied by mistake would otherwise unblock the category; to accept it set min_ratio: 0 on the list)",
			s.Name, strings.Join(cut, "; "), s.minRatio()*100)
	}
	return fmt.Errorf("list %s: %s has %d entries, previously %d (under %.0f%%): refused, keeping the running lists "+
		"(an empty or half-written file would otherwise replace it; to accept the smaller list set min_ratio: 0 on it)",
		s.Name, s.Path, n, st.Entries, s.minRatio()*100)
}

// built is what a build would record once its index is published.
type built struct {
	state  map[string]listState
	stamps map[string]fileStamp // the local files read, as they were (Manager.stamps)
	names  []string
	loaded map[string]loadedList
	errs   map[string]error
}

// squidCategories is the directory → category mapping of a squidGuard
// source: its own, or UT1's.
func (s *Source) squidCategories() map[string]Category {
	if s.SquidCategories != nil {
		return s.SquidCategories
	}
	return UT1Categories
}

// loadSource adds one source's lists to b and returns its entry count and,
// for a squidGuard tree, the count of each of its files (listState.Parts).
func (m *Manager) loadSource(b *Builder, s Source, run *buildRun) (int, map[string]int, error) {
	if s.Format == FormatSquidGuard {
		return m.loadSquidGuard(b, s, run)
	}
	path := s.Path
	if s.Feed != nil {
		p, _, ok := m.fetcher.Cached(s.Name)
		if !ok {
			return 0, nil, errors.New("not downloaded yet and no cached copy")
		}
		path = p
		run = nil // the cache is replaced by rename: never seen half-written
	}
	n, err := m.loadFile(b, ListInfo{Name: s.Name, Source: s.Name, Category: s.Category, Restricted: s.Restricted()}, path, s.Format, run)
	return n, nil, err
}

// loadFile adds the list at path to b. run is nil for a feed's cached
// copy. A local file (run set) is read, when there are running lists to
// keep and it changed since they were built from it (Manager.stamps),
// once it has settled, and an error wrapping errFileChanged is returned
// if it changed during the read. At start-up, with nothing
// running to keep, it is read at once (waiting would only delay the
// first lists: a half-written file is then no worse than none) and the
// last attempt loads what it read, and logs it, if it changed meanwhile.
func (m *Manager) loadFile(b *Builder, info ListInfo, path string, f Format, run *buildRun) (int, error) {
	info.File = path
	var before fileStamp
	if run != nil {
		before, _ = statStamp(path)
		if prev, ok := m.stamps[path]; run.strict && !(ok && prev == before) {
			// Changed since the running lists were built from it: it may
			// be being written now.
			m.settles.Add(1)
			var err error
			if before, err = settle(path, run.settleBy); err != nil {
				return 0, fmt.Errorf("list %s: %w: not read", info.Name, err)
			}
		}
		run.stamps[path] = before
	}
	li, sink, err := b.AddList(info)
	if err != nil {
		return 0, err
	}
	res, err := ParseFile(path, f, sink)
	if after, _ := statStamp(path); run != nil && err == nil && after != before {
		changed := fmt.Errorf("list %s: %s %w", info.Name, path, errFileChanged)
		if !run.last || run.strict {
			err = changed
		} else {
			m.log.Warn("loaded a list file that changed while it was read", "list", info.Name, "err", changed)
		}
	}
	if info.Restricted {
		res.Errors, err = withholdLineText(res.Errors), withholdLines(err)
	}
	li.Format, li.Entries, li.Invalid, li.Errors, li.Loaded = res.Format, res.Entries, res.Invalid, res.Errors, time.Now()
	m.logInvalid(li)
	if err != nil {
		li.Err = err.Error()
		return res.Entries, err
	}
	return res.Entries, nil
}

func (m *Manager) loadSquidGuard(b *Builder, s Source, run *buildRun) (int, map[string]int, error) {
	dirs, err := ScanSquidGuard(s.Path)
	if err != nil {
		return 0, nil, err
	}
	mapping := s.squidCategories()
	total, loaded := 0, 0
	parts := map[string]int{}
	for _, d := range dirs {
		cat, ok := mapping[d.Dir]
		if !ok {
			continue
		}
		for _, f := range []struct {
			path, suffix string
			format       Format
		}{{d.Domains, "", FormatDomains}, {d.URLs, "/urls", FormatURLs}} {
			if f.path == "" {
				continue
			}
			info := ListInfo{Name: s.Name + "/" + d.Dir + f.suffix, Source: s.Name, Category: cat, Restricted: cat.Restricted()}
			n, err := m.loadFile(b, info, f.path, f.format, run)
			total += n
			parts[d.Dir+f.suffix] = n
			loaded++
			if err != nil {
				return total, nil, err
			}
		}
	}
	if loaded == 0 {
		return 0, nil, fmt.Errorf("%s: no sub-directory with a mapped category (is path the directory that holds adult/, gambling/ ...?)", s.Path)
	}
	return total, parts, nil
}

// commit publishes a built index (publish may be nil), then records it
// and its list state. Called with m.mu held.
func (m *Manager) commit(ix *Index, b *built, publish func(*Index) error) error {
	if publish != nil {
		if err := publish(ix); err != nil {
			return fmt.Errorf("new lists not published, keeping the running ones: %w", err)
		}
	}
	m.current.Store(ix)
	m.state, m.stamps = b.state, b.stamps
	m.writeState()
	m.restoreStatus(m.sources)
	m.status.built(b.names, b.loaded, b.errs, time.Now())
	// The builder's scratch maps are garbage now; hand the memory back so
	// the resident size reflects the index, not the build (FreeOSMemory
	// collects first).
	debug.FreeOSMemory()
	return nil
}

// Start runs scheduled refreshes until ctx ends, rescheduling them when
// SetSources changes the sources. When ctx ends the scheduler stops (the
// one in use then, whichever reload made it), a refresh under way is
// cancelled and no reload starts it again; the channel returned is closed
// once it has (nothing of the manager's writes to its directory after).
func (m *Manager) Start(ctx context.Context) <-chan struct{} {
	m.mu.Lock()
	m.runCtx = ctx
	m.scheduleLocked()
	m.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		m.mu.Lock()
		c := m.cron
		m.cron = nil
		m.mu.Unlock()
		if c != nil {
			<-c.Stop().Done() // outside the lock: a running refresh takes it
		}
	}()
	return done
}

func (m *Manager) scheduleLocked() {
	if m.cron != nil {
		m.cron.Stop()
	}
	run := m.runCtx
	if run == nil {
		run = context.Background()
	}
	if run.Err() != nil {
		m.cron = nil
		return
	}
	m.cron = cron.New(cron.WithLocation(m.loc), cron.WithParser(CronParser))
	for _, s := range m.sources {
		if s.Refresh == "" {
			continue
		}
		name := s.Name
		_, err := m.cron.AddFunc(s.Refresh, func() {
			ctx, cancel := context.WithTimeout(run, 30*time.Minute)
			defer cancel()
			if _, err := m.Update(ctx, []string{name}, nil); err != nil {
				m.log.Error("scheduled list refresh failed", "list", name, "err", err)
			}
		})
		if err != nil {
			m.log.Error("bad refresh schedule", "list", name, "refresh", s.Refresh, "err", err)
		}
	}
	m.cron.Start()
}

// CronParser reads refresh schedules: five fields or @daily style
// descriptors, with an optional CRON_TZ= prefix.
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Counts returns the last good entry count of each source.
func (m *Manager) Counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.state))
	for k, v := range m.state {
		out[k] = v.Entries
	}
	return out
}

func (m *Manager) statePath() string { return filepath.Join(m.dir, "state.json") }

func (m *Manager) readState() {
	data, err := os.ReadFile(m.statePath())
	if err != nil {
		return
	}
	if err := json.Unmarshal(data, &m.state); err != nil {
		m.log.Warn("ignoring unreadable list state", "file", m.statePath(), "err", err)
		m.state = map[string]listState{}
	}
}

func (m *Manager) writeState() {
	if m.dir == "" {
		return
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		m.log.Warn("cannot create list cache directory", "dir", m.dir, "err", err)
		return
	}
	data, _ := json.MarshalIndent(m.state, "", "  ")
	if err := writeFileAtomic(m.statePath(), data); err != nil {
		m.log.Warn("cannot save list state", "file", m.statePath(), "err", err)
	}
}

// writeFileAtomic replaces path with data (0600): a temporary file of its
// own (another process, e.g. `gatehouse lists update` beside serve, may
// be saving the same file), synced, then renamed over path and the
// directory synced, so a reader or a crash sees the old contents or the
// new, never a mix or an empty file. Temporary files a crash left behind
// are removed once an hour old.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	removeStaleFetchTemps(filepath.Clean(dir), base)
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	fetchSyncDir(filepath.Clean(dir))
	return nil
}

// countSink counts entries without storing them.
type countSink struct{ n int }

func (c *countSink) Domain([]byte, Mode) { c.n++ }
func (c *countSink) URL([]byte, bool)    { c.n++ }
func (c *countSink) Prefix(netip.Prefix) { c.n++ }
func (c *countSink) Hash([32]byte)       { c.n++ }
