package console

import (
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// The console's pages with a year of a large school's data: 1,000,000
// events (200,000 blocked attempts in 20,000 incidents, the rest the
// full query log) and the alerts sent. The database is generated once
// per benchmark run (in transactions, a minute or so) and copied for the
// variant without the migration-6 indexes, so a run shows what the
// indexes do. Each request goes through the real handler over loopback
// with a signed-in DSL; the p95 is reported.
//
//	go test -run '^$' -bench ConsolePages -benchtime 200x ./console

const (
	benchEvents    = 1_000_000
	benchIncidents = 20_000
	benchPerInc    = 10 // blocked attempts per incident
)

var (
	benchOnce sync.Once
	benchDir  string
	benchPath string
	benchErr  error
)

// benchIndexes are the migration-6 indexes the pages use (dropped in the
// "noindex" variant).
var benchIndexes = []string{"incidents_case", "outbox_incident", "case_log_incident"}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// benchDB builds the database once.
func benchDB(b *testing.B) string {
	benchOnce.Do(func() {
		if benchDir, benchErr = os.MkdirTemp("", "gatehouse-console-bench-"); benchErr != nil {
			return
		}
		benchPath = filepath.Join(benchDir, "gatehouse.db")
		benchErr = generate(benchPath, start)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath
}

// generate fills a new database: incidents spread over the year before
// now (older ones mostly closed), their attempts, the query log around
// them, and an alert per high or critical incident.
func generate(path string, now time.Time) error {
	rep, err := reports.Open(path)
	if err != nil {
		return err
	}
	defer rep.Close()
	db := rep.DB()
	rng := rand.New(rand.NewPCG(1, 2))
	cats := []string{"games", "social-media", "streaming", "gambling", "pornography", "vpn", "self-harm", "violence", "drugs", "web-proxy", "dating", "iwf"}
	year := int64(365 * 24 * time.Hour / time.Millisecond)
	end := now.UnixMilli()
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	incStmt, _ := tx.Prepare(`INSERT INTO incidents (id, who, client, device, user, grp, category, severity, route, restricted, bypass, first_ts, last_ts, count, samples, status, alerted_count, last_alert_ts)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,'[]',?,?,?)`)
	evStmt, _ := tx.Prepare(`INSERT INTO events (ts, kind, source, protocol, client, device, user, grp, name, qtype, url, search, action, reason, category, severity, route, list, entry, flags, count, incident_id)
		VALUES (?,?,'dns','udp',?,?,?,?,?,'A',?,?,?,?,?,?,?,?,?,?,1,?)`)
	outStmt, _ := tx.Prepare(`INSERT INTO outbox (kind, created_ts, role, recipients, subject, text_body, html_body, message_id, sent_ts, incident_id)
		VALUES ('alert', ?, 'dsl', '["dsl@school.example"]', ?, 'text', 'html', ?, ?, ?)`)
	n := 0
	flush := func() error {
		if n%50_000 != 0 {
			return nil
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if tx, err = db.Begin(); err != nil {
			return err
		}
		incStmt, evStmt, outStmt = tx.Stmt(incStmt), tx.Stmt(evStmt), tx.Stmt(outStmt)
		return nil
	}
	queryLog := (benchEvents - benchIncidents*benchPerInc) / benchIncidents // log events per incident
	for i := 1; i <= benchIncidents; i++ {
		cat := cats[rng.IntN(len(cats))]
		c, _ := bl.ParseCategory(cat)
		info := c.Info()
		pupil := rng.IntN(2000)
		client := fmt.Sprintf("10.%d.%d.%d", pupil/250, pupil%250, 1+rng.IntN(3))
		user, group, route := fmt.Sprintf("pupil%d", pupil), "year"+fmt.Sprint(7+pupil%5), string(info.Route)
		if pupil%50 == 0 {
			group, route = "staff", string(bl.RouteHeadteacher)
		}
		first := end - rng.Int64N(year)
		last := first + int64(benchPerInc)*60_000
		status, alerted, lastAlert := reports.StatusNew, 0, int64(0)
		if info.Severity >= bl.SeverityHigh {
			status, alerted, lastAlert = reports.StatusAlerted, benchPerInc, first+1000
		}
		if end-last > int64(14*24*time.Hour/time.Millisecond) && rng.IntN(10) > 0 {
			status, alerted = reports.StatusAcknowledged, benchPerInc
		}
		flags := 0
		if c.Restricted() {
			flags |= 1
		}
		if c.Bypass() {
			flags |= 2
		}
		if _, err := incStmt.Exec(i, "user:"+user, client, "", user, group, cat, int(info.Severity), route, flags&1, flags>>1&1, first, last,
			benchPerInc, status, alerted, lastAlert); err != nil {
			return err
		}
		if lastAlert > 0 {
			if _, err := outStmt.Exec(lastAlert, "alert "+cat, fmt.Sprintf("<alert-%d-%d.x@h>", i, benchPerInc), lastAlert+2000, i); err != nil {
				return err
			}
		}
		for j := range benchPerInc {
			name, url, search, entry := fmt.Sprintf("site%d.example", rng.IntN(5000)), "", "", ""
			if j%3 == 0 {
				url, search = "https://"+name+"/search?q=term", "term"
			}
			if c.Restricted() {
				name, url, search, entry = "", "", "", bl.EntryHash(name)
			}
			if _, err := evStmt.Exec(first+int64(j)*60_000, 1, client, "", user, group, name, url, search, "block", "category", cat,
				int(info.Severity), route, "list", entry, flags, i); err != nil {
				return err
			}
			n++
			if err := flush(); err != nil {
				return err
			}
		}
		for j := range queryLog {
			ts := first - int64(2*time.Hour/time.Millisecond) + rng.Int64N(int64(4*time.Hour/time.Millisecond))
			if _, err := evStmt.Exec(ts, 3, client, "", user, group, fmt.Sprintf("ok%d.example", j), "", "", "allow", "", "", 0, "", "", "", 0, nil); err != nil {
				return err
			}
			n++
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	_, err = db.Exec(`ANALYZE`)
	return err
}

// noIndexCopy is a copy of the database without the migration-6 indexes.
func noIndexCopy(b *testing.B, path string) string {
	dst := filepath.Join(b.TempDir(), "noindex.db")
	src, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	rep, err := reports.Open(path) // checkpoint the WAL into the file
	if err != nil {
		b.Fatal(err)
	}
	rep.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		b.Fatal(err)
	}
	out.Close()
	db, err := sql.Open("sqlite3", dst)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, ix := range benchIndexes {
		if _, err := db.Exec(`DROP INDEX ` + ix); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		b.Fatal(err)
	}
	return dst
}

func BenchmarkConsolePages(b *testing.B) {
	path := benchDB(b)
	variants := []struct{ name, path string }{{"indexed", path}, {"noindex", noIndexCopy(b, path)}}
	for _, v := range variants {
		r := newRigAt(b, v.path, false)
		r.mu.Lock()
		r.full = true // the ±1 hour browsing on the incident page
		r.mu.Unlock()
		email := fmt.Sprintf("dsl-%s-%d@school.example", v.name, b.N)
		secret := r.add(email, RoleDSL, goodPass, true)
		c := r.client()
		if p := r.signIn(c, email, goodPass, secret); p.url != "/" || p.status != 200 {
			b.Fatalf("sign-in: %d at %s", p.status, p.url)
		}
		var recent int64
		var who string
		if err := r.rep.DB().QueryRow(`SELECT id, who FROM incidents WHERE severity >= 3 AND route = 'dsl' ORDER BY id DESC LIMIT 1`).Scan(&recent, &who); err != nil {
			b.Fatal(err)
		}
		pages := []struct{ name, path string }{
			{"home", "/"},
			{"list", "/incidents?period=week"},
			{"list-open-page3", "/incidents?period=30d&state=open&page=3"},
			{"incident", fmt.Sprintf("/incidents/%d", recent)},
			{"history-year", "/history?" + url.Values{"who": {who}, "from": {"2025-12-03"}, "to": {"2026-12-02"}}.Encode()},
		}
		for _, pg := range pages {
			b.Run(pg.name+"/"+v.name, func(b *testing.B) {
				for range 5 { // warm the page cache: steady state is measured
					r.get(c, pg.path)
				}
				times := make([]time.Duration, 0, b.N)
				for b.Loop() {
					t0 := time.Now()
					p := r.get(c, pg.path)
					times = append(times, time.Since(t0))
					if p.status != 200 {
						b.Fatalf("%s: %d", pg.path, p.status)
					}
				}
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)*95/100].Microseconds())/1000, "p95-ms")
				b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			})
		}
	}
}
