package signin

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"time"

	"github.com/gatehouse-filter/gatehouse/identity"
)

// Store keeps current sign-ins in the database (reports migration 10,
// table signins), so that a restart does not forget who is behind an
// address: a row is written at sign-in, deleted at sign-out, when another
// person's sign-in replaces it and once it has ended (Sweep; Load deletes
// ended rows before reading). Nothing is kept after a sign-in ends.
type Store struct{ DB *sql.DB }

// saved is a sign-in as kept.
type saved struct {
	Addr netip.Addr
	record
}

func (v saved) mapping() identity.Mapping {
	return identity.Mapping{Addr: v.Addr, Source: identity.SourceSignin, Session: v.Session, User: v.User,
		Display: v.Display, Group: v.Group, Expires: v.Expires}
}

// Save writes a sign-in, replacing the address's earlier one.
func (st *Store) Save(ctx context.Context, v saved) error {
	_, err := st.DB.ExecContext(ctx, `INSERT OR REPLACE INTO signins (addr, user, display, grp, session, signed_in, expires)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, v.Addr.String(), v.User, v.Display, v.Group, v.Session, v.Since.UnixMilli(), v.Expires.UnixMilli())
	return err
}

// Delete removes the address's sign-in if it is still session's.
func (st *Store) Delete(ctx context.Context, addr netip.Addr, session string) error {
	_, err := st.DB.ExecContext(ctx, `DELETE FROM signins WHERE addr = ? AND session = ?`, addr.String(), session)
	return err
}

// Sweep deletes the sign-ins ended at now.
func (st *Store) Sweep(ctx context.Context, now time.Time) error {
	_, err := st.DB.ExecContext(ctx, `DELETE FROM signins WHERE expires <= ?`, now.UnixMilli())
	return err
}

// Clear deletes every kept sign-in (the page is no longer configured).
func (st *Store) Clear(ctx context.Context) (int64, error) {
	res, err := st.DB.ExecContext(ctx, `DELETE FROM signins`)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Load deletes the ended sign-ins and returns the others.
func (st *Store) Load(ctx context.Context, now time.Time) ([]saved, error) {
	if err := st.Sweep(ctx, now); err != nil {
		return nil, err
	}
	rows, err := st.DB.QueryContext(ctx, `SELECT addr, user, display, grp, session, signed_in, expires FROM signins`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []saved
	for rows.Next() {
		var a string
		var since, exp int64
		var v saved
		if err := rows.Scan(&a, &v.User, &v.Display, &v.Group, &v.Session, &since, &exp); err != nil {
			return nil, err
		}
		addr, err := netip.ParseAddr(a)
		if err != nil || v.User == "" {
			continue // not one this package wrote
		}
		v.Addr, v.Since, v.Expires = addr, time.UnixMilli(since), time.UnixMilli(exp)
		out = append(out, v)
	}
	return out, rows.Err()
}

// Fingerprint returns the settings fingerprint the kept sign-ins were
// made under ("" if none is recorded).
func (st *Store) Fingerprint(ctx context.Context) (string, error) {
	var fp string
	err := st.DB.QueryRowContext(ctx, `SELECT fingerprint FROM signin_settings WHERE id = 1`).Scan(&fp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return fp, err
}

// SetFingerprint records the settings the kept sign-ins are made under.
func (st *Store) SetFingerprint(ctx context.Context, fp string) error {
	_, err := st.DB.ExecContext(ctx, `INSERT OR REPLACE INTO signin_settings (id, fingerprint) VALUES (1, ?)`, fp)
	return err
}
