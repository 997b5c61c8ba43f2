package identity

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2869"

	"github.com/gatehouse-filter/gatehouse/internal/maproom"
	"github.com/gatehouse-filter/gatehouse/internal/username"
)

// RADIUS is the RADIUS accounting listener (RFC 2866): the school's Wi-Fi
// controllers and switches (the NAS) send Accounting-Request packets for
// 802.1X sessions, and each Start or Interim-Update with a User-Name and a
// Framed-IP-Address maps that address to the user (Calling-Station-Id is
// the device's MAC) until the session's Stop, its Session-Timeout, or
// Timeout without an update, whichever is first.
//
// Only packets from the allowed NAS addresses are read (others are
// ignored and counted); a packet whose Request Authenticator does not
// match the shared secret (a forged packet or a wrong secret) is ignored
// and counted; only valid packets get an Accounting-Response, sent once
// the table holds the change.
//
// One goroutine reads the socket into a queue of at most QueueLen
// packets; one processes them in batches (one table publish per batch).
// A packet arriving with the queue full is dropped and counted: the NAS
// sends it again, as RFC 2866 has it do until it is answered.
type RADIUS struct {
	Table *Table
	// Secret, NAS, Timeout and Realms are read by Listen; Reconfigure
	// changes them afterwards.
	Secret  []byte
	NAS     []netip.Prefix // allowed NAS addresses; empty: none
	Timeout time.Duration  // a session without an update for this long ends (default 2h)
	// Realms are the school's own (identity.strip_realm): a User-Name
	// "SCHOOL\jsmith" or "jsmith@school.local" names the user jsmith
	// (username.StripRealm).
	Realms []string
	Log    *slog.Logger
	Now    func() time.Time

	cur     atomic.Pointer[radiusConf] // Secret, NAS and Timeout in use (Reconfigure)
	conn    net.PacketConn
	queue   chan packet
	metrics *radiusMetrics
	done    chan struct{}
	once    sync.Once

	// where is the address each live session named last and until when
	// (read and written by the processing goroutine only): an update
	// naming a new address ends the old one's mapping, and a Stop without
	// Framed-IP-Address ends the session where it was.
	where     map[string]sessionAt
	lastSweep time.Time
	// ended holds the sessions that stopped, each until Timeout after its
	// Stop (processing goroutine only, at most endedMax): a Start or
	// Interim-Update of one of them is a replay.
	ended map[string]time.Time
	// replayLogAt is when a replay was last logged; replayQuiet counts
	// those not logged since (processing goroutine only).
	replayLogAt time.Time
	replayQuiet int
}

type sessionAt struct {
	addr netip.Addr
	exp  time.Time
	secs uint32 // the highest Acct-Session-Time seen
}

// endedMax bounds the stopped sessions remembered against replays; at
// the bound, an arbitrary one is forgotten for each new Stop.
const endedMax = 65536

// staleSkew is how far in the future an Event-Timestamp may be (the NAS's
// clock ahead of this one) before the packet is taken for a replay.
const staleSkew = 5 * time.Minute

type radiusConf struct {
	secret  []byte
	nas     []netip.Prefix
	timeout time.Duration
	realms  []string
}

// Reconfigure replaces the shared secret, the allowed NAS addresses, the
// session timeout and the realms of a listening RADIUS (a config
// reload); each packet is checked with the old settings or the new ones.
func (r *RADIUS) Reconfigure(secret []byte, nas []netip.Prefix, timeout time.Duration, realms []string) error {
	if len(secret) == 0 {
		return errors.New("radius: no shared secret")
	}
	if timeout <= 0 {
		timeout = DefaultRADIUSTimeout
	}
	r.cur.Store(&radiusConf{secret: secret, nas: nas, timeout: timeout, realms: realms})
	return nil
}

// QueueLen bounds the accounting packets waiting to be processed.
const QueueLen = 4096

// DefaultRADIUSTimeout is how long a session without an update lasts.
const DefaultRADIUSTimeout = 2 * time.Hour

type packet struct {
	b    []byte
	from *net.UDPAddr
	at   netip.Addr
}

type radiusMetrics struct {
	packets *prometheus.CounterVec
}

// Results counted by gatehouse_identity_radius_packets_total.
const (
	ResultAccepted   = "accepted"    // applied and answered
	ResultNotAllowed = "not-allowed" // from an address outside the NAS list
	ResultForged     = "forged"      // bad authenticator: wrong secret or forged
	ResultMalformed  = "malformed"   // not a RADIUS packet
	ResultIgnored    = "ignored"     // valid, answered, but nothing to map (no address, not accounting)
	ResultDropped    = "dropped"     // the queue was full
	ResultReplayed   = "replayed"    // authentic but stale: a session that already stopped, an older update, an old Event-Timestamp
)

