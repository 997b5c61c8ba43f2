// Command tlsorigin is the HTTPS origin of bench/https_bench.sh: it makes a
// throwaway origin CA (written to -ca, PEM) and a certificate it signs for
// -name, then serves a 1 KiB page over TLS (HTTP/2 or HTTP/1.1, as the
// client's ALPN chooses) on -addr. With -dns it also answers DNS on that
// loopback address: A 127.0.0.1 for every name, no AAAA, so that proxies
// that resolve through an upstream server reach the origin.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// newOrigin makes a CA and a leaf for name signed by it.
func newOrigin(name string) (caPEM []byte, leaf tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench origin CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, leaf, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, leaf, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, leaf, err
	}
	leaf = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), leaf, nil
}

// page is the 1 KiB answer.
var page = []byte(strings.Repeat("gatehouse bench page 0123456789\n", 32))

func handler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(page)
}

// answer gives A 127.0.0.1 for every name and nothing else.
func answer(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	if len(q.Question) == 1 && q.Question[0].Qtype == dns.TypeA {
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
			A:   net.IPv4(127, 0, 0, 1),
		})
	}
	_ = w.WriteMsg(m)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:18444", "HTTPS listen address")
	name := flag.String("name", "origin.bench.example", "the origin's host name (its certificate's)")
	caFile := flag.String("ca", "", "write the origin CA (PEM) here (required)")
	dnsAddr := flag.String("dns", "", "also answer DNS (UDP and TCP) here: A 127.0.0.1 for every name")
	flag.Parse()
	if *caFile == "" {
		fmt.Fprintln(os.Stderr, "tlsorigin: -ca FILE is required")
		os.Exit(2)
	}
	caPEM, leaf, err := newOrigin(*name)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*caFile, caPEM, 0o644); err != nil {
		log.Fatal(err)
	}
	if *dnsAddr != "" {
		for _, n := range []string{"udp", "tcp"} {
			s := &dns.Server{Addr: *dnsAddr, Net: n, Handler: dns.HandlerFunc(answer)}
			go func() { log.Fatal(s.ListenAndServe()) }()
		}
	}
	srv := &http.Server{
		Addr:      *addr,
		Handler:   http.HandlerFunc(handler),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{leaf}, NextProtos: []string{"h2", "http/1.1"}},
	}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
