package dns

import mdns "github.com/miekg/dns"

// stripECH removes the ech parameter from HTTPS and SVCB records (types 65
// and 64), keeping the rest: Encrypted Client Hello hides the server name
// that SNI-based filtering relies on. It reports whether anything changed.
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
				if kv.Key() == mdns.SVCB_ECHCONFIG {
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
