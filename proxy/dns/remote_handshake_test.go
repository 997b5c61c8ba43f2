package dns

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRemoteDoHHandshakesRateLimited: TLS handshakes on the DoH listener
// count against the source address's rate, as DoT's do: over it the
// handshake fails (a TLS alert), counted as ratelimited, so an address
// on the internet cannot make the school's server sign handshakes as
// fast as it can send them. Before, DoH handshakes were free: only the
// requests on a connection counted, and an address over its rate still
// had every new connection's handshake done.
func TestRemoteDoHHandshakesRateLimited(t *testing.T) {
	rt := startRemote(t, func(o *Options) {
		o.Remote.AddrQPS, o.Remote.AddrBurst = 1, 3 // the clock is frozen: 3, then none
	})
	cfg := &tls.Config{RootCAs: rt.pool, ServerName: "dns.test", NextProtos: []string{"h2"}}
	done := 0
	for range 6 {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", rt.doh, cfg.Clone())
		if err == nil {
			done++
			c.Close()
		}
	}
	if done != 3 {
		t.Errorf("%d DoH handshakes done from one address, want the burst of 3", done)
	}
	if got := testutil.ToFloat64(rt.metrics.remoteRefused.WithLabelValues("doh", "ratelimited")); got != 3 {
		t.Errorf("refused handshakes counted %v, want 3", got)
	}
	// A DoH client from this address, over its rate, is refused at the
	// handshake too.
	if _, err := rt.http.Get("https://" + rt.doh + "/dns-query/" + rt.student); err == nil {
		t.Error("a DoH request from an address over its rate got through the handshake")
	}
}
