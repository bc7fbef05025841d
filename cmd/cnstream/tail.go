package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"

	"github.com/cnstream/cnstream/assemble"
	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
)

const tailSynopsis = `tail [flags]

Shows connector events live: by default every process event of the host
(fork, exec, exit, uid, gid, sid, ptrace, comm, coredump, and the ACK of the
subscription), one readable line each, or one JSON object per line with
--json. Sequence gaps (per CPU for process events) and kernel drops are shown
as lines starting with "---" (kinds gap, overrun, forged, malformed in JSON):
nothing is lost silently. With --group G it watches connector multicast group
G instead (other connector users, or userspace senders such as
"cnstream send"), showing each message's payload as hex.

Needs root or CAP_NET_ADMIN, in the initial network, user and pid namespaces.
SIGINT or SIGTERM stops it cleanly (the subscription is cancelled with IGNORE).`

type tailOptions struct {
	json       bool
	count      uint64
	filter     transform.Filter
	kernelMask schema.What
	enrich     bool
	ancestors  int
	maxProcs   int
	group      uint32
	id         *schema.CbID
	rcvbuf     int
	noENOBUFS  bool
	summary    bool
	batch      int
	batches    int
	dgramSize  int
	userspace  []uint32
}

func parseTail(args []string, stderr io.Writer) (*tailOptions, error) {
	fs := newFlagSet("tail [flags]", tailSynopsis, stderr)
	o := &tailOptions{}
	fs.BoolVar(&o.json, "json", false, "one JSON object per line instead of readable lines")
	fs.Uint64Var(&o.count, "count", 0, "exit after N events (0: until interrupted)")
	kindList(fs, "kinds", "keep only these event `kinds` (comma-separated: fork,exec,exit,uid,gid,sid,ptrace,comm,coredump,ack,raw); loss records are always shown", &o.filter.Kinds)
	kindList(fs, "exclude-kinds", "drop these event `kinds`", &o.filter.ExcludeKinds)
	uidList(fs, "uid", "keep only events of processes with this real or effective `uid` (repeatable)", &o.filter.UIDs)
	uidList(fs, "exclude-uid", "drop events of processes with this `uid` (repeatable)", &o.filter.ExcludeUIDs)
	stringList(fs, "comm", "keep only events whose command name matches this `glob` (repeatable)", &o.filter.Comms)
	stringList(fs, "exclude-comm", "drop events whose command name matches this `glob` (repeatable)", &o.filter.ExcludeComms)
	stringList(fs, "exe", "keep only events whose executable path matches this `glob` (repeatable)", &o.filter.Exes)
	stringList(fs, "exclude-exe", "drop events whose executable path matches this `glob` (repeatable)", &o.filter.ExcludeExes)
	stringList(fs, "container", "keep only events of this container `id` (12+ characters), \"host\" or \"*\" (repeatable)", &o.filter.Containers)
	stringList(fs, "exclude-container", "drop events of this container `id`, \"host\" or \"*\" (repeatable)", &o.filter.ExcludeContainers)
	kernelKinds := fs.String("kernel-filter", "", "ask the kernel to send only these `kinds` (fork,exec,exit,uid,gid,sid,ptrace,comm,coredump,nonzero_exit): less work, but no ACK and gaps no longer mean loss (Linux 6.6+)")
	fs.BoolVar(&o.enrich, "enrich", true, "add process details (exe, cmdline, cwd, ids and names, cgroup and container, ancestors) from /proc and a process table")
	fs.IntVar(&o.ancestors, "ancestors", 4, "parent chain depth added to each event")
	fs.IntVar(&o.maxProcs, "max-processes", 65536, "process table bound (least recently used entries beyond it are evicted)")
	group := fs.Uint("group", 0, "watch connector multicast group `G` (1-26) instead of subscribing to process events")
	id := fs.String("id", "", "with --group: show only messages of connector id `IDX:VAL`")
	fs.IntVar(&o.rcvbuf, "rcvbuf", 0, "socket receive buffer in `bytes` (SO_RCVBUFFORCE; 0: 64 MiB, -1: kernel default)")
	fs.BoolVar(&o.noENOBUFS, "no-enobufs", false, "set NETLINK_NO_ENOBUFS (drops still show as gaps and overrun lines)")
	fs.BoolVar(&o.summary, "summary", false, "at exit, write one JSON line with counts and per-stream sequence spans to stderr")
	fs.Func("userspace-group", "accept datagrams from userspace senders on group `G` even with a kernel-owned connector id (repeatable; default: such datagrams are dropped and counted as forged)", func(v string) error {
		g, err := strconv.ParseUint(v, 10, 32)
		if err != nil || g < 1 || g > schema.MaxGroup {
			return fmt.Errorf("group %q: connector groups are 1..%d", v, schema.MaxGroup)
		}
		o.userspace = append(o.userspace, uint32(g))
		return nil
	})
	fs.IntVar(&o.batch, "batch", 64, "datagrams per recvmmsg call")
	fs.IntVar(&o.batches, "queue", 0, "batches buffered between the reader and the printer (0: as many as fit in 32 MiB)")
	fs.IntVar(&o.dgramSize, "datagram-size", 0, "receive buffer per datagram in `bytes` (0: 512 for process events, which are 76 bytes; 16420, the connector's maximum, with --group); larger datagrams are reported as malformed (truncated)")
	err := parseFlags(fs, args)
	if err != nil {
		return nil, err
	}
	if *group > schema.MaxGroup {
		return nil, usageErr("--group %d: connector groups are 1..%d", *group, schema.MaxGroup)
	}
	o.group = uint32(*group)
	if *id != "" {
		if o.group == 0 {
			return nil, usageErr("--id needs --group: the connector id to watch is heard on a multicast group")
		}
		cb, err := parseCbID(*id)
		if err != nil {
			return nil, usageErr("--id: %v", err)
		}
		o.id = &cb
	}
	if err := o.filter.Validate(); err != nil {
		return nil, usageErr("%v", err)
	}
	if o.ancestors == 0 {
		o.ancestors = -1 // none: 0 is the library's default
	}
	if *kernelKinds != "" {
		if o.kernelMask, err = assemble.ParseKernelFilter(strings.Split(*kernelKinds, ",")); err != nil {
			return nil, usageErr("--kernel-filter: %v", err)
		}
	}
	if o.batch < 1 || o.batch > 1024 {
		return nil, usageErr("--batch %d: must be 1..1024", o.batch)
	}
	if o.dgramSize != 0 && (o.dgramSize < 64 || o.dgramSize > 1<<20) {
		return nil, usageErr("--datagram-size %d: must be 64..1048576", o.dgramSize)
	}
	if o.batches != 0 && o.batches < 2 { // 0: pipeline.ReaderConfig's default
		return nil, usageErr("--queue %d: must be at least 2", o.batches)
	}
	return o, nil
}

func tailCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTail(args, stderr)
	if err != nil {
		return err
	}
	acfg := assemble.Config{
		Source: assemble.Source{NoProcessEvents: o.group != 0, ReadBuffer: o.rcvbuf, NoENOBUFS: o.noENOBUFS,
			UserspaceGroups: o.userspace, Batch: o.batch, DatagramBytes: o.dgramSize, KernelFilter: o.kernelMask},
		Transform: assemble.Transform{NoEnrich: !o.enrich, Ancestors: o.ancestors, MaxProcesses: o.maxProcs, Filter: o.filter},
		OnLack: func(l assemble.Lack) {
			switch l.Capability {
			case assemble.CapNetAdmin:
				fmt.Fprintf(stderr, "cnstream tail: warning: receive buffer limited to %d bytes, capped by net.core.rmem_max (SO_RCVBUFFORCE refused: %s): bursts may overflow it; every drop is reported\n", l.ReadBuffer, l.Hint)
			case assemble.CapSysPtrace:
				fmt.Fprintf(stderr, "cnstream tail: warning: without CAP_SYS_PTRACE, events of other users' processes carry no exe and cwd\n")
			}
		},
	}
	if o.group != 0 {
		acfg.Source.Groups = []uint32{o.group}
	}
	if o.group == 0 && o.kernelMask != 0 {
		fmt.Fprintf(stderr, "cnstream tail: warning: with --kernel-filter the kernel sends no ACK and skips events: sequence gaps no longer mean loss\n")
	}
	in, err := assemble.Open(ctx, acfg)
	if err != nil {
		return err
	}
	defer in.Close()
	conn, tr := in.Conn, in.Transformer

	// The reader never waits for the printer unless every batch is full:
	// then the kernel's queue absorbs the burst, and what it cannot hold is
	// counted as drops and shown.
	rcfg := in.ReaderConfig()
	rcfg.ReadQueue, rcfg.StopAtOnce = o.batches, true
	rd, err := pipeline.NewReader(rcfg)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	p := &printer{w: w, json: o.json, count: o.count, id: o.id}
	var writeErr error
	readErr := rd.Run(ctx, func(events []schema.Event, more bool) bool {
		for i := range events {
			p.print(&events[i])
		}
		if !more || p.done() {
			if writeErr = w.Flush(); writeErr != nil {
				return false
			}
		}
		return !p.done()
	})
	stats := conn.Stats()
	closeErr := conn.Close()
	stats.Subscription = conn.Stats().Subscription // with the IGNORE sent by Close
	if writeErr == nil {
		writeErr = w.Flush()
	}
	writeSummary(stderr, o.summary, tr, stats, p.events)
	if writeErr != nil && !errors.Is(writeErr, syscall.EPIPE) { // a closed pipe is the reader's choice
		writeErr = fmt.Errorf("write: %w", writeErr)
	} else {
		writeErr = nil
	}
	return errors.Join(readErr, closeErr, writeErr)
}

