package reports

import (
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	mail "github.com/wneessen/go-mail"
)

// Message is one rendered mail, as stored in the outbox.
type Message struct {
	ID         int64
	Kind       string // alert or digest
	Role       string
	Recipients []string
	Subject    string
	Text, HTML string
	MessageID  string
	Created    time.Time
	Incident   int64 // the incident an alert is about (0: none)
	// Shown is whose incidents a digest lists (ShownIncident), for the
	// audit row of a look at it (gatehouse report preview); not stored.
	Shown []string
}

// ShownIncident is how an audit row names an incident shown: "#12
// user:alice" (its number alone is not whose it is: see
// incident_floor, and the rows written before it).
func ShownIncident(id int64, who string) string { return fmt.Sprintf("#%d %s", id, who) }

// enqueue stores m in the outbox inside tx. Its Message-ID is key, the
// install's random ID and the host name ("<alert-7-3.5f0c…@filter1>";
// "-r2" after the key if a row already has that ID): unique across every
// Gatehouse, and fixed for this message once queued, so a resend after a
// crash carries the same ID (it is read back from the outbox row).
func enqueue(tx *sql.Tx, m *Message, key string, now time.Time) error {
	rc, _ := json.Marshal(nonNil(m.Recipients))
	var install string
	if err := tx.QueryRow(`SELECT value FROM meta WHERE key = 'install_id'`).Scan(&install); err != nil {
		return fmt.Errorf("reading the install ID: %w", err)
	}
	m.Created = now
	// A key names one message only while the rows it is made of live:
	// SQLite numbers a new incident or event as the last one deleted by
	// retention was, and that one's mail may still be in the outbox
	// (waiting on a failing relay, or sent and not yet purged). A message
	// is never dropped for that: a taken ID gets a suffix.
	for n := 1; ; n++ {
		id := key
		if n > 1 {
			id = fmt.Sprintf("%s-r%d", key, n)
		}
		m.MessageID = "<" + id + "." + install + "@" + idHost() + ">"
		res, err := tx.Exec(`INSERT INTO outbox (kind, created_ts, role, recipients, subject, text_body, html_body, message_id, next_ts, incident_id)
			VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(message_id) DO NOTHING`,
			m.Kind, ms(now), m.Role, string(rc), m.Subject, m.Text, m.HTML, m.MessageID, ms(now), m.Incident)
		if err != nil {
			return fmt.Errorf("queueing mail: %w", err)
		}
		if added, _ := res.RowsAffected(); added == 1 {
			m.ID, _ = res.LastInsertId()
			return nil
		}
		if n == 1000 {
			return fmt.Errorf("queueing mail: Message-ID %s and 999 others like it are taken", key)
		}
	}
}

// Enqueue stores m in the outbox inside tx, a transaction on the store's
// database begun by another part of Gatehouse (the console's invitations),
// so the mail is queued if and only if the change it reports commits. key
// makes its Message-ID (see enqueue).
func Enqueue(tx *sql.Tx, m *Message, key string, now time.Time) error {
	return enqueue(tx, m, key, now)
}

// KindInvite is a console invitation: its body holds a one-time link, so
// once the message is delivered the outbox keeps only a note in its place
// (markSent).
const KindInvite = "invite"

// inviteSentBody replaces an invitation's body once it is delivered.
const inviteSentBody = "(a console invitation: its one-time link is not kept after delivery)"

// idHost is the host name as a Message-ID's right-hand side: letters,
// digits, dots and hyphens only ("gatehouse" if there is none).
func idHost() string {
	h, _ := os.Hostname()
	b := make([]byte, 0, len(h))
	for i := 0; i < len(h) && len(b) < 64; i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		}
	}
	if s := strings.Trim(string(b), ".-"); s != "" {
		return s
	}
	return "gatehouse"
}

