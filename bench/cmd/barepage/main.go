// barepage is the shared harness's bare goproxy with the million names in
// a Go map (bare-list), answering a blocked request with a block page of
// Gatehouse's size and header fields instead of the 7-byte "blocked": the
// same work on the wire as Gatehouse's answer, and nothing else (no
// policy, events, reference codes or logging). bench/http_block_bench.sh
// runs it as the target "bare-page" beside bare-list.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/elazarl/goproxy"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3138", "listen address")
	list := flag.String("list", "", "gzip list of blocked domains, one a line")
	page := flag.String("page", "", "the block page's HTML (a copy of Gatehouse's answer)")
	flag.Parse()
	if *list == "" || *page == "" {
		log.Fatal("barepage: -list and -page are required")
	}
	body, err := os.ReadFile(*page)
	if err != nil {
		log.Fatal(err)
	}
	blocked := load(*list)
	hit := func(host string) bool {
		host = strings.ToLower(strings.Split(host, ":")[0])
		for {
			if _, ok := blocked[host]; ok {
				return true
			}
			i := strings.IndexByte(host, '.')
			if i < 0 {
				return false
			}
			host = host[i+1:]
		}
	}
	// Gatehouse's fields (proxy/http/blockpage.go), once.
	fields := http.Header{
		"Content-Type":            {"text/html; charset=utf-8"},
		"Cache-Control":           {"no-store"},
		"Content-Security-Policy": {"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"},
		"X-Content-Type-Options":  {"nosniff"},
		"Referrer-Policy":         {"no-referrer"},
		"Via":                     {"1.1 gatehouse"},
		"X-Gatehouse-Ref":         {"GH-2345-6789"},
		"Content-Length":          {strconv.Itoa(len(body))},
	}
	p := goproxy.NewProxyHttpServer()
	p.Logger = log.New(io.Discard, "", 0)
	p.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		if !hit(r.URL.Host) {
			return r, nil
		}
		return r, &http.Response{StatusCode: http.StatusForbidden, Status: "403 Forbidden", Proto: "HTTP/1.1", ProtoMajor: 1,
			ProtoMinor: 1, Header: fields.Clone(), ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)),
			Request: r}
	})
	log.Fatal(http.ListenAndServe(*addr, p))
}

func load(path string) map[string]struct{} {
	f, err := os.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	r, err := gzip.NewReader(f)
	if err != nil {
		log.Fatal(err)
	}
	m := make(map[string]struct{}, 1<<20)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" && s[0] != '#' {
			m[strings.ToLower(s)] = struct{}{}
		}
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	return m
}
