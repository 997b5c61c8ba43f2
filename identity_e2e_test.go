package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse-filter/gatehouse/tlsinspect"
)

const e2eRADIUSSecret = "e2e-radius-secret"

// accounting sends an Accounting-Request for 127.0.0.9 with radclient
// (FreeRADIUS, as a school's Wi-Fi controller would send it) when it is
// installed, else with layeh's Go client, and waits for the answer.
func accounting(t *testing.T, addr net.Addr, status string) {
	t.Helper()
	if bin, err := exec.LookPath("radclient"); err == nil {
		cmd := exec.Command(bin, "-r", "2", "-t", "3", addr.String(), "acct", e2eRADIUSSecret)
		cmd.Stdin = strings.NewReader("Acct-Status-Type = " + status + `, User-Name = "amira@pupils.example", ` +
			`Framed-IP-Address = 127.0.0.9, Acct-Session-Id = "e2e-1", NAS-IP-Address = 127.0.0.1` + "\n")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Accounting-Response") {
			t.Fatalf("radclient %s: %v\n%s", status, err, out)
		}
		return
	}
	t.Logf("radclient not installed (apt-get install freeradius-utils): sending %s with the Go client", status)
	p := radius.New(radius.CodeAccountingRequest, []byte(e2eRADIUSSecret))
	st := rfc2866.AcctStatusType_Value_Start
	if status == "Stop" {
		st = rfc2866.AcctStatusType_Value_Stop
	}
	rfc2866.AcctStatusType_Set(p, st)
	rfc2865.UserName_SetString(p, "amira@pupils.example")
	rfc2865.FramedIPAddress_Set(p, net.IPv4(127, 0, 0, 9).To4())
	rfc2866.AcctSessionID_SetString(p, "e2e-1")
	rfc2865.NASIPAddress_Set(p, net.IPv4(127, 0, 0, 1).To4())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := radius.Exchange(ctx, p, addr.String()); err != nil {
		t.Fatal(err)
	}
}

// identityConfig is the config of the identity end-to-end tests: lists
// harm, adult and bet (withIdentityLists), students blocked from all
// three, 127.0.0.0/8 on the staff network by default, proxy (its YAML;
// "" for a listener on a free port) and identity (the lines under
// "identity:").
func identityConfig(upstream, proxy, identity string) string {
	if proxy == "" {
		proxy = `proxy: {listen: "127.0.0.1:0"}`
	}
	return `
school: {name: Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
` + proxy + `
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["` + upstream + `"]
lists:
  - {name: harm, path: "{{dir}}/harm.txt", category: self-harm}
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  students:
    block: [self-harm, pornography, gambling]
  staff:
    networks: [127.0.0.0/8]
    block: [self-harm, pornography]
clients:
  default_group: staff
identity:
` + identity
}

// withIdentityLists adds identityConfig's list files to files.
func withIdentityLists(files map[string]string) map[string]string {
	files["harm.txt"], files["adult.txt"], files["bet.txt"] = "harm.example\n", "porn.example\n", "bet.example\n"
	return files
}

// askFrom asks the resolver for name from the loopback address from.
func askFrom(t *testing.T, server, from, name string) int {
	t.Helper()
	c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second,
		Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s from %s: %v", name, from, err)
	}
	return r.Rcode
}

