package transform

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

func procDatagram(cpu, seq uint32, ev schema.ProcEvent) []byte {
	ev.CPU = cpu
	return schema.AppendDatagram(nil, 0, schema.CnMsg{ID: schema.ProcID, Seq: seq, Data: schema.AppendProcEvent(nil, ev)})
}

// summary is what a test compares: kind plus the fields that matter.
type summary struct {
	Kind    string
	Seq     uint32
	What    string
	Missing uint64
	Drops   uint64
	Count   uint64
}

func collect(d *Decoder, b *source.Batch, n int) []summary {
	var out []summary
	d.DecodeBatch(b, n, func(r *Record) {
		// Only the fields of the record's kind are meaningful.
		s := summary{Kind: r.Kind.String()}
		switch r.Kind {
		case KindProc:
			s.Seq, s.What, s.Missing = r.Cn.Seq, r.Proc.What.String(), r.Obs.Missing
		case KindGap:
			s.Seq, s.Missing = r.Seq, r.Obs.Missing
		case KindOverrun:
			s.Drops = r.Drops
		case KindForged:
			s.Count = r.Count
		}
		out = append(out, s)
	})
	return out
}

func TestDecodeBatchOrder(t *testing.T) {
	fork := schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ChildPID: 9, ChildTGID: 9}}
	exit := schema.ProcEvent{What: schema.ProcEventExit, Exit: schema.ExitEvent{PID: 9, TGID: 9}}
	// Two messages in one datagram, then a gap on cpu 0, then cpu 1.
	two := append(procDatagram(0, 10, fork), procDatagram(0, 11, exit)...)
	b := &source.Batch{
		Dropped: 3, ENOBUFS: 1, Forged: 2,
		Datagrams: []source.Datagram{
			{Data: two},
			{Data: procDatagram(0, 15, exit)},
			{Data: procDatagram(1, 4, fork)},
			{Data: []byte{1, 2, 3}},
			{Data: procDatagram(1, 5, fork), Truncated: true},
		},
	}
	d := NewDecoder()
	got := collect(d, b, len(b.Datagrams))
	want := []summary{
		{Kind: "overrun", Drops: 3},
		{Kind: "forged", Count: 2},
		{Kind: "proc", Seq: 10, What: "fork"},
		{Kind: "proc", Seq: 11, What: "exit"},
		{Kind: "gap", Seq: 15, Missing: 3},
		{Kind: "proc", Seq: 15, What: "exit", Missing: 3},
		{Kind: "proc", Seq: 4, What: "fork"},
		{Kind: "malformed"},
		{Kind: "malformed"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	st := d.Stats()
	if st.Messages != 4 || st.Malformed != 2 || st.Missing != 3 || st.Drops != 3 || st.ENOBUFS != 1 || st.Forged != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestDecodeMalformedReasons(t *testing.T) {
	good := procDatagram(0, 1, schema.ProcEvent{What: schema.ProcEventExec})
	unknown := procDatagram(0, 2, schema.ProcEvent{What: 0x400})
	lying := append([]byte(nil), good...)
	lying[16+16] = 200 // cn_msg len beyond the data
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"short", good[:10], schema.ErrShort},
		{"nlmsg_len past the end", good[:60], schema.ErrLength},
		{"cn_msg len lies", lying, schema.ErrLength},
		{"unknown proc event", unknown, schema.ErrUnknownType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder()
			var errs []error
			d.DecodeDatagram(&source.Datagram{Data: tc.data}, func(r *Record) {
				if r.Kind == KindMalformed {
					errs = append(errs, r.Err)
				}
			})
			if len(errs) != 1 || !errors.Is(errs[0], tc.want) {
				t.Errorf("malformed errors %v, want one matching %v", errs, tc.want)
			}
		})
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	ev := schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ChildPID: 9, ChildTGID: 9}}
	batch := &source.Batch{Datagrams: make([]source.Datagram, 64)}
	for i := range batch.Datagrams {
		batch.Datagrams[i].Data = procDatagram(uint32(i%2), uint32(i/2), ev)
	}
	d := NewDecoder()
	var n int
	emit := func(r *Record) { n++ }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		renumber(batch, i)
		d.DecodeBatch(batch, len(batch.Datagrams), emit)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch.Datagrams)), "ns/event")
	if d.Stats().Missing != 0 {
		b.Fatalf("unexpected gaps: %+v", d.Stats())
	}
}
