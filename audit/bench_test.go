package audit

import (
	"testing"

	"github.com/cnstream/cnstream/schema"
)

// BenchmarkTallyAdd adds 1M events of 2 streams (two CPUs interleaved) to
// a new Tally per iteration and reports ns and allocations per event.
// "filtered" keeps one number in 20 of each stream (sparse chunks: the
// array containers); "redelivered" adds every event twice, the second
// time in a later pass (duplicates after a restart).
func BenchmarkTallyAdd(b *testing.B) {
	const n = 1_000_000
	mk := func(step uint32, passes int) []*schema.Event {
		evs := make([]*schema.Event, 0, n*passes)
		for range passes {
			for i := range uint32(n / passes) {
				evs = append(evs, &schema.Event{Kind: schema.KindFork, Host: &schema.Host{Hostname: "h", MachineID: "m", BootID: "0b6f6a5e-8a2f-4b7e-9a57-1d2b3c4d5e6f"},
					Stream: &schema.Stream{Idx: 1, Val: 1, CPU: i & 1, Seq: 4294000000 + (i/2)*step}})
			}
		}
		return evs
	}
	for _, bc := range []struct {
		name string
		evs  []*schema.Event
	}{
		{"dense", mk(1, 1)},
		{"filtered", mk(20, 1)},
		{"redelivered", mk(1, 2)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				t := New()
				for _, e := range bc.evs {
					t.Add(e)
				}
				if t.Report().Hosts[0].Events == 0 {
					b.Fatal("no events")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(bc.evs)), "ns/event")
			b.ReportMetric(0, "ns/op")
		})
	}
}
