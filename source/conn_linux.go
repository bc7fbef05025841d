//go:build linux

package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnstream/cnstream/schema"
)

// kernelGroups is the bitmask of groups 1..10, those of kernel connector
// users (CN_IDX_PROC .. CN_VSS_IDX).
const kernelGroups = 1<<(schema.CnNetlinkUsers-1) - 1

// Conn is a NETLINK_CONNECTOR socket. ReadBatch and Subscribe must be called
// from one goroutine at a time (the reader); Send, JoinGroup, LeaveGroup,
// Stats and Close may be called from any goroutine.
type Conn struct {
	nl     *netlink.Conn
	rc     syscall.RawConn
	portID uint32
	cfg    Config

	userspaceMask uint32
	joined        atomic.Uint32 // bitmask of the groups joined: bit g-1 for group g
	closed        atomic.Bool
	closeOnce     sync.Once
	closeErr      error

	sendMu  sync.Mutex
	sendBuf []byte

	// reader state, owned by the goroutine in ReadBatch
	rd struct {
		hdrs    []unix.Mmsghdr
		n       int
		errno   syscall.Errno
		enobufs uint64
		fn      func(fd uintptr) bool
		mi      [unix.SK_MEMINFO_VARS]uint32
		miErr   syscall.Errno
		miFn    func(fd uintptr)
	}
	lastDrops uint64
	prevFull  bool // the previous recvmmsg filled its batch
	pending   []pendingDatagram
	carry     struct{ enobufs, dropped, forged uint64 }

	datagrams, bytes, reads, enobufs, forged, truncated atomic.Uint64

	rcvbuf, rcvbufRequested int
	rcvbufForced            bool

	privileges func() Privileges // ReadPrivileges, once

	subMu   sync.Mutex
	sub     SubscriptionState
	listens sentListens // LISTEN requests sent through Send, balanced by Close
	seq     atomic.Uint32
}

type pendingDatagram struct {
	data      []byte
	addr      Addr
	truncated bool
}

// batchSys is the recvmmsg state of a Batch.
type batchSys struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrNetlink
}

func (s *batchSys) prepare(b *Batch) {
	n := len(b.Datagrams)
	if len(s.hdrs) != n {
		s.hdrs = make([]unix.Mmsghdr, n)
		s.iovs = make([]unix.Iovec, n)
		s.names = make([]unix.RawSockaddrNetlink, n)
	}
	for i := range s.hdrs {
		buf := b.Datagrams[i].buf
		s.iovs[i].Base = unsafe.SliceData(buf)
		s.iovs[i].SetLen(len(buf))
		h := &s.hdrs[i]
		h.Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h.Hdr.Namelen = unix.SizeofSockaddrNetlink
		h.Hdr.Iov = &s.iovs[i]
		h.Hdr.SetIovlen(1)
		h.Hdr.Flags = 0
		h.Len = 0
	}
}

