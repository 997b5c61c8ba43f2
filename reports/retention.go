package reports

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Purge deletes breach events, incidents, "report a mistake" forms and
// mail (sent or never delivered, with its .eml file) older than breaches, and
// probes and query-log events older than queryLog, in small batches so the
// writer is never held up for long, then returns the freed pages to the
// file system (incremental vacuum: no full VACUUM, no stall). It returns
// how many rows went.
func (s *Store) Purge(ctx context.Context, now time.Time, breaches, queryLog time.Duration) (int64, error) {
	const batch = 5000
	var total int64
	steps := []struct {
		q   string
		arg int64
	}{
		// Events of a case record (an incident the DSL acted on) go with
		// the case (purgeCases), not here.
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 1 AND ts < ? AND (incident_id IS NULL OR incident_id NOT IN (SELECT id FROM incidents WHERE case_ts > 0)) LIMIT 5000)`, ms(now.Add(-breaches))},
		// "Report a mistake" forms are kept as long as breaches.
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 4 AND ts < ? LIMIT 5000)`, ms(now.Add(-breaches))},
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 2 AND ts < ? LIMIT 5000)`, ms(now.Add(-queryLog))},
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 3 AND ts < ? LIMIT 5000)`, ms(now.Add(-queryLog))},
		{`DELETE FROM incidents WHERE id IN (SELECT id FROM incidents WHERE last_ts < ? AND case_ts = 0 LIMIT 5000)`, ms(now.Add(-breaches))},
	}
	// A step that fails does not hold back the others (a pupil's incidents
	// and mail kept a day past retention because one kind of event could
	// not be deleted): each is tried, and the errors are returned together.
	var errs []error
	for _, st := range steps {
		for {
			if err := ctx.Err(); err != nil {
				return total, errors.Join(append(errs, err)...)
			}
			res, err := s.db.ExecContext(ctx, st.q, st.arg)
			if err != nil {
				errs = append(errs, err)
				break
			}
			n, _ := res.RowsAffected()
			total += n
			if n < batch {
				break
			}
		}
	}
	n, oerr := s.purgeOutbox(ctx, ms(now.Add(-breaches)))
	total += n
	err := errors.Join(append(errs, oerr)...)
	if total > 0 {
		if _, verr := s.db.ExecContext(ctx, `PRAGMA incremental_vacuum(2000)`); verr != nil && err == nil {
			err = verr
		}
	}
	return total, err
}

// purgeOutbox deletes mail sent before cut (it is kept as long as
// breaches: the record of who was told what), and mail never delivered
// that was written before cut (a relay that refuses it for good must not
// keep a pupil's name, retried every 30 minutes, long after the incident
// it is about was purged), each with its .eml file, the file first: a crash in between leaves a row to try again, never a file with
// a pupil's name in it that nothing removes. A file that cannot be removed
// keeps its row (the next day's purge tries again) and is the error.
func (s *Store) purgeOutbox(ctx context.Context, cut int64) (int64, error) {
	var total, after int64
	var ferr error
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		rows, err := s.db.QueryContext(ctx, `SELECT id, eml_path FROM outbox WHERE ((sent_ts > 0 AND sent_ts < ?) OR (sent_ts = 0 AND created_ts < ?)) AND id > ? ORDER BY id LIMIT 5000`, cut, cut, after)
		if err != nil {
			return total, err
		}
		var ids []int64
		var n int
		for rows.Next() {
			var id int64
			var eml string
			if err := rows.Scan(&id, &eml); err != nil {
				rows.Close()
				return total, err
			}
			n, after = n+1, id
			if eml != "" {
				if err := os.Remove(eml); err != nil && !errors.Is(err, fs.ErrNotExist) {
					ferr = cmp.Or(ferr, fmt.Errorf("removing sent mail's .eml copy: %w", err))
					continue
				}
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, err
		}
		d, err := s.deleteOutbox(ctx, ids)
		total += d
		if err != nil {
			return total, err
		}
		if n < 5000 {
			return total, ferr
		}
	}
}

// deleteOutbox deletes the outbox rows ids in one transaction.
func (s *Store) deleteOutbox(ctx context.Context, ids []int64) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	del, err := tx.PrepareContext(ctx, `DELETE FROM outbox WHERE id = ?`)
	if err != nil {
		return 0, err
	}
	defer del.Close()
	var n int64
	for _, id := range ids {
		res, err := del.ExecContext(ctx, id)
		if err != nil {
			return 0, err
		}
		d, _ := res.RowsAffected()
		n += d
	}
	return n, tx.Commit()
}

// PurgeCases deletes the case records (incidents the DSL acted on: an
// assignment, note or status change; their case log and events) whose
// last attempt and closing are both older than keep. keep 0 keeps them
// (reports.retention.case_records: keep).
func (s *Store) PurgeCases(ctx context.Context, now time.Time, keep time.Duration) (int64, error) {
	return s.purgeCases(ctx, now, keep)
}

// RunPurge purges daily (and once at start) until ctx is done: events and
// incidents by breaches and queryLog, case records by caseRecords (0:
// kept).
func (s *Store) RunPurge(ctx context.Context, opt Options, breaches, queryLog, caseRecords time.Duration) {
	opt.fill()
	for {
		// Case records are purged even when the rest failed (an .eml file
		// that cannot be removed must not keep them past their time).
		n, err := s.Purge(ctx, opt.Now(), breaches, queryLog)
		c, cerr := s.PurgeCases(ctx, opt.Now(), caseRecords)
		n, err = n+c, errors.Join(err, cerr)
		switch {
		case err != nil && ctx.Err() == nil:
			opt.Log.Error("retention purge failed", "err", err)
		case n > 0:
			opt.Log.Info("retention purge", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(24 * time.Hour):
		}
	}
}
