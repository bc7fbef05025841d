//go:build linux

// Command cnbench-recv measures the CPU cost per datagram of draining a
// pre-filled NETLINK_CONNECTOR receive queue from Go. It speaks the same
// protocol as the C reference receiver testenv/bench/cnrecv.c and is driven by
// testenv/bench-source:
//
//  1. open the socket, force the receive buffer, join the group, print "ready";
//  2. wait for one line on stdin (the harness fills the queue meanwhile);
//  3. read until -n datagrams with the wanted cn_msg id were seen, or until
//     -timeout expires (a loss: the result then says "complete":false);
//  4. print one JSON line with the process CPU time (CLOCK_PROCESS_CPUTIME_ID)
//     and the wall time of the drain only.
//
// Modes:
//
//	-mode readbatch  the project's source.Conn.ReadBatch (recvmmsg, reused buffers)
//	-mode receive    github.com/mdlayher/netlink Conn.Receive() in a loop
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/cnstream/cnstream/source"
)

type result struct {
	Receiver      string  `json:"receiver"`
	Datagrams     int64   `json:"datagrams"`
	CPUNs         int64   `json:"cpu_ns"`
	WallNs        int64   `json:"wall_ns"`
	NsPerDatagram float64 `json:"ns_per_datagram"`
	DrainPerSec   float64 `json:"drain_per_sec"`
	Complete      bool    `json:"complete"`
	Other         int64   `json:"other"`
	Truncated     int64   `json:"truncated"`
	ENOBUFS       int64   `json:"enobufs"`
	KernelDrops   int64   `json:"kernel_drops"`
	Batch         int     `json:"batch,omitempty"`
	BufSize       int     `json:"bufsize,omitempty"`
	Stats         string  `json:"stats,omitempty"`
}

type options struct {
	mode     string
	group    uint32
	idx, val uint32
	batch    int
	size     int
	rcvbuf   int
	n        int64
	timeout  time.Duration
	bgctx    bool
}

func main() {
	var o options
	var group uint
	var id string
	flag.StringVar(&o.mode, "mode", "readbatch", "receiver: readbatch (source.Conn.ReadBatch) or receive (mdlayher/netlink Conn.Receive)")
	flag.UintVar(&group, "group", 11, "connector multicast group to join (1..32)")
	flag.StringVar(&id, "id", "11:77", "cn_msg id IDX:VAL of the datagrams to count")
	flag.IntVar(&o.batch, "batch", 64, "readbatch: datagrams per ReadBatch call")
	flag.IntVar(&o.size, "size", 256, "readbatch: buffer bytes per datagram")
	flag.IntVar(&o.rcvbuf, "rcvbuf", 64<<20, "receive buffer in bytes, set with SO_RCVBUFFORCE")
	flag.Int64Var(&o.n, "n", 0, "stop after this many matching datagrams (required)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up after this long after \"go\" (the run then reports a loss)")
	flag.BoolVar(&o.bgctx, "background-ctx", false, "readbatch: pass context.Background() (no -timeout: a loss then hangs), to measure the cost of a cancellable context")
	flag.Parse()

	if o.n <= 0 {
		fatalf("-n N is required (the number of datagrams the harness sends)")
	}
	if group < 1 || group > 32 {
		fatalf("-group %d: want 1..32", group)
	}
	o.group = uint32(group)
	var err error
	if o.idx, o.val, err = parseID(id); err != nil {
		fatalf("-id %q: %v", id, err)
	}

	var res result
	switch o.mode {
	case "readbatch":
		res, err = runReadBatch(o)
	case "receive":
		res, err = runReceive(o)
	default:
		fatalf("-mode %q: want readbatch or receive", o.mode)
	}
	if err != nil {
		fatalf("%s: %v", o.mode, err)
	}
	if res.Datagrams > 0 {
		res.NsPerDatagram = float64(res.CPUNs) / float64(res.Datagrams)
	}
	if res.WallNs > 0 {
		res.DrainPerSec = float64(res.Datagrams) / (float64(res.WallNs) / 1e9)
	}
	res.Complete = res.Datagrams >= o.n
	out, err := json.Marshal(res)
	if err != nil {
		fatalf("encoding the result: %v", err)
	}
	fmt.Printf("%s\n", out)
}

