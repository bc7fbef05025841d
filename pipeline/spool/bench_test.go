package spool

import (
	"fmt"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// Benchmarks of the spool alone (docs/BENCHMARKS.md, "Disk spool"). One op
// is one event: ns/op is ns per event, MB/s counts the bytes of the records
// written (or read back), allocs/op is per event.
//
//	go test -run '^$' -bench . -benchtime 200000x -count 3 ./pipeline/spool

const benchBoot = "0c4a6f1e-2b3d-4c5e-8f70-91a2b3c4d5e6"

// benchEvents returns n events of shape (fork or exec) on two CPU
// streams, numbered from 0; renumber moves them on.
func benchEvents(shape string, n int) []schema.Event {
	host := schema.Host{Hostname: "bench-host", MachineID: "5a1d2c3b4e5f60718293a4b5c6d7e8f9", BootID: benchBoot}
	out := make([]schema.Event, n)
	uid := uint32(1000)
	for i := range out {
		e := schema.Event{Version: schema.EventVersion, Time: time.Unix(1700000000, int64(i)).UTC(),
			MonoNS: 73115998420107 + uint64(i), Host: &host,
			Stream: &schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: uint32(i % 2), Seq: uint32(i / 2)}}
		pid := 48100 + uint32(i)
		switch shape {
		case "fork":
			// A fork enriched from the process table: the parent, its
			// command line and two ancestors.
			e.Kind = schema.KindFork
			e.Fork = &schema.ForkEvent{ParentPID: 1204, ParentTGID: 1204, ChildPID: pid, ChildTGID: pid}
			e.Process = &schema.Process{PID: 1204, TGID: 1204, PPID: 1180, Source: "table", Comm: "bash",
				Exe: "/usr/bin/bash", Cmdline: []string{"bash", "-c", "make -j2 test"},
				Ancestors: []schema.Ancestor{{PID: 1180, Comm: "sshd"}, {PID: 1}}}
		case "exec":
			// An exec read from /proc, in a container, with its parent chain.
			e.Kind = schema.KindExec
			e.Exec = &schema.ExecEvent{PID: pid, TGID: pid}
			e.Process = &schema.Process{PID: pid, TGID: pid, PPID: 1204, Source: "proc", Comm: "sh", Exe: "/usr/bin/dash",
				Cmdline: []string{"sh", "-c", `echo "<b>ok</b>" && printf 'a\tb\n' > /tmp/out`, "--config=/etc/app/config.yaml"},
				Cwd:     "/srv/app", UID: &uid, EUID: &uid, GID: &uid, EGID: &uid, User: "deploy", Group: "deploy",
				Cgroup: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f8e3c2a_5b6d_4e7f_8a9b_1c2d3e4f5a6b.slice/cri-containerd-3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a.scope",
				Container: &schema.Container{ID: "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a", Runtime: "containerd",
					PodUID: "0f8e3c2a-5b6d-4e7f-8a9b-1c2d3e4f5a6b"},
				Ancestors: []schema.Ancestor{{PID: 1204, Comm: "bash", Exe: "/usr/bin/bash"},
					{PID: 1180, Comm: "containerd-shim", Exe: "/usr/bin/containerd-shim-runc-v2"}, {PID: 1}}}
		default:
			panic("benchEvents: unknown shape " + shape)
		}
		e.ID = e.EventID()
		out[i] = e
	}
	return out
}

// renumber moves a batch on by its length (each stream continues).
func renumber(evs []schema.Event, round int) {
	base := uint32(round * len(evs) / 2)
	for i := range evs {
		evs[i].Stream.Seq = base + uint32(i/2)
		evs[i].MonoNS++
	}
}

// recordBytes is the size on disk of the record of e.
func recordBytes(e *schema.Event) int64 {
	var scratch []byte
	return int64(len(appendRecord(nil, 0, e, e.Host, &scratch)))
}

func benchOpen(b *testing.B, fsync Fsync, cacheEvents int) (*Spool, *Cursor) {
	b.Helper()
	s, err := Open(Config{Dir: b.TempDir(), Fsync: fsync, MaxSize: 8 << 30, CacheEvents: cacheEvents,
		Records: schema.NewRecords("", schema.Host{Hostname: "bench-host", BootID: benchBoot})}, []string{"sink"})
	if err != nil {
		b.Fatal(err)
	}
	return s, s.Cursor("sink")
}

// syncer calls Sync every FsyncInterval of wall time, as the delivery
// runtime does (under fsync interval; under never Sync writes the state only).
type syncer struct {
	s    *Spool
	last time.Time
	n    int
}

