// Package source owns the NETLINK_CONNECTOR socket: dialing, multicast
// group membership, sending cn_msg messages, the process-events connector's
// LISTEN/ACK/IGNORE handshake, and reading datagrams in batches with
// recvmmsg.
//
// # Reading
//
// ReadBatch reads as many datagrams as a caller-owned Batch holds with one
// recvmmsg call, through the socket's syscall.RawConn, so waiting happens in
// the Go netpoller: no busy loop and no thread parked in the kernel.
// Cancelling the context or calling Close interrupts a blocked ReadBatch
// (it returns ctx.Err() or ErrClosed). Buffers are reused: a Datagram's Data
// is valid until the next ReadBatch on the same Batch.
//
// One goroutine reads (ReadBatch, Subscribe, CheckDrops); Send, JoinGroup,
// LeaveGroup, Stats and Close may be called from any goroutine.
//
// # Loss
//
// The kernel cannot be slowed down: when the socket's receive queue is full
// it drops datagrams, counts them (SO_MEMINFO, SK_MEMINFO_DROPS) and, unless
// NETLINK_NO_ENOBUFS is set, reports ENOBUFS once. ReadBatch counts ENOBUFS
// and reads on; it reads the drop counter after ENOBUFS and around full
// batches and reports the growth in Batch.Dropped, so the loss appears in the
// stream where it happened. Stats gives cumulative counters. The receive
// buffer defaults to 64 MiB set with SO_RCVBUFFORCE (the kernel doubles it),
// enough for a 100 ms stall at 1M datagrams/s.
//
// # Sender check
//
// Root can multicast any cn_msg to any connector group, so a datagram is
// trusted by where it comes from: the kernel sends from port id 0. A
// datagram from a userspace port that uses a kernel group (1..10) or a
// kernel-owned connector index (1..10) is dropped and counted as forged,
// unless it arrived on a group listed in Config.UserspaceGroups.
//
// # Privileges
//
// The connector exists only in the initial network namespace, and the
// process-events connector only hears processes of the initial user and pid
// namespaces (it ignores others without an answer). Before Linux 6.6,
// listening needs CAP_NET_ADMIN; forcing the receive buffer and multicasting
// always do. Kernel builds differ in where a child user namespace is
// stopped: some refuse the join of group 1 (EPERM), others accept it and
// ignore LISTEN.
//
// ReadPrivileges reads what the kernel looks at (uid_map, NSpid, the
// network namespace, CapEff) and every refusal explains it, whichever step
// failed: an EPERM at the join or a send, LISTEN's ACK with EPERM, the
// missing ACK. A message to the process-events connector from outside the
// initial user or pid namespace is not sent at all (ErrNotHeard, with the
// diagnosis): the kernel would drop it unanswered. Root inside a user
// namespace has no CAP_NET_ADMIN over the connector, so no capability
// granted there helps; outside one, the hints point to the systemd unit's
// AmbientCapabilities or a copy of the binary only one group may run, never
// to a file capability on a binary every local user can run. OpError keeps
// the errno reachable (errors.Is(err, unix.EPERM)).
//
// On systems other than Linux, Dial returns ErrNotSupported.
package source
