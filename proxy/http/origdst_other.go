//go:build !linux

package httpproxy

import (
	"net"
	"net/netip"
)

// originalDst is Linux-only (netfilter's SO_ORIGINAL_DST). Elsewhere every
// connection counts as not redirected: the site is named by the Host header
// or the ClientHello's server name alone.
func originalDst(*net.TCPConn) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
