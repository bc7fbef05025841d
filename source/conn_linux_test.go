//go:build linux

package source_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	"go.uber.org/goleak"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
)

// Groups used by this package's tests; cmd/cnstream's tests use 24..26, so
// packages tested in parallel do not share traffic.
const (
	groupStream   = 20
	groupOverflow = 21
	groupForge    = 22
	groupIdle     = 23
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// CI runs as root; say why rather than skip silently.
		os.Stderr.WriteString("source tests need root: they open NETLINK_CONNECTOR sockets, subscribe to process events and multicast (CAP_NET_ADMIN)\n")
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

// testID returns a connector id of the userspace range no other test or
// program uses, so tests can filter their own messages.
func testID() schema.CbID {
	return schema.CbID{Idx: 0x434e0000 | rand.Uint32N(0xffff), Val: rand.Uint32()}
}

func dial(t *testing.T, cfg source.Config) *source.Conn {
	t.Helper()
	c, err := source.Dial(cfg)
	if err != nil {
		t.Fatalf("Dial(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readUntil reads and decodes until done reports true or the deadline passes.
func readUntil(t *testing.T, c *source.Conn, d time.Duration, emit func(*transform.Record), done func() bool) *transform.Decoder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	b := source.NewBatch(64, 0)
	dec := transform.NewDecoder()
	for !done() {
		n, err := c.ReadBatch(ctx, b)
		if err != nil {
			t.Fatalf("ReadBatch: %v (stats %v)", err, c.Stats())
		}
		dec.DecodeBatch(b, n, emit)
	}
	return dec
}

func TestSubscribeAckMatched(t *testing.T) {
	c := dial(t, source.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, source.SubscribeConfig{}); err != nil {
		t.Fatal(err)
	}
	st := c.Stats().Subscription
	if !st.Active || st.Attempts < 1 || st.Legacy {
		t.Fatalf("subscription state %+v: want active, 8-byte form (kernel %s)", st, kernelRelease())
	}
	// The ACK is part of the stream: the first ReadBatch returns it.
	var ack *schema.ProcEvent
	var ackSeq uint32
	readUntil(t, c, 5*time.Second, func(r *transform.Record) {
		if r.Kind == transform.KindProc && r.Proc.What == schema.ProcEventNone && r.Cn.Ack == st.Ack {
			ev := r.Proc
			ack, ackSeq = &ev, r.Cn.Seq
		}
	}, func() bool { return ack != nil })
	if ack.Ack.Err != 0 {
		t.Errorf("ACK err = %d, want 0", ack.Ack.Err)
	}
	t.Logf("ACK on cpu %d seq %d after %d attempt(s), rtt %v", ack.CPU, ackSeq, st.Attempts, st.RTT)
}

// TestSubscribeLegacyForm: the 4-byte op of kernels before 6.6 is still
// acknowledged, and the state says which form was used.
func TestSubscribeLegacyForm(t *testing.T) {
	c := dial(t, source.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, source.SubscribeConfig{Legacy: true}); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats().Subscription; !st.Active || !st.Legacy {
		t.Fatalf("subscription %+v: want active with the legacy form", st)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats().Subscription; !st.IgnoreSent || st.Active {
		t.Errorf("after Close: %+v, want IGNORE sent and inactive", st)
	}
}

func TestChildProcessEvents(t *testing.T) {
	c := dial(t, source.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, source.SubscribeConfig{}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", "exit 7", "cnstream-test-child")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	var exitErr *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &exitErr) || exitErr.ExitCode() != 7 {
		t.Fatalf("child: %v, want exit status 7", err)
	}
	var fork, execd, exit *schema.ProcEvent
	readUntil(t, c, 10*time.Second, func(r *transform.Record) {
		if r.Kind != transform.KindProc {
			return
		}
		ev := r.Proc
		switch {
		case ev.What == schema.ProcEventFork && ev.Fork.ChildPID == pid:
			fork = &ev
		case ev.What == schema.ProcEventExec && ev.Exec.PID == pid:
			execd = &ev
		case ev.What == schema.ProcEventExit && ev.Exit.PID == pid:
			exit = &ev
		}
	}, func() bool { return fork != nil && execd != nil && exit != nil })

	self := uint32(os.Getpid())
	if fork.Fork.ChildTGID != pid || fork.Fork.ParentTGID != self {
		t.Errorf("fork %+v: want child %d/%d, parent tgid %d", fork.Fork, pid, pid, self)
	}
	if execd.Exec.TGID != pid {
		t.Errorf("exec %+v: want tgid %d", execd.Exec, pid)
	}
	e := exit.Exit
	// The kernel fills the exit's parent only while the task's pid is
	// attached (cn_proc.c: if (pid_alive(task))): a parent that reaps the
	// child between exit_notify and proc_exit_connector gets 0. This
	// test's wait can: 0 means "not said", anything else must be us.
	if e.TGID != pid || !e.Exited() || e.Status() != 7 || e.Signaled() || e.ParentTGID != self && e.ParentTGID != 0 {
		t.Errorf("exit %+v: want pid/tgid %d, exited with status 7, parent %d (or 0: reaped first)", e, pid, self)
	}
	if e.ParentTGID == 0 {
		t.Logf("exit %+v: parent 0, the child was reaped before the kernel wrote its exit event", e)
	}
	if !(fork.TimestampNS <= execd.TimestampNS && execd.TimestampNS <= exit.TimestampNS) {
		t.Errorf("timestamps out of order: fork %d exec %d exit %d", fork.TimestampNS, execd.TimestampNS, exit.TimestampNS)
	}
}

func TestMulticastSenderAddress(t *testing.T) {
	rx := dial(t, source.Config{Groups: []uint32{groupStream}})
	tx := dial(t, source.Config{ReadBuffer: -1})
	id := testID()
	if err := tx.Send(schema.CnMsg{ID: id, Seq: 5, Ack: 9, Data: []byte("hello")}, groupStream); err != nil {
		t.Fatal(err)
	}
	var got *transform.Record
	readUntil(t, rx, 5*time.Second, func(r *transform.Record) {
		if r.Kind == transform.KindRaw && r.Cn.ID == id {
			cp := *r
			cp.Cn.Data = append([]byte(nil), r.Cn.Data...)
			got = &cp
		}
	}, func() bool { return got != nil })
	if got.Addr.PortID != tx.PortID() || got.Addr.Group() != groupStream {
		t.Errorf("sender %+v, want port %d group %d", got.Addr, tx.PortID(), groupStream)
	}
	if got.Cn.Seq != 5 || got.Cn.Ack != 9 || string(got.Cn.Data) != "hello" {
		t.Errorf("message %+v: want seq 5 ack 9 payload hello", got.Cn)
	}
}

// TestOverflowCounted fills a small receive buffer with a burst, then drains
// it: the loss is reported (ENOBUFS and the kernel's drop counter), the gaps
// in the stream add up to exactly the kernel's drops, and reading resumes.
func TestOverflowCounted(t *testing.T) {
	for _, noENOBUFS := range []bool{false, true} {
		t.Run(fmt.Sprintf("no_enobufs=%v", noENOBUFS), func(t *testing.T) { testOverflow(t, noENOBUFS) })
	}
}

func testOverflow(t *testing.T, noENOBUFS bool) {
	rx := dial(t, source.Config{Groups: []uint32{groupOverflow}, ReadBuffer: 64 << 10, NoENOBUFS: noENOBUFS})
	tx := dial(t, source.Config{ReadBuffer: -1})
	id := testID()
	const burst = 5000
	for i := range uint32(burst) {
		if err := tx.Send(schema.CnMsg{ID: id, Seq: i, Data: make([]byte, 40)}, groupOverflow); err != nil {
			t.Fatal(err)
		}
	}
	var seen uint64
	var enobufs, dropped uint64
	marker := false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := source.NewBatch(64, 0)
	dec := transform.NewDecoder()
	emit := func(r *transform.Record) {
		switch {
		case r.Kind == transform.KindOverrun:
			enobufs += r.ENOBUFS
			dropped += r.Drops
		case r.Kind == transform.KindRaw && r.Cn.ID == id && r.Cn.Seq == burst:
			marker = true
		case r.Kind == transform.KindRaw && r.Cn.ID == id:
			seen++
		}
	}
	// Drain until the kernel's queue is empty, then send a marker: the last
	// messages of the burst may have been dropped, and the marker arriving
	// proves that reading resumed after the overflow.
	sentMarker := false
	for !marker {
		n, err := rx.ReadBatch(ctx, b)
		if err != nil {
			t.Fatalf("ReadBatch: %v (stats %v)", err, rx.Stats())
		}
		dec.DecodeBatch(b, n, emit)
		if !sentMarker && rx.Stats().QueuedBytes == 0 {
			sentMarker = true
			if err := tx.Send(schema.CnMsg{ID: id, Seq: burst, Data: make([]byte, 40)}, groupOverflow); err != nil {
				t.Fatal(err)
			}
		}
	}
	st := rx.Stats()
	if st.KernelDrops == 0 || (enobufs == 0) != noENOBUFS {
		t.Fatalf("no overflow: kernel drops %d, ENOBUFS %d (buffer %d bytes, burst %d)", st.KernelDrops, enobufs, st.ReadBuffer, burst)
	}
	ds := dec.Stats()
	if ds.Missing != st.KernelDrops || dropped != st.KernelDrops {
		t.Errorf("gap total %d, overrun records %d, kernel drops %d: want all equal", ds.Missing, dropped, st.KernelDrops)
	}
	if seen+ds.Missing != burst {
		t.Errorf("seen %d + missing %d != sent %d", seen, ds.Missing, burst)
	}
	t.Logf("burst %d: seen %d, missing %d in %d gaps, kernel drops %d, ENOBUFS %d, rcvbuf %d", burst, seen, ds.Missing, ds.Gaps, st.KernelDrops, enobufs, st.ReadBuffer)
}

func TestForgedRejected(t *testing.T) {
	rx := dial(t, source.Config{Groups: []uint32{schema.ProcID.Idx, groupForge}})
	tx := dial(t, source.Config{ReadBuffer: -1})
	// A fake fork event on the proc connector's group, from userspace.
	fake := schema.AppendProcEvent(nil, schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: 4242, ChildTGID: 4242}})
	if err := tx.Send(schema.CnMsg{ID: schema.ProcID, Seq: 1, Data: fake}, schema.ProcID.Idx); err != nil {
		t.Fatal(err)
	}
	// A kernel-owned id on a userspace group, then a legitimate message.
	if err := tx.Send(schema.CnMsg{ID: schema.ProcID, Seq: 2, Data: fake}, groupForge); err != nil {
		t.Fatal(err)
	}
	id := testID()
	if err := tx.Send(schema.CnMsg{ID: id, Seq: 3}, groupForge); err != nil {
		t.Fatal(err)
	}
	var legit bool
	var forgedRecords uint64
	readUntil(t, rx, 5*time.Second, func(r *transform.Record) {
		switch {
		case r.Kind == transform.KindForged:
			forgedRecords += r.Count
		case r.Addr.PortID == tx.PortID() && r.Cn.ID == id:
			legit = true
		case r.Addr.PortID == tx.PortID():
			t.Errorf("forged datagram delivered: %+v", r)
		}
	}, func() bool { return legit })
	if f := rx.Stats().Forged; f != 2 || forgedRecords != 2 {
		t.Errorf("forged: stats %d, records %d; want 2", f, forgedRecords)
	}

	// Declared userspace groups accept any id from userspace.
	rx2 := dial(t, source.Config{Groups: []uint32{groupForge}, UserspaceGroups: []uint32{groupForge}})
	if err := tx.Send(schema.CnMsg{ID: schema.ProcID, Seq: 4, Data: fake}, groupForge); err != nil {
		t.Fatal(err)
	}
	var accepted bool
	readUntil(t, rx2, 5*time.Second, func(r *transform.Record) {
		if r.Addr.PortID == tx.PortID() && r.Cn.Seq == 4 {
			accepted = true
		}
	}, func() bool { return accepted })
	if f := rx2.Stats().Forged; f != 0 {
		t.Errorf("forged on a userspace group: %d, want 0", f)
	}
}

func TestCloseInterruptsRead(t *testing.T) {
	c, err := source.Dial(source.Config{Groups: []uint32{groupIdle}, ReadBuffer: -1})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		_, err := c.ReadBatch(context.Background(), source.NewBatch(4, 256))
		errc <- err
	}()
	<-started
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, source.ErrClosed) {
			t.Fatalf("ReadBatch after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked 5s after Close")
	}
}

