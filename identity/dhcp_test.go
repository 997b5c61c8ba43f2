package identity

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var leaseNow = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

const iscLeases = `# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\000\001\000\001,\210\231\002\000\014)\034\210\001";

lease 10.1.2.30 {
  starts 5 2026/12/04 08:00:00;
  ends 5 2026/12/04 20:00:00;
  cltt 5 2026/12/04 08:00:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 3c:22:fb:12:34:56;
  uid "\001<\"\373\0224V";
  set vendor-class-identifier = "MSFT 5.0";
  client-hostname "LIB-LAPTOP-12";
}
lease 10.1.2.31 {
  starts 5 2026/12/04 08:00:00;
  ends 5 2026/12/04 20:00:00;
  binding state active;
  hardware ethernet 3c:22:fb:00:00:01;
}
lease 10.1.2.32 {
  starts 5 2026/12/04 07:00:00;
  ends 5 2026/12/04 09:00:00;
  binding state active;
  hardware ethernet 3c:22:fb:00:00:02;
  client-hostname "old";
}
lease 10.1.2.33 {
  ends 5 2026/12/04 20:00:00;
  binding state active;
  hardware ethernet 3c:22:fb:00:00:03;
  client-hostname "released-later";
}
lease 10.1.2.33 {
  ends 5 2026/12/04 09:30:00;
  binding state free;
  hardware ethernet 3c:22:fb:00:00:03;
}
lease 10.1.2.34 {
  ends epoch 1796486400; # Fri Dec 04 2026 ...
  binding state active;
  hardware ethernet zz:22:fb:00:00:04;
  client-hostname "bad-mac";
}
lease 10.1.2.300 {
  ends 5 2026/12/04 20:00:00;
}
`

func TestParseISC(t *testing.T) {
	leases, errs, _ := ParseLeases(FormatISC, "dhcpd.leases", []byte(iscLeases), leaseNow)
	got := map[string]Lease{}
	for _, l := range leases {
		got[l.Addr.String()] = l
	}
	if l := got["10.1.2.30"]; l.Hostname != "LIB-LAPTOP-12" || l.MAC != "3c:22:fb:12:34:56" || !l.Expires.Equal(time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)) {
		t.Errorf("10.1.2.30: %+v", l)
	}
	if l := got["10.1.2.31"]; l.Hostname != "" || l.MAC != "3c:22:fb:00:00:01" {
		t.Errorf("10.1.2.31: %+v", l)
	}
	if _, ok := got["10.1.2.32"]; ok {
		t.Error("an ended lease is current")
	}
	if _, ok := got["10.1.2.33"]; ok {
		t.Error("a lease freed later in the file is current")
	}
	if l := got["10.1.2.34"]; l.Hostname != "bad-mac" || l.MAC != "" {
		t.Errorf("10.1.2.34: %+v", l)
	}
	if len(got) != 3 {
		t.Errorf("leases: %v", got)
	}
	want := []string{"dhcpd.leases:48: lease 10.1.2.34: invalid MAC address", "dhcpd.leases:51: lease: invalid IPv4 address \"10.1.2.300\""}
	if len(errs) != len(want) {
		t.Fatalf("errors: %v", errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want %q…", i, errs[i], w)
		}
	}
}

const keaLeases = `address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id
10.1.3.10,3c:22:fb:12:34:57,01:3c:22:fb:12:34:57,4000,1764846000,1,0,0,lib-laptop-13.school.example.,0,,0
10.1.3.11,3c:22:fb:12:34:58,,4000,1764846000,1,0,0,odd&#x2cname,0,,0
10.1.3.12,3c:22:fb:12:34:59,,4000,1764846000,1,0,0,declined,1,,0
10.1.3.10,3c:22:fb:12:34:57,,4000,1764849600,1,0,0,lib-laptop-13,0,,0
not-an-address,3c:22:fb:12:34:59,,4000,1764846000,1,0,0,x,0,,0
10.1.3.14,3c:22:fb:12:34:60,,4000,soon,1,0,0,x,0,,0
`

