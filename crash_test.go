package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/gatehouse-filter/gatehouse/reports"
)

// freePorts returns a port free for UDP and TCP on 127.0.0.1, and two more
// free for TCP.
func freePorts(t *testing.T) (dns, proxy, admin string) {
	t.Helper()
	for {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		l2, _ := net.Listen("tcp", "127.0.0.1:0")
		l3, _ := net.Listen("tcp", "127.0.0.1:0")
		dns, proxy, admin = pc.LocalAddr().String(), l2.Addr().String(), l3.Addr().String()
		pc.Close()
		ln.Close()
		l2.Close()
		l3.Close()
		return
	}
}

// answers records the block answers a client received.
type answers struct {
	mu    sync.Mutex
	times map[string][]time.Time // name or ref → when each answer arrived
}

func (a *answers) add(k string) {
	a.mu.Lock()
	a.times[k] = append(a.times[k], time.Now())
	a.mu.Unlock()
}

func (a *answers) snapshot() map[string][]time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string][]time.Time, len(a.times))
	for k, v := range a.times {
		out[k] = append([]time.Time(nil), v...)
	}
	return out
}

// TestSIGKILLKeepsAnsweredBlocks runs `gatehouse serve` as a child process,
// streams blocked DNS queries (UDP and TCP) and blocked proxy requests at
// it, recording every block answer the clients received, and kills it with
// SIGKILL mid-stream. After a restart the store holds an event for every
// answered block (each exactly once), and the repeat counts of two names
// asked over and over are complete up to one second before the kill.
func TestSIGKILLKeepsAnsweredBlocks(t *testing.T) {
	if cfg := os.Getenv("GATEHOUSE_SERVE_CHILD"); cfg != "" {
		os.Exit(run([]string{"serve", "--config", cfg}, os.Stdout, os.Stderr))
	}
	if testing.Short() {
		t.Skip("runs gatehouse serve as a child process")
	}
	dnsAddr, proxyAddr, adminAddr := freePorts(t)
	path, dir := writeConfig(t, `
database: {{dir}}/gatehouse.db
log: {level: warn}
admin: {listen: "`+adminAddr+`"}
proxy: {listen: "`+proxyAddr+`"}
dns:
  listen: ["`+dnsAddr+`"]
  upstreams: ["127.0.0.1:9"]
  rate_limit: {qps: 0}
lists:
  - {name: adult, path: "{{dir}}/adult.txt", category: pornography}
groups:
  students:
    networks: [127.0.0.0/8]
    block: [pornography]
`, map[string]string{"adult.txt": "porn.example\n"})

	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLKeepsAnsweredBlocks$")
		cmd.Env = append(os.Environ(), "GATEHOUSE_SERVE_CHILD="+path)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Ready once it blocks a name over DNS and the proxy takes connections.
		c := &mdns.Client{Timeout: 200 * time.Millisecond}
		for i := 0; ; i++ {
			m := new(mdns.Msg)
			m.SetQuestion("ready.porn.example.", mdns.TypeA)
			r, _, err := c.Exchange(m, dnsAddr)
			if err == nil && r.Rcode == mdns.RcodeNameError {
				if pc, err := net.Dial("tcp", proxyAddr); err == nil {
					pc.Close()
					return cmd
				}
			}
			if i > 600 {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("gatehouse serve never became ready")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cmd := start()
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	var stop atomic.Bool
	var wg sync.WaitGroup
	dnsGot := &answers{times: map[string][]time.Time{}}
	proxyGot := &answers{times: map[string][]time.Time{}}
	var dnsSent, proxySent, repeatsSent, proxyRepeatsSent atomic.Int64
	go1 := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	askLoop := func(netw, prefix string, repeat bool) {
		c := &mdns.Client{Net: netw, Timeout: 300 * time.Millisecond}
		var conn *mdns.Conn
		for i := 0; !stop.Load(); i++ {
			name := fmt.Sprintf("%s-%d.porn.example", prefix, i)
			if repeat {
				name = prefix + ".porn.example"
			}
			m := new(mdns.Msg)
			m.SetQuestion(name+".", mdns.TypeA)
			var r *mdns.Msg
			var err error
			if netw == "tcp" {
				if conn == nil {
					if conn, err = c.Dial(dnsAddr); err != nil {
						time.Sleep(10 * time.Millisecond)
						continue
					}
				}
				r, _, err = c.ExchangeWithConn(m, conn)
				if err != nil {
					conn.Close()
					conn = nil
				}
			} else {
				r, _, err = c.Exchange(m, dnsAddr)
			}
			if repeat {
				repeatsSent.Add(1)
			} else {
				dnsSent.Add(1)
			}
			if err == nil && r.Rcode == mdns.RcodeNameError && r.Id == m.Id {
				dnsGot.add(name)
			}
		}
		if conn != nil {
			conn.Close()
		}
	}
	getLoop := func(prefix string, repeat bool) {
		pu, _ := url.Parse("http://" + proxyAddr)
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: time.Second}
		defer hc.CloseIdleConnections()
		for i := 0; !stop.Load(); i++ {
			u := fmt.Sprintf("http://porn.example/%s-%d", prefix, i)
			if repeat {
				u = "http://porn.example/" + prefix
				proxyRepeatsSent.Add(1)
			} else {
				proxySent.Add(1)
			}
			resp, err := hc.Get(u)
			if err != nil {
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				continue
			}
			if repeat {
				proxyGot.add(prefix)
			} else if ref := resp.Header.Get("X-Gatehouse-Ref"); ref != "" {
				proxyGot.add(ref)
			}
		}
	}
	for g := range 3 {
		go1(func() { askLoop("udp", fmt.Sprintf("u%d", g), false) })
	}
	go1(func() { askLoop("tcp", "t", false) })
	go1(func() { askLoop("udp", "again", true) })
	for g := range 2 {
		go1(func() { getLoop(fmt.Sprintf("p%d", g), false) })
	}
	go1(func() { getLoop("again", true) })

	// Kill once enough has been answered, and the repeats have run long
	// enough for part of their count to be older than the one-second bound.
	began := time.Now()
	for {
		d, p := dnsGot.snapshot(), proxyGot.snapshot()
		if len(d) >= 1500 && len(p) >= 200 && len(d["again.porn.example"]) > 0 && len(p["again"]) > 0 &&
			time.Since(d["again.porn.example"][0]) > 3*time.Second && time.Since(p["again"][0]) > 3*time.Second {
			break
		}
		if time.Since(began) > 3*time.Minute {
			t.Fatalf("not enough answers: %d DNS names, %d proxy pages", len(d), len(p))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killAt := time.Now()
	killed = true
	cmd.Wait()
	stop.Store(true)
	wg.Wait()

	// Restart (spill files, if any, are replayed), then stop cleanly.
	cmd = start()
	killed = false
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	killed = true

	st, err := reports.Open(filepath.Join(dir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored := map[string]int{} // name or ref → SUM(count)
	rows, err := st.DB().Query(`SELECT name, url, ref, count FROM events WHERE kind = 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, u, ref string
		var n int
		if err := rows.Scan(&name, &u, &ref, &n); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(u, "/again"):
			stored["again"] += n
		case ref != "":
			stored[ref] += n
		case u == "":
			stored[name] += n
		}
	}
	rows.Close()

	d, p := dnsGot.snapshot(), proxyGot.snapshot()
	cut := killAt.Add(-time.Second)
	before := func(ts []time.Time) (n int) {
		for _, at := range ts {
			if at.Before(cut) {
				n++
			}
		}
		return n
	}
	missing := 0
	for name, ts := range d {
		if name == "again.porn.example" {
			continue
		}
		if stored[name] != len(ts) {
			missing++
			if missing <= 5 {
				t.Errorf("DNS %s: answered %d times, stored %d", name, len(ts), stored[name])
			}
		}
	}
	for ref := range p {
		if ref == "again" {
			continue
		}
		if stored[ref] != 1 {
			missing++
			if missing <= 10 {
				t.Errorf("proxy block page %s: stored %d times", ref, stored[ref])
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d answered blocks not stored exactly once", missing)
	}
	if got, want, sent := stored["again.porn.example"], before(d["again.porn.example"]), int(repeatsSent.Load()); got < want || got > sent {
		t.Errorf("DNS repeats: stored %d, want at least the %d answered a second before the kill (and at most %d sent)", got, want, sent)
	}
	if got, want, sent := stored["again"], before(p["again"]), int(proxyRepeatsSent.Load()); got < want || got > sent {
		t.Errorf("proxy repeats: stored %d, want at least the %d answered a second before the kill (and at most %d sent)", got, want, sent)
	}
	t.Logf("answered before SIGKILL: %d DNS names (%d sent), %d proxy pages (%d sent); repeats answered DNS %d / proxy %d, stored %d / %d",
		len(d)-1, dnsSent.Load(), len(p)-1, proxySent.Load(), len(d["again.porn.example"]), len(p["again"]), stored["again.porn.example"], stored["again"])
}
