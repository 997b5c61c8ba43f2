package dns

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/policy"
)

// TestBlockTemplateMatchesMiekg: for every block response mode, query
// type, EDNS shape and reason, the template path's bytes unpack to the same
// message as the one miekg/dns builds on the slow path.
func TestBlockTemplateMatchesMiekg(t *testing.T) {
	modes := []struct {
		mode string
		ip   netip.Addr
	}{{BlockNXDomain, netip.Addr{}}, {BlockNull, netip.Addr{}},
		{BlockBlockPage, netip.MustParseAddr("10.0.0.9")}, {BlockBlockPage, netip.MustParseAddr("fd00::9")}}
	decisions := []policy.Decision{
		{HasCategory: true, Category: bl.Category(3)},
		{Restricted: true},
		{},
	}
	for _, m := range modes {
		s := &Server{opts: Options{BlockTTL: 45 * time.Second, BlockResponse: m.mode, BlockPageIP: m.ip}}
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeMX, mdns.TypeHTTPS} {
			for _, shape := range []int{0, 1, 2} { // no OPT, OPT, OPT+DO
				for _, d := range decisions {
					for _, forceNX := range []bool{false, true} {
						r := new(mdns.Msg)
						r.SetQuestion("Www.Blocked-Site.Example.", qt)
						r.Id, r.CheckingDisabled = 4242, shape == 2
						if shape > 0 {
							r.SetEdns0(1400, shape == 2)
						}
						qr := &query{r: r, q: r.Question[0], name: "www.blocked-site.example", opt: r.IsEdns0()}
						tmpl := s.blockTemplate(qr, &d, forceNX)
						if tmpl == nil {
							t.Fatalf("%s %d: no template", m.mode, qt)
						}
						b, ok := tmpl.render(nil, r, qr.q)
						if !ok {
							t.Fatal("render refused a plain name")
						}
						got := new(mdns.Msg)
						if err := got.Unpack(b); err != nil {
							t.Fatalf("%s %d: template bytes do not unpack: %v", m.mode, qt, err)
						}
						want := new(mdns.Msg)
						want.SetReply(r)
						want.RecursionAvailable = true
						s.blockAnswer(want, qr.q, forceNX)
						if qr.opt != nil {
							o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
							o.SetUDPSize(EDNSSize)
							if qr.opt.Do() {
								o.SetDo()
							}
							o.Option = append(o.Option, ede(&d))
							want.Extra = append(want.Extra, o)
						}
						wb, err := want.Pack()
						if err != nil {
							t.Fatal(err)
						}
						_ = want.Unpack(wb) // normalise (RR lengths) as got was
						if got.String() != want.String() {
							t.Fatalf("%s qtype %d shape %d %+v nx=%v:\n got %s\nwant %s", m.mode, qt, shape, d, forceNX, got, want)
						}
					}
				}
			}
		}
	}
}

// scheduleEngine is testEngine's config with a games list (youtube.com on
// it too, which students otherwise get with safe search) that a lesson
// blocks for students on weekdays from 10:01 to 15:00 in London, and a
// sixth form (127.0.0.3) with safe search and no lessons.
func scheduleEngine(t testing.TB) *policy.Engine {
	t.Helper()
	text := "school:\n  timezone: Europe/London\n" +
		strings.Replace(testConfig, "lists:\n", "lists:\n  - name: games\n    path: {{dir}}/games.txt\n    category: games\n", 1)
	text = strings.Replace(text, "    safe_search: strict\n", `    safe_search: strict
    schedules:
      - name: lessons
        block: [games]
        when:
          - days: [weekdays]
            from: "10:01"
            to: "15:00"
  sixth-form:
    networks: [127.0.0.3/32]
    block: [pornography]
    safe_search: strict
`, 1)
	return engineWith(t, text, map[string]string{"adult.txt": "porn.example\n", "gamble.txt": "gamble.example\n",
		"games.txt": "games.example\nyoutube.com\n"})
}

// TestScheduleCapsAllowedTTL: a name a lesson blocks from 10:01, asked at
// 10:00, is answered with TTLs that run out by 10:01 (from the cache too,
// through a CNAME to it, stale, and for a safe-search rewrite), so no pupil's
// device keeps resolving it into the lesson from its own cache; other
// names and groups keep the upstream's TTL, as does the name once the
// next lesson is further off than it.
func TestScheduleCapsAllowedTTL(t *testing.T) {
	eng := scheduleEngine(t)
	ts := startServer(t, func(o *Options) { o.Engine = func() *policy.Engine { return eng } })
	check := func(netw, from, name string, want uint32) {
		t.Helper()
		addr := ts.udp
		if netw == "tcp" {
			addr = ts.tcp
		}
		r := ask(t, netw, addr, from, name, mdns.TypeA, true)
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) == 0 {
			t.Fatalf("%s from %s: %v", name, from, r)
		}
		for _, rr := range r.Answer {
			if rr.Header().Ttl != want {
				t.Errorf("%s from %s at %s: %s has TTL %d, want %d", name, from, ts.clock.now().UTC().Format(time.TimeOnly),
					rr.Header().Name, rr.Header().Ttl, want)
			}
		}
	}
	// Monday 10:00:00 in London (GMT), a minute before the lesson.
	check("udp", student, "play.games.example", 60)
	check("udp", student, "short.games.example", 5) // not raised
	ts.clock.advance(30 * time.Second)
	check("udp", student, "play.games.example", 30) // from the cache
	check("udp", staff, "play.games.example", 270)  // the same entry; no lesson for staff
	check("udp", student, "www.example.org", 300)
	check("udp", student, "games-cdn.example", 30) // a CNAME to edge.games.example
	check("udp", student, "www.youtube.com", 30)   // the CNAME to restrict.youtube.com and its answer
	// The endpoint's answer, shared by every rewrite, is left as it was.
	if r := ask(t, "udp", ts.udp, "127.0.0.3", "www.youtube.com", mdns.TypeA, true); len(r.Answer) != 2 ||
		r.Answer[0].Header().Ttl != 60 || r.Answer[1].Header().Ttl != 300 {
		t.Errorf("www.youtube.com for the sixth form: %v", r)
	}
	ts.clock.advance(29500 * time.Millisecond)
	check("tcp", student, "play.games.example", 1) // never below 1 s
	ts.up.fail.Store(true)
	check("udp", student, "short.games.example", 1) // stale (TTL 30 otherwise): the upstream fails
	ts.up.fail.Store(false)
	ts.clock.advance(time.Second)
	if r := ask(t, "udp", ts.udp, student, "play.games.example", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("in the lesson: %v", r)
	}
	// After it, the next lesson is tomorrow: the upstream's TTL.
	ts.clock.advance(5 * time.Hour)
	check("udp", student, "play.games.example", 300)
}
