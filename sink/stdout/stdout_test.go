package stdout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// decodeLines decodes JSON lines; a last line without its newline, or a
// line that does not decode, is an error.
func decodeLines(b []byte) ([]schema.Event, error) {
	var out []schema.Event
	for off := 0; off < len(b); {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return out, fmt.Errorf("a line of %d bytes without its newline at offset %d", len(b)-off, off)
		}
		e, err := schema.DecodeJSON(b[off : off+i])
		if err != nil {
			return out, fmt.Errorf("line at offset %d: %w", off, err)
		}
		out = append(out, e)
		off += i + 1
	}
	return out, nil
}

func TestSinktestBuffer(t *testing.T) {
	for _, size := range []int{0, 1, 4096} {
		t.Run(fmt.Sprintf("buffer-%d", size), func(t *testing.T) {
			var buf *bytes.Buffer
			sinktest.Run(t, sinktest.Harness{
				New: func(*testing.T) (sink.Sink, error) {
					buf = new(bytes.Buffer)
					s, err := New(Config{Writer: buf, BufferSize: size})
					if err != nil {
						return nil, err
					}
					return s, nil
				},
				Read: func(*testing.T) ([]schema.Event, error) { return decodeLines(buf.Bytes()) },
			})
		})
	}
}

// countingWriter records the size of each Write.
type countingWriter struct {
	bytes.Buffer
	writes []int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.Buffer.Write(p)
}

func TestBuffering(t *testing.T) {
	w := &countingWriter{}
	s, err := New(Config{Writer: w, BufferSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	events := sinktest.NewGenerator(1).Batch(100)
	if err := s.WriteBatch(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) < 5 || len(w.writes) > 50 {
		t.Errorf("%d writes of %d bytes with a 4 KiB buffer: %v", len(w.writes), w.Len(), w.writes)
	}
	// Every write ends a line: lines are never split across writes.
	off := 0
	for _, n := range w.writes {
		off += n
		if w.Bytes()[off-1] != '\n' {
			t.Errorf("a write ends at offset %d, inside a line", off)
		}
	}
	got, err := decodeLines(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Check(t, events, got, sinktest.CheckOptions{})
	if st := s.Stats(); st.Events != 100 || st.Batches != 1 || st.Bytes != uint64(w.Len()) || st.Errors != 0 {
		t.Errorf("Stats %+v", st)
	}
}

func TestFlushesFlusher(t *testing.T) {
	var under bytes.Buffer
	bw := bufio.NewWriterSize(&under, 1<<20)
	s, err := New(Config{Writer: bw})
	if err != nil {
		t.Fatal(err)
	}
	events := sinktest.NewGenerator(2).Batch(3)
	if err := s.WriteBatch(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	got, err := decodeLines(under.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Check(t, events, got, sinktest.CheckOptions{})
}

func TestDefaults(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.w != os.Stdout || s.size != 64<<10 {
		t.Errorf("defaults: writer %v, buffer %d", s.w, s.size)
	}
	if _, err := New(Config{BufferSize: -1}); err == nil || !strings.HasPrefix(err.Error(), "stdout.buffer_size: ") || !sink.IsPermanent(err) {
		t.Errorf("New with a negative buffer = %v", err)
	}
}

// failAfter is a fake writer that fails after n writes: it checks that the
// error is returned and counted, and that the ctx check comes before a
// write. (The real fault, ENOSPC on /dev/full, is in the Linux tests.)
type failAfter struct {
	bytes.Buffer
	n int
}

var errBroken = errors.New("broken writer")

func (w *failAfter) Write(p []byte) (int, error) {
	if w.n == 0 {
		return 0, errBroken
	}
	w.n--
	return w.Buffer.Write(p)
}

func TestWriteError(t *testing.T) {
	w := &failAfter{n: 2}
	s, err := New(Config{Writer: w, BufferSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	events := sinktest.NewGenerator(3).Batch(5)
	if err := s.WriteBatch(t.Context(), events); !errors.Is(err, errBroken) {
		t.Fatalf("WriteBatch = %v, want errBroken", err)
	}
	if st := s.Stats(); st.Errors != 1 || st.Events != 0 {
		t.Errorf("Stats %+v", st)
	}
	got, err := decodeLines(w.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sinktest.Check(t, events[:2], got, sinktest.CheckOptions{})
}

func TestCloseWaitsOrGivesUp(t *testing.T) {
	s, err := New(Config{Writer: new(bytes.Buffer)})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.turn.Acquire(context.Background()) // a WriteBatch in progress
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Close while busy with an ended ctx = %v, want context.Canceled", err)
	}
	s.turn.Release()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close when free, even with an ended ctx = %v, want nil", err)
	}
}
