package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// blockingPair is a blocking socket on a loopback address (family per
// addr) and a client connected to it.
func blockingPair(t *testing.T, addr string, pktinfo bool) (*blockingUDP, *net.UDPConn) {
	t.Helper()
	pc, err := (&net.ListenConfig{Control: reusePort}).ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		t.Skip(err)
	}
	bc, err := listenBlockingUDP(pc.(*net.UDPConn), pktinfo)
	pc.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close() })
	to := bc.LocalAddr().(*net.UDPAddr)
	if to.IP.IsUnspecified() {
		to = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to.Port}
	}
	client, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return bc, client
}

// TestBlockingUDPRoundTrip: a blocking socket reads a datagram with its
// sender, receive time and (on a wildcard address) destination, and
// answers it, without allocating; on IPv4, IPv6 and a dual-stack wildcard
// socket with an IPv4 client.
func TestBlockingUDPRoundTrip(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0", "[::]:0"} {
		t.Run(addr, func(t *testing.T) {
			pktinfo := addr == "[::]:0"
			bc, client := blockingPair(t, addr, pktinfo)
			buf, oob, reply, pbuf := make([]byte, 512), make([]byte, oobSpace), make([]byte, 512), make([]byte, 0, pktinfoSpace)
			var fail error
			allocs := testing.AllocsPerRun(200, func() {
				if fail != nil {
					return
				}
				if _, err := client.Write([]byte("query")); err != nil {
					fail = err
					return
				}
				n, oobn, _, peer, err := bc.ReadMsgUDPAddrPort(buf, oob)
				if err != nil {
					fail = err
					return
				}
				want := client.LocalAddr().(*net.UDPAddr).AddrPort()
				if string(buf[:n]) != "query" || peer.Addr().Unmap() != want.Addr().Unmap() || peer.Port() != want.Port() {
					fail = errors.New("read " + string(buf[:n]) + " from " + peer.String() + ", want query from " + want.String())
					return
				}
				if rxTime(oob[:oobn]) == 0 {
					fail = errors.New("no receive time")
					return
				}
				var out []byte
				if pktinfo {
					if out = replyPktinfo(oob[:oobn], pbuf[:0]); out == nil {
						fail = errors.New("no destination address")
						return
					}
				}
				if _, _, err := bc.WriteMsgUDPAddrPort([]byte("answer"), out, peer); err != nil {
					fail = err
					return
				}
				if n, err := client.Read(reply); err != nil || string(reply[:n]) != "answer" {
					fail = errors.New("client read " + string(reply[:n]))
				}
			})
			if fail != nil {
				t.Fatal(fail)
			}
			if allocs > 0 && !raceOn { // (the race detector's own allocations)
				t.Errorf("%.1f allocations a round trip, want none", allocs)
			}
		})
	}
}

// TestBlockingUDPClose: Close wakes a reader blocked in recvmsg, which
// returns net.ErrClosed, as do later reads and writes (a held answer sent
// after shutdown never reaches whatever socket reuses the number), and
// the port is free again.
func TestBlockingUDPClose(t *testing.T) {
	bc, _ := blockingPair(t, "127.0.0.1:0", false)
	done := make(chan error, 1)
	go func() {
		buf, oob := make([]byte, 512), make([]byte, oobSpace)
		for {
			_, _, _, _, err := bc.ReadMsgUDPAddrPort(buf, oob)
			if err != nil && !errors.Is(err, syscall.EAGAIN) {
				done <- err
				return
			}
		}
	}()
	if err := bc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked read: %v, want net.ErrClosed", err)
	}
	if _, _, err := bc.WriteMsgUDPAddrPort([]byte("x"), nil, netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if err := bc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	c, err := net.ListenPacket("udp", bc.LocalAddr().String())
	if err != nil {
		t.Fatalf("port still held after close: %v", err)
	}
	c.Close()
}

// TestZoneIndex: an IPv6 zone, as read (a number) or as written by hand
// (an interface name), gives the interface index a reply is sent on.
func TestZoneIndex(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip(err)
	}
	for z, want := range map[string]uint32{"7": 7, "lo": uint32(lo.Index), "no-such-interface": 0} {
		if got := zoneIndex(z); got != want {
			t.Errorf("zoneIndex(%q) = %d, want %d", z, got, want)
		}
	}
}

