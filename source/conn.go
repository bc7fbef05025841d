package source

import (
	"fmt"
	"time"
)

// DefaultReadBuffer is the receive buffer requested with SO_RCVBUFFORCE when
// Config.ReadBuffer is 0. A queued connector datagram costs 832 bytes of
// buffer whatever its size, and the kernel doubles the requested value, so
// 64 MiB holds about 161k datagrams: a 100 ms stall at 1M datagrams/s with
// 60% to spare.
const DefaultReadBuffer = 64 << 20

// Config configures Dial. The zero value works: no groups joined, a 64 MiB
// receive buffer, ENOBUFS reported.
type Config struct {
	// Groups are the connector multicast groups (1..26) joined at Dial.
	// Default: none; Subscribe joins group 1 itself.
	Groups []uint32

	// ReadBuffer is the socket receive buffer in bytes, set with
	// SO_RCVBUFFORCE (CAP_NET_ADMIN; without it SO_RCVBUF, capped by
	// net.core.rmem_max). 0 means DefaultReadBuffer; negative leaves the
	// kernel default. The kernel doubles the value; Stats reports what it
	// granted.
	ReadBuffer int

	// NoENOBUFS sets NETLINK_NO_ENOBUFS: the kernel stops reporting overflow
	// as ENOBUFS. Drops are still counted (SO_MEMINFO) and show as sequence
	// gaps. Default false.
	NoENOBUFS bool

	// UserspaceGroups are groups on which datagrams from userspace senders
	// (port id != 0) are accepted even when they carry a kernel-owned
	// connector id. Default: none, so a kernel-owned id (index 1..10) or a
	// kernel group (1..10) from a non-zero port is dropped and counted as
	// forged.
	UserspaceGroups []uint32
}

func (c Config) readBuffer() int {
	if c.ReadBuffer == 0 {
		return DefaultReadBuffer
	}
	return c.ReadBuffer
}

// Addr is a datagram's sender: its netlink port id (0 for the kernel) and
// the multicast group bitmask it was sent to (0 for unicast).
type Addr struct {
	PortID uint32
	Groups uint32
}

// Group returns the lowest multicast group in Groups, 0 for unicast.
func (a Addr) Group() uint32 {
	for g := uint32(1); g <= 32; g++ {
		if a.Groups&(1<<(g-1)) != 0 {
			return g
		}
	}
	return 0
}

// A Datagram is one received datagram in a Batch.
type Datagram struct {
	// Data holds the bytes received: netlink header(s), cn_msg, payload.
	// It aliases the Batch's buffer and is overwritten by the next ReadBatch.
	Data []byte
	// Addr is the sender.
	Addr Addr
	// Truncated: the datagram was larger than the buffer (MSG_TRUNC); Data
	// holds its first bytes. Counted in Stats.Truncated.
	Truncated bool

	buf []byte
}

// A Batch holds caller-owned buffers for ReadBatch. It is not safe for
// concurrent use; reuse it for every call.
type Batch struct {
	// Datagrams has one entry per buffer; ReadBatch fills a prefix of it.
	Datagrams []Datagram

	// ENOBUFS is the number of ENOBUFS errors the last ReadBatch met.
	ENOBUFS uint64
	// Dropped is the growth of the kernel's drop counter (SO_MEMINFO
	// SK_MEMINFO_DROPS) the last ReadBatch observed: datagrams the kernel
	// discarded because the receive queue was full.
	Dropped uint64
	// Forged is the number of datagrams the last ReadBatch discarded as
	// forged (see Config.UserspaceGroups).
	Forged uint64

	sys batchSys // platform state (mmsghdr, iovec, sockaddr arrays)
}

// Sizes used by NewBatch for zero arguments.
const (
	DefaultBatchLen      = 64
	DefaultDatagramBytes = 16 + 20 + 16384 + 4 // nlmsghdr + cn_msg + CONNECTOR_MAX_MSG_SIZE, aligned
)

// NewBatch returns a Batch of n buffers of size bytes each (0 selects
// DefaultBatchLen and DefaultDatagramBytes).
func NewBatch(n, size int) *Batch {
	if n <= 0 {
		n = DefaultBatchLen
	}
	if size <= 0 {
		size = DefaultDatagramBytes
	}
	b := &Batch{Datagrams: make([]Datagram, n)}
	backing := make([]byte, n*size)
	for i := range b.Datagrams {
		b.Datagrams[i].buf = backing[i*size : (i+1)*size : (i+1)*size]
	}
	return b
}

// Stats is a snapshot of a Conn's counters since Dial.
type Stats struct {
	Datagrams uint64 // datagrams returned by ReadBatch
	Bytes     uint64 // their bytes
	Reads     uint64 // recvmmsg calls that returned datagrams
	ENOBUFS   uint64 // ENOBUFS errors met (one can stand for many drops)
	// KernelDrops is the socket's drop counter (SO_MEMINFO
	// SK_MEMINFO_DROPS), read when Stats is called: every datagram the kernel
	// could not queue for this socket.
	KernelDrops uint64
	Forged      uint64 // datagrams discarded by the sender check
	Truncated   uint64 // datagrams larger than their buffer

	// ReadBuffer is the receive buffer the kernel granted (SO_RCVBUF read
	// back, the doubled value); ReadBufferRequested what was asked;
	// ReadBufferForced whether SO_RCVBUFFORCE was allowed.
	ReadBuffer          int
	ReadBufferRequested int
	ReadBufferForced    bool

	// QueuedBytes is the receive queue's current fill (SK_MEMINFO_RMEM_ALLOC).
	QueuedBytes uint64

	Subscription SubscriptionState
}

// SubscriptionState describes the proc connector subscription.
type SubscriptionState struct {
	Active   bool          // LISTEN acknowledged and not yet ignored
	Legacy   bool          // the 4-byte op form was needed (kernel < 6.6)
	Mask     uint32        // kernel-side event mask (PROC_EVENT_ALL when unfiltered)
	Attempts int           // LISTEN messages sent until the ACK
	Ack      uint32        // the ack value of the matched ACK (request ack + 1)
	RTT      time.Duration // LISTEN to ACK
	// IgnoreAck is the ack of the last IGNORE sent by Close or Quiesce (the
	// kernel answers with IgnoreAck + 1 while it has listeners); IgnoreSent
	// says one was sent, for Subscribe's LISTEN or for those sent through
	// Send.
	IgnoreAck  uint32
	IgnoreSent bool
	// SendListens is the number of IGNORE requests Close still owes for the
	// LISTEN requests sent through Send (not Subscribe): one for any number
	// of 8-byte ones, one per 4-byte one. See Conn.Send.
	SendListens int
}

func (s Stats) String() string {
	return fmt.Sprintf("datagrams=%d bytes=%d reads=%d enobufs=%d kernel_drops=%d forged=%d truncated=%d rcvbuf=%d",
		s.Datagrams, s.Bytes, s.Reads, s.ENOBUFS, s.KernelDrops, s.Forged, s.Truncated, s.ReadBuffer)
}
