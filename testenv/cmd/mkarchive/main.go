// Command mkarchive writes a tamper-evident archive of synthetic process
// events with the real file sink (archive on), for benchmarking
// "cnstream verify" and "cnstream replay" on archives of millions of
// events (testenv/bench-archive):
//
//	mkarchive --dir DIR --key KEY [--events N] [--encoding json|msgpack] [--compression zstd|none] [--mix build|threads]
//
// Events come from two CPU streams of one host and boot, seqs contiguous.
// With --mix build (the default), 6 in 10 are fork and exit events (about
// 330 bytes as JSON) and the rest exec events with their process (about
// 1000 bytes), like a busy build host: 580 bytes a record on average. With
// --mix threads, all are fork and exit events, like a thread storm. Every 100,000th number is missing, stated by a
// gap record, so the archive verifies as complete with provable loss.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

func main() {
	dir := flag.String("dir", "", "archive directory (required)")
	key := flag.String("key", "", "signer key file of cnstream keygen (required)")
	n := flag.Int("events", 10_000_000, "events to write")
	enc := flag.String("encoding", "json", "json or msgpack")
	comp := flag.String("compression", "zstd", "zstd or none")
	host := flag.String("host", "", "host name in the events and the origin (default: this host's)")
	mix := flag.String("mix", "build", "build (4 in 10 exec events with their process) or threads (fork and exit only)")
	flag.Parse()
	if *dir == "" || *key == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *host == "" {
		h, err := os.Hostname()
		if err != nil {
			fail(err)
		}
		*host = h
	}
	format := file.JSONL
	if *enc == "msgpack" {
		format = file.Msgpack
	}
	s, err := file.New(file.Config{Dir: *dir, Format: format, Compression: file.Compression(*comp), Sync: file.SyncNever,
		Archive: &file.ArchiveConfig{Key: *key, Origin: "cnstream/" + *host}})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	start := time.Now()
	g := newGen(*host)
	switch *mix {
	case "build":
	case "threads":
		g.threads = true
	default:
		fail(fmt.Errorf("--mix %q: want build or threads", *mix))
	}
	batch := make([]schema.Event, 0, 1024)
	for i := 0; i < *n; i++ {
		batch = append(batch, g.next())
		if len(batch) == cap(batch) || i == *n-1 {
			if err := s.WriteBatch(ctx, batch); err != nil {
				fail(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Close(ctx); err != nil {
		fail(err)
	}
	st := s.Stats()
	fmt.Printf("mkarchive: %d events (%d bytes of records) in %d files, %.1f s\n", st.Events, st.Bytes, st.Rotations, time.Since(start).Seconds())
}

type gen struct {
	threads bool // fork and exit only
	host    *schema.Host
	i       int
	seq     [2]uint32
	t       time.Time
	proc    schema.Process
}

func newGen(hostname string) *gen {
	id := uint32(1000)
	return &gen{
		host: &schema.Host{Hostname: hostname, MachineID: "4f6c1d2e8a9b4c7d9e0f1a2b3c4d5e6f", BootID: "8c5d9f3a-1b2e-4c7d-9a0f-3e4b5c6d7e8f"},
		t:    time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC),
		proc: schema.Process{PPID: 1204, Source: "proc", Comm: "cc1", Exe: "/usr/lib/gcc/x86_64-linux-gnu/12/cc1",
			Cmdline: []string{"/usr/lib/gcc/x86_64-linux-gnu/12/cc1", "-quiet", "-I", "include", "-D_GNU_SOURCE", "src/module.c", "-O2", "-o", "/tmp/ccXyZ.s"},
			Cwd:     "/srv/build", UID: &id, EUID: &id, GID: &id, EGID: &id, User: "build", Group: "build",
			Cgroup: "/system.slice/buildkite-agent.service"},
	}
}

func (g *gen) next() schema.Event {
	i := g.i
	g.i++
	cpu := uint32(i % 2)
	g.seq[cpu]++
	seq := g.seq[cpu]
	t := g.t.Add(time.Duration(i) * 5 * time.Microsecond)
	e := schema.Event{Version: 1, Time: t, MonoNS: uint64(i) * 5000, Host: g.host,
		Stream: &schema.Stream{Idx: 1, Val: 1, CPU: cpu, Seq: seq}}
	if i > 0 && i%100_000 == 0 {
		// A number lost in the kernel: the next event states it.
		g.seq[cpu]++
		e.Stream.Seq = g.seq[cpu]
		e.Kind = schema.KindGap
		e.Record = &schema.Record{Run: "mkarchive", Seq: uint64(i)}
		e.Gap = &schema.GapInfo{Expected: seq, Got: seq + 1, Missing: 1}
		// The gap record carries the stream but not a delivered number:
		// the event numbered seq+1 follows as the next event.
		g.seq[cpu]--
		return e
	}
	pid := uint32(10000 + i%50000)
	k := i % 10
	if g.threads {
		k = i % 6
	}
	switch k {
	case 0, 1, 2:
		e.Kind = schema.KindFork
		e.Fork = &schema.ForkEvent{ParentPID: 1204, ParentTGID: 1204, ChildPID: pid, ChildTGID: pid}
	case 3, 4, 5:
		e.Kind = schema.KindExit
		st := 0
		e.Exit = &schema.ExitInfo{PID: pid, TGID: pid, ParentPID: 1204, ParentTGID: 1204, ExitStatus: &st, ExitSignal: 17}
	default:
		e.Kind = schema.KindExec
		e.Exec = &schema.ExecEvent{PID: pid, TGID: pid}
		p := g.proc
		p.PID, p.TGID = pid, pid
		e.Process = &p
	}
	return e
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkarchive:", err)
	os.Exit(1)
}
