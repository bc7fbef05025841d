package schema

import (
	"encoding/json"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var benchOut []byte

// benchEvents are a typical enriched exec event (process read from /proc,
// container, three ancestors), a plain fork event, and an exec with exec
// ids and start time, with the id left to derive as the pipeline leaves it.
func benchEvents(b *testing.B) []namedEvent {
	var out []namedEvent
	for _, g := range goldenEvents() {
		if g.name == "exec" || g.name == "fork" || g.name == "exec-exec-ids" {
			g.e.ID = ""
			out = append(out, g)
		}
	}
	if len(out) != 3 {
		b.Fatal("golden exec, fork or exec-exec-ids event missing")
	}
	return out
}

// benchEncode runs one encoder on e into a reused buffer.
func benchEncode(b *testing.B, e *Event, enc func([]byte, *Event) []byte) {
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
	benchOut = buf
}

// benchMarshal runs a reference marshaller on e (with its id set, which
// the references cannot derive).
func benchMarshal(b *testing.B, e *Event, marshal func(any) ([]byte, error)) {
	c := *e
	c.ID = e.EventID()
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		var err error
		if out, err = marshal(&c); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(out)))
	benchOut = out
}

// BenchmarkAppendJSON: AppendJSON, and encoding/json's Marshal beside it
// as the reference.
func BenchmarkAppendJSON(b *testing.B) {
	for _, g := range benchEvents(b) {
		b.Run(g.name+"/AppendJSON", func(b *testing.B) { benchEncode(b, &g.e, AppendJSON) })
		b.Run(g.name+"/json.Marshal", func(b *testing.B) { benchMarshal(b, &g.e, json.Marshal) })
	}
}

// BenchmarkAppendMsgpack: AppendMsgpack, and vmihailenco/msgpack's Marshal
// beside it as the reference.
func BenchmarkAppendMsgpack(b *testing.B) {
	for _, g := range benchEvents(b) {
		b.Run(g.name+"/AppendMsgpack", func(b *testing.B) { benchEncode(b, &g.e, AppendMsgpack) })
		b.Run(g.name+"/msgpack.Marshal", func(b *testing.B) { benchMarshal(b, &g.e, msgpack.Marshal) })
	}
}

var benchEventOut Event

// BenchmarkDecodeEvent: DecodeJSON and DecodeMsgpack, for consumers, and
// DecodeMsgpack's general path by reflection (decodeMsgpackReflect) beside
// it, the path it takes for input AppendMsgpack does not write.
func BenchmarkDecodeEvent(b *testing.B) {
	for _, g := range benchEvents(b) {
		for _, c := range []struct {
			name   string
			data   []byte
			decode func([]byte) (Event, error)
		}{
			{"DecodeJSON", AppendJSON(nil, &g.e), DecodeJSON},
			{"DecodeMsgpack", AppendMsgpack(nil, &g.e), DecodeMsgpack},
			{"DecodeMsgpackReflect", AppendMsgpack(nil, &g.e), decodeMsgpackReflect},
		} {
			b.Run(g.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(c.data)))
				for b.Loop() {
					var err error
					if benchEventOut, err = c.decode(c.data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