// Dial opens a NETLINK_CONNECTOR socket, sizes its receive buffer and joins
// cfg.Groups. It needs the initial network namespace (the connector exists
// only there) and, to join groups on kernels before 6.6 or to force the
// buffer size, CAP_NET_ADMIN.
func Dial(cfg Config) (*Conn, error) {
	for _, g := range append(append([]uint32(nil), cfg.Groups...), cfg.UserspaceGroups...) {
		if g < 1 || g > schema.MaxGroup {
			return nil, fmt.Errorf("source: group %d out of range: connector groups are 1..%d", g, schema.MaxGroup)
		}
	}
	nl, err := netlink.Dial(unix.NETLINK_CONNECTOR, nil)
	if err != nil {
		return nil, opError("dial NETLINK_CONNECTOR", err)
	}
	rc, err := nl.SyscallConn()
	if err != nil {
		_ = nl.Close()
		return nil, opError("syscall conn", err)
	}
	c := &Conn{nl: nl, rc: rc, portID: nl.PID(), cfg: cfg, privileges: sync.OnceValue(ReadPrivileges)}
	for _, g := range cfg.UserspaceGroups {
		c.userspaceMask |= 1 << (g - 1)
	}
	c.rd.fn = c.recvmmsg
	c.rd.miFn = func(fd uintptr) { c.rd.miErr = getMeminfo(fd, &c.rd.mi) }
	c.seq.Store(randUint32())
	if err := c.setReadBuffer(cfg.readBuffer()); err != nil {
		_ = nl.Close()
		return nil, err
	}
	if cfg.NoENOBUFS {
		if err := nl.SetOption(netlink.NoENOBUFS, true); err != nil {
			_ = nl.Close()
			return nil, opError("set NETLINK_NO_ENOBUFS", err)
		}
	}
	for _, g := range cfg.Groups {
		if err := c.JoinGroup(g); err != nil {
			_ = nl.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Conn) setReadBuffer(n int) error {
	if n < 0 {
		v, err := c.getsockoptInt(unix.SOL_SOCKET, unix.SO_RCVBUF)
		c.rcvbuf = v
		return err
	}
	c.rcvbufRequested = n
	err := c.control(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) })
	switch {
	case err == nil:
		c.rcvbufForced = true
	case errors.Is(err, unix.EPERM):
		// Without CAP_NET_ADMIN: SO_RCVBUF, capped by net.core.rmem_max.
		if err := c.control(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n) }); err != nil {
			return opError("set SO_RCVBUF", err)
		}
	default:
		return opError("set SO_RCVBUFFORCE", err)
	}
	v, err := c.getsockoptInt(unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return opError("get SO_RCVBUF", err)
	}
	c.rcvbuf = v
	return nil
}

func (c *Conn) control(f func(fd int) error) error {
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (c *Conn) getsockoptInt(level, opt int) (int, error) {
	var v int
	err := c.control(func(fd int) error {
		var err error
		v, err = unix.GetsockoptInt(fd, level, opt)
		return err
	})
	return v, err
}

// meminfo reads SO_MEMINFO (SK_MEMINFO_VARS counters); any goroutine.
func (c *Conn) meminfo() ([unix.SK_MEMINFO_VARS]uint32, error) {
	var mi [unix.SK_MEMINFO_VARS]uint32
	var e syscall.Errno
	if err := c.rc.Control(func(fd uintptr) { e = getMeminfo(fd, &mi) }); err != nil {
		return mi, err
	}
	if e != 0 {
		return mi, e
	}
	return mi, nil
}

// readerDrops reads SK_MEMINFO_DROPS without allocating; reader goroutine only.
func (c *Conn) readerDrops() (uint64, error) {
	c.rd.miErr = 0
	if err := c.rc.Control(c.rd.miFn); err != nil {
		return 0, err
	}
	if c.rd.miErr != 0 {
		return 0, c.rd.miErr
	}
	return uint64(c.rd.mi[unix.SK_MEMINFO_DROPS]), nil
}

func getMeminfo(fd uintptr, mi *[unix.SK_MEMINFO_VARS]uint32) syscall.Errno {
	l := uint32(unsafe.Sizeof(*mi))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(mi)), uintptr(unsafe.Pointer(&l)), 0)
	return e
}

// PortID is the socket's netlink port id, the sender address of what it sends.
func (c *Conn) PortID() uint32 { return c.portID }

// JoinGroup joins connector multicast group g (1..26).
func (c *Conn) JoinGroup(g uint32) error {
	if g < 1 || g > schema.MaxGroup {
		return fmt.Errorf("source: group %d out of range: connector groups are 1..%d", g, schema.MaxGroup)
	}
	if err := c.nl.JoinGroup(g); err != nil {
		return opError(fmt.Sprintf("join group %d", g), err)
	}
	c.setJoined(g, true)
	return nil
}

func (c *Conn) setJoined(g uint32, on bool) {
	for {
		old := c.joined.Load()
		n := old &^ (1 << (g - 1))
		if on {
			n = old | 1<<(g-1)
		}
		if c.joined.CompareAndSwap(old, n) {
			return
		}
	}
}

// Quiesce stops new datagrams from arriving while what is queued stays
// readable: it cancels the process-events subscription (IGNORE) and leaves
// every multicast group the socket joined. ReadBatch then returns what the
// receive queue holds, and waits once it is empty (give it a ctx deadline
// to tell). Close after it. Drops the kernel counted before Quiesce are
// still reported.
func (c *Conn) Quiesce() error {
	errs := []error{c.unsubscribe()}
	joined := c.joined.Load()
	for g := uint32(1); g <= schema.MaxGroup; g++ {
		if joined&(1<<(g-1)) != 0 {
			errs = append(errs, c.LeaveGroup(g))
		}
	}
	return errors.Join(errs...)
}

