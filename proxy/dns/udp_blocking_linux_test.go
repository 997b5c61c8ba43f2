package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
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
