package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// udpListener serves one UDP socket. miekg/dns's server starts a goroutine
// per datagram, allocates for every read (address, control message,
// buffer) and grows each new goroutine's stack while unpacking; here a few
// long-lived workers each read a datagram, answer it and read the next.
//
// A worker about to wait on an upstream (a cache miss) first starts a new
// worker in its place and exits once it has answered, so slow upstreams
// never stop the socket being read, and cache hits, blocks and other local
// answers never start a goroutine. At most Options.MaxWaitingPerSocket
// workers wait so per socket (and Options.MaxWaiting queries in all, see
// Server.startWait); a miss beyond that is answered at once (stale or
// SERVFAIL), so the socket keeps being read and the workers stay bounded.
type udpListener struct {
	s       *Server
	conn    udpConn
	pktinfo bool // wildcard address: each reply leaves from the address its query came to
	wg      sync.WaitGroup
	closed  atomic.Bool
	workers atomic.Int32 // running, readers and waiters
	waiting atomic.Int32 // detached workers waiting on an upstream

	// Spare readers of a blocking socket (park): at least floor readers
	// stay reading when the rest park (0: none park).
	floor   int32
	readers atomic.Int32 // workers not detached: reading, answering or parked
	parked  atomic.Int32
	wake    chan struct{} // unbuffered: a send reaches a parked reader or none
	done    chan struct{} // closed by close

	// Workers whose upstream wait is over wait here (retire) to replace
	// the next worker that detaches, rather than exit: a new goroutine
	// would grow its stack and make its buffers again.
	idle    chan int64 // unbuffered: the replaced worker's average wait
	retired atomic.Int32
}

// maxRetired bounds the workers kept for replace per socket; more exit.
// Under a stream of cache misses about as many wait on upstreams at once
// as the miss rate times the upstream's answer time (1,000 misses a
// second at 20 ms: 20).
const maxRetired = 32

// udpConn is a UDP socket as the workers use it: *net.UDPConn, or
// *blockingUDP on Linux.
type udpConn interface {
	ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error)
	WriteMsgUDPAddrPort(b, oob []byte, addr netip.AddrPort) (n, oobn int, err error)
	LocalAddr() net.Addr
	Close() error
}

// udpBlocking: UDP is served by workers blocked in recvmsg on one socket
// per address (blockingUDP), not through Go's network poller.
func (s *Server) udpBlocking() bool {
	return blockingSupported && !s.opts.UDPPoller && !s.opts.MiekgUDP
}

// udpSockets is how many sockets serve each UDP address (Options.UDPSockets).
func (s *Server) udpSockets() int {
	if !reusePortSupported || s.opts.MiekgUDP || s.udpBlocking() {
		return 1
	}
	if s.opts.UDPSockets > 0 {
		return s.opts.UDPSockets
	}
	return 2 * runtime.GOMAXPROCS(0)
}

