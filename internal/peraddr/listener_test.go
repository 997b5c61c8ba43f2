package peraddr

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestLimitListener: one address holds at most n connections;
// the next is closed at once, another address still gets in, and a closed
// connection makes room.
func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(raw, 3)
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func(from string) net.Conn {
		t.Helper()
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}).Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closedByServer := func(c net.Conn) bool {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	var held []net.Conn
	for range 3 {
		dial("127.0.0.40")
		held = append(held, <-accepted)
	}
	if c := dial("127.0.0.40"); !closedByServer(c) {
		t.Fatal("a fourth connection from one address was kept")
	}
	dial("127.0.0.41")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("another address was not accepted")
	}
	held[0].Close()
	dial("127.0.0.40")
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a closed connection made no room")
	}
}
