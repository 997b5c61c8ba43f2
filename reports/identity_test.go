package reports

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPersonWindowOneIncident: a DNS block from an address, then within
// the window the proxy block of the user logged in from it, in the same
// category, is one incident, the user's, naming them; after the window, or
// with the window off, they are two.
func TestPersonWindowOneIncident(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		window time.Duration
		gap    time.Duration
		want   int
	}{
		{"within", 2 * time.Minute, 30 * time.Second, 1},
		{"after", 2 * time.Minute, 3 * time.Minute, 2},
		{"off", 0, 30 * time.Second, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openTemp(t)
			w, err := NewWriter(st, Options{Now: newClock(t0).Now, PersonWindow: tc.window})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Record(ev(t0, "10.0.0.5", "students", "pornography", "a.example"))
			w.Flush()
			u := ev(t0.Add(tc.gap), "10.0.0.5", "students", "pornography", "a.example")
			u.Source, u.User, u.IDSource, u.Display, u.Year, u.Class = "http", "amira", "login", "Amira Khan", "Year 8", "8B"
			w.Record(u)
			w.Flush()
			incs, err := st.Incidents(Filter{Since: t0.Add(-time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if len(incs) != tc.want {
				t.Fatalf("%d incidents, want %d: %+v", len(incs), tc.want, incs)
			}
			i := incs[0] // newest first: the user's
			if i.Who != "user:amira" || i.Display != "Amira Khan" || i.IDSource != "login" {
				t.Fatalf("incident %+v", i)
			}
			if tc.want == 1 && i.Count != 2 {
				t.Fatalf("count %d, want 2", i.Count)
			}
		})
	}
}

func TestWhoText(t *testing.T) {
	for _, tc := range []struct {
		i    Incident
		want string
	}{
		{Incident{User: "amira", Display: "Amira Khan", Year: "Year 8", Class: "8B", Device: "LIB-LAPTOP-12", Client: "10.0.0.5", Group: "students", IDSource: "radius"},
			"Amira Khan (Year 8, 8B) on LIB-LAPTOP-12, 10.0.0.5, group students, named by Wi-Fi login (RADIUS)"},
		{Incident{User: "amira", Display: "Amira Khan", Client: "10.0.0.5"}, "Amira Khan (amira), 10.0.0.5"},
		{Incident{User: "amira", Client: "10.0.0.5"}, "amira, 10.0.0.5"},
		{Incident{Device: "LIB-LAPTOP-12", Client: "10.0.0.5", Group: "students"},
			"device LIB-LAPTOP-12 (only the device is known, not who used it), 10.0.0.5, group students"},
		{Incident{Client: "10.0.0.5"}, "10.0.0.5 (only the address is known)"},
		{Incident{Device: "Laptop-12", Client: "203.0.113.9", Group: "students", IDSource: SourceDeviceToken},
			"device Laptop-12 (a school device off-site, through its own DNS link; not who used it), 203.0.113.9, group students"},
	} {
		if got := tc.i.whoText(); got != tc.want {
			t.Errorf("whoText = %q, want %q", got, tc.want)
		}
		if strings.Contains(tc.want, "Amira Khan") && shortWho(&tc.i) != "Amira Khan" {
			t.Errorf("shortWho = %q", shortWho(&tc.i))
		}
	}
}

// TestIdentityExported: the identity source, display name, year and class
// are stored with the event and its incident and exported (CSV cells that
// look like formulas are escaped as every other cell is).
func TestIdentityExported(t *testing.T) {
	st := openTemp(t)
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	w, err := NewWriter(st, Options{Now: newClock(t0).Now})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	e := ev(t0, "10.0.0.5", "students", "pornography", "a.example")
	e.User, e.IDSource, e.Display, e.Year, e.Class = "amira", "radius", "=Amira Khan", "Year 8", "8B"
	w.Record(e)
	w.Flush()
	var csv strings.Builder
	if err := st.EventsCSV(&csv, Filter{Since: t0.Add(-time.Hour)}, time.UTC); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), ",id_source,display,year,class\r\n") || !strings.Contains(csv.String(), ",radius,'=Amira Khan,Year 8,8B\r\n") {
		t.Fatalf("events CSV:\n%s", csv.String())
	}
	incs, err := st.Incidents(Filter{Since: t0.Add(-time.Hour)})
	if err != nil || len(incs) != 1 {
		t.Fatal(incs, err)
	}
	csv.Reset()
	if err := IncidentsCSV(&csv, incs, time.UTC); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv.String(), ",radius,'=Amira Khan,Year 8,8B\r\n") {
		t.Fatalf("incidents CSV:\n%s", csv.String())
	}
}

