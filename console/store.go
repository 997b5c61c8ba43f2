package console

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Store keeps the console's tables in the reports database. Its SQL is
// plain (no SQLite-only syntax outside the migrations' triggers) so a
// second backend can follow.
type Store struct {
	db *sql.DB
}

// migrations are the console's schema, applied in order and counted in
// console_schema; never edit one that has shipped: add another. They are
// kept apart from the reports store's migrations so the two grow
// independently in one database file.
var migrations = []string{
	// 1: accounts, sessions, sign-in failures, audit log.
	`CREATE TABLE console_accounts (
		id          INTEGER PRIMARY KEY,
		email       TEXT NOT NULL UNIQUE, -- lower case
		role        TEXT NOT NULL,        -- dsl, headteacher, it, auditor
		pass_hash   TEXT NOT NULL,        -- argon2id PHC string
		totp_secret TEXT NOT NULL DEFAULT '', -- base32; '' when not enrolled
		totp_last   INTEGER NOT NULL DEFAULT 0, -- last accepted time step (no replay)
		disabled    INTEGER NOT NULL DEFAULT 0,
		created_ts  INTEGER NOT NULL,
		changed_ts  INTEGER NOT NULL
	);
	CREATE TABLE console_sessions (
		id_hash    TEXT PRIMARY KEY,  -- SHA-256 of the cookie value
		account_id INTEGER NOT NULL REFERENCES console_accounts(id) ON DELETE CASCADE,
		stage      TEXT NOT NULL,     -- totp (password accepted) or full
		csrf       TEXT NOT NULL,     -- per-session form token
		addr       TEXT NOT NULL,
		created_ts INTEGER NOT NULL,
		seen_ts    INTEGER NOT NULL
	);
	CREATE INDEX console_sessions_account ON console_sessions(account_id);
	CREATE TABLE console_failures (
		key      TEXT PRIMARY KEY,    -- account:EMAIL or addr:IP
		count    INTEGER NOT NULL,
		first_ts INTEGER NOT NULL
	);
	CREATE TABLE console_audit (
		id     INTEGER PRIMARY KEY,
		ts     INTEGER NOT NULL,      -- unix milliseconds, UTC
		actor  TEXT NOT NULL,         -- account email, or cli:USER
		addr   TEXT NOT NULL,         -- client address, or "cli"
		action TEXT NOT NULL,
		target TEXT NOT NULL,
		detail TEXT NOT NULL,
		hash   TEXT NOT NULL          -- SHA-256 over the previous row's hash and this row
	);
	CREATE TRIGGER console_audit_no_update BEFORE UPDATE ON console_audit
		BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
	CREATE TRIGGER console_audit_no_delete BEFORE DELETE ON console_audit
		BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;`,
	// 2: emailed one-time links to set a password (invite.go). One per
	// account: a new link replaces the old one.
	`CREATE TABLE console_invites (
		account_id  INTEGER PRIMARY KEY REFERENCES console_accounts(id) ON DELETE CASCADE,
		token_hash  TEXT NOT NULL UNIQUE, -- SHA-256 of the link's token; the token itself is not kept
		purpose     TEXT NOT NULL,        -- new (first password) or reset
		by_name     TEXT NOT NULL,        -- who sent it, as the mail said
		want_totp   INTEGER NOT NULL,     -- enrol an authenticator app on the link's page
		created_ts  INTEGER NOT NULL,
		expires_ts  INTEGER NOT NULL,
		pass_hash   TEXT NOT NULL DEFAULT '', -- the password chosen, held until the app's first code
		totp_secret TEXT NOT NULL DEFAULT ''  -- the app being enrolled
	);`,
}