// TestSpareReadersPark: of 4 readers with a floor of 2, the spares park
// when datagrams have waited long in the socket, and come back under a
// light load or when the socket is idle; every datagram is answered, and
// close ends parked readers.
func TestSpareReadersPark(t *testing.T) {
	ts := startServer(t, nil)
	query := []byte{0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0} // no question: FORMERR
	answers := func(t *testing.T, client *net.UDPConn, n int) {
		t.Helper()
		reply := make([]byte, 512)
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range n {
			k, err := client.Read(reply)
			if err != nil {
				t.Fatalf("answer %d of %d: %v", i+1, n, err)
			}
			if k < 12 || reply[0] != 0x12 || reply[3]&0xF != 1 {
				t.Fatalf("answer %x, want FORMERR", reply[:k])
			}
		}
	}
	// parked is a listener whose spares have parked: 100 queries wait in
	// its socket before its readers start.
	parked := func(t *testing.T) (*udpListener, *net.UDPConn) {
		t.Helper()
		bc, client := blockingPair(t, "127.0.0.1:0", false)
		for range 100 {
			if _, err := client.Write(query); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond) // each waits over parkAbove
		l := ts.Server.readBlocking(bc, false, 4, 2)
		t.Cleanup(l.close)
		answers(t, client, 100)
		for deadline := time.Now().Add(30 * time.Second); l.parked.Load() != 2; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d readers parked, want 2 (4 readers, floor 2; %d readers, %d workers)", l.parked.Load(), l.readers.Load(), l.workers.Load())
			}
		}
		return l, client
	}

	t.Run("light load wakes", func(t *testing.T) {
		l, client := parked(t)
		for i := 0; l.parked.Load() > 0; i++ {
			if i == 5000 {
				t.Fatalf("%d readers still parked after %d queries one at a time", l.parked.Load(), i)
			}
			if _, err := client.Write(query); err != nil {
				t.Fatal(err)
			}
			answers(t, client, 1)
		}
		if w := l.workers.Load(); w != 4 {
			t.Errorf("%d workers, want 4", w)
		}
	})
	t.Run("a query waiting on an upstream", func(t *testing.T) {
		// Its worker leaves the readers and a replacement takes its place,
		// so the spares parked stay within readers - floor.
		l, _ := parked(t)
		hold := make(chan struct{})
		ts.up.holdSlow(hold)
		slow := make(chan error, 1)
		go func() {
			m := new(mdns.Msg)
			m.SetQuestion("slow-spare.example.", mdns.TypeA)
			r, _, err := (&mdns.Client{Timeout: 60 * time.Second}).Exchange(m, l.conn.LocalAddr().String())
			if err == nil && r.Rcode != mdns.RcodeSuccess {
				err = errors.New(mdns.RcodeToString[r.Rcode])
			}
			slow <- err
		}()
		ts.up.waitHeld(t, 1, hold)
		r, w, p := l.readers.Load(), l.workers.Load(), l.parked.Load()
		close(hold)
		if err := <-slow; err != nil {
			t.Fatalf("the held query: %v", err)
		}
		if r != 4 || w != 5 || p > 2 {
			t.Errorf("while one waited: %d readers, %d workers, %d parked; want 4, 5, at most 2", r, w, p)
		}
		// The one that waited retires, kept to replace the next.
		for deadline := time.Now().Add(30 * time.Second); l.workers.Load() != 5 || l.readers.Load() != 4 || l.retired.Load() != 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after: %d workers, %d readers, %d retired; want 5, 4, 1", l.workers.Load(), l.readers.Load(), l.retired.Load())
			}
		}
	})
	t.Run("idle wakes", func(t *testing.T) {
		l, _ := parked(t)
		// A read times out after a second with no datagram.
		for deadline := time.Now().Add(30 * time.Second); l.parked.Load() > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d readers still parked after 30 s idle", l.parked.Load())
			}
		}
	})
	t.Run("close ends parked readers", func(t *testing.T) {
		l, _ := parked(t)
		l.close()
		if w := l.workers.Load(); w != 0 {
			t.Errorf("%d workers after close, want 0", w)
		}
	})
}
