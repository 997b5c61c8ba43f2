//go:build !linux

package dns

import (
	"errors"
	"net"
	"syscall"
)

const pktinfoSpace = 64

// enablePktinfo is Linux-only here; elsewhere a wildcard UDP address is
// served by miekg/dns's own server, which handles it.
func enablePktinfo(*net.UDPConn) error { return errors.New("no IP_PKTINFO support") }

func replyPktinfo(_, _ []byte) []byte { return nil }

const oobSpace = pktinfoSpace

// reusePortSupported: one socket per address here (see udp_linux.go).
const reusePortSupported = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }

func enableTimestamp(*net.UDPConn) {}

func rxTime([]byte) int64 { return 0 }

// blockingSupported: UDP goes through Go's poller here.
const blockingSupported = false

func listenBlockingUDP(*net.UDPConn, bool) (udpConn, error) {
	return nil, errors.New("blocking UDP sockets are Linux-only here")
}
