package reports

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver (cgo)
)

// Store is the breach database: one SQLite file in WAL mode.
type Store struct {
	db   *sql.DB
	path string
}

// migrations are applied in order; the schema version is PRAGMA
// user_version, the number of migrations applied. Never edit one that has
// shipped: add another.
var migrations = []string{
	// 1: events, incidents, outbox, digest watermarks.
	`CREATE TABLE events (
		id          INTEGER PRIMARY KEY,
		ts          INTEGER NOT NULL, -- unix milliseconds, UTC
		kind        INTEGER NOT NULL, -- 1 breach, 2 probe, 3 query log
		source      TEXT NOT NULL DEFAULT '',
		protocol    TEXT NOT NULL DEFAULT '',
		client      TEXT NOT NULL DEFAULT '',
		device      TEXT NOT NULL DEFAULT '',
		user        TEXT NOT NULL DEFAULT '',
		grp         TEXT NOT NULL DEFAULT '',
		name        TEXT NOT NULL DEFAULT '',
		qtype       TEXT NOT NULL DEFAULT '',
		url         TEXT NOT NULL DEFAULT '',
		search      TEXT NOT NULL DEFAULT '',
		method      TEXT NOT NULL DEFAULT '',
		status      INTEGER NOT NULL DEFAULT 0,
		bytes       INTEGER NOT NULL DEFAULT 0,
		action      TEXT NOT NULL DEFAULT '',
		reason      TEXT NOT NULL DEFAULT '',
		category    TEXT NOT NULL DEFAULT '',
		severity    INTEGER NOT NULL DEFAULT 0,
		route       TEXT NOT NULL DEFAULT '',
		list        TEXT NOT NULL DEFAULT '',
		entry       TEXT NOT NULL DEFAULT '',
		flags       INTEGER NOT NULL DEFAULT 0, -- 1 restricted, 2 bypass, 4 probe
		count       INTEGER NOT NULL DEFAULT 1,
		incident_id INTEGER REFERENCES incidents(id) ON DELETE SET NULL
	);
	CREATE INDEX events_kind_ts ON events(kind, ts);
	CREATE INDEX events_incident ON events(incident_id);
	CREATE TABLE incidents (
		id            INTEGER PRIMARY KEY,
		who           TEXT NOT NULL, -- user:NAME, device:NAME or ip:ADDR
		client        TEXT NOT NULL DEFAULT '',
		device        TEXT NOT NULL DEFAULT '',
		user          TEXT NOT NULL DEFAULT '',
		grp           TEXT NOT NULL DEFAULT '',
		category      TEXT NOT NULL,
		severity      INTEGER NOT NULL,
		route         TEXT NOT NULL,
		restricted    INTEGER NOT NULL DEFAULT 0,
		bypass        INTEGER NOT NULL DEFAULT 0,
		first_ts      INTEGER NOT NULL,
		last_ts       INTEGER NOT NULL,
		count         INTEGER NOT NULL,
		samples       TEXT NOT NULL DEFAULT '[]', -- JSON array
		status        TEXT NOT NULL DEFAULT 'new', -- new, alerted, reported, acknowledged
		alerted_count INTEGER NOT NULL DEFAULT 0,  -- attempts covered by alerts so far
		last_alert_ts INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX incidents_who ON incidents(who, category, last_ts);
	CREATE INDEX incidents_last ON incidents(last_ts);
	CREATE INDEX incidents_alert ON incidents(severity, status);
	CREATE TABLE outbox (
		id         INTEGER PRIMARY KEY,
		kind       TEXT NOT NULL,        -- alert or digest
		created_ts INTEGER NOT NULL,
		role       TEXT NOT NULL,
		recipients TEXT NOT NULL,        -- JSON array of addresses
		subject    TEXT NOT NULL,
		text_body  TEXT NOT NULL,
		html_body  TEXT NOT NULL,
		message_id TEXT NOT NULL UNIQUE,
		attempts   INTEGER NOT NULL DEFAULT 0,
		next_ts    INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		sent_ts    INTEGER NOT NULL DEFAULT 0,  -- 0 until the server accepted it
		eml_path   TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX outbox_pending ON outbox(sent_ts, next_ts);
	CREATE TABLE digests (
		schedule  TEXT PRIMARY KEY,
		watermark INTEGER NOT NULL -- unix ms: the end of the last period sent
	);`,
	// 2: the proxy's block-page reference and "report a mistake" note.
	`ALTER TABLE events ADD COLUMN ref TEXT NOT NULL DEFAULT '';
	ALTER TABLE events ADD COLUMN note TEXT NOT NULL DEFAULT '';`,
	// 3: the install's random ID (Message-IDs), acknowledgement times, and
	// "report a mistake" forms as their own kind (4) kept as long as
	// breaches, with the time they were mailed to IT.
	`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
	INSERT INTO meta (key, value) VALUES ('install_id', lower(hex(randomblob(16))));
	ALTER TABLE incidents ADD COLUMN acked_ts INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE events ADD COLUMN mailed_ts INTEGER NOT NULL DEFAULT 0;
	UPDATE events SET kind = 4 WHERE action = 'report';`,
	// 4: health problems and the notices IT was sent about them (health.go).
	`CREATE TABLE health_problems (
		key       TEXT PRIMARY KEY,
		part      TEXT NOT NULL,
		message   TEXT NOT NULL,
		since_ts  INTEGER NOT NULL,           -- first seen
		seen_ts   INTEGER NOT NULL,           -- last seen
		mailed_ts INTEGER NOT NULL DEFAULT 0, -- IT told (0: not yet)
		remind_ts INTEGER NOT NULL DEFAULT 0, -- last reminder
		gone_ts   INTEGER NOT NULL DEFAULT 0  -- first check without it (0: still there)
	);`,
	// 5: spill files (events written beside the database while it failed)
	// whose events are now in it, so a crash before the file is removed
	// never replays it twice.
	`CREATE TABLE spills (
		name TEXT PRIMARY KEY,
		ts   INTEGER NOT NULL
	);`,
	// 6 (issue 16, IT's mis-block queue): what
	// IT decided about each "report a mistake" form (mistakes.go); a form
	// without a row is pending. Removed with its event.
	`CREATE TABLE mistake_reviews (
		event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
		status   TEXT NOT NULL,  -- approved or rejected
		reason   TEXT NOT NULL,
		actor    TEXT NOT NULL,  -- the console account
		ts       INTEGER NOT NULL
	);`,
	// 7: case records (cases.go): who an incident is assigned to, its
	// outcome and closing, a log of every assignment, note and status
	// change; the incident each alert was about; and the indexes the
	// console's pages need. (No new index on events: each costs the
	// writer; a person's history goes through incidents_who and
	// events_incident.)
	`ALTER TABLE incidents ADD COLUMN assignee TEXT NOT NULL DEFAULT '';
	ALTER TABLE incidents ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
	ALTER TABLE incidents ADD COLUMN closed_ts INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE incidents ADD COLUMN case_ts INTEGER NOT NULL DEFAULT 0; -- first action recorded: a case record
	CREATE TABLE case_log (
		id          INTEGER PRIMARY KEY,
		incident_id INTEGER NOT NULL REFERENCES incidents(id) ON DELETE CASCADE,
		ts          INTEGER NOT NULL,
		author      TEXT NOT NULL,
		kind        TEXT NOT NULL, -- assign, note, status, reopened
		before_text TEXT NOT NULL DEFAULT '',
		after_text  TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX case_log_incident ON case_log(incident_id, ts);
	CREATE INDEX incidents_case ON incidents(case_ts, last_ts);
	ALTER TABLE outbox ADD COLUMN incident_id INTEGER NOT NULL DEFAULT 0;
	UPDATE outbox SET incident_id = CAST(substr(message_id, 8, instr(substr(message_id, 8), '-') - 1) AS INTEGER)
		WHERE kind = 'alert' AND message_id LIKE '<alert-%';
	CREATE INDEX outbox_incident ON outbox(incident_id);`,
	// 8 (identity, issue 17): which source named the
	// person, and the directory's display name, year group and class.
	`ALTER TABLE events ADD COLUMN id_source TEXT NOT NULL DEFAULT '';
	ALTER TABLE events ADD COLUMN display TEXT NOT NULL DEFAULT '';
	ALTER TABLE events ADD COLUMN year_group TEXT NOT NULL DEFAULT '';
	ALTER TABLE events ADD COLUMN class TEXT NOT NULL DEFAULT '';
	ALTER TABLE incidents ADD COLUMN id_source TEXT NOT NULL DEFAULT '';
	ALTER TABLE incidents ADD COLUMN display TEXT NOT NULL DEFAULT '';
	ALTER TABLE incidents ADD COLUMN year_group TEXT NOT NULL DEFAULT '';
	ALTER TABLE incidents ADD COLUMN class TEXT NOT NULL DEFAULT '';`,
	// 9 (school devices off-site, issue 17; package devices): enrolled
	// devices with the SHA-256 of their token (never the token). rev grows
	// with every add or revoke, so a running serve sees a change by
	// reading max(rev).
	`CREATE TABLE devices (
		id           INTEGER PRIMARY KEY,
		name         TEXT NOT NULL,
		grp          TEXT NOT NULL,
		token_sha256 BLOB NOT NULL UNIQUE,
		created      INTEGER NOT NULL,
		revoked      INTEGER NOT NULL DEFAULT 0,
		rev          INTEGER NOT NULL
	);
	CREATE UNIQUE INDEX devices_active_name ON devices(name) WHERE revoked = 0;
	CREATE INDEX devices_rev ON devices(rev);`,
	// 10 (the sign-in page, issue 17; package identity/signin): current
	// sign-ins, one per address, kept only until they end, so a restart
	// does not forget who is behind an address.
	`CREATE TABLE signins (
		addr      TEXT PRIMARY KEY,
		user      TEXT NOT NULL,
		display   TEXT NOT NULL DEFAULT '',
		grp       TEXT NOT NULL DEFAULT '',
		session   TEXT NOT NULL,
		signed_in INTEGER NOT NULL,
		expires   INTEGER NOT NULL
	);
	CREATE INDEX signins_expires ON signins(expires);
	CREATE TABLE signin_settings (
		id          INTEGER PRIMARY KEY CHECK (id = 1),
		fingerprint TEXT NOT NULL
	);`,
	// 11: incident numbers are never used twice. SQLite numbers a new row
	// one past the highest left, so once retention deleted the newest
	// incidents a new one took a number that an old alert's link
	// (/incidents/12), an audit row or an outbox row still named: the DSL
	// following it saw another pupil. meta's incident_floor keeps the
	// highest number deleted; a new incident is numbered past it
	// (stmtNewIncident).
	`INSERT OR REPLACE INTO meta (key, value) VALUES ('incident_floor', CAST(COALESCE((SELECT max(id) FROM incidents), 0) AS TEXT));
	CREATE TRIGGER incidents_floor AFTER DELETE ON incidents
		WHEN OLD.id > CAST((SELECT value FROM meta WHERE key = 'incident_floor') AS INTEGER)
		BEGIN UPDATE meta SET value = CAST(OLD.id AS TEXT) WHERE key = 'incident_floor'; END;`,
}

