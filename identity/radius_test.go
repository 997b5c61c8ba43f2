package identity

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2869"
)

const testSecret = "s3cret-for-tests"

func startRADIUS(t *testing.T, tb *Table, nas ...string) *RADIUS {
	t.Helper()
	return startRADIUSAt(t, tb, nil, nas...)
}

// startRADIUSAt is startRADIUS with the listener's clock (nil: time.Now).
func startRADIUSAt(t *testing.T, tb *Table, now func() time.Time, nas ...string) *RADIUS {
	t.Helper()
	r := &RADIUS{Table: tb, Secret: []byte(testSecret), Timeout: time.Hour, Now: now}
	for _, n := range nas {
		r.NAS = append(r.NAS, netip.MustParsePrefix(n))
	}
	if err := r.Listen("127.0.0.1:0", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// acct builds an Accounting-Request.
func acct(secret string, status rfc2866.AcctStatusType, user, addr, session, mac string) *radius.Packet {
	p := radius.New(radius.CodeAccountingRequest, []byte(secret))
	rfc2866.AcctStatusType_Set(p, status)
	if user != "" {
		rfc2865.UserName_SetString(p, user)
	}
	if addr != "" {
		rfc2865.FramedIPAddress_Set(p, net.ParseIP(addr).To4())
	}
	rfc2866.AcctSessionID_SetString(p, session)
	if mac != "" {
		rfc2865.CallingStationID_SetString(p, mac)
	}
	rfc2865.NASIPAddress_Set(p, net.IPv4(127, 0, 0, 1).To4())
	return p
}

func exchange(t *testing.T, r *RADIUS, p *radius.Packet) *radius.Packet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := (&radius.Client{Retry: time.Second}).Exchange(ctx, p, r.Addr().String())
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if resp.Code != radius.CodeAccountingResponse {
		t.Fatalf("answer code %v", resp.Code)
	}
	return resp
}

func TestRADIUSStartInterimStop(t *testing.T) {
	tb := New(Options{})
	r := startRADIUS(t, tb, "127.0.0.0/8")
	a := netip.MustParseAddr("10.9.8.7")
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "amira@pupils.example", "10.9.8.7", "S1", "3C-22-FB-12-34-56"))
	e := tb.Lookup(a, time.Now().UnixNano())
	if e == nil || e.User != "amira@pupils.example" || e.MAC != "3c:22:fb:12:34:56" || e.Source != SourceRADIUS {
		t.Fatalf("after Start: %+v", e)
	}
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_InterimUpdate, "amira@pupils.example", "10.9.8.7", "S1", ""))
	// A Stop of another session on the same address leaves this one.
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "someone", "10.9.8.7", "S0", ""))
	if e := tb.Lookup(a, time.Now().UnixNano()); e == nil {
		t.Fatal("another session's Stop ended the mapping")
	}
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "amira@pupils.example", "10.9.8.7", "S1", ""))
	if e := tb.Lookup(a, time.Now().UnixNano()); e != nil {
		t.Fatalf("after Stop: %+v", e)
	}
	if got := r.Count(ResultAccepted); got != 4 {
		t.Fatalf("accepted %d, want 4", got)
	}
}

func TestRADIUSSessionTimeoutAndIdle(t *testing.T) {
	c := newClock()
	tb := New(Options{Now: c.now})
	r := startRADIUSAt(t, tb, c.now, "127.0.0.1/32")
	p := acct(testSecret, rfc2866.AcctStatusType_Value_InterimUpdate, "bob", "10.0.0.5", "S9", "")
	rfc2865.SessionTimeout_Set(p, 600)
	rfc2866.AcctSessionTime_Set(p, 500)
	exchange(t, r, p)
	a := netip.MustParseAddr("10.0.0.5")
	if tb.Lookup(a, c.at(99*time.Second).UnixNano()) == nil || tb.Lookup(a, c.at(100*time.Second).UnixNano()) != nil {
		t.Fatal("the mapping should end when the session's Session-Timeout does (100 s left)")
	}
	// Without updates, a session ends after Timeout.
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "carol", "10.0.0.6", "S10", ""))
	b := netip.MustParseAddr("10.0.0.6")
	if tb.Lookup(b, c.at(59*time.Minute).UnixNano()) == nil || tb.Lookup(b, c.at(time.Hour).UnixNano()) != nil {
		t.Fatal("a session without updates should end after Timeout")
	}
	// Accounting-On: the NAS restarted, its sessions are gone.
	on := radius.New(radius.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(on, rfc2866.AcctStatusType_Value_AccountingOn)
	rfc2865.NASIPAddress_Set(on, net.IPv4(127, 0, 0, 1).To4())
	exchange(t, r, on)
	if tb.Len() != 0 {
		t.Fatalf("after Accounting-On %d addresses remain", tb.Len())
	}
}