// MailConfig says how mail leaves.
type MailConfig struct {
	Host     string // empty: .eml files only
	Port     int
	Username string
	Password string
	From     string
	TLS      string // starttls (required), tls, opportunistic, none
	Timeout  time.Duration
	// TLSConfig overrides the TLS settings (tests use it for their own CA).
	TLSConfig *tls.Config

	Dir string // the .eml outbox directory
	// FallbackAfter is how many failed attempts before a message is also
	// written to Dir (default 3).
	FallbackAfter int
	// Backoff is the first retry delay, doubled per attempt up to 30m
	// (default 30s).
	Backoff time.Duration
	// Roles is reports.recipients as configured now. Mail for a role
	// (alerts, digests, health notices, mistake reports) goes to its
	// role's addresses as they are when it is sent, so a message that
	// waited for an address IT has since corrected reaches the corrected
	// one. Without it (or for a role with no address now), and for
	// invitations (one person's), the addresses it was queued with.
	Roles Roles
}

// roleMail reports whether mail of kind is addressed to a role rather
// than to one person.
func roleMail(kind string) bool {
	switch kind {
	case "alert", "digest", "health", "mistakes":
		return true
	}
	return false
}

// readdress gives r its role's current addresses, in the outbox too, when
// they differ from those it was queued with.
func (m *Mailer) readdress(r *outRow) {
	now := m.cfg.Roles[r.Role]
	if !roleMail(r.Kind) || len(now) == 0 || slices.Equal(now, r.Recipients) {
		return
	}
	r.Recipients = slices.Clone(now)
	rc, _ := json.Marshal(r.Recipients)
	if _, err := m.st.db.Exec(`UPDATE outbox SET recipients = ? WHERE id = ?`, string(rc), r.ID); err != nil {
		m.log.Error("updating outbox", "id", r.ID, "err", err)
	}
}

// Mailer delivers the outbox: SMTP when configured, .eml files otherwise.
type Mailer struct {
	st   *Store
	cfg  MailConfig
	log  *slog.Logger
	now  func() time.Time
	wake chan struct{}

	Sent   atomic.Uint64
	Failed atomic.Uint64 // failed attempts
	// health is the last attempt's outcome: since when attempts fail, and
	// why. Healthy reads it with the outbox's waiting messages.
	health   failState
	lastFail atomic.Bool // the last attempt failed (for the "delivered again" log line)
}

