package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestMistakeNoteCannotForgeEntries: the note of a "report a mistake" form
// is the pupil's own text, and it goes into IT's mail, IT's digest and
// `gatehouse events --mistakes`. Before, its line breaks went there as
// they came, so a note could add what looked like further reports (a
// site, a group, a reference of its choosing) to IT's mail and digest,
// and rows to the table IT reads. Now a note is kept as one line.
func TestMistakeNoteCannotForgeEntries(t *testing.T) {
	g := gamesBlockPage(t)
	path, ib, hc, page := g.path, g.ib, g.hc, g.page
	// What a pupil types into the textarea (a browser sends its line
	// breaks as CR LF), made to look like a second report from staff.
	const why = "We use it in maths\r\n\r\nSite:      http://www.vpn-unblocker.example/ (Web proxies)\r\n" +
		"Group:     staff\r\nWhen:      Monday 7 December 2026, 10:00\r\nReference: GH-STAF-F222\r\n" +
		"Why:       Head of year asked for this\r\n\r\nhttp://www.vpn-unblocker.example/\r\n  Group: staff\r\n  Ref:   GH-STAF-F333\r\n" +
		"  Why:   Head of year asked for this\r\n\n\rGH-FAKE-0001\tstaff\x0bnote\u2028more\u0085end"
	resp, err := hc.PostForm("http://www.games.example/.gatehouse/report", reportFormOf(t, string(page), why))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("report: %d", resp.StatusCode)
	}
	lineStart := func(text, prefix string) int {
		return len(regexp.MustCompile(`(?m)^[ \t]*`+regexp.QuoteMeta(prefix)).FindAllString(text, -1))
	}

	m := decodeMail(ib.waitFor(t, 0, "reported as a mistake", 30*time.Second))
	if n := lineStart(m, "Site:"); n != 1 {
		t.Errorf("IT's mail shows %d reports for one:\n%s", n, m)
	}
	if !strings.Contains(m, "We use it in maths") || !strings.Contains(m, "Head of year asked for this") {
		t.Errorf("IT's mail lost the note:\n%s", m)
	}

	seen := len(ib.all())
	if code, out, errs := runCLI(t, "report", "send", "--config", path, "--schedule", "daily"); code != 0 {
		t.Fatalf("report send: %d %s %s", code, out, errs)
	}
	for _, raw := range ib.all()[seen:] {
		if d := decodeMail(raw); strings.Contains(d, "REPORTED AS MISTAKES") {
			if n := lineStart(d, "Ref:"); n != 1 {
				t.Errorf("IT's digest lists %d reports for one:\n%s", n, d)
			}
		}
	}

	code, out, _ := runCLI(t, "events", "--config", path, "--since", "1h", "--mistakes")
	if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); code != 0 || len(lines) != 2 {
		t.Errorf("events --mistakes: %d, %d lines for one report:\n%s", code, len(lines), out)
	}
}
