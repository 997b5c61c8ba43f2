//go:build linux

package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// TestTransparentRedirected runs the transparent listeners behind a real
// nftables REDIRECT rule, in a network namespace of its own (so the
// machine's firewall is not touched), and checks what SO_ORIGINAL_DST
// gives the proxy for IPv4, IPv6 and IPv4 on a dual-stack socket. It needs
// root, unshare and nft (CI runs as root and installs nftables); without
// them it is skipped. The test re-runs itself inside the namespace.
func TestTransparentRedirected(t *testing.T) {
	if os.Getenv("GATEHOUSE_TEST_NETNS") == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a network namespace with an nftables REDIRECT rule (CI runs as root)")
		}
		for _, tool := range []string{"unshare", "nft", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("needs %s (apt-get install util-linux nftables iproute2)", tool)
			}
		}
		cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^TestTransparentRedirected$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "GATEHOUSE_TEST_NETNS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in the namespace: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestTransparentRedirected") {
			t.Fatalf("the test did not pass in the namespace:\n%s", out)
		}
		t.Logf("in the namespace:\n%s", out)
		return
	}

	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sh("ip", "link", "set", "lo", "up")
	for _, n := range []string{"198.51.100.0/24", "203.0.113.0/24", "10.9.9.0/24"} {
		sh("ip", "route", "add", n, "dev", "lo", "src", "127.0.0.1")
	}
	sh("ip", "-6", "route", "add", "2001:db8:d0::/48", "dev", "lo", "src", "::1")

	m, pool := schoolCA(t)
	te := newTPEnv(t, envOpts{allow: `[127.0.0.0/8, "::1/128"]`, certs: m})
	// One dual-stack listener for each port, as `http_listen: "[::]:3129"`.
	hl, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = te.s.ServeTransparentHTTP(hl) }()
	go func() { _ = te.s.ServeTransparentTLS(sl) }()
	hp, sp := hl.Addr().(*net.TCPAddr).Port, sl.Addr().(*net.TCPAddr).Port
	rules := fmt.Sprintf(`table inet gh {
  chain out {
    type nat hook output priority -100;
    ip daddr { 198.51.100.0/24, 203.0.113.0/24, 10.9.9.0/24 } tcp dport 80 redirect to :%d
    ip daddr { 198.51.100.0/24, 203.0.113.0/24, 10.9.9.0/24 } tcp dport 443 redirect to :%d
    # (also Gatehouse's own connections: the "redirect loop" case)
    ip6 daddr 2001:db8:d0::/48 tcp dport 80 redirect to :%d
  }
}
`, hp, sp, hp)
	f := t.TempDir() + "/rules.nft"
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	sh("nft", "-f", f)

	// An origin on 127.0.0.1:443, where a redirected connection's site is.
	o443 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "origin on 443")
	}))
	ln443, err := net.Listen("tcp", "127.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	o443.Listener = ln443
	o443.StartTLS()
	defer o443.Close()

	send := func(t *testing.T, addr, req string) (*http.Response, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	_, oport, _ := net.SplitHostPort(te.origin.Listener.Addr().String())
	site := "site.test:" + oport

	t.Run("allowed", func(t *testing.T) {
		resp, body := send(t, "203.0.113.10:80", "GET /r HTTP/1.1\r\nHost: "+site+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusOK || len(body) != 1024 {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	})
	t.Run("original destination read (HTTP/1.0 without Host)", func(t *testing.T) {
		resp, body := send(t, "10.9.9.9:80", "GET /intranet HTTP/1.0\r\n\r\n")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "10.9.9.9") {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Reason == "internal-address" })
		if ev.Entry != "10.9.9.9:80" || ev.URL != "http://10.9.9.9:80/intranet" {
			t.Errorf("event %+v", ev)
		}
	})
	for _, dst := range []string{"198.51.100.7:80", "[2001:db8:d0::7]:80"} {
		t.Run("Host spoof to "+dst, func(t *testing.T) {
			hits := te.hits.Load()
			resp, _ := send(t, dst, "GET /spoof HTTP/1.1\r\nHost: "+site+"\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("an allowed Host on a connection to a blocked address: %d", resp.StatusCode)
			}
			ref := resp.Header.Get("X-Gatehouse-Ref")
			ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.Ref == ref })
			if !ev.Bypass || ev.Category != "doh" || ev.Name != "site.test" {
				t.Errorf("event %+v", ev)
			}
			if te.hits.Load() != hits {
				t.Error("the allowed site was fetched for a connection to a blocked address")
			}
		})
	}
	t.Run("TLS with SNI", func(t *testing.T) {
		c, err := tls.Dial("tcp", "203.0.113.10:443", &tls.Config{ServerName: "example.com", RootCAs: o443.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !strings.Contains(string(b), "origin on 443") {
			t.Fatalf("got %q", b)
		}
	})
	t.Run("TLS SNI spoof", func(t *testing.T) {
		// The group decrypts blocks: the block page, with the school's leaf.
		c, err := tls.Dial("tcp", "198.51.100.7:443", &tls.Config{ServerName: "example.com", RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.ConnectionState().PeerCertificates[0].Issuer.CommonName != "Test Academy web filter CA" {
			t.Fatal("an allowed server name on a connection to a blocked address reached a site")
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%v %v", resp, err)
		}
		te.sink.waitEvent(t, func(ev reports.Event) bool {
			return ev.Source == "connect" && ev.Name == "example.com" && ev.Bypass && ev.Category == "doh"
		})
	})
	t.Run("TLS without SNI gets the block page", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get("https://203.0.113.10/page")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "203.0.113.10") {
			t.Fatalf("%d\n%s", resp.StatusCode, b)
		}
		ev := te.sink.waitEvent(t, func(ev reports.Event) bool { return ev.URL == "https://203.0.113.10/page" })
		if !ev.Bypass || ev.Action != "block" {
			t.Errorf("event %+v", ev)
		}
	})
	t.Run("redirect loop", func(t *testing.T) {
		// A site whose address the firewall redirects too: the proxy's own
		// connection comes back to it, and is refused there, once.
		te.res.mu.Lock()
		te.res.names["loop.test"] = []netip.Addr{netip.MustParseAddr("203.0.113.20")}
		te.res.mu.Unlock()
		c, err := tls.Dial("tcp", "203.0.113.10:443", &tls.Config{ServerName: "loop.test", InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Fatal("a looping connection completed a handshake")
		}
		if n := te.res.count("loop.test"); n != 1 {
			t.Errorf("loop.test looked up %d times, want 1 (the loop was not stopped)", n)
		}
		if n := testutil.ToFloat64(te.s.metrics.refused.WithLabelValues("loop")); n != 1 {
			t.Errorf("%v loops refused, want 1", n)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = te.s.Shutdown(ctx)
}