// runReadBatch drains with the project's source package.
func runReadBatch(o options) (result, error) {
	res := result{Receiver: "go-readbatch", Batch: o.batch, BufSize: o.size, KernelDrops: -1}
	c, err := source.Dial(source.Config{Groups: []uint32{o.group}, ReadBuffer: o.rcvbuf})
	if err != nil {
		return res, fmt.Errorf("source.Dial: %w", err)
	}
	defer c.Close()
	b := source.NewBatch(o.batch, o.size)

	if err := waitGo(); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if o.bgctx {
		ctx = context.Background()
	}

	cpu0, wall0 := cpuNow(), time.Now()
	for res.Datagrams < o.n {
		n, err := c.ReadBatch(ctx, b)
		if err != nil {
			if ctx.Err() != nil {
				break // timed out: datagrams were lost
			}
			if errors.Is(err, unix.ENOBUFS) {
				res.ENOBUFS++
				continue
			}
			return res, fmt.Errorf("ReadBatch: %w", err)
		}
		for i := range b.Datagrams[:n] {
			d := &b.Datagrams[i]
			if d.Truncated {
				res.Truncated++
			}
			if matches(d.Data, 16, o.idx, o.val) {
				res.Datagrams++
			} else {
				res.Other++
			}
		}
	}
	res.WallNs = time.Since(wall0).Nanoseconds()
	res.CPUNs = cpuNow() - cpu0
	st := c.Stats()
	res.ENOBUFS += int64(st.ENOBUFS)
	res.KernelDrops = int64(st.KernelDrops)
	res.Stats = st.String()
	return res, nil
}

// runReceive drains with mdlayher/netlink's Conn.Receive, the way a program
// using that library directly would.
func runReceive(o options) (result, error) {
	res := result{Receiver: "go-netlink-receive", KernelDrops: -1}
	conn, err := netlink.Dial(unix.NETLINK_CONNECTOR, &netlink.Config{Groups: 0})
	if err != nil {
		return res, fmt.Errorf("netlink.Dial(NETLINK_CONNECTOR): %w", err)
	}
	defer conn.Close()
	raw, err := conn.SyscallConn()
	if err != nil {
		return res, fmt.Errorf("SyscallConn: %w", err)
	}
	if o.rcvbuf > 0 {
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.rcvbuf)
		}); err != nil {
			return res, fmt.Errorf("SyscallConn.Control: %w", err)
		}
		if serr != nil {
			return res, fmt.Errorf("setsockopt(SO_RCVBUFFORCE, %d) (needs CAP_NET_ADMIN): %w", o.rcvbuf, serr)
		}
	}
	if err := conn.JoinGroup(o.group); err != nil {
		return res, fmt.Errorf("JoinGroup(%d): %w", o.group, err)
	}

	if err := waitGo(); err != nil {
		return res, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(o.timeout)); err != nil {
		return res, fmt.Errorf("SetReadDeadline: %w", err)
	}

	cpu0, wall0 := cpuNow(), time.Now()
	for res.Datagrams < o.n {
		msgs, err := conn.Receive()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // timed out: datagrams were lost
			}
			if errors.Is(err, unix.ENOBUFS) {
				res.ENOBUFS++
				continue
			}
			return res, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			// netlink.Message.Data starts after the nlmsghdr: cn_msg is at 0.
			if matches(m.Data, 0, o.idx, o.val) {
				res.Datagrams++
			} else {
				res.Other++
			}
		}
	}
	res.WallNs = time.Since(wall0).Nanoseconds()
	res.CPUNs = cpuNow() - cpu0

	_ = raw.Control(func(fd uintptr) {
		if d, err := sockDrops(int(fd)); err == nil {
			res.KernelDrops = d
		}
	})
	return res, nil
}

// matches reports whether the cn_msg at b[off:] carries the id idx:val.
func matches(b []byte, off int, idx, val uint32) bool {
	if len(b) < off+8 {
		return false
	}
	return binary.NativeEndian.Uint32(b[off:]) == idx && binary.NativeEndian.Uint32(b[off+4:]) == val
}

// sockDrops returns the socket's sk_drops (SO_MEMINFO).
func sockDrops(fd int) (int64, error) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	l := uint32(len(mem) * 4)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int64(mem[unix.SK_MEMINFO_DROPS]), nil
}

// waitGo prints "ready" and blocks until one line arrives on stdin.
func waitGo() error {
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for \"go\" on stdin: %w", err)
	}
	return nil
}

func cpuNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		fatalf("clock_gettime(CLOCK_PROCESS_CPUTIME_ID): %v", err)
	}
	return ts.Nano()
}

func parseID(s string) (idx, val uint32, err error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, errors.New("want IDX:VAL")
	}
	i, err := strconv.ParseUint(a, 0, 32)
	if err != nil {
		return 0, 0, err
	}
	v, err := strconv.ParseUint(b, 0, 32)
	if err != nil {
		return 0, 0, err
	}
	return uint32(i), uint32(v), nil
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cnbench-recv: "+format+"\n", args...)
	os.Exit(1)
}
