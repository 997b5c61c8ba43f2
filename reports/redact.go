package reports

import (
	"net"
	"strings"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
)

// The restricted tier (IWF, CTIRU) is never stored or logged in plain
// text. Every event enters this package through Writer.Record or
// LogSink.Record, and both call Redact first: from there on (queue,
// database and its WAL, mail, exports, logs) only the list's category and
// the matched entry's hash exist. The front doors blank the names too; this
// is the one place that makes sure.

// withheldNote replaces the note of a "report a mistake" form about a
// restricted site: the pupil may have typed the address.
const withheldNote = "(withheld: the report concerns a site on a restricted list)"

// Redact strips a restricted-tier event of everything that names the site:
// Name, URL, search term and a mistake report's note. Entry becomes the
// SHA-256 (hex) of the matched entry (the front doors set it from the
// policy decision), or else of the host asked for, which is what a hashed
// list carries; the police can match it against the list. Other events are
// left alone.
func Redact(ev *Event) {
	if !ev.Restricted && !isRestricted(ev.Category) {
		return
	}
	ev.Restricted = true
	if !isSHA256Hex(ev.Entry) {
		e := ev.Entry
		if e == "" {
			e = hostOf(ev.Name)
		}
		if e == "" {
			e = hostOf(ev.URL)
		}
		ev.Entry = bl.EntryHash(e)
	}
	ev.Name, ev.URL, ev.SearchTerm = "", "", ""
	if ev.Note != "" {
		ev.Note = withheldNote
	}
}

// hostOf is the canonical host in a name, "host:port" or URL.
func hostOf(s string) string {
	if s == "" {
		return ""
	}
	if h, err := bl.NormalizeHost(s); err == nil {
		return h
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
