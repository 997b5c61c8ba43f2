package main

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	bl "github.com/gatehouse-filter/gatehouse/blocklists"
	"github.com/gatehouse-filter/gatehouse/reports"
)

// BenchmarkStoreUnderDNSLoad measures events/s into the breach store while
// the DNS front door of the same process answers queries from four
// clients as fast as they can (issue 5's "while the DNS front door serves
// queries"). It reports both rates.
func BenchmarkStoreUnderDNSLoad(b *testing.B) {
	upstream := testUpstream(b)
	path, _ := writeConfig(b, `
database: {{dir}}/gatehouse.db
admin: {listen: "127.0.0.1:0"}
proxy: {listen: "127.0.0.1:0"}
dns:
  listen: ["127.0.0.1:0"]
  upstreams: ["`+upstream+`"]
  rate_limit: {qps: 0}
`, nil)
	s, _, _ := startServing(b, path)
	addr := s.dns.Addrs()[0].String()

	var queries atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &mdns.Client{Net: "udp", Timeout: time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := new(mdns.Msg)
				m.SetQuestion(fmt.Sprintf("site%d.example.", (w*64+i)%256), mdns.TypeA)
				if _, _, err := c.Exchange(m, addr); err == nil {
					queries.Add(1)
				}
			}
		}()
	}

	sink := s.reportSink()
	svc := s.reports
	base := svc.Writer.Written()
	t0 := time.Now().UTC()
	b.ResetTimer()
	start := time.Now()
	q0 := queries.Load()
	for i := 0; i < b.N; i++ {
		ev := reports.Event{
			Time: t0.Add(time.Duration(i) * time.Microsecond), Source: "dns", Protocol: "udp",
			Client: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8 % 8), byte(i)}), Group: "students",
			Name: fmt.Sprintf("x%d.bench.example", i%5000), QType: "A", Action: "block", Reason: "category",
			Category: "gambling", Severity: bl.SeverityMedium, Route: bl.RouteDSL, List: "bench", Count: 1,
		}
		for !sink.Record(ev) {
			time.Sleep(20 * time.Microsecond) // queue full: wait, never drop here
		}
	}
	for svc.Writer.Written()-base < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	q := queries.Load() - q0
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	b.ReportMetric(float64(q)/el.Seconds(), "dns-q/s")
}
