package reports

import (
	"context"
	"time"
)

// Purge deletes breach events, incidents and "report a mistake" forms
// older than breaches, and
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
		// Sent mail is kept as long as breaches (it is the record of who
		// was told what).
		{`DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE sent_ts > 0 AND sent_ts < ? LIMIT 5000)`, ms(now.Add(-breaches))},
	}
	for _, st := range steps {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			res, err := s.db.ExecContext(ctx, st.q, st.arg)
			if err != nil {
				return total, err
			}
			n, _ := res.RowsAffected()
			total += n
			if n < batch {
				break
			}
		}
	}
	if total > 0 {
		if _, err := s.db.ExecContext(ctx, `PRAGMA incremental_vacuum(2000)`); err != nil {
			return total, err
		}
	}
	return total, nil
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
		n, err := s.Purge(ctx, opt.Now(), breaches, queryLog)
		if err == nil {
			var c int64
			c, err = s.PurgeCases(ctx, opt.Now(), caseRecords)
			n += c
		}
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
