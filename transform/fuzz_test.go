package transform

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

// FuzzTransform feeds arbitrary bytes as a datagram through the whole
// transform: it never panics, every input becomes events or a malformed
// record, and every event survives the JSON and msgpack encodings.
func FuzzTransform(f *testing.F) {
	files, _ := filepath.Glob("../schema/testdata/datagrams/*.bin")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b, uint32(0))
			f.Add(b, uint32(4242)) // from a userspace port
		}
	}
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, port uint32) {
		tr, err := New(Config{Host: testHost, Run: "fuzz", Clock: clock0{}})
		if err != nil {
			t.Fatal(err)
		}
		b := &source.Batch{Datagrams: []source.Datagram{{Data: data, Addr: source.Addr{PortID: port}}}}
		events := tr.Batch(b, 1, nil)
		if len(events) == 0 && !allNoop(data) {
			t.Fatalf("%x: no event and no malformed record", data)
		}
		for i := range events {
			e := &events[i]
			if e.Kind == schema.KindUnknown {
				t.Fatalf("event of unknown kind: %+v", e)
			}
			j, err := schema.DecodeJSON(schema.AppendJSON(nil, e))
			if err != nil {
				t.Fatalf("JSON of %+v does not decode: %v", e, err)
			}
			m, err := schema.DecodeMsgpack(schema.AppendMsgpack(nil, e))
			if err != nil {
				t.Fatalf("msgpack of %+v does not decode: %v", e, err)
			}
			if diff := cmp.Diff(j, m); diff != "" {
				t.Fatalf("JSON and msgpack decode differently (-json +msgpack):\n%s", diff)
			}
		}
	})
}

// allNoop reports a well-formed datagram of NLMSG_NOOP messages only: the
// one input that rightly yields nothing.
func allNoop(data []byte) bool {
	msgs, err := schema.ParseNetlink(data, nil)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Type != schema.NLMsgNoop {
			return false
		}
	}
	return true
}