// sendRaw sends b from a socket bound to from and reports whether an
// answer came within wait.
func sendRaw(t *testing.T, from string, to net.Addr, b []byte, wait time.Duration) bool {
	t.Helper()
	c, err := net.ListenPacket("udp", from+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteTo(b, to); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	_, _, err = c.ReadFrom(buf)
	return err == nil
}

// TestRADIUSForgedAndNotAllowed: a packet with the wrong secret, a
// tampered packet and one from an address outside the NAS list are
// ignored (no answer, no mapping) and counted; a good one after them
// still works.
func TestRADIUSForgedAndNotAllowed(t *testing.T) {
	tb := New(Options{})
	r := startRADIUS(t, tb, "127.0.0.1/32")
	wrong, _ := acct("not-the-secret", rfc2866.AcctStatusType_Value_Start, "mallory", "10.0.0.66", "F1", "").Encode()
	if sendRaw(t, "127.0.0.1", r.Addr(), wrong, 300*time.Millisecond) {
		t.Fatal("answered a packet with the wrong secret")
	}
	good, _ := acct(testSecret, rfc2866.AcctStatusType_Value_Start, "mallory", "10.0.0.66", "F2", "").Encode()
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-1] ^= 1 // the last attribute's last byte
	if sendRaw(t, "127.0.0.1", r.Addr(), tampered, 300*time.Millisecond) {
		t.Fatal("answered a tampered packet")
	}
	if sendRaw(t, "127.0.0.3", r.Addr(), good, 300*time.Millisecond) {
		t.Fatal("answered a NAS outside the allow list")
	}
	if tb.Len() != 0 {
		t.Fatalf("a refused packet mapped an address: %d", tb.Len())
	}
	for deadline := time.Now().Add(10 * time.Second); r.Count(ResultForged) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the processor may still be on them
	}
	if r.Count(ResultForged) != 2 || r.Count(ResultNotAllowed) != 1 || r.Count(ResultAccepted) != 0 {
		t.Fatalf("forged %d, not allowed %d, accepted %d", r.Count(ResultForged), r.Count(ResultNotAllowed), r.Count(ResultAccepted))
	}
	if !sendRaw(t, "127.0.0.1", r.Addr(), good, 5*time.Second) || tb.Len() != 1 {
		t.Fatal("a good packet after the bad ones was not taken")
	}
}

