package kafka

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/segmentio/kafka-go/compress"

	"github.com/cnstream/cnstream/schema"
)

// batchBytes returns about n bytes of msgpack events, as a produce
// request's records hold them.
func batchBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	var b []byte
	for i := 0; len(b) < n; i++ {
		e := schema.Event{Version: 1, Kind: schema.KindRaw, Host: &schema.Host{Hostname: "vm", BootID: "8c5d9f3a-1b2e-4c7d-9a0f-3e4b5c6d7e8f"},
			Stream: &schema.Stream{Idx: 18, Val: 101, Sender: 4242, Seq: uint32(i)}, MonoNS: uint64(i) * 5000,
			Raw: &schema.RawInfo{Group: 18, Payload: []byte("0123456789abcdef0123456789abcdef01234567")}}
		b = schema.AppendMsgpack(b, &e)
	}
	return b
}

func compressWith(tb testing.TB, c compress.Codec, data []byte) []byte {
	tb.Helper()
	var out bytes.Buffer
	w := c.NewWriter(&out)
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.Bytes()
}

// TestZstdCodec: the installed codec is this package's; its frames
// decode with kafka-go's reader to the input, no larger than kafka-go's
// own codec's for a default-sized request; and an encoder holds a fraction
// of the memory of kafka-go's.
func TestZstdCodec(t *testing.T) {
	ours, ok := compress.Codecs[compress.Zstd].(*zstdCodec)
	if !ok {
		t.Fatalf("compress.Codecs[Zstd] is %T, want *zstdCodec", compress.Codecs[compress.Zstd])
	}
	data := batchBytes(t, 1_000_000)
	for i := 0; i < 3; i++ { // the pooled encoder again, after Reset
		z := compressWith(t, ours, data)
		r := compress.ZstdCodec.NewReader(bytes.NewReader(z))
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: decoded %d bytes, err %v; want the %d input bytes", i, len(got), err, len(data))
		}
		if theirs := compressWith(t, &compress.ZstdCodec, data); len(z) > len(theirs)+len(theirs)/100 {
			t.Errorf("round %d: %d compressed bytes, kafka-go's codec %d", i, len(z), len(theirs))
		}
	}
	heap := func(c compress.Codec) uint64 {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		w := c.NewWriter(io.Discard)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		w.Close()
		return m1.TotalAlloc - m0.TotalAlloc
	}
	mine, theirs := heap(&zstdCodec{}), heap(&compress.ZstdCodec)
	t.Logf("a new encoder and 1 MB compressed: %d KiB allocated, kafka-go's codec %d KiB", mine>>10, theirs>>10)
	if mine*3 > theirs {
		t.Errorf("a new encoder allocates %d KiB, kafka-go's %d KiB: want less than a third", mine>>10, theirs>>10)
	}
}

// BenchmarkZstdCodec compresses a 1 MB request's records with this
// package's codec and with kafka-go's, side by side.
func BenchmarkZstdCodec(b *testing.B) {
	data := batchBytes(b, 1_000_000)
	for _, c := range []struct {
		name  string
		codec compress.Codec
	}{{"window-1MiB", &zstdCodec{}}, {"kafka-go", &compress.ZstdCodec}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var n int
			for b.Loop() {
				n = len(compressWith(b, c.codec, data))
			}
			b.ReportMetric(float64(len(data))/float64(n), "ratio")
		})
	}
}
