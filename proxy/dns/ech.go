package dns

import (
	"strings"

	mdns "github.com/miekg/dns"
)

// stripECH removes the ech parameter from HTTPS and SVCB records (types 65
// and 64), keeping the rest: Encrypted Client Hello hides the server name
// that SNI-based filtering relies on. It removes ipv4hint and ipv6hint too:
// a client may connect to a hint before (or instead of) asking for A and
// AAAA, and only A and AAAA records are checked against the IP lists
// (answerBlocked), so a hint could point an allowed name at a listed
// address; without hints the client asks, as RFC 9460 lets it. It reports
// whether anything changed.
func stripECH(m *mdns.Msg) bool {
	changed := false
	for _, sec := range [][]mdns.RR{m.Answer, m.Extra} {
		for _, rr := range sec {
			var s *mdns.SVCB
			switch v := rr.(type) {
			case *mdns.HTTPS:
				s = &v.SVCB
			case *mdns.SVCB:
				s = v
			default:
				continue
			}
			kept := s.Value[:0]
			for _, kv := range s.Value {
				if k := kv.Key(); k == mdns.SVCB_ECHCONFIG || k == mdns.SVCB_IPV4HINT || k == mdns.SVCB_IPV6HINT {
					changed = true
					continue
				}
				kept = append(kept, kv)
			}
			s.Value = kept
		}
	}
	return changed
}

// stripH3 removes h3 (and drafts, h3-29) from the alpn parameter of HTTPS
// records, for a client whose group the proxy decrypts the name for: a
// browser told the site speaks HTTP/3 would reach it over QUIC (UDP 443),
// around the proxy. An alpn left empty is dropped, with no-default-alpn,
// so the record still offers the default (HTTP/1.1 over TLS). It reports
// whether anything changed.
func stripH3(m *mdns.Msg) bool {
	changed := false
	for _, sec := range [][]mdns.RR{m.Answer, m.Extra} {
		for _, rr := range sec {
			h, ok := rr.(*mdns.HTTPS)
			if !ok {
				continue
			}
			s := &h.SVCB
			emptied := false
			for _, kv := range s.Value {
				a, ok := kv.(*mdns.SVCBAlpn)
				if !ok {
					continue
				}
				kept := a.Alpn[:0]
				for _, p := range a.Alpn {
					if p == "h3" || strings.HasPrefix(p, "h3-") {
						changed = true
						continue
					}
					kept = append(kept, p)
				}
				a.Alpn = kept
				emptied = len(kept) == 0
			}
			if !emptied {
				continue
			}
			kept := s.Value[:0]
			for _, kv := range s.Value {
				if k := kv.Key(); k != mdns.SVCB_ALPN && k != mdns.SVCB_NO_DEFAULT_ALPN {
					kept = append(kept, kv)
				}
			}
			s.Value = kept
		}
	}
	return changed
}
