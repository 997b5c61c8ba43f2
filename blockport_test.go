package main

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// fixedFreePort is a loopback TCP port free now, for a listener the test
// makes serve bind by number (the HTTPS block page's): chosen below the
// kernel's ephemeral range (32768 and up on Linux), so that no listener
// on port 0, in this process or another test's, is handed it between this
// check and the bind (a port taken from the ephemeral range once went to
// the plain-HTTP block page's own port-0 listener, and the test's TLS
// client met that).
func fixedFreePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// useBlockPagePort makes serve, for this test, bind the plain-HTTP block
// page on a fixed free port (port 80 needs privileges the tests may not
// have) and returns it.
func useBlockPagePort(t *testing.T) int {
	t.Helper()
	port, old := fixedFreePort(t), blockPagePort
	blockPagePort = port
	t.Cleanup(func() { blockPagePort = old })
	return port
}

// useBlockPageTLSPort makes serve, for this test, bind the HTTPS block
// page on a fixed free port (and the plain-HTTP one on any) and returns
// it.
func useBlockPageTLSPort(t *testing.T) int {
	t.Helper()
	port, old, oldHTTP := fixedFreePort(t), blockPageTLSPort, blockPagePort
	blockPageTLSPort, blockPagePort = port, 0
	t.Cleanup(func() { blockPageTLSPort, blockPagePort = old, oldHTTP })
	return port
}
