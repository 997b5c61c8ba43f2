package console

import (
	"fmt"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAttentionListSaysWhatItLeavesOut: "Needs attention now" lists at
// most attentionLimit open high and critical incidents, newest first. A
// pupil's extremism incident from three days ago, still open, must not
// drop out of sight behind two dozen newer VPN attempts (high too): the
// section says that it shows only some and links to a list that has it.
func TestAttentionListSaysWhatItLeavesOut(t *testing.T) {
	r := newRig(t, false)
	w := r.writer()
	now := r.clock.Now()
	record(t, w, block(now.Add(-72*time.Hour), "10.0.9.9", "carl", "", "year10", "extremism", "extreme.example", "https://extreme.example/", ""))
	old := r.incidentID("user:carl", "extremism")
	for i := range attentionLimit + 5 {
		record(t, w, block(now.Add(-time.Duration(60-i)*time.Minute), fmt.Sprintf("10.0.4.%d", i+1), fmt.Sprintf("pupil%d", i), "", "year9", "vpn", "vpn.example", "", ""))
	}
	c, _ := r.signedIn("dsl@school.example", RoleDSL)
	body := r.get(c, "/").body
	i := strings.Index(body, "Needs attention now")
	if i < 0 {
		t.Fatal("no attention section")
	}
	sect := body[i:]
	sect = sect[:strings.Index(sect, "</section>")]
	if strings.Contains(sect, fmt.Sprintf(`href="/incidents/%d"`, old)) {
		return // listed
	}
	found := false
	for _, m := range regexp.MustCompile(`href="(/incidents\?[^"]*)"`).FindAllStringSubmatch(sect, -1) {
		if p := r.get(c, html.UnescapeString(m[1])); strings.Contains(p.body, fmt.Sprintf(`href="/incidents/%d"`, old)) {
			found = true
		}
	}
	if !found {
		t.Fatalf("the open extremism incident #%d is neither listed nor reachable from the attention section:\n%s", old, sect)
	}
	if !strings.Contains(sect, fmt.Sprint(attentionLimit+6)) {
		t.Errorf("the section does not say how many open high and critical incidents there are (%d):\n%s", attentionLimit+6, sect)
	}
}
