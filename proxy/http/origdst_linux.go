//go:build linux

package httpproxy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"
)

// Netfilter's socket options for the destination a connection had before
// a REDIRECT or DNAT rule changed it (linux/netfilter_ipv4.h SO_ORIGINAL_DST,
// linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST).
const (
	soOriginalDst     = 80
	ip6tSoOriginalDst = 80
)

// originalDst returns the destination the client sent c to, when the
// kernel's connection tracking knows one (the connection was redirected or
// DNATed on this machine); ok is false otherwise.
func originalDst(c *net.TCPConn) (netip.AddrPort, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	local := addrOf(c.LocalAddr())
	var ap netip.AddrPort
	var ok bool
	_ = rc.Control(func(fd uintptr) {
		if local.Is4() { // also an IPv4 client on a dual-stack socket
			var sa syscall.RawSockaddrInet4
			if getsockopt(fd, syscall.SOL_IP, soOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)) && sa.Family == syscall.AF_INET {
				ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
				ok = true
			}
			return
		}
		var sa syscall.RawSockaddrInet6
		if getsockopt(fd, syscall.SOL_IPV6, ip6tSoOriginalDst, unsafe.Pointer(&sa), unsafe.Sizeof(sa)) && sa.Family == syscall.AF_INET6 {
			ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
			ok = true
		}
	})
	return ap, ok
}

func getsockopt(fd uintptr, level, name int, p unsafe.Pointer, size uintptr) bool {
	n := uint32(size)
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, uintptr(level), uintptr(name), uintptr(p), uintptr(unsafe.Pointer(&n)), 0)
	return errno == 0
}

// ntohs reads a port kept in network byte order in a uint16 field.
func ntohs(p uint16) uint16 {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return binary.BigEndian.Uint16(b[:])
}
