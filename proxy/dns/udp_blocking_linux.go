package dns

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// blockingUDP is a UDP socket read and written with blocking system calls
// on the worker's own thread, outside Go's network poller. A datagram
// wakes one thread blocked in recvmsg on the socket directly; through the
// poller it wakes the thread in epoll_wait, which then wakes another to
// run the reading goroutine. On a virtual machine where a context switch
// is dear that is most of the CPU a cached answer costs (see the package
// README).
type blockingUDP struct {
	fd     int
	v6     bool // AF_INET6 (IPv4 peers as mapped addresses)
	local  net.Addr
	mu     sync.RWMutex // calls hold it for reading; Close for writing, to close fd
	closed atomic.Bool
}

// blockingSupported: UDP is served with blocking sockets (Server.udpBlocking).
const blockingSupported = true

// listenBlockingUDP opens a blocking socket joined to conn's address (conn
// must have SO_REUSEPORT): same family, address and port, same dual-stack
// setting, with receive times and, if pktinfo, destination addresses.
func listenBlockingUDP(conn *net.UDPConn, pktinfo bool) (*blockingUDP, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var family, v6only int
	var sa syscall.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if family, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN); serr != nil {
			return
		}
		if family == syscall.AF_INET6 {
			if v6only, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY); serr != nil {
				return
			}
		}
		sa, serr = syscall.Getsockname(int(fd))
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, serr
	}
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	// One socket now queues what the poller layout's 2 × GOMAXPROCS queued:
	// ask for 1 MiB of receive buffer (the kernel caps it at
	// net.core.rmem_max, often 208 KiB, the default).
	opts := [][3]int{{syscall.SOL_SOCKET, soReusePort, 1}, {syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1},
		{syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1 << 20}}
	if family == syscall.AF_INET6 {
		opts = append(opts, [3]int{syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, v6only})
		if pktinfo {
			opts = append(opts, [3]int{syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1})
		}
	} else if pktinfo {
		opts = append(opts, [3]int{syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1})
	}
	for _, o := range opts {
		if err := syscall.SetsockoptInt(fd, o[0], o[1], o[2]); err != nil {
			syscall.Close(fd)
			return nil, err
		}
	}
	// A reader blocked in recvmsg wakes at least once a second, so that a
	// close is seen even if shutdown did not wake it.
	tv := syscall.Timeval{Sec: 1}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &blockingUDP{fd: fd, v6: family == syscall.AF_INET6, local: conn.LocalAddr()}, nil
}

func (c *blockingUDP) LocalAddr() net.Addr { return c.local }

// Close wakes the readers (shutdown), then closes the socket once no call
// is in it.
func (c *blockingUDP) Close() error {
	if c.closed.Swap(true) {
		return net.ErrClosed
	}
	_ = syscall.Shutdown(c.fd, syscall.SHUT_RDWR) // ENOTCONN on UDP, but readers wake
	c.mu.Lock()
	defer c.mu.Unlock()
	return syscall.Close(c.fd)
}

// ReadMsgUDPAddrPort reads a datagram, blocking the thread until one comes
// (or a second passes: then it returns EAGAIN, and the caller reads again).
func (c *blockingUDP) ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return 0, 0, 0, addr, net.ErrClosed
	}
	var rsa syscall.RawSockaddrAny
	var iov syscall.Iovec
	if len(b) > 0 {
		iov.Base = &b[0]
		iov.SetLen(len(b))
	}
	msg := syscall.Msghdr{Name: (*byte)(unsafe.Pointer(&rsa)), Namelen: syscall.SizeofSockaddrAny, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := syscall.Syscall(syscall.SYS_RECVMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, 0, 0, addr, e
	}
	if c.closed.Load() {
		return 0, 0, 0, addr, net.ErrClosed
	}
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		addr = netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port(p.Port))
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		a := netip.AddrFrom16(p.Addr)
		if p.Scope_id != 0 { // a link-local peer: the interface, as a number
			a = a.WithZone(strconv.FormatUint(uint64(p.Scope_id), 10))
		}
		addr = netip.AddrPortFrom(a, port(p.Port))
	default:
		return 0, 0, 0, addr, errors.New("datagram from an address of unknown family")
	}
	return int(r), int(msg.Controllen), int(msg.Flags), addr, nil
}

// port turns a sockaddr's network-order port into a number.
func port(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// WriteMsgUDPAddrPort sends b to addr with the control messages oob.
func (c *blockingUDP) WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return 0, 0, net.ErrClosed
	}
	var rsa syscall.RawSockaddrAny
	var namelen uint32
	a := addr.Addr()
	switch {
	case c.v6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		p.Family = syscall.AF_INET6
		p.Addr = a.As16() // an IPv4 peer as its mapped address
		setPort(&p.Port, addr.Port())
		if z := a.Zone(); z != "" {
			p.Scope_id = zoneIndex(z)
		}
		namelen = syscall.SizeofSockaddrInet6
	case a.Unmap().Is4():
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		p.Family = syscall.AF_INET
		p.Addr = a.Unmap().As4()
		setPort(&p.Port, addr.Port())
		namelen = syscall.SizeofSockaddrInet4
	default:
		return 0, 0, errors.New("IPv6 peer on an IPv4 socket")
	}
	var iov syscall.Iovec
	if len(b) > 0 {
		iov.Base = &b[0]
		iov.SetLen(len(b))
	}
	msg := syscall.Msghdr{Name: (*byte)(unsafe.Pointer(&rsa)), Namelen: namelen, Iov: &iov, Iovlen: 1}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, e := syscall.Syscall(syscall.SYS_SENDMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, 0, e
	}
	return int(r), len(oob), nil
}

// zoneIndex is the interface index of an IPv6 zone, a number or an
// interface name (0: unknown).
func zoneIndex(z string) uint32 {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(z); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

func setPort(dst *uint16, p uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(p>>8), byte(p)
}
