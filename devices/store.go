package devices

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// The devices table is reports migration 9 (reports/store.go).

// ErrExists is returned by Add for a name already enrolled.
var ErrExists = errors.New("a device with that name is already enrolled")

// ErrNotFound is returned by Revoke for a name not enrolled.
var ErrNotFound = errors.New("no enrolled device has that name")

// Add enrols a device in group and returns its token: the only time the
// token exists outside the device; the database keeps its SHA-256.
func Add(ctx context.Context, db *sql.DB, name, group string, now time.Time) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	tok, err := NewToken()
	if err != nil {
		return "", err
	}
	h := Hash(tok)
	_, err = db.ExecContext(ctx, `INSERT INTO devices (name, grp, token_sha256, created, rev)
		VALUES (?, ?, ?, ?, (SELECT coalesce(max(rev), 0) + 1 FROM devices))`, name, group, h[:], now.UnixMilli())
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			return "", fmt.Errorf("device %q: %w", name, ErrExists)
		}
		return "", err
	}
	return tok, nil
}

// checkName allows printable names without control characters, at most
// 64 bytes.
func checkName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("a device name is 1 to 64 characters")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f {
			return errors.New("a device name has no control characters")
		}
	}
	return nil
}

// Revoke ends the enrolment of the device called name: its token is
// refused from the next reload of the registry.
func Revoke(ctx context.Context, db *sql.DB, name string, now time.Time) error {
	res, err := db.ExecContext(ctx, `UPDATE devices SET revoked = ?, rev = (SELECT coalesce(max(rev), 0) + 1 FROM devices)
		WHERE name = ? AND revoked = 0`, now.UnixMilli(), name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("device %q: %w", name, ErrNotFound)
	}
	return nil
}

// Info is a device as listed (no token, no hash).
type Info struct {
	Name    string
	Group   string
	Created time.Time
	Revoked time.Time // zero: enrolled
}

// List returns every device, enrolled and revoked, by name.
func List(ctx context.Context, db *sql.DB) ([]Info, error) {
	rows, err := db.QueryContext(ctx, `SELECT name, grp, created, revoked FROM devices ORDER BY name, created`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Info
	for rows.Next() {
		var i Info
		var c, r int64
		if err := rows.Scan(&i.Name, &i.Group, &c, &r); err != nil {
			return nil, err
		}
		i.Created = time.UnixMilli(c).UTC()
		if r != 0 {
			i.Revoked = time.UnixMilli(r).UTC()
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

// Load reads the enrolled devices into r if the table changed since the
// last Load (its max(rev)); it reports whether it did.
func (r *Registry) Load(ctx context.Context, db *sql.DB) (bool, error) {
	var rev int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(rev), 0) FROM devices`).Scan(&rev); err != nil {
		return false, err
	}
	if rev == r.rev.Load() && r.m.Load() != nil {
		return false, nil
	}
	rows, err := db.QueryContext(ctx, `SELECT token_sha256, name, grp, created FROM devices WHERE revoked = 0`)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	var es []Entry
	for rows.Next() {
		var e Entry
		var h []byte
		var c int64
		if err := rows.Scan(&h, &e.Name, &e.Group, &c); err != nil {
			return false, err
		}
		if len(h) != len(e.Hash) {
			return false, fmt.Errorf("devices: device %q has a malformed token hash", e.Name)
		}
		copy(e.Hash[:], h)
		e.Created = time.UnixMilli(c).UTC()
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	r.Set(es)
	r.rev.Store(rev)
	return true, nil
}

// Watch reloads r from db every interval until ctx ends, so a device
// enrolled or revoked by `gatehouse devices` (another process) counts in
// a running serve within one interval. A failed read keeps the devices
// held (a revoked one stays refused only once read: see README).
func (r *Registry) Watch(ctx context.Context, db *sql.DB, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed, err := r.Load(ctx, db); err != nil {
			if ctx.Err() == nil {
				log.Error("reading enrolled devices", "err", err)
			}
		} else if changed {
			log.Info("enrolled devices reloaded", "devices", r.Len())
		}
	}
}
