package sinktest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// Generator makes reproducible events: every kind, from several hosts, with
// the ids the pipeline would give them (per-CPU sequence numbers for process
// events, per-sender numbers for other connector ids, a run and a counter
// for records), wall-clock and monotonic times that advance, and enrichment
// (a Process, sometimes with a container and ancestors) on some process
// events. Two Generators made with the same seed make the same events.
//
// Every event has its ID set and is unique among the events of its
// Generator. Strings are valid UTF-8 and include characters that the JSON
// encoding escapes; no slice is empty but non-nil, so that an event decoded
// from either encoding compares equal to the one encoded (see Equal).
//
// A Generator is not safe for concurrent use.
type Generator struct {
	rng   *rand.Rand
	hosts []*genHost
	run   string
	rec   uint64 // last record counter of run
	wall  time.Time
	mono  uint64
	n     int
	kinds []schema.Kind
}

type genHost struct {
	host    *schema.Host
	cpuSeq  [4]uint32
	sendSeq map[uint32]uint32
	nextPID uint32
}

// NewGenerator returns a Generator seeded with seed, for three hosts.
func NewGenerator(seed uint64) *Generator {
	g := &Generator{
		rng:   rand.New(rand.NewPCG(seed, 0x636e73747265616d)), // "cnstream"
		wall:  time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC),
		mono:  73115998412345,
		kinds: schema.Kinds(),
	}
	g.run = fmt.Sprintf("%016x", g.rng.Uint64())
	for i, name := range []string{"web-1.example.net", "db-2.example.net", "batch-3.example.net"} {
		h := &genHost{
			host: &schema.Host{
				Hostname:  name,
				MachineID: fmt.Sprintf("%016x%016x", g.rng.Uint64(), g.rng.Uint64()),
				BootID:    g.uuid(),
			},
			sendSeq: make(map[uint32]uint32),
			nextPID: uint32(1000 + 20000*i),
		}
		for c := range h.cpuSeq {
			h.cpuSeq[c] = g.rng.Uint32N(100000)
		}
		g.hosts = append(g.hosts, h)
	}
	return g
}

// Hosts returns the hosts the Generator's events come from.
func (g *Generator) Hosts() []*schema.Host {
	out := make([]*schema.Host, len(g.hosts))
	for i, h := range g.hosts {
		out[i] = h.host
	}
	return out
}