// serveUDPAddr serves conn's address: on Linux with one blocking socket
// (serveBlockingUDP); else, or if that fails, through the poller with
// udpSockets sockets: conn (bound with SO_REUSEPORT when there are more)
// and the others bound to the same address and port, each read by one
// worker. A worker that reads,
// answers and reads again is never handed the socket by another (Go lets
// one goroutine at a time read a socket: with several workers on one,
// every datagram woke the next reader, twice the context switches per
// query), and the kernel queues datagrams per socket. nil, nil: the
// caller serves conn with miekg/dns's server (a wildcard address without
// IP_PKTINFO).
func (s *Server) serveUDPAddr(conn *net.UDPConn) ([]*udpListener, error) {
	if s.udpBlocking() {
		l, err := s.serveBlockingUDP(conn)
		if err == nil {
			return []*udpListener{l}, nil
		}
		s.opts.Log.Warn("dns: UDP served through Go's poller instead of blocking sockets", "addr", conn.LocalAddr().String(), "err", err)
	}
	n := s.udpSockets()
	workers := 1
	if n == 1 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	l, ok := s.serveUDP(conn, workers)
	if !ok {
		return nil, nil
	}
	ls := []*udpListener{l}
	lc := net.ListenConfig{Control: reusePort}
	for len(ls) < n {
		pc, err := lc.ListenPacket(context.Background(), "udp", conn.LocalAddr().String())
		if err == nil {
			if l, ok = s.serveUDP(pc.(*net.UDPConn), workers); !ok {
				pc.Close()
				err = errors.New("no IP_PKTINFO")
			}
		}
		if err != nil {
			for _, l := range ls {
				l.close()
			}
			return nil, fmt.Errorf("dns listener udp %s: socket %d of %d: %w", conn.LocalAddr(), len(ls)+1, n, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// serveBlockingUDP serves conn's address with a blocking socket read by
// blockingReaders workers. The socket joins conn's SO_REUSEPORT group and
// conn is closed: only a datagram that reached conn in between (while
// Start runs, before the address is announced) goes unanswered.
func (s *Server) serveBlockingUDP(conn *net.UDPConn) (*udpListener, error) {
	la, _ := conn.LocalAddr().(*net.UDPAddr)
	pktinfo := la == nil || la.IP.IsUnspecified()
	bc, err := listenBlockingUDP(conn, pktinfo)
	if err != nil {
		return nil, err
	}
	_ = conn.Close()
	return s.readBlocking(bc, pktinfo, blockingReaders(), max(2, runtime.NumCPU())), nil
}

// readBlocking starts readers workers on a blocking socket, of which those
// beyond floor are spares that park while the socket's queue stays deep
// (park).
func (s *Server) readBlocking(bc *blockingUDP, pktinfo bool, readers, floor int) *udpListener {
	l := &udpListener{s: s, conn: bc, pktinfo: pktinfo, wake: make(chan struct{}), done: make(chan struct{}), idle: make(chan int64)}
	if readers > floor {
		l.floor = int32(floor)
	}
	l.spawn(readers, 0)
	return l
}

// blockingReaders is how many workers read a blocking socket: one per P
// (GOMAXPROCS), at least 2; under serve, which adds two Ps to the CPUs,
// 4 on two cores. Two per P lowered the p99 at a fixed rate a little but
// cost a quarter of the throughput under a burst (a datagram woke a
// reader with no P to run on); see the package README.
func blockingReaders() int { return max(2, runtime.GOMAXPROCS(0)) }

// Spare readers. More readers than CPUs keep the p99 low at a steady rate
// (one whose thread is descheduled leaves others reading), but at
// saturation, when the socket always holds datagrams, every extra reader
// thread costs context switches and the monitor thread's polling (2
// readers on 2 cores answered 10–20 % more than 4). So a worker keeps an
// average of how long its datagrams waited in the socket: above parkAbove
// a spare parks (the socket stays read by at least floor workers), and a
// reader whose average falls under wakeBelow wakes one; a read that times
// out (a second with no datagram) wakes them all. At 10,000 q/s on 2
// cores 95 % of datagrams waited under 100 µs; saturated, half waited
// over 250 µs and a fifth over 1 ms.
const (
	parkAbove = 400 * time.Microsecond
	wakeBelow = 150 * time.Microsecond
	waitShift = 5 // the average moves 1/32 of the way to each datagram's wait
)

// park parks the calling worker if it is a spare: until a reader wakes it
// (true) or the listener closes (true, and l.closed is set). false: it
// would leave fewer than floor workers reading.
func (l *udpListener) park() bool {
	for {
		p := l.parked.Load()
		if l.readers.Load()-p <= l.floor {
			return false
		}
		if l.parked.CompareAndSwap(p, p+1) {
			break
		}
	}
	l.s.metrics.udpParked.Inc()
	select {
	case <-l.wake:
	case <-l.done:
	}
	l.parked.Add(-1)
	l.s.metrics.udpParked.Dec()
	return true
}

// unpark wakes one parked worker, or all; a worker between counting itself
// parked and waiting is missed, and woken by a later call.
func (l *udpListener) unpark(all bool) {
	for l.parked.Load() > 0 {
		select {
		case l.wake <- struct{}{}:
			if !all {
				return
			}
		default:
			return
		}
	}
}

// serveUDP starts workers on conn. A wildcard address needs the query's
// destination address (IP_PKTINFO); where that is not available, ok is
// false and the caller uses miekg/dns's server instead.
func (s *Server) serveUDP(conn *net.UDPConn, workers int) (l *udpListener, ok bool) {
	l = &udpListener{s: s, conn: conn, done: make(chan struct{}), idle: make(chan int64)}
	if la, _ := conn.LocalAddr().(*net.UDPAddr); la == nil || la.IP.IsUnspecified() {
		if err := enablePktinfo(conn); err != nil {
			return nil, false
		}
		l.pktinfo = true
	}
	enableTimestamp(conn)
	l.spawn(workers, 0)
	return l, true
}

// spawn starts n workers, all counted before any reads; wait is their
// average of datagrams' waits so far (a replacement inherits its
// predecessor's: from 0 it would take the queue for a short one and wake
// parked spares).
func (l *udpListener) spawn(n int, wait int64) {
	l.s.metrics.udpStarted.Add(float64(n))
	l.wg.Add(n)
	l.workers.Add(int32(n))
	l.readers.Add(int32(n))
	for range n {
		go l.worker(wait)
	}
}

// close stops the workers once they have answered what they hold.
func (l *udpListener) close() {
	if !l.closed.Swap(true) && l.done != nil {
		close(l.done) // parked workers exit
	}
	_ = l.conn.Close()
	l.wg.Wait()
}

func (l *udpListener) worker(avg int64) {
	defer l.wg.Done()
	defer l.workers.Add(-1)
	buf := make([]byte, EDNSSize)
	oob := make([]byte, oobSpace) // destination address and receive time
	w := &udpWriter{l: l, conn: l.conn, local: l.conn.LocalAddr(), avg: avg}
	defer func() {
		if !w.detached { // (detach counted it out)
			l.readers.Add(-1)
		}
	}()
	qb := &queryBuf{names: l.s.names}
	fails := 0
	for {
		n, oobn, _, peer, err := l.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if l.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				if errors.Is(err, syscall.EAGAIN) && l.floor > 0 { // a second with no datagram
					w.avg = 0
					l.unpark(true)
				}
				continue // a blocking socket's read timeout
			}
			// e.g. ICMP port unreachable from an earlier reply; back off if
			// the socket keeps failing rather than spin.
			if fails++; fails > 100 {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		fails = 0
		read := time.Now()
		if rx := rxTime(oob[:oobn]); rx != 0 {
			wait := max(read.UnixNano()-rx, 0)
			l.s.metrics.udpWait.Observe(float64(wait) / 1e9)
			w.avg += (wait - w.avg) >> waitShift
		}
		w.peer, w.oob, w.wrote, w.held = peer, nil, false, false
		if l.pktinfo {
			w.oob = replyPktinfo(oob[:oobn], w.oobBuf[:0])
		}
		l.s.servePacket(w, buf[:n], qb)
		if w.wrote && !w.held {
			l.s.metrics.udpAnswer.Observe(time.Since(read).Seconds())
		}
		if w.detached { // its replacement is already reading
			avg, ok := l.retire()
			if !ok {
				return
			}
			w.detached, w.avg = false, avg // a reader again, in a detached one's place (replace)
			continue
		}
		if l.floor > 0 {
			switch {
			case w.avg > int64(parkAbove) && l.park():
				if l.closed.Load() {
					return
				}
				w.avg = int64(wakeBelow) // woken: the queue is shorter, or the reader would not have
			case w.avg < int64(wakeBelow) && l.parked.Load() > 0:
				l.unpark(false)
			}
		}
	}
}

// servePacket parses a datagram and answers it, as miekg/dns's server
// does: responses are ignored, unparsable headers get no answer (any reply
// could be used for amplification), other malformed queries FORMERR and
// unknown opcodes NOTIMP. An ordinary query is read into qb, the worker's
// reusable request, which nothing keeps once the query is answered (a
// worker that waits on an upstream keeps it until then, and serves no
// other datagram meanwhile); qb may be nil.
func (s *Server) servePacket(w mdns.ResponseWriter, pkt []byte, qb *queryBuf) {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return
	}
	defer func() { // parsing; serve recovers the rest itself
		if v := recover(); v != nil {
			s.metrics.panics.Inc()
			s.opts.Log.Error("dns datagram panicked the parser", "client", w.RemoteAddr().String(), "panic", fmt.Sprint(v),
				"stack", string(debug.Stack()))
		}
	}()
	if qb != nil {
		if r := qb.parseQuery(pkt); r != nil {
			s.serve(w, r, "udp", nil)
			return
		}
	}
	r := new(mdns.Msg)
	if err := r.Unpack(pkt); err != nil || len(r.Question) != 1 || len(r.Answer) > 1 || len(r.Ns) > 1 || len(r.Extra) > 2 {
		opcode := int(pkt[2]>>3) & 0xF
		m := &mdns.Msg{MsgHdr: mdns.MsgHdr{Id: uint16(pkt[0])<<8 | uint16(pkt[1]), Response: true, Opcode: opcode,
			RecursionDesired: pkt[2]&1 != 0, CheckingDisabled: pkt[3]&0x10 != 0, Rcode: mdns.RcodeFormatError}}
		if opcode != mdns.OpcodeQuery && opcode != mdns.OpcodeNotify {
			m.Rcode = mdns.RcodeNotImplemented
		}
		if err == nil && opcode == mdns.OpcodeQuery && len(r.Question) == 1 {
			m.Question = r.Question
		}
		_ = w.WriteMsg(m)
		return
	}
	s.serve(w, r, "udp", nil)
}

// udpWriter answers one datagram at a time for a worker.
type udpWriter struct {
	l        *udpListener
	detached bool  // a replacement worker reads the socket; this one exits after the answer
	wrote    bool  // the datagram has been answered
	held     bool  // its answer waits for its event's commit (hold)
	avg      int64 // how long its datagrams waited in the socket, a moving average in ns (park)
	conn     udpConn
	local    net.Addr
	peer     netip.AddrPort
	oob      []byte // the reply's source address (IP_PKTINFO), or nil
	oobBuf   [pktinfoSpace]byte
	pack     []byte
}

func (w *udpWriter) peerAddr() netip.Addr { return clientAddr(w.peer.Addr()) }

// clientAddr is a peer's address as the ACL, the policy and the events
// take it: IPv4-mapped unmapped, and without a zone (the kernel gives a
// link-local peer's, fe80::1%eth0, which no prefix contains, so the
// default clients.allow refused link-local clients over UDP while TCP,
// whose peers come zoneless, served them). The reply still goes to the
// zoned address (w.peer).
func clientAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// detach is called before the worker waits on an upstream: another worker
// takes its place on the socket. It returns false, and the worker stays,
// when MaxWaitingPerSocket workers already wait.
func (w *udpWriter) detach() bool {
	if w.detached {
		return true
	}
	if w.l.waiting.Add(1) > int32(w.l.s.opts.MaxWaitingPerSocket) {
		w.l.waiting.Add(-1)
		return false
	}
	w.detached = true
	w.l.readers.Add(-1)
	if !w.l.closed.Load() {
		w.l.replace(w.avg)
	}
	return true
}

// replace puts a reader on the socket in the place of one that detached
// (avg: its average wait): a retired worker if one waits, else a new one.
func (l *udpListener) replace(avg int64) {
	l.readers.Add(1) // counted before it reads, as spawn does
	select {
	case l.idle <- avg:
	default:
		l.readers.Add(-1)
		l.spawn(1, avg)
	}
}

// retire keeps a worker whose upstream wait is over until replace needs
// it, and returns the average wait it takes over; false, and the worker
// exits, when maxRetired already wait or the listener closes.
func (l *udpListener) retire() (int64, bool) {
	if l.retired.Add(1) > maxRetired || l.closed.Load() {
		l.retired.Add(-1)
		return 0, false
	}
	defer l.retired.Add(-1)
	select {
	case avg := <-l.idle:
		return avg, true
	case <-l.done:
		return 0, false
	}
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.local }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.peer) }
func (w *udpWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, _, err := w.conn.WriteMsgUDPAddrPort(b, w.oob, w.peer)
	return n, err
}
func (w *udpWriter) WriteMsg(m *mdns.Msg) error {
	if cap(w.pack) < EDNSSize {
		w.pack = make([]byte, EDNSSize)
	}
	b, err := m.PackBuffer(w.pack[:cap(w.pack)])
	if err != nil {
		return err
	}
	if cap(b) <= mdns.MaxMsgSize {
		w.pack = b[:0]
	}
	_, err = w.Write(b)
	return err
}

// hold copies the answer b and where it goes, for the writer to send once
// its event is durable (Server.sendAfter), so the worker need not wait.
func (w *udpWriter) hold(b []byte) *heldReply {
	h := heldReplies.Get().(*heldReply)
	w.wrote = true // answered, later: a panic after this sends no SERVFAIL
	w.held = true
	h.conn, h.peer = w.conn, w.peer
	h.oob = append(h.oobBuf[:0], w.oob...)
	h.buf = append(h.buf[:0], b...)
	return h
}

// heldReply is a UDP answer waiting for its event to be durable.
type heldReply struct {
	conn   udpConn
	peer   netip.AddrPort
	oob    []byte
	oobBuf [pktinfoSpace]byte
	buf    []byte
	since  time.Time            // when it was held
	held   prometheus.Histogram // observes how long (nil: not)
}

var heldReplies = sync.Pool{New: func() any { return &heldReply{buf: make([]byte, 0, 512)} }}

// Durable sends the answer (reports.Waiter), from the writer's goroutine.
func (h *heldReply) Durable() {
	_, _, _ = h.conn.WriteMsgUDPAddrPort(h.buf, h.oob, h.peer)
	if h.held != nil {
		h.held.Observe(time.Since(h.since).Seconds())
	}
	h.conn, h.held = nil, nil
	if cap(h.buf) <= 4096 {
		heldReplies.Put(h)
	}
}

func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
