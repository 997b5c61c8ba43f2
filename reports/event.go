package reports

import (
	"net/netip"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// Event is one thing worth recording: a block, a bypass attempt, a probe,
// or (with full logging on) an allowed request. The DNS resolver and the
// HTTP proxy fill the same struct.
type Event struct {
	Time     time.Time // UTC
	Source   string    // "dns", "http" or "connect"
	Protocol string    // "udp", "tcp", "dot", "http", "https"

	// Who.
	Client netip.Addr
	Device string // named device, if known
	User   string // authenticated user, if known
	Group  string
	// IDSource is which source named the person or device (package
	// identity: login, radius, directory, dhcp, device, address); ""
	// from an older Gatehouse.
	IDSource string `json:",omitempty"`
	// Display, Year and Class describe the user where the directory
	// knows them ("Amira Khan", "Year 8", "8B").
	Display string `json:",omitempty"`
	Year    string `json:",omitempty"`
	Class   string `json:",omitempty"`

	// What.
	Name       string // DNS query name or request host ("" once redacted: restricted tier)
	QType      string // DNS query type ("A", "HTTPS", ...)
	URL        string // full URL (proxy only)
	SearchTerm string // search term, where the URL carries one
	// SearchEngine names the engine of SearchTerm ("Google"), for the
	// wording of alerts and digests; not a column of its own (Name holds
	// the engine's host).
	SearchEngine string `json:",omitempty"`
	Method       string // HTTP method (proxy only)
	Status       int    // HTTP status returned (proxy only)
	Bytes        int64  // bytes transferred (proxy only)
	// Ref is the reference code shown on the block page (proxy only); a
	// "report a mistake" event carries the code of the page it came from.
	Ref string
	// Note is what the person wrote in a "report a mistake" form (Action
	// "report", Route it).
	Note string

	// Why.
	Action     string // "block", "allow", "rewrite", "flag" (proxy: a suspicious tunnel let through) or "report" (a mis-block report)
	Reason     string // the policy step that decided (policy.Reason)
	Category   string // catalogue name, "" if none
	Severity   bl.Severity
	Route      bl.Route
	List       string
	Entry      string // the matched entry; for the restricted tier only its SHA-256 (hex), see Redact
	Restricted bool
	Bypass     bool // a filter-bypass attempt
	Probe      bool // an automatic probe, not a person's action

	// Count is how many identical requests this event stands for (repeats
	// within a short window are collapsed into one event); at least 1.
	Count int
	// Series, if not 0, makes events one stored row: the first inserts it,
	// later ones add their Count to it. The front doors send a collapse
	// window's repeats this way every half second, so the count is durable
	// within a second without a row each time. (The sequence number of the
	// window's first event, so unique per writer run.)
	Series uint64 `json:",omitempty"`
	// SeriesEnd marks the last event of its Series (the window has
	// ended): the writer then forgets the series' row, which it would
	// otherwise keep for ten minutes in case more repeats came. With Count
	// 0 the event is only that mark (no repeats came since the last).
	SeriesEnd bool `json:",omitempty"`

	// Set by the writer only: its sequence number of the event, and
	// whether the event is committed ahead of the lazy ones (an answer
	// waits for it, or it is urgent: Writer.takeHeld).
	seq  uint64
	held bool
}

// Sink receives events from the front doors. Record must not block the
// request path: it queues the event and returns. It returns false when the
// event was dropped (low-severity events when the queue is full; any, and
// loudly, only when the store and its spill directory both fail). See
// DurableSink for holding an answer until its event is durable.
type Sink interface {
	Record(Event) bool
}

// EndOfSeries tells a DurableSink that the series of the first event
// numbered seq has ended with no repeats since its last event: not an
// event (Count 0), so that the writer forgets the series' row.
func EndOfSeries(seq uint64) Event { return Event{Series: seq, SeriesEnd: true} }

// seriesEndOnly reports whether ev only marks the end of its series
// (SeriesEnd with no count): not an event to store.
func (ev *Event) seriesEndOnly() bool { return ev.SeriesEnd && ev.Count == 0 && ev.Series != 0 }
