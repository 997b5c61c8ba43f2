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
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 1 AND ts < ? LIMIT 5000)`, ms(now.Add(-breaches))},
		// "Report a mistake" forms are kept as long as breaches.
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 4 AND ts < ? LIMIT 5000)`, ms(now.Add(-breaches))},
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 2 AND ts < ? LIMIT 5000)`, ms(now.Add(-queryLog))},
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE kind = 3 AND ts < ? LIMIT 5000)`, ms(now.Add(-queryLog))},
		{`DELETE FROM incidents WHERE id IN (SELECT id FROM incidents WHERE last_ts < ? LIMIT 5000)`, ms(now.Add(-breaches))},
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

// RunPurge purges daily (and once at start) until ctx is done.
func (s *Store) RunPurge(ctx context.Context, opt Options, breaches, queryLog time.Duration) {
	opt.fill()
	for {
		n, err := s.Purge(ctx, opt.Now(), breaches, queryLog)
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