// NewRADIUSMetrics registers the listener's metrics with reg (nil: not
// registered).
func newRADIUSMetrics(reg prometheus.Registerer) *radiusMetrics {
	m := &radiusMetrics{packets: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_identity_radius_packets_total",
		Help: "RADIUS accounting packets by result: accepted, not-allowed (NAS not listed), forged (bad authenticator or wrong secret), malformed, ignored (valid, nothing to map), dropped (queue full; the NAS retries), replayed (authentic but stale: answered, not applied).",
	}, []string{"result"})}
	for _, r := range []string{ResultAccepted, ResultNotAllowed, ResultForged, ResultMalformed, ResultIgnored, ResultDropped, ResultReplayed} {
		m.packets.WithLabelValues(r)
	}
	if reg != nil {
		_ = reg.Register(m.packets)
	}
	return m
}

// Count returns how many packets had result so far.
func (r *RADIUS) Count(result string) uint64 {
	return uint64(counterValue(r.metrics.packets.WithLabelValues(result)))
}

// Listen opens the UDP socket and starts serving; Close stops it.
func (r *RADIUS) Listen(addr string, reg prometheus.Registerer) error {
	if len(r.Secret) == 0 {
		return errors.New("radius: no shared secret")
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultRADIUSTimeout
	}
	r.cur.Store(&radiusConf{secret: r.Secret, nas: r.NAS, timeout: r.Timeout, realms: r.Realms})
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	conn, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(4 << 20) // absorb a burst of Starts while the processor works
	}
	r.conn, r.queue, r.done = conn, make(chan packet, QueueLen), make(chan struct{})
	r.metrics = newRADIUSMetrics(reg)
	go r.read()
	go r.process()
	return nil
}

// Addr is the listener's address.
func (r *RADIUS) Addr() net.Addr { return r.conn.LocalAddr() }

// Close stops the listener.
func (r *RADIUS) Close() error {
	var err error
	r.once.Do(func() {
		err = r.conn.Close()
		<-r.done
	})
	return err
}

func (r *RADIUS) read() {
	defer close(r.queue)
	buf := make([]byte, radius.MaxPacketLength)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.Log.Warn("radius: read failed", "err", err)
			continue
		}
		ua, _ := from.(*net.UDPAddr)
		if ua == nil {
			continue
		}
		at, _ := netip.AddrFromSlice(ua.IP)
		at = at.Unmap()
		if !r.allowed(at) {
			r.metrics.packets.WithLabelValues(ResultNotAllowed).Inc()
			continue
		}
		p := packet{b: append([]byte(nil), buf[:n]...), from: ua, at: at}
		select {
		case r.queue <- p:
		default:
			r.metrics.packets.WithLabelValues(ResultDropped).Inc()
		}
	}
}

