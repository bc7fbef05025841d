package transform

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

var testHost = schema.Host{Hostname: "h1", MachineID: "m1", BootID: "b1"}

type clock0 struct{}

func (clock0) Wall(mono uint64) time.Time { return time.Unix(0, int64(mono)).UTC() }

// fakeEnricher knows processes by tgid.
type fakeEnricher map[uint32]*schema.Process

func (f fakeEnricher) Process(ev *schema.ProcEvent) *schema.Process {
	var tgid uint32
	switch ev.What {
	case schema.ProcEventExec:
		tgid = ev.Exec.TGID
	case schema.ProcEventExit:
		tgid = ev.Exit.TGID
	case schema.ProcEventFork:
		tgid = ev.Fork.ChildTGID
	case schema.ProcEventComm:
		tgid = ev.Comm.TGID
	}
	if p, ok := f[tgid]; ok {
		return p
	}
	return &schema.Process{TGID: tgid, Source: "gone"}
}

func batchOf(dgs ...[]byte) *source.Batch {
	b := &source.Batch{}
	for _, d := range dgs {
		b.Datagrams = append(b.Datagrams, source.Datagram{Data: d})
	}
	return b
}

func TestTransformerEvents(t *testing.T) {
	tr, err := New(Config{Host: testHost, Run: "r1", Clock: clock0{}})
	if err != nil {
		t.Fatal(err)
	}
	exec := schema.ProcEvent{What: schema.ProcEventExec, TimestampNS: 5e9, Exec: schema.ExecEvent{PID: 7, TGID: 7}}
	exit := schema.ProcEvent{What: schema.ProcEventExit, TimestampNS: 6e9, Exit: schema.ExitEvent{PID: 7, TGID: 7, ExitCode: 3 << 8, ExitSignal: 17}}
	b := batchOf(procDatagram(1, 10, exec), procDatagram(1, 13, exit), []byte{0})
	b.Dropped, b.Forged = 2, 1
	evs := tr.Batch(b, len(b.Datagrams), nil)

	var kinds, ids []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind.String())
		ids = append(ids, e.EventID())
		if e.Version != schema.EventVersion || e.Host == nil || e.Host.BootID != "b1" {
			t.Errorf("event %+v: version or host missing", e)
		}
	}
	wantKinds := []string{"overrun", "forged", "exec", "gap", "exit", "malformed"}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Fatalf("kinds (-want +got):\n%s", diff)
	}
	wantIDs := []string{"b1/r/r1/1", "b1/r/r1/2", "b1/1.1/c1/0/10", "b1/r/r1/3", "b1/1.1/c1/0/13", "b1/r/r1/4"}
	if diff := cmp.Diff(wantIDs, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if g := evs[3].Gap; g == nil || g.Expected != 11 || g.Got != 13 || g.Missing != 2 || evs[3].Stream.CPU != 1 {
		t.Errorf("gap %+v stream %+v: want 11..12 missing on cpu 1", g, evs[3].Stream)
	}
	x := evs[4].Exit
	if x == nil || x.ExitStatus == nil || *x.ExitStatus != 3 || x.Signal != nil || !evs[4].Time.Equal(time.Unix(6, 0)) {
		t.Errorf("exit %+v at %v: want status 3 at 6s", x, evs[4].Time)
	}
	st := tr.Stats()
	if st.Events != 6 || st.Records != 4 || st.Missing != 2 || st.Drops != 2 || st.Forged != 1 || st.Malformed != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestTransformerRequiresBootID(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a boot id: no error")
	}
}

