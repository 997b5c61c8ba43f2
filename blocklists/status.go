package blocklists

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ListStatus is what is known about one configured list, for metrics and
// health checks.
type ListStatus struct {
	Name    string
	Feed    bool // a downloaded feed (else a local file or squidGuard tree)
	Loaded  bool // its entries are in the index in use
	Entries int  // entries in the index in use (0 when not loaded)
	// LastSuccess is when a local list last loaded, or a feed was last
	// downloaded (or found unchanged), without error; zero if never known.
	LastSuccess time.Time
	// LastError and LastErrorAt describe the last failed load or download;
	// Failing says it came after the last success.
	LastError   string
	LastErrorAt time.Time
	// Failures counts the attempts in a row (downloads of a feed, loads
	// of a local list) that failed since the last success.
	Failures int
}

// Failing reports whether the last attempt to load or download the list
// failed.
func (s ListStatus) Failing() bool { return s.LastError != "" && !s.LastErrorAt.Before(s.LastSuccess) }

// statusBook records list outcomes; it has its own lock so that metrics and
// health checks never wait for a build.
type statusBook struct {
	mu    sync.Mutex
	m     map[string]*ListStatus
	names []string // the sources of the last build, in config order
}

func (b *statusBook) get(name string) *ListStatus {
	if b.m == nil {
		b.m = map[string]*ListStatus{}
	}
	s := b.m[name]
	if s == nil {
		s = &ListStatus{Name: name}
		b.m[name] = s
	}
	return s
}

// loadedList is one list that made it into a new index.
type loadedList struct {
	entries int
	feed    bool      // a feed: success is a download, not a load of the cached copy
	fetched time.Time // for a feed, when the cached copy was downloaded
}

// built records a new index: loaded lists and their counts, and the
// errors of those that failed.
func (b *statusBook) built(names []string, loaded map[string]loadedList, failed map[string]error, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.names = names
	for name, s := range b.m {
		if !slices.Contains(names, name) {
			delete(b.m, name) // removed from the config
			continue
		}
		s.Loaded, s.Entries = false, 0
	}
	for name, l := range loaded {
		s := b.get(name)
		s.Loaded, s.Entries, s.Feed = true, l.entries, l.feed
		switch {
		case !l.feed:
			s.LastSuccess, s.Failures = now, 0
		case s.LastSuccess.IsZero():
			s.LastSuccess = l.fetched
		}
	}
	for name, err := range failed {
		b.failed(name, err, now)
	}
}

// failed records an error for a list (the lock held).
func (b *statusBook) failed(name string, err error, now time.Time) {
	s := b.get(name)
	s.LastError, s.LastErrorAt = err.Error(), now
	s.Failures++
}

// fetched records a download's outcome.
func (b *statusBook) fetched(name string, err error, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.failed(name, err, now)
		return
	}
	s := b.get(name)
	s.LastSuccess, s.Failures = now, 0
}

// A feed's download outcomes are kept in a status file beside its cached
// copy, so a feed that has been failing for days still says so after a
// restart (or in `gatehouse lists stats`), instead of looking healthy
// from its cached copy alone. A local list's status is what its load at
// start says.
type savedStatus struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"` // a restricted list's never quotes its lines (withholdLines)
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"consecutive_failures"`
}

func (f *Fetcher) statusPath(name string) string {
	return filepath.Join(f.Dir, feedCacheBase(name)+".status.json")
}

// saveStatus writes a feed's download status to its status file (0600).
func (m *Manager) saveStatus(name string) {
	if m.dir == "" {
		return
	}
	m.status.mu.Lock()
	st := *m.status.get(name)
	m.status.mu.Unlock()
	data, _ := json.MarshalIndent(savedStatus{LastSuccess: st.LastSuccess, LastError: st.LastError,
		LastErrorAt: st.LastErrorAt, Failures: st.Failures}, "", "  ")
	if err := writeFileAtomic(m.fetcher.statusPath(name), append(data, '\n')); err != nil {
		m.log.Warn("cannot save list status", "list", name, "err", err)
	}
}

// restoreStatus gives each feed the status saved by an earlier run or by
// another process on the same cache (`gatehouse lists update` beside
// serve), when that is newer than the one it has.
func (m *Manager) restoreStatus(sources []Source) {
	m.status.mu.Lock()
	defer m.status.mu.Unlock()
	for _, s := range sources {
		if s.Feed == nil || m.dir == "" {
			continue
		}
		data, err := os.ReadFile(m.fetcher.statusPath(s.Name))
		if err != nil {
			continue
		}
		var saved savedStatus
		if err := json.Unmarshal(data, &saved); err != nil {
			m.log.Warn("ignoring unreadable list status", "list", s.Name, "err", err)
			continue
		}
		st := m.status.get(s.Name)
		if !latest(saved.LastSuccess, saved.LastErrorAt).After(latest(st.LastSuccess, st.LastErrorAt)) {
			continue
		}
		st.Feed = true
		st.LastSuccess, st.LastError, st.LastErrorAt, st.Failures = saved.LastSuccess, saved.LastError, saved.LastErrorAt, saved.Failures
	}
}

// Status returns the state of every list configured for the index in use,
// in config order (none before the first Load). A list that never loaded
// has Loaded false and, usually, LastError set. It never waits for a
// build or a download.
func (m *Manager) Status() []ListStatus {
	m.status.mu.Lock()
	defer m.status.mu.Unlock()
	out := make([]ListStatus, len(m.status.names))
	for i, name := range m.status.names {
		if st := m.status.m[name]; st != nil {
			out[i] = *st
		} else {
			out[i] = ListStatus{Name: name}
		}
	}
	return out
}

// refused records the errors of a build that was refused (the index in
// use stays, so what is loaded does not change).
func (b *statusBook) refused(failed map[string]error, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for name, err := range failed {
		b.failed(name, err, now)
	}
}

// logInvalid logs a list's rejected lines (the first MaxLineErrors, with
// file:line and the reason) and how many there were in all. A restricted
// list's lines are never shown, nor the reasons: only their positions.
func (m *Manager) logInvalid(li *ListInfo) {
	if li.Invalid == 0 {
		return
	}
	for _, e := range li.Errors {
		args := []any{"list", li.Name, "at", e.File + ":" + strconv.Itoa(e.Line)}
		if !li.Restricted { // a reason can quote part of the line
			args = append(args, "reason", e.Reason, "line", e.Text)
		}
		m.log.Warn("invalid list line", args...)
	}
	if more := li.Invalid - len(li.Errors); more > 0 {
		m.log.Warn("more invalid list lines not shown", "list", li.Name, "file", li.File, "more", more, "invalid", li.Invalid)
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
