package dns

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse-filter/gatehouse/identity"
)

type people map[string]identity.Person

func (p people) Person(u string) (identity.Person, bool) { v, ok := p[u]; return v, ok }

// TestIdentityTableNamesUser: a RADIUS mapping for the staff address names
// the pupil (display name, year, class, source), their group (from the
// table's rule) decides, and the lease names the device; once the session
// ends the next event names only the address and the network decides.
func TestIdentityTableNamesUser(t *testing.T) {
	var tb *identity.Table
	ts := startServer(t, func(o *Options) {
		tb = identity.New(identity.Options{Now: o.Now,
			Rules:     []identity.Rule{{Match: "*@pupils.example", Group: "students"}},
			Directory: people{"amira@pupils.example": {Display: "Amira Khan", Year: "Year 8", Class: "8B"}}})
		o.Identity = tb
	})
	at := netip.MustParseAddr(staff)
	exp := ts.clock.now().Add(time.Hour)
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceLease, Device: "LIB-LAPTOP-12", MAC: "3c:22:fb:12:34:56", Expires: exp})
	tb.Set(identity.Mapping{Addr: at, Source: identity.SourceRADIUS, Session: "s1", User: "amira@pupils.example", Expires: exp})
	// staff's network allows gambling; Amira's group (students) does not.
	if r := ask(t, "udp", ts.udp, staff, "gamble.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("the table's group did not decide: %v", r)
	}
	ev := waitEvents(t, ts, 1)[0]
	if ev.User != "amira@pupils.example" || ev.Display != "Amira Khan" || ev.Year != "Year 8" || ev.Class != "8B" ||
		ev.IDSource != "radius" || ev.Group != "students" || ev.Device != "LIB-LAPTOP-12" {
		t.Fatalf("event: %+v", ev)
	}
	tb.Remove(at, identity.SourceRADIUS, "s1")
	if r := ask(t, "udp", ts.udp, staff, "gamble.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeSuccess {
		t.Fatalf("after Stop the network should decide: %v", r)
	}
	if r := ask(t, "udp", ts.udp, staff, "porn.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("staff: %v", r)
	}
	ev = waitEvents(t, ts, 2)[1]
	if ev.User != "" || ev.Display != "" || ev.Device != "LIB-LAPTOP-12" || ev.IDSource != "dhcp" || ev.Group != "staff" {
		t.Fatalf("after Stop: %+v", ev)
	}
	// The lease ends: only the address.
	ts.clock.advance(2 * time.Hour)
	if r := ask(t, "udp", ts.udp, staff, "www.porn.example.", mdns.TypeA, true); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("staff: %v", r)
	}
	ev = waitEvents(t, ts, 3)[2]
	if ev.User != "" || ev.Device != "" || ev.IDSource != "address" {
		t.Fatalf("after the lease: %+v", ev)
	}
}

// TestRADIUSBurstKeepsAnswering: 5,000 RADIUS Starts sent within about a
// second (5 a millisecond, each for its own address) while a DNS client
// asks 200 questions one after another: every question gets its answer,
// and every Start ends up mapped (a NAS re-sends what was not answered,
// as this one does once its first round is out).
func TestRADIUSBurstKeepsAnswering(t *testing.T) {
	if testing.Short() {
		t.Skip("burst test")
	}
	var tb *identity.Table
	ts := startServer(t, func(o *Options) {
		tb = identity.New(identity.Options{})
		o.Identity = tb
		o.RateQPS = 0
	})
	const secret = "burst-secret"
	r := &identity.RADIUS{Table: tb, Secret: []byte(secret), NAS: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if err := r.Listen("127.0.0.1:0", nil); err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// 20 NAS sockets, 250 Starts each: a socket and a RADIUS identifier
	// name each Start (the Accounting-Response echoes only the identifier).
	const starts, queries, socks = 5000, 200, 20
	const per = starts / socks
	pkts := make([][]byte, starts)
	for i := range pkts {
		p := radius.New(radius.CodeAccountingRequest, []byte(secret))
		p.Identifier = byte(i % per)
		rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType_Value_Start)
		rfc2865.UserName_SetString(p, fmt.Sprintf("pupil%d@pupils.example", i))
		rfc2865.FramedIPAddress_Set(p, net.IPv4(10, 50, byte(i>>8), byte(i)).To4())
		rfc2866.AcctSessionID_SetString(p, fmt.Sprint("burst-", i))
		b, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		pkts[i] = b
	}
	conns := make([]net.PacketConn, socks)
	for i := range conns {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	var mu sync.Mutex
	answered := make([]bool, starts)
	var readers sync.WaitGroup
	for k, c := range conns { // the NAS's readers: which Starts were answered
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 4096)
			for {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				if n >= 20 && radius.Code(buf[0]) == radius.CodeAccountingResponse {
					mu.Lock()
					answered[k*per+int(buf[1])] = true
					mu.Unlock()
				}
			}
		}()
	}
	dnsDone := make(chan int)
	var maxRTT time.Duration
	go func() {
		// A stub resolver's wait: an answer later than 2 s counts as lost.
		c := &mdns.Client{Net: "udp", Timeout: 2 * time.Second}
		ok := 0
		for i := range queries {
			m := new(mdns.Msg)
			m.SetQuestion(fmt.Sprintf("q%d.example.org.", i%20), mdns.TypeA)
			if r, rtt, err := c.Exchange(m, ts.udp); err == nil && r.Rcode == mdns.RcodeSuccess {
				ok++
				maxRTT = max(maxRTT, rtt)
			}
		}
		dnsDone <- ok
	}()
	start := time.Now()
	for i, b := range pkts { // 5 a millisecond: 5,000 in about a second
		if _, err := conns[i/per].WriteTo(b, r.Addr()); err != nil {
			t.Fatal(err)
		}
		if i%5 == 4 {
			time.Sleep(time.Millisecond)
		}
	}
	sent := time.Since(start)
	ok := <-dnsDone
	readers.Wait()
	first := 0
	for _, a := range answered {
		if a {
			first++
		}
	}
	// The NAS re-sends the unanswered ones.
	for i, a := range answered {
		if !a {
			if _, err := conns[i/per].WriteTo(pkts[i], r.Addr()); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for tb.Len() < starts && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("burst: %d Starts sent in %v; %d answered in the first round (dropped %d, queue %d); %d/%d DNS answers (slowest %v); table %d after re-sends",
		starts, sent.Round(time.Millisecond), first, r.Count(identity.ResultDropped), identity.QueueLen, ok, queries, maxRTT.Round(time.Microsecond), tb.Len())
	if ok != queries {
		t.Fatalf("%d of %d DNS queries answered during the burst", ok, queries)
	}
	if tb.Len() != starts {
		t.Fatalf("%d of %d Starts mapped after re-sending", tb.Len(), starts)
	}
}