// LeaveGroup leaves connector multicast group g.
func (c *Conn) LeaveGroup(g uint32) error {
	if err := c.nl.LeaveGroup(g); err != nil {
		return opError(fmt.Sprintf("leave group %d", g), err)
	}
	c.setJoined(g, false)
	return nil
}

// Send sends m, framed as the kernel frames connector messages, to the
// kernel (group 0) or as a multicast to group (1..26), which the kernel also
// receives. Multicast needs CAP_NET_ADMIN. A message to the process-events
// connector (schema.ProcID) from outside the initial user or pid namespace
// is not sent: the kernel would drop it without an answer, so Send returns
// an OpError wrapping ErrNotHeard that says which namespace.
//
// A PROC_CN_MCAST_LISTEN request (the 4-byte op or the 8-byte proc_input)
// sent to the process-events connector makes the kernel count this socket as
// a listener, as Subscribe does, and Send remembers it: Close and Quiesce
// send the matching IGNORE (one for the 8-byte form, which Linux 6.6+ counts
// once per socket; one per 4-byte request, which older kernels count each),
// so the kernel's listener count does not leak. An IGNORE sent through Send
// settles what it balances. Stats().Subscription.SendListens is what is
// still owed.
func (c *Conn) Send(m schema.CnMsg, group uint32) error {
	if err := c.send(m, group); err != nil {
		return err
	}
	c.noteRequest(m, group)
	return nil
}

// send is Send without the LISTEN bookkeeping, for Subscribe's own requests.
func (c *Conn) send(m schema.CnMsg, group uint32) error {
	if group > schema.MaxGroup {
		return fmt.Errorf("source: group %d out of range: connector groups are 0 (kernel) or 1..%d", group, schema.MaxGroup)
	}
	if len(m.Data) > schema.MaxMsgSize {
		return fmt.Errorf("source: payload of %d bytes exceeds the connector's limit of %d", len(m.Data), schema.MaxMsgSize)
	}
	if c.closed.Load() {
		return ErrClosed
	}
	if m.ID == schema.ProcID && group == 0 {
		// The kernel would drop it without an answer: say why now.
		if p := c.privileges(); p.OutsideUserNS() || p.OutsidePIDNS() {
			return &OpError{Op: opSendKernel, Err: ErrNotHeard, Hint: p.Diagnosis()}
		}
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.sendBuf = schema.AppendDatagram(c.sendBuf[:0], c.portID, m)
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK}
	if group > 0 {
		sa.Groups = 1 << (group - 1)
	}
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			serr = unix.Sendto(int(fd), c.sendBuf, 0, sa)
			switch serr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if c.closed.Load() || errors.Is(err, os.ErrClosed) {
			return ErrClosed
		}
		op := opSendKernel
		if group > 0 {
			op = fmt.Sprintf("send to group %d", group)
		}
		return opError(op, err)
	}
	return nil
}

