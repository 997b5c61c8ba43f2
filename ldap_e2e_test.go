package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/identity/ldaptest"
)

// TestLDAPEndToEnd: serve with identity.ldap against a real slapd
// (StartTLS, the directory's CA from ca_file, the service account's
// password from a file). A pupil's proxy login from 127.0.0.11 on the
// staff network makes her group (from memberOf) decide for DNS too, and
// the DNS event and the DSL's alert name her with display name, year and
// class; a teacher's login keeps staff's policy; a wrong password is 407.
func TestLDAPEndToEnd(t *testing.T) {
	srv := ldaptest.Start(t)
	upstream := testUpstream(t)
	ib := newInbox(t)
	path, _ := writeConfig(t, identityConfig(upstream, "", `
  ldap:
    url: "`+srv.LDAPURL+`"
    start_tls: true
    ca_file: "`+srv.CAFile+`"
    base_dn: "ou=people,`+ldaptest.Base+`"
    user_filter: "(uid=%s)"
    service_dn: "`+ldaptest.ServiceDN+`"
    service_password: {file: "{{dir}}/ldap-password"}
    groups:
      - {dn: "`+ldaptest.StaffDN+`", group: staff}
      - {dn: "`+ldaptest.StudentsDN+`", group: students}
    attributes: {display: displayName, year: employeeType, class: departmentNumber}
`)+ib.smtpConfig(), withIdentityLists(map[string]string{
		"ldap-password": ldaptest.ServicePass + "\n",
	}))
	s, _, stop := startServing(t, path)
	dnsAddr := s.dns.Addrs()[0].String()
	proxyURL, _ := url.Parse("http://" + s.proxyAddr.String())
	proxyGet := func(from, user, pass, target string) int {
		t.Helper()
		u := *proxyURL
		u.User = url.UserPassword(user, pass)
		hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(&u),
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		resp, err := hc.Get(target)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if rc := askFrom(t, dnsAddr, "127.0.0.11", "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("before the login (staff network): rcode %d", rc)
	}
	if code := proxyGet("127.0.0.11", "amira.khan", "wrong", "http://www.porn.example/"); code != http.StatusProxyAuthRequired {
		t.Fatalf("wrong password: %d", code)
	}
	if code := proxyGet("127.0.0.11", "amira.khan", "Amira-pw-1", "http://www.porn.example/"); code != http.StatusForbidden {
		t.Fatalf("pupil's login: %d", code)
	}
	// Her directory group decides DNS from her address now.
	if rc := askFrom(t, dnsAddr, "127.0.0.11", "bet.example"); rc != mdns.RcodeNameError {
		t.Fatalf("after the login the pupil's group should decide: rcode %d", rc)
	}
	if rc := askFrom(t, dnsAddr, "127.0.0.11", "www.harm.example"); rc != mdns.RcodeNameError {
		t.Fatalf("harm: rcode %d", rc)
	}
	alert := decodeMail(ib.waitFor(t, 0, "self-harm", 30*time.Second))
	if !strings.Contains(alert, "Amira Khan (Year 8, 8B)") {
		t.Fatalf("the alert does not name the pupil:\n%s", alert)
	}
	// A teacher's login keeps staff's policy.
	if code := proxyGet("127.0.0.12", "mr.jones", "Jones-pw-2", "http://www.porn.example/"); code != http.StatusForbidden {
		t.Fatalf("teacher's login: %d", code)
	}
	if rc := askFrom(t, dnsAddr, "127.0.0.12", "bet.example"); rc != mdns.RcodeSuccess {
		t.Fatalf("teacher: rcode %d", rc)
	}
	stop()

	code, out, errs := runCLI(t, "events", "--config", path, "--since", "1h", "--json")
	if code != 0 {
		t.Fatalf("events: %d %s", code, errs)
	}
	var dnsNamed bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if ev["source"] == "dns" && ev["client"] == "127.0.0.11" && ev["user"] == "amira.khan" && ev["display"] == "Amira Khan" &&
			ev["year"] == "Year 8" && ev["class"] == "8B" && ev["group"] == "students" && ev["id_source"] == "login" {
			dnsNamed = true
		}
	}
	if !dnsNamed {
		t.Fatalf("no DNS event names the pupil:\n%s", out)
	}
	if strings.Contains(out, "Amira-pw-1") || strings.Contains(out, ldaptest.ServicePass) {
		t.Fatal("a password reached the events")
	}
}
