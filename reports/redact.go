package reports

import (
	"context"
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
	if !ev.Restricted && !restrictedName(ev.Category) {
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

// restrictedNames are the restricted-tier categories' names, as events
// carry them.
var restrictedNames = func() []string {
	var out []string
	for _, c := range bl.Categories() {
		if c.Restricted() {
			out = append(out, c.String())
		}
	}
	return out
}()

// restrictedName is isRestricted without allocating for other names (it
// runs for every event).
func restrictedName(cat string) bool {
	if cat == "" {
		return false
	}
	for _, n := range restrictedNames {
		if strings.EqualFold(strings.TrimSpace(cat), n) {
			return true
		}
	}
	return false
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

// redactedSchema is the first schema version whose rows went through
// Redact. Opening an older database scrubs the restricted-tier names its
// events still hold (scrubRestricted).
const redactedSchema = 3

// scrubRestricted redacts the restricted-tier events stored before Redact
// existed, as Redact would have (secure_delete is on for every connection,
// see Open, so the old text is overwritten), and then truncates the WAL.
func (s *Store) scrubRestricted(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, `SELECT id, category, name, url, entry, note FROM events
		WHERE ((flags & ?) != 0 OR category IN ('iwf', 'ctiru')) AND (name != '' OR url != '' OR search != '' OR note != '')`, flagRestricted)
	if err != nil {
		return err
	}
	type fix struct {
		id          int64
		entry, note string
	}
	var fixes []fix
	for rows.Next() {
		var id int64
		var e Event
		if err := rows.Scan(&id, &e.Category, &e.Name, &e.URL, &e.Entry, &e.Note); err != nil {
			rows.Close()
			return err
		}
		e.Restricted = true
		Redact(&e)
		fixes = append(fixes, fix{id, e.Entry, e.Note})
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(fixes) == 0 {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, f := range fixes {
		if _, err := tx.ExecContext(ctx, `UPDATE events SET name = '', url = '', search = '', entry = ?, note = ?, flags = flags | ? WHERE id = ?`,
			f.entry, f.note, flagRestricted, f.id); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE incidents SET samples = '[]' WHERE restricted != 0 OR category IN ('iwf', 'ctiru')`); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}