func TestContextInterruptsRead(t *testing.T) {
	c := dial(t, source.Config{Groups: []uint32{groupIdle}, ReadBuffer: -1})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	b := source.NewBatch(4, 256)
	go func() {
		_, err := c.ReadBatch(ctx, b)
		errc <- err
	}()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ReadBatch: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadBatch still blocked 5s after cancel")
	}
	// The deadline used to interrupt is cleared: the next read works.
	tx := dial(t, source.Config{ReadBuffer: -1})
	id := testID()
	if err := tx.Send(schema.CnMsg{ID: id, Seq: 1}, groupIdle); err != nil {
		t.Fatal(err)
	}
	var got bool
	readUntil(t, c, 5*time.Second, func(r *transform.Record) { got = got || r.Cn.ID == id }, func() bool { return got })
}

func TestReadBufferReported(t *testing.T) {
	c := dial(t, source.Config{})
	st := c.Stats()
	if !st.ReadBufferForced || st.ReadBufferRequested != source.DefaultReadBuffer || st.ReadBuffer < source.DefaultReadBuffer {
		t.Errorf("stats %+v: want the forced default %d granted (the kernel doubles it)", st, source.DefaultReadBuffer)
	}
}

func TestDialErrors(t *testing.T) {
	for _, g := range []uint32{0, 27, 100} {
		if _, err := source.Dial(source.Config{Groups: []uint32{g}}); err == nil {
			t.Errorf("Dial with group %d: no error", g)
		}
	}
}