func TestParseKea(t *testing.T) {
	now := time.Unix(1764840000, 0)
	leases, errs, _ := ParseLeases(FormatKea, "kea-leases4.csv", []byte(keaLeases), now)
	if len(leases) != 2 || leases[0].Addr.String() != "10.1.3.10" || leases[0].Hostname != "lib-laptop-13" ||
		leases[0].Expires.Unix() != 1764849600 || leases[0].MAC != "3c:22:fb:12:34:57" || leases[1].Hostname != "odd,name" {
		t.Fatalf("leases: %+v", leases)
	}
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), "kea-leases4.csv:6: invalid address") ||
		!strings.HasPrefix(errs[1].Error(), "kea-leases4.csv:7: invalid expire") {
		t.Fatalf("errors: %v", errs)
	}
	if _, errs, _ := ParseLeases(FormatKea, "x.csv", []byte("a,b,c\n1,2,3\n"), now); len(errs) != 1 || !strings.Contains(errs[0].Error(), "x.csv:1:") {
		t.Fatalf("a file without the columns: %v", errs)
	}
}

const dnsmasqLeases = `1764849600 3c:22:fb:12:34:61 10.1.4.20 LIB-LAPTOP-14 01:3c:22:fb:12:34:61
0 3c:22:fb:12:34:62 10.1.4.21 * *
1764849600 3c:22:fb:12:34:63 10.1.4.22
1764849600 nonsense 10.1.4.23 pc *
duid 00:01:00:01:2c:88:99:02:00:0c:29:1c:88:01
1764849600 1234567 fd00::23 v6-host 00:01:00:01:2c
`

func TestParseDnsmasq(t *testing.T) {
	now := time.Unix(1764840000, 0)
	leases, errs, _ := ParseLeases(FormatDnsmasq, "dnsmasq.leases", []byte(dnsmasqLeases), now)
	if len(leases) != 4 {
		t.Fatalf("leases: %+v", leases)
	}
	if l := leases[0]; l.Hostname != "LIB-LAPTOP-14" || l.MAC != "3c:22:fb:12:34:61" {
		t.Errorf("first: %+v", l)
	}
	if l := leases[1]; l.Hostname != "" || l.Expires.Before(now.Add(100*365*24*time.Hour)) {
		t.Errorf("infinite lease: %+v", l)
	}
	if l := leases[3]; l.Addr.String() != "fd00::23" || l.MAC != "" || l.Hostname != "v6-host" {
		t.Errorf("v6: %+v", l)
	}
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), "dnsmasq.leases:3: want EXPIRY") ||
		!strings.HasPrefix(errs[1].Error(), "dnsmasq.leases:4: invalid MAC") {
		t.Fatalf("errors: %v", errs)
	}
}