// recvmmsg is the RawConn.Read callback of ReadBatch; it is allocated once.
func (c *Conn) recvmmsg(fd uintptr) bool {
	h := c.rd.hdrs
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&h[0])), uintptr(len(h)), 0, 0, 0)
		switch e {
		case 0:
			c.rd.n = int(r)
			return true
		case unix.EAGAIN:
			return false // wait in the netpoller
		case unix.EINTR:
			continue
		case unix.ENOBUFS:
			// The kernel dropped datagrams and reports it once; the queue
			// still holds data. Count and read on.
			c.rd.enobufs++
			continue
		default:
			c.rd.errno = e
			return true
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

const opSendKernel = "send to the kernel"

// ReadBatch blocks until at least one datagram is available, then reads as
// many as b holds with one recvmmsg call, into b's buffers, and returns how
// many it stored in b.Datagrams. Forged datagrams are discarded and counted
// (b.Forged); overflow is counted, not returned: b.ENOBUFS and b.Dropped say
// what the kernel lost since the previous call.
//
// Cancelling ctx returns ctx.Err(); Close returns ErrClosed. Waiting uses the
// Go netpoller: no thread is blocked and nothing spins.
func (c *Conn) ReadBatch(ctx context.Context, b *Batch) (int, error) {
	b.ENOBUFS, b.Dropped, b.Forged = c.carry.enobufs, c.carry.dropped, c.carry.forged
	c.carry.enobufs, c.carry.dropped, c.carry.forged = 0, 0, 0
	if c.closed.Load() {
		return 0, ErrClosed
	}
	if len(c.pending) > 0 {
		return c.drainPending(b), nil
	}
	n, err := c.read(ctx, b)
	if n > 0 {
		var nbytes int
		for _, d := range b.Datagrams[:n] {
			nbytes += len(d.Data)
		}
		c.datagrams.Add(uint64(n))
		c.bytes.Add(uint64(nbytes))
	}
	return n, err
}

func (c *Conn) read(ctx context.Context, b *Batch) (int, error) {
	if len(b.Datagrams) == 0 {
		return 0, errors.New("source: ReadBatch: empty batch (use NewBatch)")
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	b.sys.prepare(b)
	c.rd.hdrs, c.rd.n, c.rd.errno, c.rd.enobufs = b.sys.hdrs, 0, 0, 0

	var stop func() bool
	var fired chan struct{}
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			_ = c.nl.SetReadDeadline(aLongTimeAgo)
			close(fired)
		})
	}
	err := c.rc.Read(c.rd.fn)
	if stop != nil && !stop() {
		<-fired
		_ = c.nl.SetReadDeadline(time.Time{})
	}
	c.rd.hdrs = nil
	if c.rd.enobufs > 0 {
		b.ENOBUFS += c.rd.enobufs
		c.enobufs.Add(c.rd.enobufs)
	}
	if err == nil && c.rd.errno != 0 {
		err = c.rd.errno
	}
	if err != nil {
		switch {
		case c.closed.Load() || errors.Is(err, os.ErrClosed):
			return 0, ErrClosed
		case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
			return 0, ctx.Err()
		}
		return 0, opError("recvmmsg", err)
	}

	n := c.rd.n
	out := 0
	for i := 0; i < n; i++ {
		d := &b.Datagrams[i]
		h := &b.sys.hdrs[i]
		ln := min(int(h.Len), len(d.buf))
		d.Data = d.buf[:ln]
		d.Truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0
		d.Addr = Addr{PortID: b.sys.names[i].Pid, Groups: b.sys.names[i].Groups}
		if c.isForged(d) {
			b.Forged++
			continue
		}
		if d.Truncated {
			c.truncated.Add(1)
		}
		if out != i { // keep order: move the buffer, not the bytes
			b.Datagrams[out], b.Datagrams[i] = b.Datagrams[i], b.Datagrams[out]
		}
		out++
	}
	if b.Forged > 0 {
		c.forged.Add(b.Forged)
	}
	c.reads.Add(1)

	// A full batch means the queue may be backing up; ENOBUFS means it
	// overflowed; the first partial batch after full ones ends a drain, the
	// moment the kernel stops dropping. Then read the kernel's drop counter,
	// so loss is reported in the stream where it happened.
	full := n == len(b.Datagrams)
	check := full || c.rd.enobufs > 0 || c.prevFull
	c.prevFull = full
	if check {
		if drops, err := c.readerDrops(); err == nil {
			if drops > c.lastDrops {
				b.Dropped += drops - c.lastDrops
				c.lastDrops = drops
			}
		}
	}
	return out, nil
}

// CheckDrops reads the kernel's drop counter now and returns its growth since
// the last observation by the reader; call it from the reader goroutine (for
// example on a timer with NoENOBUFS set, where nothing else prompts a read).
func (c *Conn) CheckDrops() (uint64, error) {
	drops, err := c.readerDrops()
	if err != nil {
		return 0, opError("get SO_MEMINFO", err)
	}
	if drops <= c.lastDrops {
		return 0, nil
	}
	d := drops - c.lastDrops
	c.lastDrops = drops
	return d, nil
}