// NewMailer makes a mailer; Run delivers.
func NewMailer(st *Store, cfg MailConfig, log *slog.Logger, now func() time.Time) *Mailer {
	if cfg.FallbackAfter <= 0 {
		cfg.FallbackAfter = 3
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Port == 0 {
		cfg.Port = 587
	}
	if cfg.From == "" {
		cfg.From = "gatehouse@localhost"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Mailer{st: st, cfg: cfg, log: log, now: now, wake: make(chan struct{}, 1)}
}

// Wake makes Run look at the outbox now.
func (m *Mailer) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done.
func (m *Mailer) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
		next, err := m.DeliverDue(ctx)
		if err != nil && ctx.Err() == nil {
			m.log.Error("outbox", "err", err)
		}
		wait := time.Minute
		if !next.IsZero() {
			wait = min(max(next.Sub(m.now()), 50*time.Millisecond), time.Minute)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// Pending counts messages not yet accepted by a server (or written, without
// SMTP).
func (m *Mailer) Pending() (int, error) {
	var n int
	err := m.st.db.QueryRow(`SELECT count(*) FROM outbox WHERE sent_ts = 0`).Scan(&n)
	return n, err
}

// DeliverDue tries every message that is due and returns when the next
// retry is due (zero if none is waiting).
func (m *Mailer) DeliverDue(ctx context.Context) (time.Time, error) {
	msgs, err := m.due()
	if err != nil {
		return time.Time{}, err
	}
	for _, msg := range msgs {
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		m.deliver(ctx, msg)
	}
	var next sql.NullInt64
	err = m.st.db.QueryRow(`SELECT min(next_ts) FROM outbox WHERE sent_ts = 0`).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, err
	}
	return fromMS(next.Int64), nil
}

// DeliverOne tries the message id now, whether or not its retry is due,
// and reports whether it has been delivered (or written, without SMTP).
// The CLI uses it for the one message it queued, leaving the rest of the
// outbox to gatehouse serve.
func (m *Mailer) DeliverOne(ctx context.Context, id int64) (bool, error) {
	rows, err := m.st.db.Query(selectOut+` WHERE id = ? AND sent_ts = 0`, id)
	if err != nil {
		return false, err
	}
	msgs, err := scanOutRows(rows)
	if err != nil {
		return false, err
	}
	for _, msg := range msgs {
		m.deliver(ctx, msg)
	}
	var sent int64
	err = m.st.db.QueryRow(`SELECT sent_ts FROM outbox WHERE id = ?`, id).Scan(&sent)
	return sent > 0, err
}

type outRow struct {
	Message
	attempts int
	emlPath  string
}

func (m *Mailer) due() ([]outRow, error) {
	rows, err := m.st.db.Query(selectOut+` WHERE sent_ts = 0 AND next_ts <= ? ORDER BY id LIMIT 100`, ms(m.now()))
	if err != nil {
		return nil, err
	}
	return scanOutRows(rows)
}

// selectOut selects the outbox's delivery columns, in scanOutRows' order.
const selectOut = `SELECT id, kind, role, recipients, subject, text_body, html_body, message_id, created_ts, attempts, eml_path
	FROM outbox`

// scanOutRows reads the rows of a selectOut query.
func scanOutRows(rows *sql.Rows) ([]outRow, error) {
	defer rows.Close()
	var out []outRow
	for rows.Next() {
		var r outRow
		var rc string
		var created int64
		if err := rows.Scan(&r.ID, &r.Kind, &r.Role, &rc, &r.Subject, &r.Text, &r.HTML, &r.MessageID, &created, &r.attempts, &r.emlPath); err != nil {
			return nil, err
		}
		_ = json.Unmarshal([]byte(rc), &r.Recipients)
		r.Created = fromMS(created)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (m *Mailer) deliver(ctx context.Context, r outRow) {
	m.readdress(&r)
	msg, err := m.build(&r.Message)
	if err != nil {
		m.fail(r, fmt.Errorf("building message: %w", err))
		return
	}
	if m.cfg.Host == "" || len(r.Recipients) == 0 {
		// No SMTP (or nobody to send to): the .eml file is the delivery.
		p, err := m.writeEML(&r.Message, msg)
		if err != nil {
			m.fail(r, err)
			return
		}
		if len(r.Recipients) == 0 && m.cfg.Host != "" {
			m.log.Warn("no address for role: message written to the outbox directory only", "role", r.Role, "file", p)
		}
		m.markSent(r.ID, r.Kind, p)
		if m.cfg.Host == "" { // the .eml file is how mail leaves: it works
			m.lastFail.Store(false)
			m.health.ok()
		}
		return
	}
	if err := m.send(ctx, msg); err != nil {
		m.fail(r, err)
		return
	}
	eml := r.emlPath
	if r.Kind == KindInvite && eml != "" {
		// The fallback copy written while the relay failed holds the
		// live one-time link: delivered now, it goes too.
		if err := os.Remove(eml); err == nil || errors.Is(err, fs.ErrNotExist) {
			eml = ""
		} else {
			m.log.Error("an invitation was delivered but its .eml copy (with its link) could not be removed", "file", eml, "err", err)
		}
	}
	m.markSent(r.ID, r.Kind, eml)
	m.health.ok()
	if m.lastFail.Swap(false) {
		m.log.Info("mail is being delivered again", "host", m.cfg.Host)
	}
}

// markSent records acceptance. A crash between the server's acceptance and
// this update sends the message again at restart: at most one duplicate,
// with the same Message-ID.
func (m *Mailer) markSent(id int64, kind, eml string) {
	q := `UPDATE outbox SET sent_ts = ?, eml_path = ?, last_error = '' WHERE id = ?`
	args := []any{ms(m.now()), eml, id}
	if kind == KindInvite { // the one-time link is not kept once delivered
		q = `UPDATE outbox SET sent_ts = ?, eml_path = ?, last_error = '', text_body = ?, html_body = '' WHERE id = ?`
		args = []any{ms(m.now()), eml, inviteSentBody, id}
	}
	if _, err := m.st.db.Exec(q, args...); err != nil {
		m.log.Error("marking mail sent", "id", id, "err", err)
		return
	}
	m.Sent.Add(1)
}

func (m *Mailer) fail(r outRow, err error) {
	m.Failed.Add(1)
	m.lastFail.Store(true)
	m.health.fail(err, m.now())
	attempts := r.attempts + 1
	delay := m.cfg.Backoff << min(attempts-1, 16)
	delay = min(delay, 30*time.Minute)
	eml := r.emlPath
	lastErr := err.Error()
	if attempts >= m.cfg.FallbackAfter && eml == "" {
		msg, cerr := m.build(&r.Message)
		if cerr == nil {
			eml, cerr = m.writeEML(&r.Message, msg)
		}
		if cerr != nil {
			// Recorded with the error: the health check must not tell IT
			// to look for a copy that is not there.
			lastErr += "; and its copy could not be written to the outbox directory: " + cerr.Error()
		}
	}
	// Not the subject: an alert's names the pupil, and the log is kept
	// by the system, not by reports.retention.
	m.log.Error("MAIL IS FAILING: message not delivered, will retry", "id", r.ID, "kind", r.Kind, "role", r.Role,
		"attempts", attempts, "retry_in", delay.String(), "eml", eml, "err", lastErr)
	if _, uerr := m.st.db.Exec(`UPDATE outbox SET attempts = ?, next_ts = ?, last_error = ?, eml_path = ? WHERE id = ?`,
		attempts, ms(m.now().Add(delay)), lastErr, eml, r.ID); uerr != nil {
		m.log.Error("updating outbox", "id", r.ID, "err", uerr)
	}
}

func (m *Mailer) build(r *Message) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(m.cfg.From); err != nil {
		return nil, err
	}
	if len(r.Recipients) > 0 {
		if err := msg.To(r.Recipients...); err != nil {
			return nil, err
		}
	}
	msg.Subject(r.Subject)
	msg.SetMessageIDWithValue(r.MessageID[1 : len(r.MessageID)-1])
	msg.SetDateWithValue(r.Created)
	msg.SetGenHeader("X-Gatehouse-Kind", r.Kind)
	msg.SetBodyString(mail.TypeTextPlain, r.Text)
	if r.HTML != "" {
		msg.AddAlternativeString(mail.TypeTextHTML, r.HTML)
	}
	return msg, nil
}

func (m *Mailer) send(ctx context.Context, msg *mail.Msg) error {
	opts := []mail.Option{mail.WithPort(m.cfg.Port), mail.WithTimeout(m.cfg.Timeout)}
	switch m.cfg.TLS {
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "opportunistic":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if m.cfg.TLSConfig != nil {
		opts = append(opts, mail.WithTLSConfig(m.cfg.TLSConfig))
	}
	if m.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(m.cfg.Username), mail.WithPassword(m.cfg.Password))
	}
	c, err := mail.NewClient(m.cfg.Host, opts...)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	return c.DialAndSendWithContext(sctx, msg)
}

// writeEML writes the message into the outbox directory (atomically) and
// returns the file's path.
func (m *Mailer) writeEML(r *Message, msg *mail.Msg) (string, error) {
	if m.cfg.Dir == "" {
		return "", errors.New("no outbox directory configured")
	}
	if err := os.MkdirAll(m.cfg.Dir, 0o700); err != nil {
		return "", fmt.Errorf("outbox directory: %w", err)
	}
	name := fmt.Sprintf("%s-%06d-%s.eml", r.Created.UTC().Format("20060102T150405Z"), r.ID, r.Kind)
	p := filepath.Join(m.cfg.Dir, name)
	// Not *.eml until complete: whatever collects the outbox (and the
	// tests) must never see a half-written message.
	tmp, err := os.CreateTemp(m.cfg.Dir, ".tmp-*.part")
	if err != nil {
		return "", fmt.Errorf("outbox directory: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := msg.WriteTo(tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", err
	}
	return p, nil
}
