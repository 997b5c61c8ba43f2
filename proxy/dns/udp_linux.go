package dns

import (
	"encoding/binary"
	"net"
	"syscall"
)

// reusePortSupported: several sockets can share an address and port,
// the kernel spreading datagrams over them (SO_REUSEPORT, Linux 3.9).
const reusePortSupported = true

// reusePort sets SO_REUSEPORT on a socket before it is bound. Only
// sockets of the same user can join the group.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	}); err != nil {
		return err
	}
	return serr
}

// soReusePort is SO_REUSEPORT (syscall does not name it).
const soReusePort = 0xf

// pktinfoSpace holds an IP_PKTINFO or IPV6_PKTINFO control message.
const pktinfoSpace = 64

// oobSpace holds a datagram's control messages: its destination address
// and its receive time (SO_TIMESTAMPNS).
const oobSpace = 128

// enableTimestamp asks the kernel for each datagram's receive time, so
// that the time a query waited in the socket can be measured.
func enableTimestamp(conn *net.UDPConn) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
}

// rxTime is the receive time in a datagram's control messages (unix
// nanoseconds), or 0.
func rxTime(oob []byte) int64 {
	for len(oob) >= syscall.SizeofCmsghdr {
		l, level, typ, data := cmsg(oob)
		if l == 0 {
			return 0
		}
		if level == syscall.SOL_SOCKET && typ == syscall.SO_TIMESTAMPNS && len(data) >= 16 {
			return int64(binary.NativeEndian.Uint64(data))*1e9 + int64(binary.NativeEndian.Uint64(data[8:]))
		}
		next := syscall.CmsgSpace(l - syscall.CmsgLen(0))
		if next >= len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

// cmsg splits off the control message at the start of oob: its length
// (0: malformed), level, type and data.
func cmsg(oob []byte) (l int, level, typ int32, data []byte) {
	if syscall.SizeofCmsghdr == 16 {
		l = int(binary.NativeEndian.Uint64(oob))
	} else {
		l = int(binary.NativeEndian.Uint32(oob))
	}
	if l < syscall.SizeofCmsghdr || l > len(oob) {
		return 0, 0, 0, nil
	}
	level = int32(binary.NativeEndian.Uint32(oob[syscall.SizeofCmsghdr-8:]))
	typ = int32(binary.NativeEndian.Uint32(oob[syscall.SizeofCmsghdr-4:]))
	return l, level, typ, oob[syscall.CmsgLen(0):l]
}

// enablePktinfo asks the kernel for each datagram's destination address
// (IP_PKTINFO, or IPV6_RECVPKTINFO on an IPv6 socket, which covers IPv4
// clients of a dual-stack socket too).
func enablePktinfo(conn *net.UDPConn) error {
	v4 := false
	if la, _ := conn.LocalAddr().(*net.UDPAddr); la != nil && la.IP.To4() != nil {
		v4 = true
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v4 {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_PKTINFO, 1)
		} else {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_RECVPKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// replyPktinfo turns the control messages of a received datagram into the
// one that sends the reply from the address the query was sent to; nil if
// there is none.
func replyPktinfo(oob, dst []byte) []byte {
	for len(oob) >= syscall.SizeofCmsghdr {
		l, level, typ, data := cmsg(oob)
		if l == 0 {
			return nil
		}
		switch {
		case level == syscall.IPPROTO_IP && typ == syscall.IP_PKTINFO && len(data) >= syscall.SizeofInet4Pktinfo:
			// in_pktinfo{ifindex, spec_dst, addr}: send from addr.
			var p [syscall.SizeofInet4Pktinfo]byte
			copy(p[4:8], data[8:12])
			return appendCmsg(dst, syscall.IPPROTO_IP, syscall.IP_PKTINFO, p[:])
		case level == syscall.IPPROTO_IPV6 && typ == syscall.IPV6_PKTINFO && len(data) >= syscall.SizeofInet6Pktinfo:
			// in6_pktinfo{addr, ifindex}: send from addr on the same interface.
			return appendCmsg(dst, syscall.IPPROTO_IPV6, syscall.IPV6_PKTINFO, data[:syscall.SizeofInet6Pktinfo])
		}
		if next := syscall.CmsgSpace(l - syscall.CmsgLen(0)); next < len(oob) {
			oob = oob[next:]
		} else {
			return nil
		}
	}
	return nil
}

func appendCmsg(dst []byte, level, typ int32, data []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, syscall.CmsgSpace(len(data)))...)
	h := dst[start:]
	if syscall.SizeofCmsghdr == 16 {
		binary.NativeEndian.PutUint64(h, uint64(syscall.CmsgLen(len(data))))
	} else {
		binary.NativeEndian.PutUint32(h, uint32(syscall.CmsgLen(len(data))))
	}
	binary.NativeEndian.PutUint32(h[syscall.SizeofCmsghdr-8:], uint32(level))
	binary.NativeEndian.PutUint32(h[syscall.SizeofCmsghdr-4:], uint32(typ))
	copy(h[syscall.CmsgLen(0):], data)
	return dst
}
