package kafka

import (
	"testing"

	"github.com/cnstream/cnstream/schema"
)

// TestStreamPlaceholder: {stream} names an event's sequence stream as its
// id does (per CPU for process events, per sender for others); records
// with a stream go with it, the others to "r".
func TestStreamPlaceholder(t *testing.T) {
	host := &schema.Host{Hostname: "web-1", BootID: "b"}
	proc := &schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: 3, Seq: 9}
	user := &schema.Stream{Idx: 18, Val: 101, Sender: 4242, Seq: 9}
	for _, c := range []struct {
		name string
		e    schema.Event
		want string
	}{
		{"process event", schema.Event{Kind: schema.KindExec, Host: host, Stream: proc}, "web-1-1.1-c3"},
		{"other connector id", schema.Event{Kind: schema.KindRaw, Host: host, Stream: user}, "web-1-18.101-s4242"},
		{"gap record of a stream", schema.Event{Kind: schema.KindGap, Host: host, Stream: proc, Record: &schema.Record{Run: "x", Seq: 1}}, "web-1-1.1-c3"},
		{"dropped record", schema.Event{Kind: schema.KindDropped, Host: host, Record: &schema.Record{Run: "x", Seq: 2}}, "web-1-r"},
	} {
		for _, topic := range []bool{false, true} {
			tmpl, err := parseTemplate("{host}-{stream}", topic)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(tmpl.appendTo(nil, &c.e)); got != c.want {
				t.Errorf("%s (topic %v): %q, want %q", c.name, topic, got, c.want)
			}
		}
	}
	if _, err := parseTemplate("{streams}", false); err == nil {
		t.Error("{streams} parsed: want an unknown placeholder error")
	}
}