// SchemaVersion is the schema this build writes.
var SchemaVersion = len(migrations)

// ErrNewerSchema is returned by Open for a database written by a newer
// Gatehouse.
var ErrNewerSchema = errors.New("database schema is newer than this Gatehouse")

// busyTimeout is how long a connection waits for a lock another holds.
const busyTimeout = 10 * time.Second

// pageCacheKiB is each connection's SQLite page cache (the pool's four at
// most, one of them the writer's).
const pageCacheKiB = 512

// Open opens (creating if needed, mode 0600) the database at path and
// brings its schema up to date.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("reports: no database path")
	}
	// Create the file ourselves so it is 0600 from the start; SQLite gives
	// its -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	f.Close()
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("database %s is readable by other users and chmod failed: %w", path, err)
		}
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_foreign_keys", "on")
	q.Set("_synchronous", "NORMAL")
	q.Set("_txlock", "immediate")
	q.Set("_auto_vacuum", "incremental")
	// Deleted rows are overwritten with zeros, so what the retention
	// purge deletes is gone from the file too, not left in free space.
	// It costs writes where whole pages are freed, which is mostly the
	// purge.
	q.Set("_secure_delete", "on")
	// Each connection's page cache is SQLite's default 2 MB otherwise, in
	// C memory outside the Go heap's accounting, filled by the writer
	// within a minute of a busy school's traffic and kept: the pages are in
	// the kernel's file cache anyway, which serves a miss in microseconds.
	q.Set("_cache_size", fmt.Sprint(-pageCacheKiB))
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(0)
	s := &Store{db: db, path: path}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate() error {
	ctx := context.Background()
	var v int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("reading database %s: %w", s.path, err)
	}
	from := v
	if v > SchemaVersion {
		return fmt.Errorf("%w: %s has schema version %d, this build knows up to %d; run the newer Gatehouse or restore a backup", ErrNewerSchema, s.path, v, SchemaVersion)
	}
	for ; v < SchemaVersion; v++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("database %s: migration %d: %w", s.path, v+1, err)
		}
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("database %s: migration %d: %w", s.path, v+1, err)
		}
	}
	if from > 0 && from < redactedSchema {
		if err := s.scrubRestricted(ctx); err != nil {
			return fmt.Errorf("database %s: removing restricted-tier names: %w", s.path, err)
		}
	}
	return nil
}

// DB is the underlying database, for tests and tools.
func (s *Store) DB() *sql.DB { return s.db }

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close checkpoints the WAL and closes the database.
func (s *Store) Close() error {
	_, _ = s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	return s.db.Close()
}

// ms converts a time to stored unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

// fromMS converts stored milliseconds back to a UTC time.
func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }
