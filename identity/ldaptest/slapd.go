// Package ldaptest starts a real OpenLDAP server (Debian's slapd) for
// tests: a throwaway directory in a temporary folder, listening on
// loopback for ldap:// (StartTLS) and ldaps:// with a certificate from
// its own CA, holding a few pupils and staff in groups (the memberof
// overlay fills memberOf, as Active Directory does).
package ldaptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Base is the directory's suffix.
const Base = "dc=school,dc=example"

// Admin is the directory's root account.
const (
	AdminDN       = "cn=admin," + Base
	AdminPassword = "admin-secret"
	ServiceDN     = "cn=gatehouse,ou=service," + Base
	ServicePass   = "service-secret"
	StudentsDN    = "cn=Students,ou=groups," + Base
	StaffDN       = "cn=Staff,ou=groups," + Base
)

// User is an account in the test directory.
type User struct {
	UID, Password, Display, Year, Class string
	Groups                              []string // group DNs
}

// Users are the accounts Start creates.
var Users = []User{
	{UID: "amira.khan", Password: "Amira-pw-1", Display: "Amira Khan", Year: "Year 8", Class: "8B", Groups: []string{StudentsDN}},
	{UID: "mr.jones", Password: "Jones-pw-2", Display: "Tom Jones", Groups: []string{StaffDN}},
}

// Server is a running slapd.
type Server struct {
	LDAPURL  string // ldap://127.0.0.1:port (StartTLS available)
	LDAPSURL string // ldaps://127.0.0.1:port
	CAFile   string // the CA that signed the server's certificate (PEM)
	CA       *x509.CertPool
	Dir      string
}

// Start runs slapd for the test, or skips the test when slapd is not
// installed. slapd is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	slapd := "/usr/sbin/slapd"
	if _, err := os.Stat(slapd); err != nil {
		if p, err := exec.LookPath("slapd"); err == nil {
			slapd = p
		} else {
			t.Skip("slapd is not installed (Debian: apt-get install slapd ldap-utils; .ci/run installs it): the LDAP tests need a real directory")
		}
	}
	dir := t.TempDir()
	s := &Server{Dir: dir}
	caPEM, certPEM, keyPEM := certs(t)
	s.CAFile = filepath.Join(dir, "ca.pem")
	write(t, s.CAFile, caPEM)
	write(t, filepath.Join(dir, "cert.pem"), certPEM)
	write(t, filepath.Join(dir, "key.pem"), keyPEM)
	s.CA = x509.NewCertPool()
	s.CA.AppendCertsFromPEM(caPEM)
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile %[1]s/slapd.pid
TLSCertificateFile %[1]s/cert.pem
TLSCertificateKeyFile %[1]s/key.pem

database monitor
access to dn.subtree="cn=Monitor" by dn.exact="%[2]s" read by * none

database mdb
directory %[1]s/db
suffix "%[3]s"
rootdn "%[2]s"
rootpw %[4]s
maxsize 16777216
overlay memberof
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
`, dir, AdminDN, Base, AdminPassword)
	write(t, filepath.Join(dir, "slapd.conf"), []byte(conf))
	// The ports are picked free, then slapd binds them: another process
	// may take one in between, so a slapd that exits at once is retried.
	var conn *ldap.Conn
	for attempt := 1; conn == nil; attempt++ {
		conn = s.run(t, slapd, attempt == 3)
	}
	defer conn.Close()
	if err := conn.Bind(AdminDN, AdminPassword); err != nil {
		t.Fatalf("bind as admin: %v", err)
	}
	add := func(dn string, attrs map[string][]string) {
		req := ldap.NewAddRequest(dn, nil)
		for k, v := range attrs {
			req.Attribute(k, v)
		}
		if err := conn.Add(req); err != nil {
			t.Fatalf("add %s: %v", dn, err)
		}
	}
	add(Base, map[string][]string{"objectClass": {"dcObject", "organization"}, "dc": {"school"}, "o": {"School"}})
	for _, ou := range []string{"people", "groups", "service"} {
		add("ou="+ou+","+Base, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {ou}})
	}
	add(ServiceDN, map[string][]string{"objectClass": {"inetOrgPerson"}, "cn": {"gatehouse"}, "sn": {"service"}, "userPassword": {ServicePass}})
	members := map[string][]string{}
	for _, u := range Users {
		dn := UserDN(u.UID)
		attrs := map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {u.UID}, "cn": {u.Display}, "sn": {u.Display},
			"displayName": {u.Display}, "userPassword": {u.Password}}
		if u.Year != "" {
			attrs["employeeType"] = []string{u.Year}
		}
		if u.Class != "" {
			attrs["departmentNumber"] = []string{u.Class}
		}
		add(dn, attrs)
		for _, g := range u.Groups {
			members[g] = append(members[g], dn)
		}
	}
	for _, g := range []string{StudentsDN, StaffDN} {
		cn, _, _ := cutRDN(g)
		add(g, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {cn}, "member": members[g]})
	}
	return s
}

// run starts slapd on two free ports and returns a connection to it, or
// nil if slapd exited before it listened (then, if last, the test fails).
func (s *Server) run(t testing.TB, slapd string, last bool) *ldap.Conn {
	dir := s.Dir
	s.LDAPURL = "ldap://127.0.0.1:" + strconv.Itoa(freePort(t))
	s.LDAPSURL = "ldaps://127.0.0.1:" + strconv.Itoa(freePort(t))
	cmd := exec.Command(slapd, "-f", filepath.Join(dir, "slapd.conf"), "-h", s.LDAPURL+"/ "+s.LDAPSURL+"/", "-d", "0")
	logf, err := os.Create(filepath.Join(dir, "slapd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	for i := 0; ; i++ {
		select {
		case <-done:
			logf.Close()
			if last {
				log, _ := os.ReadFile(filepath.Join(dir, "slapd.log"))
				t.Fatalf("slapd exited:\n%s", log)
			}
			return nil
		default:
		}
		conn, err := ldap.DialURL(s.LDAPURL)
		if err == nil {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
				logf.Close()
			})
			return conn
		}
		if i > 200 {
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("slapd did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// UserDN is the DN of a test user.
func UserDN(uid string) string { return "uid=" + ldap.EscapeDN(uid) + ",ou=people," + Base }

// Binds reads how many binds the server has completed (its monitor
// backend), counting the bind this read makes itself. slapd counts a bind
// as completed a moment after it has answered it, so the read waits until
// no bind is under way (as many initiated as completed): a client that has
// had its answer is then counted.
func (s *Server) Binds(t testing.TB) int {
	t.Helper()
	conn, err := ldap.DialURL(s.LDAPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Bind(AdminDN, AdminPassword); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := conn.Search(ldap.NewSearchRequest("cn=Bind,cn=Operations,cn=Monitor", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", []string{"monitorOpInitiated", "monitorOpCompleted"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("read the monitor's bind count: %v", err)
		}
		started, err1 := strconv.Atoi(res.Entries[0].GetAttributeValue("monitorOpInitiated"))
		done, err2 := strconv.Atoi(res.Entries[0].GetAttributeValue("monitorOpCompleted"))
		if err1 != nil || err2 != nil {
			t.Fatalf("read the monitor's bind count: %v %v", err1, err2)
		}
		if started == done || time.Now().After(deadline) {
			return done
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func cutRDN(dn string) (string, string, bool) {
	d, err := ldap.ParseDN(dn)
	if err != nil || len(d.RDNs) == 0 {
		return "", "", false
	}
	return d.RDNs[0].Attributes[0].Value, "", true
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// certs makes a CA and a certificate for 127.0.0.1 and localhost.
func certs(t testing.TB) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test directory CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{netip.MustParseAddr("127.0.0.1").AsSlice()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})
}

// CAPEM is a freshly made CA certificate (PEM), for configs that need a
// CA file to read.
func CAPEM(t testing.TB) []byte {
	ca, _, _ := certs(t)
	return ca
}
