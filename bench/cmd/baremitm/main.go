// Command baremitm is the bare goproxy MITM of bench/https_bench.sh: every
// CONNECT is decrypted with the given CA (goproxy.TLSConfigFromCA), each
// request is sent on to the site over TLS verified against the system roots
// plus -upstream-ca, and nothing else is done. It is the floor a decrypting
// proxy on goproxy starts from. -resolve sends every dial to one address
// (the benchmark's origin), as the other proxies' DNS settings do.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/elazarl/goproxy"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3146", "listen address")
	certFile := flag.String("cert", "", "CA certificate (PEM)")
	keyFile := flag.String("key", "", "CA key (PEM)")
	upCA := flag.String("upstream-ca", "", "extra CAs (PEM) trusted for sites")
	resolve := flag.String("resolve", "", "dial this IP instead of any site's address (keeps the port)")
	flag.Parse()
	ca, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if *upCA != "" {
		b, err := os.ReadFile(*upCA)
		if err != nil {
			log.Fatal(err)
		}
		if !pool.AppendCertsFromPEM(b) {
			log.Fatalf("%s: no certificate", *upCA)
		}
	}
	d := &net.Dialer{}
	dial := func(ctx context.Context, network, a string) (net.Conn, error) {
		if *resolve != "" {
			_, port, err := net.SplitHostPort(a)
			if err != nil {
				return nil, err
			}
			a = net.JoinHostPort(*resolve, port)
		}
		return d.DialContext(ctx, network, a)
	}
	p := goproxy.NewProxyHttpServer()
	p.Tr = &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 256,
	}
	mitm := &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: goproxy.TLSConfigFromCA(&ca)}
	p.OnRequest().HandleConnectFunc(func(host string, _ *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
		return mitm, host
	})
	log.Fatal(http.ListenAndServe(*addr, p))
}