func TestFilter(t *testing.T) {
	uid := func(v uint32) *uint32 { return &v }
	procs := fakeEnricher{
		100: {TGID: 100, Source: "proc", Comm: "bash", Exe: "/usr/bin/bash", UID: uid(0), EUID: uid(0), Cgroup: "/user.slice"},
		200: {TGID: 200, Source: "proc", Comm: "nginx", Exe: "/usr/sbin/nginx", UID: uid(33), EUID: uid(33), Cgroup: "/system.slice/docker-0123456789abcdef.scope",
			Container: &schema.Container{ID: "0123456789abcdef", Runtime: "docker"}},
	}
	execOf := func(tgid uint32) schema.ProcEvent {
		return schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: tgid, TGID: tgid}}
	}
	fork := schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ChildPID: 300, ChildTGID: 300}} // gone
	cases := []struct {
		name string
		f    Filter
		want []string // kinds/tgids kept, in order
	}{
		{"none", Filter{}, []string{"exec100", "exec200", "fork300", "gap"}},
		{"kinds", Filter{Kinds: []schema.Kind{schema.KindFork}}, []string{"fork300", "gap"}},
		{"exclude kinds", Filter{ExcludeKinds: []schema.Kind{schema.KindExec}}, []string{"fork300", "gap"}},
		{"uid", Filter{UIDs: []uint32{33}}, []string{"exec200", "gap"}},
		{"exclude uid keeps unknown", Filter{ExcludeUIDs: []uint32{0}}, []string{"exec200", "fork300", "gap"}},
		{"comm glob", Filter{Comms: []string{"ng*"}}, []string{"exec200", "gap"}},
		{"exe glob", Filter{Exes: []string{"/usr/bin/*"}}, []string{"exec100", "gap"}},
		{"exclude exe", Filter{ExcludeExes: []string{"/usr/sbin/*"}}, []string{"exec100", "fork300", "gap"}},
		{"container prefix", Filter{Containers: []string{"0123456789ab"}}, []string{"exec200", "gap"}},
		{"host only", Filter{Containers: []string{"host"}}, []string{"exec100", "gap"}},
		{"any container excluded", Filter{ExcludeContainers: []string{"*"}}, []string{"exec100", "fork300", "gap"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := New(Config{Host: testHost, Clock: clock0{}, Enricher: procs, Filter: tc.f})
			if err != nil {
				t.Fatal(err)
			}
			b := batchOf(procDatagram(0, 1, execOf(100)), procDatagram(0, 2, execOf(200)), procDatagram(0, 3, fork), procDatagram(0, 9, fork))
			var got []string
			for _, e := range tr.Batch(b, len(b.Datagrams), nil) {
				switch {
				case e.Exec != nil:
					got = append(got, "exec"+itoa(e.Exec.TGID))
				case e.Fork != nil && e.Stream.Seq == 3:
					got = append(got, "fork"+itoa(e.Fork.ChildTGID))
				case e.Kind == schema.KindGap:
					got = append(got, "gap")
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	for _, f := range []Filter{{Comms: []string{"["}}, {Exes: []string{"a[b"}}, {Containers: []string{"abc"}}} {
		if _, err := New(Config{Host: testHost, Clock: clock0{}, Filter: f}); err == nil {
			t.Errorf("filter %+v: no error", f)
		}
	}
}

func itoa(v uint32) string {
	return string(rune('0'+v/100)) + string(rune('0'+v/10%10)) + string(rune('0'+v%10))
}

// BenchmarkDecodeSequenceEncode is the transform's hot path without /proc
// reads: decode, sequence tracking, event building and encoding (none: the
// Transformer alone), per event.
func BenchmarkDecodeSequenceEncode(b *testing.B) {
	for _, enc := range []struct {
		name string
		fn   func([]byte, *schema.Event) []byte
	}{{"none", nil}, {"msgpack", schema.AppendMsgpack}, {"json", schema.AppendJSON}} {
		b.Run(enc.name, func(b *testing.B) {
			kinds := []schema.ProcEvent{
				{What: schema.ProcEventFork, Fork: schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: 4242, ChildTGID: 4242}},
				{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: 4242, TGID: 4242}},
				{What: schema.ProcEventExit, Exit: schema.ExitEvent{PID: 4242, TGID: 4242, ExitCode: 256, ExitSignal: 17, ParentPID: 1, ParentTGID: 1}},
			}
			batch := &source.Batch{Datagrams: make([]source.Datagram, 64)}
			for i := range batch.Datagrams {
				ev := kinds[i%len(kinds)]
				ev.TimestampNS = uint64(i) * 1000
				batch.Datagrams[i].Data = procDatagram(uint32(i%2), uint32(i/2), ev)
			}
			tr, err := New(Config{Host: schema.Host{Hostname: "host-1", MachineID: "3d1219c7c4c5404aaa1f6d2a48adfda4", BootID: "03503a06-b563-4c14-9190-4d9236f8fed0"}, Clock: clock0{}})
			if err != nil {
				b.Fatal(err)
			}
			out := make([]schema.Event, 0, 64)
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				renumber(batch, i)
				out = tr.Batch(batch, len(batch.Datagrams), out[:0])
				if enc.fn == nil {
					continue
				}
				buf = buf[:0]
				for k := range out {
					buf = enc.fn(buf, &out[k])
				}
			}
			perEvent := float64(b.Elapsed().Nanoseconds()) / float64(b.N*len(batch.Datagrams))
			b.ReportMetric(perEvent, "ns/event")
			b.ReportMetric(1e9/perEvent, "events/s")
			if tr.Stats().Missing != 0 {
				b.Fatalf("gaps: %+v", tr.Stats())
			}
		})
	}
}

// renumber gives the batch's datagrams (two streams, cpu = index % 2) the
// sequence numbers of iteration i, so that every batch continues the streams.
func renumber(b *source.Batch, i int) {
	for j := range b.Datagrams {
		seq := uint32(i*len(b.Datagrams)/2 + j/2)
		d := b.Datagrams[j].Data
		d[24], d[25], d[26], d[27] = byte(seq), byte(seq>>8), byte(seq>>16), byte(seq>>24)
	}
}