// TestIdentityEndToEnd: a Wi-Fi controller's RADIUS Start for 127.0.0.9
// → a DNS query for a blocked name from that address → the stored event
// and the DSL's alert name the pupil ("Amira Khan (Year 8, 8B)"), and a
// proxy request from it does too; a DHCP lease names 127.0.0.10's device;
// after the Stop, the next event from 127.0.0.9 names only the address.
func TestIdentityEndToEnd(t *testing.T) {
	upstream := testUpstream(t)
	ib := newInbox(t)
	path, _ := writeConfig(t, identityConfig(upstream, "", `
  groups:
    - {match: "*@pupils.example", group: students}
  people: "{{dir}}/people.csv"
  radius:
    listen: "127.0.0.1:0"
    secret: {file: "{{dir}}/radius-secret"}
    nas: [127.0.0.1/32]
  dhcp_leases:
    - {path: "{{dir}}/dnsmasq.leases", format: dnsmasq}
`)+ib.smtpConfig(), withIdentityLists(map[string]string{
		"people.csv":     "user,display name,year,class\namira@pupils.example,Amira Khan,Year 8,8B\n",
		"radius-secret":  e2eRADIUSSecret + "\n",
		"dnsmasq.leases": "0 3c:22:fb:12:34:56 127.0.0.10 LIB-LAPTOP-12 *\n",
	}))
	s, _, stop := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()

	// Before the Start: 127.0.0.9 is on the staff network, gambling allowed.
	if rc := askFrom(t, dnsAddr, "127.0.0.9", "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("before the Start: rcode %d", rc)
	}
	accounting(t, s.radius.Addr(), "Start")
	// Amira's group (students, from identity.groups) decides now.
	if rc := askFrom(t, dnsAddr, "127.0.0.9", "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("after the Start the pupil's group should decide: rcode %d", rc)
	}
	if rc := askFrom(t, dnsAddr, "127.0.0.9", "www.harm.example"); rc != mdns.RcodeNameError {
		t.Fatalf("harm: rcode %d", rc)
	}
	alert := decodeMail(ib.waitFor(t, 0, "self-harm", 30*time.Second))
	if !strings.Contains(alert, "Amira Khan (Year 8, 8B)") || !strings.Contains(alert, "Wi-Fi login (RADIUS)") {
		t.Fatalf("the alert does not name the pupil:\n%s", alert)
	}
	seen := len(ib.all())

	// A proxy request from the same address names her too.
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL),
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.9")}}).DialContext}}
	resp, err := hc.Get("http://www.porn.example/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("proxy: %d", resp.StatusCode)
	}

	// The lease names 127.0.0.10's device (no user is known there).
	if rc := askFrom(t, dnsAddr, "127.0.0.10", "harm.example"); rc != mdns.RcodeNameError {
		t.Fatalf("harm from the laptop: rcode %d", rc)
	}
	dev := decodeMail(ib.waitFor(t, seen, "LIB-LAPTOP-12", 30*time.Second))
	if !strings.Contains(dev, "only the device is known") {
		t.Fatalf("the device's alert:\n%s", dev)
	}
	seen = len(ib.all())

	accounting(t, s.radius.Addr(), "Stop")
	if rc := askFrom(t, dnsAddr, "127.0.0.9", "harm.example"); rc != mdns.RcodeNameError {
		t.Fatalf("harm after Stop: rcode %d", rc)
	}
	after := decodeMail(ib.waitFor(t, seen, "127.0.0.9", 30*time.Second))
	if !strings.Contains(after, "127.0.0.9 (only the address is known)") || strings.Contains(after, "Amira") {
		t.Fatalf("after the Stop the alert should name only the address:\n%s", after)
	}
	stop()

	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	if code != 0 {
		t.Fatalf("events: %d %s", code, errs)
	}
	var named, proxyNamed, device, bare bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		switch {
		case ev["user"] == "amira@pupils.example" && ev["display"] == "Amira Khan" && ev["id_source"] == "radius" &&
			ev["year"] == "Year 8" && ev["class"] == "8B" && ev["group"] == "students":
			if ev["source"] == "dns" {
				named = true
			} else {
				proxyNamed = true
			}
		case ev["client"] == "127.0.0.10" && ev["device"] == "LIB-LAPTOP-12" && ev["id_source"] == "dhcp":
			device = true
		case ev["client"] == "127.0.0.9" && ev["user"] == nil && ev["id_source"] == "address" && ev["group"] == "staff":
			bare = true
		}
	}
	if !named || !proxyNamed || !device || !bare {
		t.Fatalf("stored events: named %t, proxy %t, device %t, address only %t:\n%s", named, proxyNamed, device, bare, out)
	}
}

// TestIdentityHTTPSBlockPage: the HTTPS block page's certificate is minted
// for a name the resolver blocked for the identity table's user (a pupil,
// by RADIUS, on the staff network), not refused as "allowed" by the
// address's group.
func TestIdentityHTTPSBlockPage(t *testing.T) {
	port := useBlockPageTLSPort(t)

	upstream := testUpstream(t)
	path, dir := writeConfig(t, `
school: {name: Hillside Test School}
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
clients: {allow: [127.0.0.0/8], default_group: staff}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  block_response: blockpage
  block_page_ip: 127.0.0.1
lists:
  - {name: bet, path: "{{dir}}/bet.txt", category: gambling}
groups:
  students: {block: [gambling]}
  staff: {networks: [127.0.0.0/8], block: []}
identity:
  groups: [{match: "*@pupils.example", group: students}]
  radius: {listen: "127.0.0.1:0", secret: {file: "{{dir}}/radius-secret"}, nas: [127.0.0.1/32]}
`, map[string]string{"bet.txt": "bet.example\n", "radius-secret": e2eRADIUSSecret + "\n"})
	if code, _, errs := runCLI(t, "ca", "init", "--config", path); code != exitOK {
		t.Fatalf("ca init: %s", errs)
	}
	ca, _, err := tlsinspect.LoadCert(filepath.Join(dir, "ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	s, _, _ := startServing(t, path)
	get := func(from string) (int, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
				return d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(port))
			}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://bet.example/")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// 127.0.0.9 is on the staff network: gambling is allowed there.
	if _, err := get("127.0.0.9"); err == nil {
		t.Fatal("a certificate for a name the client's group allows")
	}
	accounting(t, s.radius.Addr(), "Start") // amira@pupils.example on 127.0.0.9
	if code, err := get("127.0.0.9"); err != nil || code != http.StatusForbidden {
		t.Fatalf("the pupil's HTTPS block page: %d %v", code, err)
	}
}