type tailSummary struct {
	Events      uint64          `json:"events"`
	Printed     uint64          `json:"printed"`
	Filtered    uint64          `json:"filtered"`
	Gaps        uint64          `json:"gaps"`
	Missing     uint64          `json:"missing"`
	Duplicates  uint64          `json:"duplicates"`
	Restarts    uint64          `json:"restarts"`
	KernelDrops uint64          `json:"kernel_drops"`
	ENOBUFS     uint64          `json:"enobufs"`
	Forged      uint64          `json:"forged"`
	Malformed   uint64          `json:"malformed"`
	Truncated   uint64          `json:"truncated"`
	ReadBuffer  int             `json:"rcvbuf"`
	Streams     []streamSummary `json:"streams"`
	// Subscription: the ack of the LISTEN's ACK and of the IGNORE sent at
	// exit (the kernel answers it with ignore_ack + 1).
	Subscription *subscriptionSummary `json:"subscription,omitempty"`
}

type subscriptionSummary struct {
	Ack        uint32 `json:"ack"`
	Legacy     bool   `json:"legacy"`
	Attempts   int    `json:"attempts"`
	IgnoreSent bool   `json:"ignore_sent"`
	IgnoreAck  uint32 `json:"ignore_ack"`
}

type streamSummary struct {
	Idx     uint32 `json:"idx"`
	Val     uint32 `json:"val"`
	CPU     uint32 `json:"cpu"`
	Sender  uint32 `json:"sender,omitempty"`
	First   uint32 `json:"first"`
	Last    uint32 `json:"last"`
	Span    uint64 `json:"span"`
	Seen    uint64 `json:"seen"`
	Missing uint64 `json:"missing"`
	// Filtered: events of the stream the filter removed (stated by
	// filtered records); seen - filtered were printed, and
	// seen + missing == span in the current epoch.
	Filtered uint64 `json:"filtered"`
	Epoch    uint32 `json:"epoch"`
}

func writeSummary(w io.Writer, asJSON bool, tr *transform.Transformer, st source.Stats, printed uint64) {
	ts := tr.Stats()
	ds := ts.DecoderStats
	s := tailSummary{
		Events: ds.Messages, Printed: printed, Filtered: ts.Filtered, Gaps: ds.Gaps, Missing: ds.Missing,
		Duplicates: ds.Duplicates, Restarts: ds.Restarts,
		KernelDrops: st.KernelDrops, ENOBUFS: st.ENOBUFS, Forged: st.Forged,
		Malformed: ds.Malformed, Truncated: st.Truncated, ReadBuffer: st.ReadBuffer,
		Streams: []streamSummary{},
	}
	if sub := st.Subscription; sub.Attempts > 0 {
		s.Subscription = &subscriptionSummary{Ack: sub.Ack, Legacy: sub.Legacy, Attempts: sub.Attempts, IgnoreSent: sub.IgnoreSent, IgnoreAck: sub.IgnoreAck}
	}
	for _, ss := range tr.Tracker().Streams() {
		s.Streams = append(s.Streams, streamSummary{
			Idx: ss.Key.Idx, Val: ss.Key.Val, CPU: ss.Key.CPU, Sender: ss.Key.Sender,
			First: ss.First, Last: ss.Last, Span: ss.Span(), Seen: ss.Seen, Missing: ss.Missing,
			Filtered: ss.Filtered, Epoch: ss.Epoch,
		})
	}
	if asJSON {
		b, _ := json.Marshal(map[string]tailSummary{"summary": s})
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "cnstream tail: %d events, %d gaps (%d missing), %d kernel drops, %d ENOBUFS, %d forged, %d malformed; receive buffer %d bytes\n",
		s.Events, s.Gaps, s.Missing, s.KernelDrops, s.ENOBUFS, s.Forged, s.Malformed, s.ReadBuffer)
}