func (y *syncer) tick(b *testing.B) {
	if time.Since(y.last) >= DefaultFsyncInterval {
		if err := y.s.Sync(); err != nil {
			b.Fatal(err)
		}
		y.last = time.Now()
		y.n++
	}
}

// ackAll moves the cursor to the end as if it had taken and acknowledged
// everything (no take cost): the appender is measured alone, and segments
// are deleted at Sync or when full, as with a sink that keeps up.
func ackAll(c *Cursor) {
	c.s.mu.Lock()
	c.next, c.acked = c.s.next, c.s.next
	c.inflight = c.inflight[:0]
	c.s.mu.Unlock()
}

func report(b *testing.B, start time.Time) {
	el := time.Since(start)
	b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
}

var benchFsyncs = []Fsync{FsyncInterval, FsyncNever}

// BenchmarkAppend: Append alone (encode, CRC, pwrite, head file, memory
// tail), a sink that acknowledges everything at once.
func BenchmarkAppend(b *testing.B) {
	for _, shape := range []string{"fork", "exec"} {
		for _, batch := range []int{64, 512} {
			for _, fs := range benchFsyncs {
				b.Run(fmt.Sprintf("%s/batch=%d/fsync=%s", shape, batch, fs), func(b *testing.B) {
					evs := benchEvents(shape, batch)
					s, c := benchOpen(b, fs, 0)
					b.SetBytes(recordBytes(&evs[len(evs)-1]))
					b.ReportAllocs()
					y := &syncer{s: s, last: time.Now()}
					b.ResetTimer()
					start := time.Now()
					for done, round := 0, 0; done < b.N; round++ {
						n := min(batch, b.N-done)
						renumber(evs, round)
						if !s.Append(evs[:n]) {
							b.Fatal("Append failed")
						}
						ackAll(c)
						y.tick(b)
						done += n
					}
					report(b, start)
					b.StopTimer()
					s.Close()
				})
			}
		}
	}
}

// BenchmarkAppendTake: Append, then the sink's cursor takes the batch from
// the memory tail and acknowledges it (one goroutine).
func BenchmarkAppendTake(b *testing.B) {
	for _, shape := range []string{"fork", "exec"} {
		for _, batch := range []int{64, 512} {
			for _, fs := range benchFsyncs {
				b.Run(fmt.Sprintf("%s/batch=%d/fsync=%s", shape, batch, fs), func(b *testing.B) {
					evs := benchEvents(shape, batch)
					s, c := benchOpen(b, fs, 0)
					b.SetBytes(recordBytes(&evs[len(evs)-1]))
					b.ReportAllocs()
					y := &syncer{s: s, last: time.Now()}
					dst := make([]schema.Event, 0, batch)
					b.ResetTimer()
					start := time.Now()
					for done, round := 0, 0; done < b.N; round++ {
						n := min(batch, b.N-done)
						renumber(evs, round)
						if !s.Append(evs[:n]) {
							b.Fatal("Append failed")
						}
						for got := 0; got < n; {
							dst = c.TryTake(dst[:0], batch, 1<<30)
							if len(dst) == 0 {
								b.Fatalf("took nothing after %d of %d", got, n)
							}
							c.Ack(len(dst))
							got += len(dst)
						}
						y.tick(b)
						done += n
					}
					report(b, start)
					b.StopTimer()
					s.Close()
				})
			}
		}
	}
}

// BenchmarkTakeFromDisk: a cursor that fell behind (the memory tail holds
// only the newest 64 events) takes b.N events from the segments, in
// batches of 512, and acknowledges them: read, CRC, decode per event.
func BenchmarkTakeFromDisk(b *testing.B) {
	for _, shape := range []string{"fork", "exec"} {
		b.Run(shape, func(b *testing.B) {
			evs := benchEvents(shape, 512)
			s, c := benchOpen(b, FsyncNever, 64)
			for done, round := 0, 0; done < b.N; round++ {
				n := min(len(evs), b.N-done)
				renumber(evs, round)
				if !s.Append(evs[:n]) {
					b.Fatal("Append failed")
				}
				done += n
			}
			b.SetBytes(recordBytes(&evs[len(evs)-1]))
			b.ReportAllocs()
			dst := make([]schema.Event, 0, 512)
			b.ResetTimer()
			start := time.Now()
			for got := 0; got < b.N; {
				dst = c.TryTake(dst[:0], 512, 1<<30)
				if len(dst) == 0 {
					b.Fatalf("took nothing after %d of %d", got, b.N)
				}
				for i := range dst {
					if dst[i].Kind.IsLoss() {
						b.Fatalf("loss record from disk: %+v", dst[i])
					}
				}
				c.Ack(len(dst))
				got += len(dst)
			}
			report(b, start)
			b.StopTimer()
			s.Close()
		})
	}
}