// NewStore brings the console tables in db up to date.
func NewStore(db *sql.DB) (*Store, error) {
	s := &Store{db: db}
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS console_schema (version INTEGER NOT NULL)`); err != nil {
		return nil, fmt.Errorf("console schema: %w", err)
	}
	var v int
	err := db.QueryRowContext(ctx, `SELECT version FROM console_schema`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = db.ExecContext(ctx, `INSERT INTO console_schema (version) VALUES (0)`)
	}
	if err != nil {
		return nil, fmt.Errorf("console schema: %w", err)
	}
	if v > len(migrations) {
		return nil, fmt.Errorf("console schema version %d is newer than this Gatehouse knows (%d); run the newer Gatehouse or restore a backup", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(migrations[v]); err != nil {
			tx.Rollback()
			return nil, fmt.Errorf("console migration %d: %w", v+1, err)
		}
		if _, err := tx.Exec(`UPDATE console_schema SET version = ?`, v+1); err != nil {
			tx.Rollback()
			return nil, err
		}
		if err := tx.Commit(); err != nil {
			return nil, fmt.Errorf("console migration %d: %w", v+1, err)
		}
	}
	return s, nil
}

// Roles.
const (
	RoleDSL         = "dsl"
	RoleHeadteacher = "headteacher"
	RoleIT          = "it"
	RoleAuditor     = "auditor"
)

// Roles lists every role.
var Roles = []string{RoleDSL, RoleHeadteacher, RoleIT, RoleAuditor}

// ValidRole reports whether r is a role.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// TOTPRequired reports whether role must use a second factor.
func TOTPRequired(role string) bool { return role != RoleAuditor }

// Account is a console user.
type Account struct {
	ID       int64
	Email    string
	Role     string
	Disabled bool
	TOTP     bool // enrolled
	Created  time.Time
	Changed  time.Time

	passHash   string
	totpSecret string
	totpLast   int64
}

// ErrNoAccount is returned for an unknown email.
var ErrNoAccount = errors.New("no such account")

const accountCols = `id, email, role, pass_hash, totp_secret, totp_last, disabled, created_ts, changed_ts`

func scanAccount(r interface{ Scan(...any) error }) (Account, error) {
	var a Account
	var dis int
	var c, ch int64
	err := r.Scan(&a.ID, &a.Email, &a.Role, &a.passHash, &a.totpSecret, &a.totpLast, &dis, &c, &ch)
	if errors.Is(err, sql.ErrNoRows) {
		return a, ErrNoAccount
	}
	a.Disabled, a.TOTP = dis != 0, a.totpSecret != ""
	a.Created, a.Changed = time.UnixMilli(c).UTC(), time.UnixMilli(ch).UTC()
	return a, err
}

// NormalEmail is the stored form of an account name.
func NormalEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// ValidEmail checks an account name looks like an address.
func ValidEmail(e string) error {
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(e, " \t\r\n<>\",;") || len(e) > 254 {
		return fmt.Errorf("%q is not an email address", e)
	}
	return nil
}

// Account finds an account by email.
func (s *Store) Account(email string) (Account, error) {
	return scanAccount(s.db.QueryRow(`SELECT `+accountCols+` FROM console_accounts WHERE email = ?`, NormalEmail(email)))
}

func (s *Store) accountByID(id int64) (Account, error) {
	return scanAccount(s.db.QueryRow(`SELECT `+accountCols+` FROM console_accounts WHERE id = ?`, id))
}

// Accounts lists every account by email.
func (s *Store) Accounts() ([]Account, error) {
	rows, err := s.db.Query(`SELECT ` + accountCols + ` FROM console_accounts ORDER BY email`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// AddAccount creates an account after checking the role and password;
// totpSecret ("" for none) is its second factor. actor is written to the
// audit log.
func (s *Store) AddAccount(actor, addr, email, role, password, totpSecret string, now time.Time) error {
	email = NormalEmail(email)
	if err := ValidEmail(email); err != nil {
		return err
	}
	if !ValidRole(role) {
		return fmt.Errorf("unknown role %q (want one of %s)", role, strings.Join(Roles, ", "))
	}
	if err := CheckPassword(email, password); err != nil {
		return err
	}
	h, err := HashPassword(password)
	if err != nil {
		return err
	}
	if _, err := s.Account(email); err == nil {
		return fmt.Errorf("account %s already exists", email)
	}
	_, err = s.db.Exec(`INSERT INTO console_accounts (email, role, pass_hash, totp_secret, created_ts, changed_ts) VALUES (?, ?, ?, ?, ?, ?)`,
		email, role, h, totpSecret, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return err
	}
	return s.Audit(Entry{Time: now, Actor: actor, Addr: addr, Action: "account.add", Target: email,
		Detail: fmt.Sprintf("role=%s totp=%t", role, totpSecret != "")})
}

// SetPassword changes an account's password and ends its sessions.
func (s *Store) SetPassword(actor, addr, email, password string, now time.Time) error {
	a, err := s.Account(email)
	if err != nil {
		return err
	}
	if err := CheckPassword(a.Email, password); err != nil {
		return err
	}
	h, err := HashPassword(password)
	if err != nil {
		return err
	}
	if _, err := s.db.Exec(`UPDATE console_accounts SET pass_hash = ?, changed_ts = ? WHERE id = ?`, h, now.UnixMilli(), a.ID); err != nil {
		return err
	}
	if _, err := s.db.Exec(`DELETE FROM console_sessions WHERE account_id = ?`, a.ID); err != nil {
		return err
	}
	return s.Audit(Entry{Time: now, Actor: actor, Addr: addr, Action: "account.passwd", Target: a.Email, Detail: "password changed; sessions ended"})
}

// Disable stops an account signing in and ends its sessions.
func (s *Store) Disable(actor, addr, email string, now time.Time) error {
	a, err := s.Account(email)
	if err != nil {
		return err
	}
	if _, err := s.db.Exec(`UPDATE console_accounts SET disabled = 1, changed_ts = ? WHERE id = ?`, now.UnixMilli(), a.ID); err != nil {
		return err
	}
	if _, err := s.db.Exec(`DELETE FROM console_sessions WHERE account_id = ?`, a.ID); err != nil {
		return err
	}
	return s.Audit(Entry{Time: now, Actor: actor, Addr: addr, Action: "account.disable", Target: a.Email, Detail: "disabled; sessions ended"})
}

// useTOTPStep records step as the account's last accepted code, refusing
// a step at or before the last one (a replayed code).
func (s *Store) useTOTPStep(id, step int64) (bool, error) {
	r, err := s.db.Exec(`UPDATE console_accounts SET totp_last = ? WHERE id = ? AND totp_last < ?`, step, id, step)
	if err != nil {
		return false, err
	}
	n, err := r.RowsAffected()
	return n == 1, err
}

// Entry is one audit row.
type Entry struct {
	ID     int64
	Time   time.Time
	Actor  string
	Addr   string
	Action string
	Target string
	Detail string
	Hash   string
}

// chainHash is the hash of an entry given the previous row's hash.
func chainHash(prev string, e Entry) string {
	h := sha256.New()
	for _, f := range []string{prev, fmt.Sprint(e.Time.UnixMilli()), e.Actor, e.Addr, e.Action, e.Target, e.Detail} {
		fmt.Fprintf(h, "%d:%s\n", len(f), f)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Audit appends an entry to the audit log, chained to the row before.
func (s *Store) Audit(e Entry) error {
	tx, err := s.db.Begin() // the database's transactions are IMMEDIATE: one writer reads the chain's end
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var prev string
	if err := tx.QueryRow(`SELECT hash FROM console_audit ORDER BY id DESC LIMIT 1`).Scan(&prev); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	_, err = tx.Exec(`INSERT INTO console_audit (ts, actor, addr, action, target, detail, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.Time.UnixMilli(), e.Actor, e.Addr, e.Action, e.Target, e.Detail, chainHash(prev, e))
	if err != nil {
		return fmt.Errorf("writing audit log: %w", err)
	}
	return tx.Commit()
}