// Batch returns the next n events.
func (g *Generator) Batch(n int) []schema.Event {
	out := make([]schema.Event, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

// weights of the kinds after the first round, in the order of schema.Kinds:
// mostly fork, exec, exit, as on a real host.
var weights = map[schema.Kind]int{
	schema.KindFork: 25, schema.KindExec: 20, schema.KindExit: 25, schema.KindUID: 3,
	schema.KindGID: 3, schema.KindSID: 2, schema.KindPtrace: 2, schema.KindComm: 8,
	schema.KindCoredump: 1, schema.KindAck: 1, schema.KindRaw: 3, schema.KindGap: 2,
	schema.KindOverrun: 1, schema.KindMalformed: 1, schema.KindForged: 1, schema.KindDropped: 2,
	schema.KindFiltered: 1, schema.KindClosed: 1,
}

// Next returns the next event. The first len(schema.Kinds()) events are
// one of each kind, in the order of schema.Kinds; after them kinds are
// drawn with the weights of a busy host (fork, exec and exit first).
func (g *Generator) Next() schema.Event {
	var k schema.Kind
	if g.n < len(g.kinds) {
		k = g.kinds[g.n]
	} else {
		total := 0
		for _, w := range weights {
			total += w
		}
		r := g.rng.IntN(total)
		for _, kk := range g.kinds {
			if r < weights[kk] {
				k = kk
				break
			}
			r -= weights[kk]
		}
	}
	g.n++
	h := g.hosts[g.rng.IntN(len(g.hosts))]
	g.wall = g.wall.Add(time.Duration(1 + g.rng.IntN(2_000_000)))
	g.mono += 1 + g.rng.Uint64N(2_000_000)

	e := schema.Event{Version: schema.EventVersion, Kind: k, Time: g.wall, Host: h.host}
	pid := h.pid(g)
	switch k {
	case schema.KindFork, schema.KindExec, schema.KindExit, schema.KindUID, schema.KindGID,
		schema.KindSID, schema.KindPtrace, schema.KindComm, schema.KindCoredump, schema.KindAck:
		e.MonoNS = g.mono
		e.Stream = h.procStream(g)
	case schema.KindRaw:
		sender := 4000 + g.rng.Uint32N(3)
		h.sendSeq[sender]++
		e.Stream = &schema.Stream{Idx: 11, Val: 77, Sender: sender, Seq: h.sendSeq[sender]}
	default: // records the pipeline makes
		g.rec++
		e.Record = &schema.Record{Run: g.run, Seq: g.rec}
	}
	switch k {
	case schema.KindFork:
		child := h.pid(g)
		e.Fork = &schema.ForkEvent{ParentPID: pid, ParentTGID: pid, ChildPID: child, ChildTGID: child}
		if g.rng.IntN(4) == 0 { // a thread
			e.Fork.ChildTGID = pid
		}
	case schema.KindExec:
		e.Exec = &schema.ExecEvent{PID: pid, TGID: pid}
	case schema.KindExit:
		x := schema.ExitEvent{PID: pid, TGID: pid, ExitSignal: 17, ParentPID: 1, ParentTGID: 1}
		switch g.rng.IntN(4) {
		case 0:
			x.ExitCode = 0
		case 1:
			x.ExitCode = uint32(1+g.rng.IntN(255)) << 8
		case 2:
			x.ExitCode = 9 // SIGKILL
		case 3:
			x.ExitCode = 11 | 0x80 // SIGSEGV, core dumped
		}
		e.Exit = schema.NewExitInfo(x)
	case schema.KindUID:
		e.UID = &schema.IDEvent{PID: pid, TGID: pid, Real: 1000, Effective: 0}
	case schema.KindGID:
		e.GID = &schema.IDEvent{PID: pid, TGID: pid, Real: 1000, Effective: 27}
	case schema.KindSID:
		e.SID = &schema.SIDEvent{PID: pid, TGID: pid}
	case schema.KindPtrace:
		e.Ptrace = &schema.PtraceEvent{PID: pid, TGID: pid}
		if g.rng.IntN(2) == 0 {
			e.Ptrace.TracerPID, e.Ptrace.TracerTGID = pid+1, pid+1
		}
	case schema.KindComm:
		e.Comm = &schema.CommInfo{PID: pid, TGID: pid, Comm: comms[g.rng.IntN(len(comms))]}
	case schema.KindCoredump:
		e.Coredump = &schema.CoredumpEvent{PID: pid, TGID: pid, ParentPID: 1, ParentTGID: 1}
	case schema.KindAck:
		e.Stream.Ack = 1
		e.Ack = &schema.AckInfo{Err: 0}
	case schema.KindRaw:
		e.Raw = &schema.RawInfo{Group: 11, Payload: g.bytes(1 + g.rng.IntN(64))}
	case schema.KindGap:
		st := h.procStream(g)
		missing := 1 + g.rng.Uint32N(50)
		got := st.Seq + missing
		h.cpuSeq[st.CPU] = got
		e.Gap = &schema.GapInfo{Expected: st.Seq, Got: got, Missing: uint64(missing)}
		st.Seq = got
		e.Stream = st
	case schema.KindOverrun:
		e.Overrun = &schema.OverrunInfo{KernelDrops: 1 + g.rng.Uint64N(5000), ENOBUFS: 1 + g.rng.Uint64N(3)}
	case schema.KindMalformed:
		e.Malformed = &schema.MalformedInfo{Error: "schema: proc_event at offset 0: short buffer: 24 bytes, need 40", Data: g.bytes(24)}
	case schema.KindForged:
		e.Forged = &schema.ForgedInfo{Count: 1 + g.rng.Uint64N(10)}
	case schema.KindDropped:
		e.Dropped = &schema.DroppedInfo{Count: 1 + g.rng.Uint64N(4096), Reason: "drop_oldest"}
		if g.rng.IntN(2) == 0 {
			e.Dropped.Reason, e.Dropped.Sink = "sink_failed", "kafka"
		}
	case schema.KindFiltered:
		st := h.procStream(g)
		e.Stream = st
		e.Filtered = &schema.FilteredInfo{Count: 1, First: st.Seq, Last: st.Seq, Kinds: map[string]uint64{"exec": 1}}
	case schema.KindClosed:
		e.Stream = &schema.Stream{Idx: 11, Val: 77, Sender: 4242, Epoch: 73115991, Seq: 311}
		e.Closed = &schema.ClosedInfo{Reason: "idle", First: 0, Last: 311}
	case schema.KindCorrupt:
		e.Corrupt = &schema.CorruptInfo{File: "00000000000000000000.seg", Offset: 4096, Bytes: 512, Reason: "crc mismatch"}
	}
	switch k {
	case schema.KindExec, schema.KindExit, schema.KindFork, schema.KindComm:
		if g.rng.IntN(5) < 2 {
			e.Process = g.process(pid)
		}
	}
	e.ID = e.EventID()
	return e
}

var comms = []string{"sh", "bash", "nginx", "worker<1>", "kworker/0:1", "café", `a"b\c`, "python3"}

func (h *genHost) procStream(g *Generator) *schema.Stream {
	cpu := g.rng.IntN(len(h.cpuSeq))
	h.cpuSeq[cpu]++
	return &schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: uint32(cpu), Seq: h.cpuSeq[cpu]}
}

func (h *genHost) pid(g *Generator) uint32 {
	h.nextPID += 1 + g.rng.Uint32N(3)
	return h.nextPID
}

func (g *Generator) process(pid uint32) *schema.Process {
	p := &schema.Process{PID: pid, TGID: pid, Source: "gone"}
	switch g.rng.IntN(3) {
	case 0:
		return p
	case 1:
		p.Source = "table"
	case 2:
		p.Source = "proc"
	}
	u := func(v uint32) *uint32 { return &v }
	p.PPID = pid - 1
	p.Comm = comms[g.rng.IntN(len(comms))]
	p.Exe = "/usr/bin/" + p.Comm
	p.Cmdline = []string{p.Comm, "-c", `echo "<b>ok</b>" && printf 'a\tb\n' > /tmp/out`, "line\u2028sep"}[:1+g.rng.IntN(4)]
	p.Cwd = "/srv/app"
	p.UID, p.EUID, p.GID, p.EGID = u(1000), u(0), u(1000), u(1000)
	p.User, p.Group = "deploy", "deploy"
	if g.rng.IntN(2) == 0 {
		id := fmt.Sprintf("%016x%016x%016x%016x", g.rng.Uint64(), g.rng.Uint64(), g.rng.Uint64(), g.rng.Uint64())
		p.Cgroup = "/system.slice/docker-" + id + ".scope"
		p.Container = &schema.Container{ID: id, Runtime: "docker"}
		p.Ancestors = []schema.Ancestor{{PID: pid - 1, Comm: "bash", Exe: "/usr/bin/bash"}, {PID: 1}}
	}
	return p
}

func (g *Generator) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

func (g *Generator) uuid() string {
	a, b := g.rng.Uint64(), g.rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", a>>32, a>>16&0xffff, a&0xfff, b>>48&0x3fff|0x8000, b&0xffffffffffff)
}
