package kafka

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/segmentio/kafka-go/compress"
)

// zstdWindow is the history the zstd encoder keeps. A produce request
// holds at most Config.MaxRequestBytes (default 1 MB, at most 64 MiB) of
// records, compressed as one frame; kafka-go's own codec keeps
// klauspost/compress's default window of 8 MiB, and a pooled encoder's
// history buffers then hold about 16 MiB each: 32 MB of the 90 MB heap of
// a run at 200k events/s (a heap profile, docs/BENCHMARKS.md). A 1 MiB
// window finds every match within a default-sized request, so the frames
// compress as before for requests up to 1 MiB; larger requests lose only
// matches more than 1 MiB apart.
const zstdWindow = 1 << 20

// zstdCodec is kafka-go's zstd codec with a window of zstdWindow: the same
// level (3, klauspost's SpeedDefault), one goroutine per encoder, pooled
// encoders; decoding is kafka-go's. It is installed in kafka-go's codec
// table (compress.Codecs) when this package is initialized, so it is the
// zstd of every kafka-go client of the program (the sink is the only one).
type zstdCodec struct {
	pool sync.Pool // *zstd.Encoder
}

func init() {
	compress.Codecs[compress.Zstd] = &zstdCodec{}
}

func (*zstdCodec) Code() int8   { return int8(compress.Zstd) }
func (*zstdCodec) Name() string { return "zstd" }

func (*zstdCodec) NewReader(r io.Reader) io.ReadCloser { return compress.ZstdCodec.NewReader(r) }

func (c *zstdCodec) NewWriter(w io.Writer) io.WriteCloser {
	if enc, _ := c.pool.Get().(*zstd.Encoder); enc != nil {
		enc.Reset(w)
		return &zstdWriter{c: c, enc: enc}
	}
	enc, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderConcurrency(1),
		zstd.WithZeroFrames(true),
		zstd.WithWindowSize(zstdWindow),
	)
	return &zstdWriter{c: c, enc: enc, err: err}
}

type zstdWriter struct {
	c   *zstdCodec
	enc *zstd.Encoder
	err error
}

func (w *zstdWriter) Write(b []byte) (int, error) {
	if w.enc == nil {
		return 0, w.err
	}
	return w.enc.Write(b)
}

func (w *zstdWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.enc == nil {
		return 0, w.err
	}
	return w.enc.ReadFrom(r)
}

// Close ends the frame and returns the encoder to the pool, holding no
// writer.
func (w *zstdWriter) Close() error {
	if w.enc == nil {
		return w.err
	}
	err := w.enc.Close()
	w.enc.Reset(io.Discard)
	w.c.pool.Put(w.enc)
	w.enc = nil
	return err
}