// isForged applies the sender check: the kernel sends from port id 0; a
// userspace sender may not use a kernel group or a kernel-owned connector
// id, except on the configured userspace groups.
func (c *Conn) isForged(d *Datagram) bool {
	if d.Addr.PortID == 0 || d.Addr.Groups&c.userspaceMask != 0 {
		return false
	}
	if d.Addr.Groups&kernelGroups != 0 {
		return true
	}
	// Look at the connector id of every netlink message in the datagram.
	for off := 0; off+schema.NetlinkHeaderLen+8 <= len(d.Data); {
		id := schema.CbID{Idx: nativeU32(d.Data[off+16:])}
		if id.KernelOwned() {
			return true
		}
		l := int(nativeU32(d.Data[off:]))
		if l < schema.NetlinkHeaderLen {
			break // malformed: the decoder reports it
		}
		off += (l + 3) &^ 3
	}
	return false
}

func (c *Conn) drainPending(b *Batch) int {
	n := 0
	for n < len(b.Datagrams) && len(c.pending) > 0 {
		p := c.pending[0]
		c.pending = c.pending[1:]
		d := &b.Datagrams[n]
		k := copy(d.buf, p.data)
		d.Data = d.buf[:k]
		d.Addr = p.addr
		d.Truncated = p.truncated || k < len(p.data)
		if k < len(p.data) {
			c.truncated.Add(1)
		}
		c.datagrams.Add(1)
		c.bytes.Add(uint64(k))
		n++
	}
	if len(c.pending) == 0 {
		c.pending = nil
	}
	return n
}

// Stats returns a snapshot of the counters; it reads SO_MEMINFO for the
// kernel's drop count and queue fill.
func (c *Conn) Stats() Stats {
	s := Stats{
		Datagrams:           c.datagrams.Load(),
		Bytes:               c.bytes.Load(),
		Reads:               c.reads.Load(),
		ENOBUFS:             c.enobufs.Load(),
		Forged:              c.forged.Load(),
		Truncated:           c.truncated.Load(),
		ReadBuffer:          c.rcvbuf,
		ReadBufferRequested: c.rcvbufRequested,
		ReadBufferForced:    c.rcvbufForced,
	}
	if !c.closed.Load() {
		if mi, err := c.meminfo(); err == nil {
			s.KernelDrops = uint64(mi[unix.SK_MEMINFO_DROPS])
			s.QueuedBytes = uint64(mi[unix.SK_MEMINFO_RMEM_ALLOC])
		}
	}
	c.subMu.Lock()
	s.Subscription = c.sub
	s.Subscription.SendListens = c.listens.owed()
	c.subMu.Unlock()
	return s
}

// Close sends IGNORE if the proc connector subscription is active or a
// LISTEN went out through Send (so the kernel's listener count does not
// leak), then closes the socket. A ReadBatch blocked in another goroutine
// returns ErrClosed.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		ierr := c.unsubscribe()
		c.closed.Store(true)
		c.closeErr = errors.Join(ierr, c.nl.Close())
	})
	return c.closeErr
}

func opError(op string, err error) error {
	var errno syscall.Errno
	var hint string
	if errors.As(err, &errno) {
		switch errno {
		case unix.EPROTONOSUPPORT:
			hint = "no kernel connector here: it exists only in the initial network namespace, on kernels built with CONFIG_CONNECTOR"
			if d := ReadPrivileges().Diagnosis(); d != "" {
				hint += "; " + d
			}
		case unix.EPERM, unix.EACCES:
			p := ReadPrivileges()
			hint = p.NetAdminHint()
			if op == "join group 1" && p.Diagnosis() == "" && p.Lacks(CapNetAdmin) {
				hint = "this kernel lets only CAP_NET_ADMIN join the process-events group (Linux 6.6+ usually lets anyone; this build or an older kernel does not): " + hint
			}
		case unix.ENOBUFS:
			hint = "the receive queue overflowed"
		case unix.ECONNREFUSED, unix.ESRCH:
			hint = "no listener at that address"
			if op == opSendKernel {
				hint = "no kernel connector in this network namespace: it exists only in the initial one; run in the host network namespace (hostNetwork)"
				if p := ReadPrivileges(); p.Diagnosis() != "" && !p.OutsideNetNS() {
					hint += "; also, " + p.Diagnosis()
				}
			}
		}
	}
	return &OpError{Op: op, Err: err, Hint: hint}
}
