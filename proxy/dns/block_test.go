package dns

import (
	"net/netip"
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