// TestContentSample: an incident's sample for a page the real-time
// content check flagged or blocked says what the page held, not only its
// address.
func TestContentSample(t *testing.T) {
	ev := Event{Reason: "content", Entry: "kill myself, want to die", URL: "https://forum.example/t/1", Category: "self-harm"}
	if got, want := sampleOf(&ev), "read a page with “kill myself, want to die” (https://forum.example/t/1)"; got != want {
		t.Fatalf("sample %q, want %q", got, want)
	}
	ev.Entry = strings.Repeat("phrase, ", 20)
	if got := sampleOf(&ev); !strings.Contains(got, "…”") || len(got) > 160 {
		t.Fatalf("long phrase list not shortened: %q", got)
	}
}

// TestTunnelSample: a DNS tunnel the resolver detected is worded as a VPN
// over DNS in the incident's samples (and so in the DSL's alert).
func TestTunnelSample(t *testing.T) {
	ev := Event{Reason: "dns-tunnel", Name: "tunnel.test", Category: "vpn", Bypass: true}
	if got, want := sampleOf(&ev), "used a VPN over DNS (a DNS tunnel) through tunnel.test"; got != want {
		t.Fatalf("sample %q, want %q", got, want)
	}
}

// TestClaimTakesPersonsRoute: a DNS block from an address, then within
// the person window the proxy block of the user logged in from it. The
// incident becomes the user's and goes where the user's group sends it: a
// pupil on a PC in a staff range to the DSL (not the headteacher), a
// member of staff on a pupil's PC to the headteacher. When the address's
// incident was alerted already (to the other role), the role it now goes
// to gets an alert of its own at once, not a follow-up ten minutes on.
func TestClaimTakesPersonsRoute(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		addrGroup, person, pGroup string
		addrRole, want            string
	}{
		{"pupil on a staff PC", "staff", "amira", "students", "headteacher", "dsl"},
		{"staff on a pupil PC", "students", "mr.smith", "staff", "dsl", "headteacher"},
	} {
		for _, between := range []bool{false, true} {
			name := tc.name
			if between {
				name += ", address alerted first"
			}
			t.Run(name, func(t *testing.T) {
				t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
				clk := newClock(t0)
				p := testParts(t, MailConfig{}, clk.Now)
				p.Options.PersonWindow = 2 * time.Minute
				st := openTemp(t)
				w, err := NewWriter(st, p.Options)
				if err != nil {
					t.Fatal(err)
				}
				al := NewAlerter(st, p.Options, p.Roles, p.School, p.Loc, nil)
				w.Record(ev(t0, "10.0.0.5", tc.addrGroup, "self-harm", "a.example"))
				w.Flush()
				if between {
					clk.Add(5 * time.Second)
					if n, err := al.Check(context.Background()); err != nil || n != 1 {
						t.Fatalf("alert for the address: %d, %v", n, err)
					}
				}
				u := ev(t0.Add(20*time.Second), "10.0.0.5", tc.pGroup, "self-harm", "a.example")
				u.Source, u.User, u.IDSource = "http", tc.person, "login"
				w.Record(u)
				w.Close()
				clk.Add(30 * time.Second)
				if _, err := al.Check(context.Background()); err != nil {
					t.Fatal(err)
				}
				var who, route string
				if err := st.db.QueryRow(`SELECT who, route FROM incidents`).Scan(&who, &route); err != nil {
					t.Fatal(err)
				}
				if who != "user:"+tc.person || route != tc.want {
					t.Errorf("incident of %s routed to %q, want user:%s routed to %q", who, route, tc.person, tc.want)
				}
				rows, err := st.db.Query(`SELECT role, subject FROM outbox WHERE kind = 'alert' ORDER BY id`)
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var got []string
				for rows.Next() {
					var role, subject string
					if err := rows.Scan(&role, &subject); err != nil {
						t.Fatal(err)
					}
					got = append(got, role+": "+subject)
				}
				want := 1
				if between {
					want = 2
				}
				if len(got) != want || !strings.HasPrefix(got[len(got)-1], tc.want+": ") ||
					(between && !strings.HasPrefix(got[0], tc.addrRole+": ")) {
					t.Fatalf("alerts %q: want %d, the last to %s", got, want, tc.want)
				}
				if strings.Contains(strings.ToLower(got[len(got)-1]), "follow") {
					t.Errorf("the %s's first alert is worded as a follow-up: %q", tc.want, got[len(got)-1])
				}
			})
		}
	}
}