func kernelRelease() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return string(b)
}

func TestTruncatedCounted(t *testing.T) {
	rx := dial(t, source.Config{Groups: []uint32{groupStream}})
	tx := dial(t, source.Config{ReadBuffer: -1})
	id := testID()
	if err := tx.Send(schema.CnMsg{ID: id, Seq: 1, Data: make([]byte, 200)}, groupStream); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := source.NewBatch(4, 64)
	for {
		n, err := rx.ReadBatch(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range b.Datagrams[:n] {
			if d.Addr.PortID != tx.PortID() {
				continue
			}
			if !d.Truncated || len(d.Data) != 64 || rx.Stats().Truncated != 1 {
				t.Fatalf("datagram of %d bytes in a 64-byte buffer: truncated=%v len=%d stats %v", 16+20+200, d.Truncated, len(d.Data), rx.Stats())
			}
			return
		}
	}
}

// TestProcOverflowGapsEqualDrops: process events overflow a small receive
// buffer; once every CPU has produced an event after the drain, the gaps of
// the per-CPU streams add up to exactly the kernel's drop count.
func TestProcOverflowGapsEqualDrops(t *testing.T) {
	need.Tool(t, "taskset", "it places events on each CPU")
	c := dial(t, source.Config{ReadBuffer: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Subscribe(ctx, source.SubscribeConfig{}); err != nil {
		t.Fatal(err)
	}
	b := source.NewBatch(64, 512)
	dec := transform.NewDecoder()
	var dropped uint64
	ncpu := uint32(runtime.NumCPU())
	markers := map[uint32]uint32{} // marker shell pid -> cpu it is pinned to
	seenCPU := map[uint32]bool{}
	emit := func(r *transform.Record) {
		if r.Kind == transform.KindOverrun {
			dropped += r.Drops
		}
		if r.Kind == transform.KindProc && r.Proc.What == schema.ProcEventExit {
			if cpu, ok := markers[r.Proc.Exit.TGID]; ok && r.Proc.CPU == cpu {
				seenCPU[cpu] = true
			}
		}
	}
	// markOnEveryCPU runs a short process pinned to each CPU; its exit event
	// is on that CPU's stream.
	markOnEveryCPU := func() {
		clear(seenCPU)
		for cpu := range ncpu {
			cmd := exec.Command("taskset", "-c", fmt.Sprint(cpu), "/bin/sh", "-c", "/bin/true")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			markers[uint32(cmd.Process.Pid)] = cpu
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func() {
		n, err := c.ReadBatch(ctx, b)
		if err != nil {
			t.Fatalf("ReadBatch: %v (stats %v)", err, c.Stats())
		}
		dec.DecodeBatch(b, n, emit)
	}
	// Every CPU's stream must have started before the loss: a drop before
	// the first event seen on a stream cannot show as a gap (it is still
	// counted, by the overrun records).
	markOnEveryCPU()
	for len(seenCPU) < int(ncpu) {
		read()
	}
	// A burst of ~1000 events while nobody reads: the queue holds ~157.
	if out, err := exec.Command("/bin/sh", "-c", "for i in $(seq 300); do /bin/true & done; wait").CombinedOutput(); err != nil {
		t.Fatalf("burst: %v: %s", err, out)
	}
	clear(seenCPU)
	for drained := false; !drained || len(seenCPU) < int(ncpu); {
		read()
		if !drained && c.Stats().QueuedBytes == 0 {
			drained = true
			// One event after the drain on every CPU reveals every earlier
			// drop on that CPU's stream as a gap.
			markOnEveryCPU()
		}
	}
	st := c.Stats()
	ds := dec.Stats()
	if st.KernelDrops == 0 {
		t.Fatalf("no overflow (buffer %d bytes): the burst was too small", st.ReadBuffer)
	}
	if ds.Missing != st.KernelDrops || dropped != st.KernelDrops {
		t.Errorf("per-CPU gap total %d, overrun records %d, kernel drops %d: want equal", ds.Missing, dropped, st.KernelDrops)
	}
	t.Logf("events %d, gaps %d, missing %d, kernel drops %d, ENOBUFS %d", ds.Messages, ds.Gaps, ds.Missing, st.KernelDrops, st.ENOBUFS)
}
