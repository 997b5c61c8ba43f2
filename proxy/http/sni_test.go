package httpproxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-filter/gatehouse/config"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestConnectSNIFronting: a CONNECT to an allowed name whose ClientHello
// names a blocked site. The origin here, like a CDN (Cloudflare, Fastly,
// Akamai), serves whichever site the SNI names, so the pupil gets the
// blocked site through the allowed name's tunnel. The proxy already reads
// the first bytes of every tunnel to port 443 (the non-TLS rule); the
// server name is in those bytes in the clear and must be decided as the
// CONNECT's host is (transparent mode does).
func TestConnectSNIFronting(t *testing.T) {
	for _, tc := range []struct {
		mode, host string
	}{
		{config.DecryptBlocks, "site.test"}, // an allowed name, tunnelled
		{config.DecryptAll, "www.nhs.uk"},   // a never-decrypt name
		{config.DecryptOff, "site.test"},    // no decryption at all
	} {
		t.Run(tc.mode+"/"+tc.host, func(t *testing.T) {
			ie := newInspectEnv(t, "")
			ie.setDecrypt(tc.mode)
			ie.s.tlsPort = ie.port // the origin's port is "443": tunnels there are checked
			code, c, br := ie.connect("", tc.host+":"+ie.port, "")
			if code != http.StatusOK || br.Buffered() != 0 {
				t.Fatalf("CONNECT %s: %d", tc.host, code)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tlc := tls.Client(c, &tls.Config{ServerName: "adult.test", RootCAs: ie.originPool, NextProtos: []string{"http/1.1"}})
			if err := tlc.Handshake(); err != nil {
				// Refused: what should happen, with a bypass event for the
				// blocked name.
				ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "sni" })
				if ev.Action != "block" || !strings.HasPrefix(ev.Name, "adult.test:") || ev.Category != "pornography" || !ev.Bypass {
					t.Errorf("event %+v", ev)
				}
				return
			}
			fmt.Fprintf(tlc, "GET / HTTP/1.1\r\nHost: adult.test\r\nConnection: close\r\n\r\n")
			b, _ := io.ReadAll(tlc)
			if strings.Contains(string(b), "origin says hello to adult.test") {
				t.Errorf("CONNECT %s:%s then SNI adult.test (blocked, pornography): the blocked site was served through the tunnel: %q",
					tc.host, ie.port, firstLine(string(b)))
			}
		})
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// TestConnectECHFront: a tunnel whose ClientHello carries Encrypted Client
// Hello with an ECH front as its outer name (cloudflare-ech.com) hides the
// site it is for, behind whatever the CONNECT named: proxy.transparent.no_sni
// decides it, as on the transparent listener (block by default: closed,
// a bypass event with reason ech; allow: a flag, and it goes on). A
// browser's GREASE ECH, with the real site as the outer name, goes on.
func TestConnectECHFront(t *testing.T) {
	for _, tc := range []struct {
		name, connect, sni string
		allow              bool   // no_sni: allow for students
		want               string // the event's action, "" for none; closed with no answer when "block"
	}{
		{"front", "site.test", "cloudflare-ech.com", false, "block"},
		{"CONNECT to the front", "cloudflare-ech.com", "cloudflare-ech.com", false, "block"},
		{"front, no_sni allow", "site.test", "cloudflare-ech.com", true, "flag"},
		{"GREASE", "site.test", "site.test", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ie := newInspectEnv(t, "")
			ie.setDecrypt(config.DecryptOff)
			if tc.allow {
				ie.setConfig(func(c *config.Config) {
					c.Proxy.Transparent.NoSNIGroups = map[string]string{"students": config.NoSNIAllow}
				})
			}
			ie.s.tlsPort = ie.port
			ie.res.mu.Lock()
			ie.res.names["cloudflare-ech.com"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			ie.res.mu.Unlock()
			code, c, br := ie.connect("", tc.connect+":"+ie.port, "")
			if code != http.StatusOK || br.Buffered() != 0 {
				t.Fatalf("CONNECT: %d", code)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(buildHello(tc.sni, true, 1)); err != nil {
				t.Fatal(err)
			}
			// The origin answers any hello it gets (this one is not one it
			// can use: an alert); a tunnel closed by the proxy says nothing.
			b, _ := io.ReadAll(br)
			if tc.want == "block" && len(b) != 0 {
				t.Errorf("the hello reached the origin (%d bytes back)", len(b))
			}
			if tc.want != "block" && len(b) == 0 {
				t.Error("the tunnel was closed before the origin answered")
			}
			if tc.want == "" {
				for _, ev := range ie.sink.events() {
					if ev.Reason == "ech" || ev.Reason == "sni" {
						t.Errorf("GREASE ECH recorded: %+v", ev)
					}
				}
				return
			}
			ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "ech" })
			if ev.Action != tc.want || !ev.Bypass || !strings.HasPrefix(ev.Name, "cloudflare-ech.com:") {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// TestConnectSNIOtherPort: a school may open ports besides 443 to tunnels
// (proxy.connect.ports). A ClientHello on such a port is decided by its
// server name as on 443, so an allowed name's tunnel there cannot carry a
// blocked site; a tunnel there that is not TLS goes on (the non-TLS rule
// is 443's).
func TestConnectSNIOtherPort(t *testing.T) {
	ie := newInspectEnv(t, "")
	ie.setDecrypt(config.DecryptOff)
	if ie.s.tlsPort == ie.port {
		t.Fatal("the origin's port is the TLS port here")
	}
	code, c, br := ie.connect("", "site.test:"+ie.port, "")
	if code != http.StatusOK || br.Buffered() != 0 {
		t.Fatalf("CONNECT: %d", code)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tlc := tls.Client(c, &tls.Config{ServerName: "adult.test", RootCAs: ie.originPool, NextProtos: []string{"http/1.1"}})
	if err := tlc.Handshake(); err == nil {
		fmt.Fprintf(tlc, "GET / HTTP/1.1\r\nHost: adult.test\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(tlc)
		t.Fatalf("SNI adult.test through site.test's tunnel on port %s: %q", ie.port, firstLine(string(b)))
	}
	ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "sni" })
	if ev.Action != "block" || !strings.HasPrefix(ev.Name, "adult.test:") || !ev.Bypass {
		t.Errorf("event %+v", ev)
	}

	// Plain HTTP through a tunnel to another port goes on.
	e := newEnv(t, envOpts{})
	_, oport, _ := net.SplitHostPort(e.origin.Listener.Addr().String())
	code, pc, pbr := e.connect("", "site.test:"+oport, "")
	if code != http.StatusOK {
		t.Fatalf("CONNECT to port %s: %d", oport, code)
	}
	defer pc.Close()
	_ = pc.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(pc, "GET /small HTTP/1.1\r\nHost: site.test\r\n\r\n")
	resp, err := http.ReadResponse(pbr, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("plain HTTP through a tunnel to port %s: %v %v", oport, resp, err)
	}
	if n := len(e.sink.events()); n != 0 {
		t.Errorf("events for a plain tunnel to another port: %+v", e.sink.events())
	}
}

// TestConnectSNIAvoidsDecryption: a tunnel (its CONNECT's host is not
// decrypted) whose ClientHello names another, allowed, site that the
// client's group decrypts would carry that site past everything decryption
// applies (safe search and search terms for search, URL lists and the
// content check for all): on a shared front end the site answers for the
// SNI. It is closed as a bypass attempt (reason sni); a hello naming a
// site the group does not decrypt goes on.
func TestConnectSNIAvoidsDecryption(t *testing.T) {
	for _, tc := range []struct {
		mode, connect, sni string
		refused            bool
	}{
		{config.DecryptSearch, "news.test", "www.google.com", true},  // search: Google must be decrypted
		{config.DecryptAll, "www.nhs.uk", "news.test", true},         // never-decrypt CONNECT, decrypted SNI
		{config.DecryptSearch, "site.test", "news.test", false},      // neither decrypted
		{config.DecryptBlocks, "news.test", "www.google.com", false}, // blocks: an allowed Google is not decrypted
	} {
		t.Run(tc.mode+"/"+tc.connect+"/"+tc.sni, func(t *testing.T) {
			ie := newInspectEnv(t, "")
			ie.setDecrypt(tc.mode)
			ie.res.mu.Lock()
			ie.res.names["site.test"] = ie.res.names["news.test"]
			ie.res.mu.Unlock()
			ie.s.tlsPort = ie.port
			code, c, br := ie.connect("", tc.connect+":"+ie.port, "")
			if code != http.StatusOK || br.Buffered() != 0 {
				t.Fatalf("CONNECT %s: %d", tc.connect, code)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			tlc := tls.Client(c, &tls.Config{ServerName: tc.sni, RootCAs: ie.originPool, NextProtos: []string{"http/1.1"}})
			served := false
			if err := tlc.Handshake(); err == nil {
				fmt.Fprintf(tlc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", tc.sni)
				b, _ := io.ReadAll(tlc)
				served = strings.Contains(string(b), "origin says hello to "+tc.sni)
			}
			if served == tc.refused {
				t.Fatalf("CONNECT %s, SNI %s (%s): served through the tunnel %v, want %v", tc.connect, tc.sni, tc.mode, served, !tc.refused)
			}
			if tc.refused {
				ev := ie.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "sni" })
				if ev.Action != "block" || !strings.HasPrefix(ev.Name, tc.sni+":") || !ev.Bypass {
					t.Errorf("event %+v", ev)
				}
			}
		})
	}
}