// TestRADClient speaks to the listener with FreeRADIUS's radclient
// (Debian's freeradius-utils).
func TestRADClient(t *testing.T) {
	bin, err := exec.LookPath("radclient")
	if err != nil {
		t.Skip("radclient not installed (apt-get install freeradius-utils); the Go client tests still ran")
	}
	tb := New(Options{})
	r := startRADIUS(t, tb, "127.0.0.1/32")
	run := func(attrs string) string {
		t.Helper()
		cmd := exec.Command(bin, "-x", "-r", "2", "-t", "3", r.Addr().String(), "acct", testSecret)
		cmd.Stdin = strings.NewReader(attrs)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("radclient: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run("Acct-Status-Type = Start, User-Name = \"amira@pupils.example\", Framed-IP-Address = 10.20.30.40, Acct-Session-Id = \"rc-1\", Calling-Station-Id = \"3c-22-fb-12-34-56\", NAS-IP-Address = 127.0.0.1\n")
	if !strings.Contains(out, "Accounting-Response") {
		t.Fatalf("radclient got no Accounting-Response:\n%s", out)
	}
	a := netip.MustParseAddr("10.20.30.40")
	if e := tb.Lookup(a, time.Now().UnixNano()); e == nil || e.User != "amira@pupils.example" || e.MAC != "3c:22:fb:12:34:56" {
		t.Fatalf("after radclient Start: %+v", e)
	}
	run("Acct-Status-Type = Stop, User-Name = \"amira@pupils.example\", Framed-IP-Address = 10.20.30.40, Acct-Session-Id = \"rc-1\", NAS-IP-Address = 127.0.0.1\n")
	if e := tb.Lookup(a, time.Now().UnixNano()); e != nil {
		t.Fatalf("after radclient Stop: %+v", e)
	}
	// The wrong secret: radclient gives up without an answer.
	cmd := exec.Command(bin, "-r", "1", "-t", "1", r.Addr().String(), "acct", "wrong-secret")
	cmd.Stdin = strings.NewReader("Acct-Status-Type = Start, User-Name = \"x\", Framed-IP-Address = 10.20.30.41, Acct-Session-Id = \"rc-2\"\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("radclient with the wrong secret got an answer:\n%s", out)
	}
	if r.Count(ResultForged) < 1 || tb.Len() != 0 {
		t.Fatalf("wrong secret: forged %d, len %d", r.Count(ResultForged), tb.Len())
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"3C-22-FB-12-34-56": "3c:22:fb:12:34:56", "3c22.fb12.3456": "3c:22:fb:12:34:56", "3c22fb123456": "3c:22:fb:12:34:56",
		"3c:22:fb:12:34": "", "zz:22:fb:12:34:56": "", "": "",
	} {
		if got := NormalizeMAC(in); got != want {
			t.Errorf("NormalizeMAC(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRADIUSReplay: an authentic accounting packet sent again later (a
// pupil who captured a teacher's Start, to have the teacher's filtering on
// their own address) is answered but not applied and is counted: a Start
// or update of a session that has stopped, an update older than one
// already applied (naming an address the session has left), a packet whose
// Event-Timestamp is older than the session timeout or ahead of the clock.
// A NAS that restarts (Accounting-On) may number its sessions afresh.
// Before, each of them mapped the address again.
func TestRADIUSReplay(t *testing.T) {
	tb := New(Options{})
	r := startRADIUS(t, tb, "127.0.0.0/8")
	now := func() int64 { return time.Now().UnixNano() }
	teacherAt := netip.MustParseAddr("10.2.0.7")

	start := acct(testSecret, rfc2866.AcctStatusType_Value_Start, "teacher@staff.example", "10.2.0.7", "T1", "")
	exchange(t, r, start)
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "teacher@staff.example", "10.2.0.7", "T1", ""))
	if tb.Lookup(teacherAt, now()) != nil {
		t.Fatal("mapped after Stop")
	}
	exchange(t, r, start) // the same bytes again
	if e := tb.Lookup(teacherAt, now()); e != nil {
		t.Fatalf("a replayed Start of a stopped session mapped %v to %s", teacherAt, e.User)
	}
	interim := acct(testSecret, rfc2866.AcctStatusType_Value_InterimUpdate, "teacher@staff.example", "10.2.0.7", "T1", "")
	rfc2866.AcctSessionTime_Set(interim, 900)
	exchange(t, r, interim)
	if tb.Lookup(teacherAt, now()) != nil {
		t.Fatal("an update of a stopped session mapped the address")
	}
	if got := r.Count(ResultReplayed); got != 2 {
		t.Fatalf("replayed %d, want 2", got)
	}

	// A live session that moved: its older update names the old address.
	s2 := func(addr string, secs rfc2866.AcctSessionTime) *radius.Packet {
		p := acct(testSecret, rfc2866.AcctStatusType_Value_InterimUpdate, "head@staff.example", addr, "T2", "")
		rfc2866.AcctSessionTime_Set(p, secs)
		return p
	}
	old := s2("10.2.0.8", 300)
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "head@staff.example", "10.2.0.8", "T2", ""))
	exchange(t, r, old)
	exchange(t, r, s2("10.2.0.9", 600)) // roamed
	exchange(t, r, old)
	if e := tb.Lookup(netip.MustParseAddr("10.2.0.8"), now()); e != nil {
		t.Fatalf("an older update mapped the address the session left: %+v", e)
	}
	if e := tb.Lookup(netip.MustParseAddr("10.2.0.9"), now()); e == nil || e.User != "head@staff.example" {
		t.Fatalf("the session's address: %+v", e)
	}

	// Event-Timestamp: older than the session timeout (an hour here), or
	// ahead of the clock, is stale; a recent one is not.
	stamped := func(addr, session string, at time.Time) *radius.Packet {
		p := acct(testSecret, rfc2866.AcctStatusType_Value_Start, "dep@staff.example", addr, session, "")
		if err := rfc2869.EventTimestamp_Set(p, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exchange(t, r, stamped("10.2.0.10", "T3", time.Now().Add(-2*time.Hour)))
	exchange(t, r, stamped("10.2.0.11", "T4", time.Now().Add(time.Hour)))
	exchange(t, r, stamped("10.2.0.12", "T5", time.Now().Add(-time.Minute)))
	for a, want := range map[string]bool{"10.2.0.10": false, "10.2.0.11": false, "10.2.0.12": true} {
		if got := tb.Lookup(netip.MustParseAddr(a), now()) != nil; got != want {
			t.Errorf("%s mapped %v, want %v", a, got, want)
		}
	}
	if got := r.Count(ResultReplayed); got != 5 {
		t.Fatalf("replayed %d, want 5", got)
	}

	// A controller that sends no Acct-Session-Id (RFC 2866 requires one):
	// its sessions cannot be told apart, so a Stop does not refuse the next.
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "a@staff.example", "10.2.0.20", "", ""))
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "a@staff.example", "10.2.0.20", "", ""))
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "b@staff.example", "10.2.0.21", "", ""))
	if e := tb.Lookup(netip.MustParseAddr("10.2.0.21"), now()); e == nil || e.User != "b@staff.example" {
		t.Fatalf("a session without an id after another's Stop: %+v", e)
	}

	// The NAS restarted: session T1 may be a new one.
	on := radius.New(radius.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(on, rfc2866.AcctStatusType_Value_AccountingOn)
	rfc2865.NASIPAddress_Set(on, net.IPv4(127, 0, 0, 1).To4())
	exchange(t, r, on)
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Start, "teacher@staff.example", "10.2.0.7", "T1", ""))
	if e := tb.Lookup(teacherAt, now()); e == nil {
		t.Fatal("after Accounting-On a session numbered afresh was refused")
	}
}