// AuditLog returns the audit log, oldest first.
func (s *Store) AuditLog() ([]Entry, error) {
	rows, err := s.db.Query(`SELECT id, ts, actor, addr, action, target, detail, hash FROM console_audit ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var ts int64
		if err := rows.Scan(&e.ID, &ts, &e.Actor, &e.Addr, &e.Action, &e.Target, &e.Detail, &e.Hash); err != nil {
			return nil, err
		}
		e.Time = time.UnixMilli(ts).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// VerifyAudit recomputes the hash chain and returns the ID of the first
// row that does not match (0 when the whole chain holds).
func (s *Store) VerifyAudit() (int64, error) {
	log, err := s.AuditLog()
	if err != nil {
		return 0, err
	}
	prev := ""
	for _, e := range log {
		if chainHash(prev, e) != e.Hash {
			return e.ID, nil
		}
		prev = e.Hash
	}
	return 0, nil
}

// A Querier runs a query on a database or inside a transaction.
type Querier interface {
	QueryRow(query string, args ...any) *sql.Row
}

// AuditHead is the audit log's last entry and its hash (0 and "" while
// the log is empty or the console was never set up): the fingerprint the
// digests carry, so that an auditor can later check that no entry up to
// it was changed or removed (VerifyAuditAt). The chain alone cannot show
// entries cut from its end, nor a whole chain written anew.
func AuditHead(q Querier) (int64, string, error) {
	var id int64
	var hash string
	err := q.QueryRow(`SELECT id, hash FROM console_audit ORDER BY id DESC LIMIT 1`).Scan(&id, &hash)
	if errors.Is(err, sql.ErrNoRows) || err != nil && strings.Contains(err.Error(), "no such table") {
		return 0, "", nil
	}
	return id, hash, err
}

// minFingerprint is the fewest hex digits of a hash VerifyAuditAt takes.
const minFingerprint = 16

// VerifyAuditAt is VerifyAudit, and also that entry id is still there
// with a hash starting with fp (a digest's fingerprint, "5f3c…", at least
// 16 hex digits). It returns the first entry that does not hold, or 0.
func (s *Store) VerifyAuditAt(id int64, fp string) (int64, error) {
	fp = strings.ToLower(fp)
	if len(fp) < minFingerprint || len(fp) > 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		return 0, fmt.Errorf("a fingerprint is %d to 64 hex digits, as a digest prints it", minFingerprint)
	}
	if bad, err := s.VerifyAudit(); bad != 0 || err != nil {
		return bad, err
	}
	var hash string
	err := s.db.QueryRow(`SELECT hash FROM console_audit WHERE id = ?`, id).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !strings.HasPrefix(hash, fp) {
		return id, nil
	}
	return 0, err
}

// SetTOTP enrols (or replaces) an account's second factor; "" removes it.
func (s *Store) SetTOTP(actor, addr, email, secret string, now time.Time) error {
	a, err := s.Account(email)
	if err != nil {
		return err
	}
	if secret == "" && TOTPRequired(a.Role) {
		return fmt.Errorf("the %s role needs a second factor; it cannot be removed", a.Role)
	}
	if _, err := s.db.Exec(`UPDATE console_accounts SET totp_secret = ?, totp_last = 0, changed_ts = ? WHERE id = ?`, secret, now.UnixMilli(), a.ID); err != nil {
		return err
	}
	if _, err := s.db.Exec(`DELETE FROM console_sessions WHERE account_id = ?`, a.ID); err != nil {
		return err
	}
	return s.Audit(Entry{Time: now, Actor: actor, Addr: addr, Action: "account.totp", Target: a.Email, Detail: fmt.Sprintf("second factor enrolled=%t; sessions ended", secret != "")})
}