func (r *RADIUS) allowed(a netip.Addr) bool {
	for _, p := range r.cur.Load().nas {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// batchMax is the most packets processed in one table publish.
const batchMax = 256

type reply struct {
	p   *radius.Packet
	to  *net.UDPAddr
	res string
}

func (r *RADIUS) process() {
	defer close(r.done)
	var batch []packet
	for p := range r.queue {
		batch = append(batch[:0], p)
	more:
		for len(batch) < batchMax {
			select {
			case q, ok := <-r.queue:
				if !ok {
					break more
				}
				batch = append(batch, q)
			default:
				break more
			}
		}
		r.handle(batch)
	}
}

// handle validates and applies a batch of packets, then answers the valid
// ones.
func (r *RADIUS) handle(batch []packet) {
	now := r.Now()
	c := r.cur.Load()
	if r.where == nil {
		r.where, r.ended = map[string]sessionAt{}, map[string]time.Time{}
	}
	if now.Sub(r.lastSweep) > time.Minute { // sessions ended by their time leave the index
		r.lastSweep = now
		for k, v := range r.where {
			if !now.Before(v.exp) {
				delete(r.where, k)
			}
		}
		for k, until := range r.ended {
			if !now.Before(until) {
				delete(r.ended, k)
			}
		}
	}
	var sets []Mapping
	var replies []reply
	type stop struct {
		addr    netip.Addr
		session string
	}
	var stops []stop
	var nasOn []string
	for _, p := range batch {
		if len(p.b) < 20 || radius.Code(p.b[0]) != radius.CodeAccountingRequest {
			r.metrics.packets.WithLabelValues(ResultMalformed).Inc()
			continue
		}
		if !radius.IsAuthenticRequest(p.b, c.secret) {
			r.metrics.packets.WithLabelValues(ResultForged).Inc()
			continue
		}
		pkt, err := radius.Parse(p.b, c.secret)
		if err != nil {
			r.metrics.packets.WithLabelValues(ResultMalformed).Inc()
			continue
		}
		res := ResultIgnored
		nas := nasOf(pkt, p.at)
		sid := rfc2866.AcctSessionID_GetString(pkt)
		session := nas + "/" + sid
		addr, _ := netip.AddrFromSlice(rfc2865.FramedIPAddress_Get(pkt))
		addr = addr.Unmap()
		status := rfc2866.AcctStatusType_Get(pkt)
		if why := r.replayed(pkt, status, session, sid != "", now, c.timeout); why != "" {
			// Authentic (the secret signed it) but stale: someone sending
			// a captured packet again, for example a teacher's Start so
			// that their own address gets the teacher's filtering. The NAS
			// is answered all the same, so that a real one stops resending.
			if now.Sub(r.replayLogAt) >= time.Minute { // at most once a minute: replays can come in floods
				r.Log.Warn("radius: a replayed or stale accounting packet was not applied", "nas", nas, "from", p.at.String(),
					"session", session, "why", why, // not the user or the address: README, Privacy
					"more_not_logged", r.replayQuiet)
				r.replayLogAt, r.replayQuiet = now, 0
			} else {
				r.replayQuiet++
			}
			replies = append(replies, reply{p: pkt.Response(radius.CodeAccountingResponse), to: p.from, res: ResultReplayed})
			continue
		}
		switch status {
		case rfc2866.AcctStatusType_Value_Start, rfc2866.AcctStatusType_Value_InterimUpdate:
			user := rfc2865.UserName_GetString(pkt)
			if !addr.IsValid() || addr.IsUnspecified() || user == "" {
				break
			}
			exp := now.Add(c.timeout)
			if st := rfc2865.SessionTimeout_Get(pkt); st > 0 {
				end := now.Add(time.Duration(st)*time.Second - time.Duration(rfc2866.AcctSessionTime_Get(pkt))*time.Second)
				if end.Before(exp) {
					exp = end
				}
			}
			m := Mapping{Addr: addr, Source: SourceRADIUS, Session: session, MAC: NormalizeMAC(rfc2865.CallingStationID_GetString(pkt)), Expires: exp}
			m.User, m.Device = radiusUser(cleanName(user), c.realms)
			sets = append(sets, m)
			if was, ok := r.where[session]; ok && was.addr != addr {
				stops = append(stops, stop{was.addr, session}) // the session moved: its old address is free
			}
			r.where[session] = sessionAt{addr, exp, uint32(rfc2866.AcctSessionTime_Get(pkt))}
			res = ResultAccepted
		case rfc2866.AcctStatusType_Value_Stop:
			if sid != "" { // (RFC 2866 requires one; without it sessions cannot be told apart)
				r.endSession(session, now.Add(c.timeout))
			}
			if was, ok := r.where[session]; ok {
				if was.addr != addr {
					stops = append(stops, stop{was.addr, session})
				}
				delete(r.where, session)
				res = ResultAccepted
			}
			if addr.IsValid() {
				stops = append(stops, stop{addr, session})
				res = ResultAccepted
			}
		case rfc2866.AcctStatusType_Value_AccountingOn, rfc2866.AcctStatusType_Value_AccountingOff:
			nasOn = append(nasOn, nas+"/") // the NAS restarted: its sessions are gone
			for k := range r.where {
				if strings.HasPrefix(k, nas+"/") {
					delete(r.where, k)
				}
			}
			for k := range r.ended { // and it may number new ones as it did the old
				if strings.HasPrefix(k, nas+"/") {
					delete(r.ended, k)
				}
			}
			res = ResultAccepted
		}
		replies = append(replies, reply{p: pkt.Response(radius.CodeAccountingResponse), to: p.from, res: res})
	}
	if len(sets) > 0 {
		if n := r.Table.SetAll(sets); n < len(sets) {
			r.Log.Warn("radius: identity table full or mapping refused", "refused", len(sets)-n)
		}
	}
	for _, s := range stops {
		r.Table.Remove(s.addr, SourceRADIUS, s.session)
	}
	for _, prefix := range nasOn {
		r.Table.RemoveSource(SourceRADIUS, func(m *Mapping) bool { return !strings.HasPrefix(m.Session, prefix) })
	}
	for _, rp := range replies {
		b, err := rp.p.Encode()
		if err != nil {
			continue
		}
		r.metrics.packets.WithLabelValues(rp.res).Inc() // counted before the NAS can see the answer
		_, _ = r.conn.WriteTo(b, rp.to)
	}
}

// replayed says why an authentic Start, Interim-Update or Stop must not
// be applied ("" when it may): its Event-Timestamp (RFC 2869, when the
// NAS sends one) is older than the session timeout or too far ahead; or
// it starts or updates a session that already stopped; or it updates a
// live session with an Acct-Session-Time below one already seen (an
// older packet of the session, perhaps naming an address it has left).
// A NAS numbers each session afresh (RFC 2866), and Accounting-On or -Off
// (the NAS restarted) forgets its stopped sessions. Sessions without an
// Acct-Session-Id (named false) are not remembered as stopped.
func (r *RADIUS) replayed(pkt *radius.Packet, status rfc2866.AcctStatusType, session string, named bool, now time.Time, timeout time.Duration) string {
	switch status {
	case rfc2866.AcctStatusType_Value_Start, rfc2866.AcctStatusType_Value_InterimUpdate, rfc2866.AcctStatusType_Value_Stop:
	default:
		return ""
	}
	if ts, err := rfc2869.EventTimestamp_Lookup(pkt); err == nil {
		switch {
		case ts.Before(now.Add(-timeout)):
			return "its Event-Timestamp " + ts.UTC().Format(time.RFC3339) + " is older than the session timeout"
		case ts.After(now.Add(staleSkew)):
			return "its Event-Timestamp " + ts.UTC().Format(time.RFC3339) + " is in the future"
		}
	}
	if status == rfc2866.AcctStatusType_Value_Stop {
		return ""
	}
	if until, ok := r.ended[session]; ok && named && now.Before(until) {
		return "the session already stopped"
	}
	if was, ok := r.where[session]; ok && uint32(rfc2866.AcctSessionTime_Get(pkt)) < was.secs {
		return "an older update of the session (Acct-Session-Time below one already seen)"
	}
	return ""
}

// endSession remembers a stopped session until until.
func (r *RADIUS) endSession(session string, until time.Time) {
	if _, ok := r.ended[session]; !ok {
		maproom.Make(r.ended, endedMax)
	}
	r.ended[session] = until
}

// nasOf names the NAS a session belongs to: its NAS-IP-Address or
// NAS-Identifier, else the packet's source address.
func nasOf(p *radius.Packet, from netip.Addr) string {
	if ip := rfc2865.NASIPAddress_Get(p); ip != nil {
		return ip.String()
	}
	if id := rfc2865.NASIdentifier_GetString(p); id != "" {
		return id
	}
	return from.String()
}

// radiusUser is who a RADIUS User-Name names: a user, in the one form
// names are recorded in, without the school's own realm ("SCHOOL\jsmith"
// is jsmith); or, for a computer's own 802.1X session (machine
// authentication: "host/LIB-PC-01.school.local", or the computer
// account "SCHOOL\LIB-PC-01$"), no person but the device, by its host
// name.
func radiusUser(name string, realms []string) (user, device string) {
	if len(name) > 5 && strings.EqualFold(name[:5], "host/") {
		if host, _, _ := strings.Cut(name[5:], "."); host != "" {
			return "", host
		}
	}
	name = username.StripRealm(name, realms)
	acct := name
	if _, a, ok := strings.Cut(name, `\`); ok {
		acct = a // a computer account in any realm: it names no person
	}
	if host, ok := strings.CutSuffix(acct, "$"); ok && host != "" && !strings.ContainsAny(host, `@\`) {
		return "", host
	}
	return username.Canon(name), ""
}

// cleanName trims a user name and drops control characters (it ends up
// in mail and CSV).
func cleanName(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 253 {
		s = s[:253]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// NormalizeMAC returns a MAC address in lower case with colons
// ("3c:22:fb:12:34:56") from the forms NAS and DHCP servers write
// (3C-22-FB-12-34-56, 3c22.fb12.3456, 3c22fb123456), or "" if s is not an
// EUI-48 address.
func NormalizeMAC(s string) string {
	var hex []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			hex = append(hex, c)
		case c >= 'A' && c <= 'F':
			hex = append(hex, c+'a'-'A')
		case c == ':' || c == '-' || c == '.':
		default:
			return ""
		}
	}
	if len(hex) != 12 {
		return ""
	}
	out := make([]byte, 0, 17)
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hex[i], hex[i+1])
	}
	return string(out)
}

// Serve runs until ctx is done, then closes the listener.
func (r *RADIUS) Serve(ctx context.Context) {
	<-ctx.Done()
	_ = r.Close()
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return m.Counter.GetValue()
}