// TestRADIUSUserForms: what a User-Name names, with the school's realms:
// the user without its realm (in the one form), a name in another realm
// whole, and a computer's own 802.1X session its device, not a person.
func TestRADIUSUserForms(t *testing.T) {
	realms := []string{"SCHOOL", "school.local"}
	for in, want := range map[string][2]string{
		`SCHOOL\Amira.Khan`:           {"amira.khan", ""},
		"amira.khan@school.local":     {"amira.khan", ""},
		"amira.khan@other.ac.uk":      {"amira.khan@other.ac.uk", ""},
		`OTHER\amira.khan`:            {`other\amira.khan`, ""},
		"host/LIB-PC-01.school.local": {"", "LIB-PC-01"},
		"HOST/lib-pc-02":              {"", "lib-pc-02"},
		`SCHOOL\LIB-PC-03$`:           {"", "LIB-PC-03"},
		`OTHER\LIB-PC-04$`:            {"", "LIB-PC-04"},
		"host/":                       {"host/", ""},
		"$":                           {"$", ""},
		"straße@School.Local":         {"strasse", ""},
	} {
		if u, d := radiusUser(in, realms); u != want[0] || d != want[1] {
			t.Errorf("radiusUser(%q) = %q, %q; want %q, %q", in, u, d, want[0], want[1])
		}
	}
}

// TestRADIUSReplayLogNamesNoOne: the warning about a replayed packet says
// which NAS and session, not whose name or which address (this package
// logs no user names or addresses: README, Privacy).
func TestRADIUSReplayLogNamesNoOne(t *testing.T) {
	var buf syncBuffer
	tb := New(Options{})
	r := &RADIUS{Table: tb, Secret: []byte(testSecret), Timeout: time.Hour, NAS: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Log: slog.New(slog.NewTextHandler(&buf, nil))}
	if err := r.Listen("127.0.0.1:0", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	start := acct(testSecret, rfc2866.AcctStatusType_Value_Start, "amira.khan@pupils.example", "10.1.0.77", "S1", "")
	exchange(t, r, start)
	exchange(t, r, acct(testSecret, rfc2866.AcctStatusType_Value_Stop, "amira.khan@pupils.example", "10.1.0.77", "S1", ""))
	exchange(t, r, start)
	if r.Count(ResultReplayed) != 1 {
		t.Fatalf("replayed %d", r.Count(ResultReplayed))
	}
	out := buf.String()
	if !strings.Contains(out, "replayed") {
		t.Fatalf("no warning logged:\n%s", out)
	}
	if strings.Contains(out, "amira") || strings.Contains(out, "10.1.0.77") {
		t.Errorf("the warning names the pupil or her address:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
