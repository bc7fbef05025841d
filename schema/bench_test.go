package schema

import (
	"testing"
)

var benchEvent ProcEvent

// BenchmarkDecodeProcDatagram decodes one real datagram end to end, as the
// reader does for each datagram of a batch: ParseNetlink into a reused
// message slice, DecodeCnMsg, DecodeProcEvent. It must not allocate.
func BenchmarkDecodeProcDatagram(b *testing.B) {
	for _, name := range []string{"fork", "exit", "comm"} {
		raw := captureNamed(b, name).raw
		b.Run(name, func(b *testing.B) {
			msgs := make([]NetlinkMessage, 0, 4)
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				var err error
				msgs, err = ParseNetlink(raw, msgs[:0])
				if err != nil || len(msgs) != 1 {
					b.Fatalf("ParseNetlink: %d messages, %v", len(msgs), err)
				}
				cn, err := DecodeCnMsg(msgs[0].Data)
				if err != nil {
					b.Fatal(err)
				}
				benchEvent, err = DecodeProcEvent(cn.Data)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeProcDatagram encodes one real event back into a reused
// buffer, as the load generator and the tests do.
func BenchmarkEncodeProcDatagram(b *testing.B) {
	raw := captureNamed(b, "exit").raw
	ev, err := DecodeProcEvent(raw[36:])
	if err != nil {
		b.Fatal(err)
	}
	var payload [ProcEventLen]byte
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		data := AppendProcEvent(payload[:0], ev)
		buf = AppendDatagram(buf[:0], 0, CnMsg{ID: ProcID, Seq: 1, Data: data})
	}
	if len(buf) != len(raw) {
		b.Fatalf("encoded %d bytes, want %d", len(buf), len(raw))
	}
}