// TestLeasesFollowFile: a lease file's leases name devices in the table;
// an edit adds, changes and removes them; a static device listed by MAC
// keeps its name; a deleted file removes its leases.
func TestLeasesFollowFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dnsmasq.leases")
	now := time.Unix(1764840000, 0)
	write := func(s string, mod time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, mod, mod)
	}
	write("1764849600 3c:22:fb:12:34:61 10.1.4.20 LIB-LAPTOP-14 *\n0 3c:22:fb:12:34:62 10.1.4.21 * *\n1764849600 3c:22:fb:12:34:63 10.1.4.22 renamed-by-pupil *\n", now)
	tb := New(Options{Now: func() time.Time { return now }})
	l := &Leases{Table: tb, Files: []LeaseFile{{Path: path, Format: FormatDnsmasq}}, Now: func() time.Time { return now },
		StaticMACs: map[string]string{"3c:22:fb:12:34:63": "HEAD-LAPTOP"}}
	if errs := l.Poll(); len(errs) != 0 {
		t.Fatal(errs)
	}
	dev := func(a string) string {
		if e := tb.Lookup(netip.MustParseAddr(a), now.UnixNano()); e != nil {
			return e.Device
		}
		return ""
	}
	if dev("10.1.4.20") != "LIB-LAPTOP-14" || dev("10.1.4.21") != "3c:22:fb:12:34:62" || dev("10.1.4.22") != "HEAD-LAPTOP" {
		t.Fatalf("devices: %q %q %q", dev("10.1.4.20"), dev("10.1.4.21"), dev("10.1.4.22"))
	}
	// dnsmasq rewrites its file in place: a read that finds it empty (or
	// cut short) while it is being written keeps the leases read before.
	write("", now.Add(time.Second))
	if errs := l.Poll(); len(errs) != 1 || !strings.Contains(errs[0].Error(), "0 leases, previously 3") {
		t.Fatalf("problems: %v", errs)
	}
	if dev("10.1.4.20") != "LIB-LAPTOP-14" || dev("10.1.4.22") != "HEAD-LAPTOP" {
		t.Fatalf("a file caught empty forgot its devices: %q %q", dev("10.1.4.20"), dev("10.1.4.22"))
	}
	// Under half as many leases, read the same twice in a row (the file
	// has stopped changing): taken at the second read.
	write("1764849600 3c:22:fb:12:34:61 10.1.4.30 LIB-LAPTOP-14 *\nbroken line\n", now.Add(2*time.Second))
	errs := l.Poll()
	if len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), path+":2:") || !strings.Contains(errs[1].Error(), "1 leases, previously 3") ||
		dev("10.1.4.20") != "LIB-LAPTOP-14" {
		t.Fatalf("problems at the first read: %v", errs)
	}
	errs = l.Poll()
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), path+":2:") {
		t.Fatalf("problems: %v", errs)
	}
	if dev("10.1.4.20") != "" || dev("10.1.4.21") != "" || dev("10.1.4.30") != "LIB-LAPTOP-14" {
		t.Fatalf("after the edit: %q %q %q", dev("10.1.4.20"), dev("10.1.4.21"), dev("10.1.4.30"))
	}
	// Mappings from other sources are untouched by a re-read.
	tb.Set(Mapping{Addr: netip.MustParseAddr("10.1.4.30"), Source: SourceRADIUS, User: "amira", Expires: now.Add(time.Hour)})
	os.Remove(path)
	if errs := l.Poll(); len(errs) != 1 {
		t.Fatalf("a missing file should be a problem: %v", errs)
	}
	if e := tb.Lookup(netip.MustParseAddr("10.1.4.30"), now.UnixNano()); e == nil || e.Device != "" || e.User != "amira" {
		t.Fatalf("after the file went: %+v", e)
	}
}

func FuzzParseLeases(f *testing.F) {
	f.Add(iscLeases, 0)
	f.Add(keaLeases, 1)
	f.Add(dnsmasqLeases, 2)
	f.Add("lease 1.2.3.4 { ends \"", 0)
	f.Add("lease 1.2.3.4 { { { ", 0)
	f.Add("address,expire\n1.2.3.4", 1)
	formats := []string{FormatISC, FormatKea, FormatDnsmasq}
	f.Fuzz(func(t *testing.T, data string, format int) {
		fm := formats[uint(format)%3]
		leases, errs, _ := ParseLeases(fm, "f", []byte(data), leaseNow)
		for _, l := range leases {
			if !l.Addr.IsValid() || !l.Expires.After(leaseNow) {
				t.Fatalf("%s: bad lease %+v", fm, l)
			}
		}
		if len(errs) > maxLeaseErrors {
			t.Fatalf("%d errors kept", len(errs))
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Error(), "f:") {
				t.Fatalf("error without file: %v", e)
			}
		}
	})
}

func TestPeopleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "people.csv")
	os.WriteFile(path, []byte("user,display,year,class\namira@pupils.example,Amira Khan,Year 8,8B\n\"x\"y,bad\nbob,\n\"Ben@Pupils.Example\", \"Ben O'Neill\",Year 10,\n"), 0o600)
	p := &People{Path: path}
	changed, errs := p.Poll()
	if !changed || len(errs) != 2 || !strings.HasPrefix(errs[0].Error(), path+":3:") || !strings.HasPrefix(errs[1].Error(), path+":4:") {
		t.Fatalf("changed %t, problems %v", changed, errs)
	}
	if v, ok := p.Person("AMIRA@pupils.example"); !ok || v.Display != "Amira Khan" || v.Year != "Year 8" || v.Class != "8B" {
		t.Fatalf("amira: %+v", v)
	}
	if v, ok := p.Person("ben@pupils.example"); !ok || v.Display != "Ben O'Neill" || v.Year != "Year 10" || v.Class != "" {
		t.Fatalf("ben: %+v", v)
	}
	if changed, _ := p.Poll(); changed {
		t.Fatal("unchanged file read as changed")
	}
	// The MIS export rewrites the file: a read that finds it empty keeps
	// the people read before; the whole file is taken when it comes.
	os.WriteFile(path, nil, 0o600)
	if changed, errs := p.Poll(); changed || len(errs) != 1 || !strings.Contains(errs[0].Error(), "0 people, previously 2") {
		t.Fatalf("a file caught empty: changed %t, problems %v", changed, errs)
	}
	if _, ok := p.Person("amira@pupils.example"); !ok {
		t.Fatal("a file caught empty forgot amira")
	}
	os.WriteFile(path, []byte("amira@pupils.example,Amira Khan,Year 8,8C\nben@pupils.example,Ben O'Neill,Year 10,\n"+
		"cara@pupils.example,Cara Diaz,Year 7,7A\ndev@pupils.example,Dev Patel,Year 9,9D\n"), 0o600)
	if changed, errs := p.Poll(); !changed || len(errs) != 0 {
		t.Fatalf("the whole file back: changed %t, problems %v", changed, errs)
	}
	if v, _ := p.Person("amira@pupils.example"); v.Class != "8C" {
		t.Fatalf("amira after the export: %+v", v)
	}
	// Under half the people, read the same twice in a row (the file has
	// stopped changing): taken at the second read.
	os.WriteFile(path, []byte("ben@pupils.example,Ben O'Neill,Year 10,\n"), 0o600)
	if changed, _ := p.Poll(); changed {
		t.Fatal("half the people taken at the first read")
	}
	if changed, _ := p.Poll(); !changed {
		t.Fatal("half the people not taken at the second read")
	}
	if _, ok := p.Person("amira@pupils.example"); ok {
		t.Fatal("amira still known after she left the file")
	}
}

func FuzzParsePeople(f *testing.F) {
	f.Add("user,display,year,class\na,A B,Year 8,8B\n")
	f.Add("\"unterminated\n")
	f.Fuzz(func(t *testing.T, data string) {
		_, errs := ParsePeople("f", []byte(data))
		for _, e := range errs {
			if !strings.HasPrefix(e.Error(), "f:") {
				t.Fatalf("error without file: %v", e)
			}
		}
	})
}

// TestLeasesReconfigure: a reload's new lease files apply at once; a file
// kept keeps its mappings throughout, a dropped one's end, and new static
// MACs rename leases.
func TestLeasesReconfigure(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1764840000, 0)
	a, b := filepath.Join(dir, "a.leases"), filepath.Join(dir, "b.leases")
	if err := os.WriteFile(a, []byte("1764849600 3c:22:fb:12:34:61 10.1.4.20 LIB-LAPTOP-14 *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("1764849600 3c:22:fb:12:34:70 10.1.5.20 ART-PC-3 *\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tb := New(Options{Now: func() time.Time { return now }})
	l := &Leases{Table: tb, Files: []LeaseFile{{Path: a, Format: FormatDnsmasq}}, Now: func() time.Time { return now }}
	if errs := l.Poll(); len(errs) != 0 {
		t.Fatal(errs)
	}
	dev := func(addr string) string {
		if e := tb.Lookup(netip.MustParseAddr(addr), now.UnixNano()); e != nil {
			return e.Device
		}
		return ""
	}
	sets := tb.Stats().Sets
	if errs := l.Reconfigure([]LeaseFile{{Path: a, Format: FormatDnsmasq}, {Path: b, Format: FormatDnsmasq}}, nil); len(errs) != 0 {
		t.Fatal(errs)
	}
	if dev("10.1.4.20") != "LIB-LAPTOP-14" || dev("10.1.5.20") != "ART-PC-3" {
		t.Fatalf("after adding b: %q %q", dev("10.1.4.20"), dev("10.1.5.20"))
	}
	if got := tb.Stats().Sets - sets; got != 1 {
		t.Fatalf("%d mappings set, want only b's (a was read already)", got)
	}
	if errs := l.Reconfigure([]LeaseFile{{Path: b, Format: FormatDnsmasq}}, map[string]string{"3c:22:fb:12:34:70": "ART-PC-3-STATIC"}); len(errs) != 0 {
		t.Fatal(errs)
	}
	if dev("10.1.4.20") != "" || dev("10.1.5.20") != "ART-PC-3-STATIC" {
		t.Fatalf("after dropping a and naming b's MAC: %q %q", dev("10.1.4.20"), dev("10.1.5.20"))
	}
}
