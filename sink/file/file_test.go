package file

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"go.uber.org/goleak"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

func TestMain(m *testing.M) {
	// The Sink and the Reader start no goroutine; zstd with concurrency 1
	// neither.
	goleak.VerifyTestMain(m)
}

// portableHarness runs a sink with cfg in a fresh temporary directory.
func portableHarness(cfg Config) sinktest.Harness {
	var dir string
	return sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, error) {
			dir = t.TempDir()
			c := cfg
			c.Dir = filepath.Join(dir, "data")
			s, err := New(c)
			if err != nil {
				return nil, err
			}
			return s, nil
		},
		Read: func(t *testing.T) ([]schema.Event, error) {
			return ReadAll(Config{Dir: filepath.Join(dir, "data"), Prefix: cfg.Prefix})
		},
	}
}

func TestSinktest(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{}},
		{"msgpack-never", Config{Format: Msgpack, Sync: SyncNever}},
		// Small files: the suite's batches rotate files, within batches
		// too, and compress them while it writes.
		{"jsonl-rotating", Config{MaxSize: 64 << 10, Prefix: "cn"}},
		{"msgpack-rotating-interval", Config{Format: Msgpack, MaxSize: 32 << 10, Sync: SyncInterval}},
	} {
		t.Run(c.name, func(t *testing.T) { sinktest.Run(t, portableHarness(c.cfg)) })
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

func mustNew(t *testing.T, cfg Config) *Sink {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func mustWrite(t *testing.T, s *Sink, events []schema.Event) {
	t.Helper()
	if err := s.WriteBatch(ctxT(t), events); err != nil {
		t.Fatalf("WriteBatch: %v", err)
	}
}

func mustClose(t *testing.T, s *Sink) {
	t.Helper()
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustReadAll(t *testing.T, cfg Config) []schema.Event {
	t.Helper()
	got, err := ReadAll(cfg)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	return got
}

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Format: "xml"}, "file.encoding"},
		{Config{Sync: "sometimes"}, "file.sync"},
		{Config{Compression: "gzip"}, "file.compression"},
		{Config{SyncInterval: -time.Second}, "file.sync_interval"},
		{Config{Prefix: "a/b"}, "file.prefix"},
		{Config{Prefix: ".."}, "file.prefix"},
		{Config{FileMode: os.ModeDir | 0o640}, "file.file_mode"},
		{Config{DirMode: os.ModeSetuid | 0o750}, "file.dir_mode"},
	} {
		c.cfg.Dir = t.TempDir()
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("New(%+v) = %v, want an error naming %s", c.cfg, err, c.field)
		}
		if !sink.IsPermanent(err) {
			t.Errorf("New(%+v) = %v: not permanent", c.cfg, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if c.Now == nil {
		t.Error("Now has no default")
	}
	c.Now = nil
	want := Config{Dir: "./cnstream-data", Prefix: "events", Format: JSONL, MaxSize: 64 << 20, MaxAge: time.Hour,
		Compression: Zstd, Sync: SyncAlways, SyncInterval: time.Second, FileMode: 0o640, DirMode: 0o750}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

func TestRotateBySize(t *testing.T) {
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			clock := newClock()
			cfg := Config{Dir: dir, Format: format, MaxSize: 4096, Compression: None, Sync: SyncNever, Now: clock.Now}
			s := mustNew(t, cfg)
			events := sinktest.NewGenerator(1).Batch(400)
			for i := 0; i < 300; i += 10 {
				mustWrite(t, s, events[i:i+10])
				clock.Add(time.Second)
			}
			// One batch spanning many files.
			mustWrite(t, s, events[300:])
			mustClose(t, s)

			st := s.Stats()
			got := names(t, dir)
			if !slices.IsSorted(got) {
				t.Errorf("names do not sort: %v", got)
			}
			if want := int(st.Rotations) + 1; len(got) != want {
				t.Errorf("%d files, want %d (%d rotations + the active file): %v", len(got), want, st.Rotations, got)
			}
			if st.Rotations < 20 {
				t.Errorf("%d rotations of 4 KiB files for %d bytes", st.Rotations, st.Bytes)
			}
			var total int64
			for i, n := range got {
				fi, err := os.Stat(filepath.Join(dir, n))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > 4096 || fi.Size() == 0 {
					t.Errorf("%s: %d bytes, want 1..4096", n, fi.Size())
				}
				total += fi.Size()
				if i == len(got)-1 {
					if n != "events"+format.ext() {
						t.Errorf("last file %s, want the active file", n)
					}
					continue
				}
				seq, f, ok := parseRotated("events", n)
				if !ok || f != format || seq != uint64(i) {
					t.Errorf("rotated file %s: seq %d, format %q, ok %v; want seq %d, %s", n, seq, f, ok, i, format)
				}
			}
			if total != int64(st.Bytes) {
				t.Errorf("files hold %d bytes, Stats.Bytes = %d", total, st.Bytes)
			}
			sinktest.Check(t, events, mustReadAll(t, cfg), sinktest.CheckOptions{})

			// New continues the sequence.
			s = mustNew(t, cfg)
			if s.nextSeq != st.Rotations {
				t.Errorf("nextSeq after New = %d, want %d", s.nextSeq, st.Rotations)
			}
			mustClose(t, s)
		})
	}
}

func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	cfg := Config{Dir: dir, MaxSize: -1, Compression: None, Now: clock.Now}
	s := mustNew(t, cfg)
	g := sinktest.NewGenerator(2)
	var all []schema.Event
	write := func() {
		b := g.Batch(5)
		mustWrite(t, s, b)
		all = append(all, b...)
	}
	write() // creates the active file at 09:00
	clock.Add(time.Hour - time.Nanosecond)
	write()
	if r := s.Stats().Rotations; r != 0 {
		t.Fatalf("rotated after 1h-1ns: %d rotations", r)
	}
	clock.Add(time.Nanosecond)
	write() // 10:00: rotates, then writes to a new file opened now
	if r := s.Stats().Rotations; r != 1 {
		t.Fatalf("%d rotations after 1h, want 1", r)
	}
	want := []string{"events-0000000000-20260314T100000Z.jsonl", "events.jsonl"}
	if d := cmp.Diff(want, names(t, dir)); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	clock.Add(59 * time.Minute)
	write()
	if r := s.Stats().Rotations; r != 1 {
		t.Errorf("%d rotations 59 min into the second file, want 1", r)
	}
	mustClose(t, s)

	// A file found by New ages from New: 2 h later, its first batch does not
	// rotate it, an hour after New does.
	clock.Add(2 * time.Hour)
	s = mustNew(t, cfg)
	write()
	if r := s.Stats().Rotations; r != 0 {
		t.Errorf("a file found by New rotated at its first batch")
	}
	clock.Add(time.Hour)
	write()
	if r := s.Stats().Rotations; r != 1 {
		t.Errorf("%d rotations an hour after New, want 1", r)
	}
	mustClose(t, s)
	want = []string{"events-0000000000-20260314T100000Z.jsonl", "events-0000000001-20260314T135900Z.jsonl", "events.jsonl"}
	if d := cmp.Diff(want, names(t, dir)); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	sinktest.Check(t, all, mustReadAll(t, cfg), sinktest.CheckOptions{})
}

func TestCompression(t *testing.T) {
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			var errs []error
			cfg := Config{Dir: dir, Format: format, MaxSize: 64 << 10, OnError: func(err error) { errs = append(errs, err) }}
			s := mustNew(t, cfg)
			events := sinktest.NewGenerator(3).Batch(3000)
			compressedBeforeClose := uint64(0)
			for i := 0; i < len(events); i += 50 {
				mustWrite(t, s, events[i:i+50])
				compressedBeforeClose = s.Stats().Compressed
			}
			// The batches compress as they go: all but the last few files
			// are done before Close.
			if r := s.Stats().Rotations; compressedBeforeClose+2 < r {
				t.Errorf("before Close: %d of %d rotated files compressed", compressedBeforeClose, r)
			}
			mustClose(t, s)
			st := s.Stats()
			if st.Compressed != st.Rotations || st.Rotations < 10 {
				t.Errorf("after Close: %d of %d rotated files compressed, want all (and at least 10)", st.Compressed, st.Rotations)
			}
			if len(errs) > 0 || st.Errors != 0 {
				t.Errorf("errors: %v (Stats.Errors %d)", errs, st.Errors)
			}
			var zstBytes, plainBytes int64
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Close()
			for _, n := range names(t, dir) {
				p := filepath.Join(dir, n)
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case n == "events"+format.ext():
					plainBytes += int64(len(data))
				case strings.HasSuffix(n, format.ext()+zstExt):
					zstBytes += int64(len(data))
					plain, err := dec.DecodeAll(data, nil)
					if err != nil {
						t.Fatalf("%s: %v", n, err)
					}
					if len(plain) > 64<<10 {
						t.Errorf("%s: %d bytes uncompressed, more than MaxSize", n, len(plain))
					}
					plainBytes += int64(len(plain))
				default:
					t.Errorf("unexpected file %s", n)
				}
			}
			if plainBytes != int64(st.Bytes) {
				t.Errorf("the files hold %d bytes uncompressed, Stats.Bytes = %d", plainBytes, st.Bytes)
			}
			if zstBytes*3 > plainBytes {
				t.Errorf("compressed to %d of %d bytes", zstBytes, plainBytes)
			}
			sinktest.Check(t, events, mustReadAll(t, cfg), sinktest.CheckOptions{})
		})
	}
}

// TestCompressionCrashRecovery lays out what a crash during compression
// leaves, and checks that New cleans it up and that nothing is read twice.
func TestCompressionCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxSize: 16 << 10, Compression: None}
	s := mustNew(t, cfg)
	events := sinktest.NewGenerator(4).Batch(200)
	mustWrite(t, s, events)
	mustClose(t, s)
	rot := names(t, dir)
	rot = rot[:len(rot)-1] // the rotated files
	if len(rot) < 3 {
		t.Fatalf("%d rotated files, want 3", len(rot))
	}
	// rot[0]: compressed, original not yet removed.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, rot[0]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rot[0]+".zst"), enc.EncodeAll(data, nil), 0o640); err != nil {
		t.Fatal(err)
	}
	// rot[1]: compression under way.
	if err := os.WriteFile(filepath.Join(dir, rot[1]+".zst.tmp"), []byte("(half a zstd frame)"), 0o640); err != nil {
		t.Fatal(err)
	}
	// Both are read once, before New cleans up.
	sinktest.Check(t, events, mustReadAll(t, cfg), sinktest.CheckOptions{})

	cfg.Compression = Zstd
	s = mustNew(t, cfg)
	want := append([]string{rot[0] + ".zst"}, rot[1:]...)
	want = append(want, "events.jsonl")
	if d := cmp.Diff(want, names(t, dir)); d != "" {
		t.Errorf("files after New (-want +got):\n%s", d)
	}
	mustClose(t, s) // compresses the rest
	want = nil
	for _, n := range rot {
		want = append(want, n+".zst")
	}
	want = append(want, "events.jsonl")
	if d := cmp.Diff(want, names(t, dir)); d != "" {
		t.Errorf("files after Close (-want +got):\n%s", d)
	}
	if c := s.Stats().Compressed; c != uint64(len(rot)-1) {
		t.Errorf("Stats.Compressed = %d, want %d", c, len(rot)-1)
	}
	sinktest.Check(t, events, mustReadAll(t, cfg), sinktest.CheckOptions{})
}

// TestCloseDeadlineLeavesCompression: a Close whose ctx has ended closes,
// leaves compression to the next New, and says so.
func TestCloseDeadlineLeavesCompression(t *testing.T) {
	dir := t.TempDir()
	var errs []error
	cfg := Config{Dir: dir, MaxSize: 8 << 10, Compression: None}
	events := sinktest.NewGenerator(5).Batch(100)
	s := mustNew(t, cfg)
	mustWrite(t, s, events)
	mustClose(t, s)

	// Files rotated without compression wait for the next Sink that
	// compresses.
	cfg.Compression = Zstd
	cfg.OnError = func(err error) { errs = append(errs, err) }
	s = mustNew(t, cfg)
	left := s.cz.pending()
	if left < 3 {
		t.Fatalf("%d files waiting for compression, want 3 or more", left)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close with an ended ctx: %v", err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Errorf("OnError got %v, want one error matching context.Canceled", errs)
	}
	if st := s.Stats(); st.Compressed != 0 || st.Errors != 1 {
		t.Errorf("Stats %+v, want nothing compressed, one error", st)
	}
	if err := s.WriteBatch(t.Context(), events[:1]); !errors.Is(err, sink.ErrClosed) {
		t.Errorf("WriteBatch after Close = %v", err)
	}
	for _, n := range names(t, dir) {
		if strings.HasSuffix(n, tmpExt) {
			t.Errorf("%s left behind", n)
		}
	}
	sinktest.Check(t, events, mustReadAll(t, cfg), sinktest.CheckOptions{})

	s = mustNew(t, cfg)
	mustClose(t, s)
	if c := s.Stats().Compressed; int(c) != left {
		t.Errorf("the next New compressed %d files, want %d", c, left)
	}
}

func TestSyncPolicies(t *testing.T) {
	g := sinktest.NewGenerator(6)
	t.Run("always", func(t *testing.T) {
		s := mustNew(t, Config{Dir: t.TempDir()})
		for range 5 {
			mustWrite(t, s, g.Batch(3))
		}
		if n := s.Stats().Syncs; n != 5 {
			t.Errorf("%d fsyncs for 5 batches, want 5", n)
		}
		mustClose(t, s)
		if n := s.Stats().Syncs; n != 5 {
			t.Errorf("Close fsynced again: %d fsyncs", n)
		}
	})
	t.Run("never", func(t *testing.T) {
		s := mustNew(t, Config{Dir: t.TempDir(), Sync: SyncNever, MaxSize: 4096})
		for range 5 {
			mustWrite(t, s, g.Batch(30))
		}
		mustClose(t, s)
		if st := s.Stats(); st.Syncs != 0 || st.Rotations == 0 {
			t.Errorf("%d fsyncs (want 0), %d rotations (want some)", st.Syncs, st.Rotations)
		}
	})
	t.Run("interval", func(t *testing.T) {
		clock := newClock()
		s := mustNew(t, Config{Dir: t.TempDir(), Sync: SyncInterval, SyncInterval: time.Second, Now: clock.Now})
		for _, step := range []struct {
			advance time.Duration
			syncs   uint64
		}{
			{0, 0},                      // 0 s since New
			{500 * time.Millisecond, 0}, // 0.5 s
			{500 * time.Millisecond, 1}, // 1 s: due
			{500 * time.Millisecond, 1}, // 1.5 s
			{499 * time.Millisecond, 1}, // 1.999 s
			{1 * time.Millisecond, 2},   // 2 s: due
			{10 * time.Second, 3},       // long idle: the next batch syncs
			{100 * time.Millisecond, 3}, //
		} {
			clock.Add(step.advance)
			mustWrite(t, s, g.Batch(2))
			if n := s.Stats().Syncs; n != step.syncs {
				t.Fatalf("at %v: %d fsyncs, want %d", clock.Now().Sub(newClock().Now()), n, step.syncs)
			}
		}
		if err := s.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync(t.Context()); err != nil { // nothing new: no fsync
			t.Fatal(err)
		}
		if n := s.Stats().Syncs; n != 4 {
			t.Errorf("after Sync twice: %d fsyncs, want 4", n)
		}
		mustWrite(t, s, g.Batch(2))
		mustClose(t, s)
		if n := s.Stats().Syncs; n != 5 {
			t.Errorf("after Close: %d fsyncs, want 5", n)
		}
		if err := s.Sync(t.Context()); !errors.Is(err, sink.ErrClosed) {
			t.Errorf("Sync after Close = %v, want ErrClosed", err)
		}
	})
}

// recordEnds returns the offsets where each record of events ends.
func recordEnds(format Format, events []schema.Event) []int64 {
	s := &Sink{cfg: Config{Format: format}}
	var ends []int64
	var b []byte
	for i := range events {
		b = s.encode(b, &events[i])
		ends = append(ends, int64(len(b)))
	}
	return ends
}

func TestTornRecovery(t *testing.T) {
	type damage struct {
		name string
		// do damages the file (of the records ending at ends) and returns
		// how many records stay whole.
		do   func(t *testing.T, path string, ends []int64) int
		want error // what a Reader says before New cuts
		// records is how many records the cut holds (Torn.Records and the
		// sink.Loss), 1 if zero.
		records uint64
	}
	truncate := func(back func(last int64) int64) func(t *testing.T, path string, ends []int64) int {
		return func(t *testing.T, path string, ends []int64) int {
			n := len(ends)
			start, end := ends[n-2], ends[n-1]
			if err := os.Truncate(path, start+back(end-start)); err != nil {
				t.Fatal(err)
			}
			return n - 1
		}
	}
	appendBytes := func(b []byte) func(t *testing.T, path string, ends []int64) int {
		return func(t *testing.T, path string, ends []int64) int {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(b); err != nil {
				t.Fatal(err)
			}
			return len(ends)
		}
	}
	cases := map[Format][]damage{
		JSONL: {
			{"one byte of the last line", truncate(func(int64) int64 { return 1 }), ErrTorn, 0},
			{"half the last line", truncate(func(l int64) int64 { return l / 2 }), ErrTorn, 0},
			{"the last line without its newline", truncate(func(l int64) int64 { return l - 1 }), ErrTorn, 0},
			{"zeros after the last line", appendBytes(make([]byte, 4096)), ErrTorn, 0},
			{"a last line that does not decode", appendBytes([]byte("{\"v\":1,\"id\":\"x\"\x00\x00\x00\n")), ErrCorrupt, 0},
			{"a line that does not decode, then half a line", appendBytes([]byte("{\"v\":1,\"id\":\"x\"\x00\n{\"v\":1,\"i")), ErrCorrupt, 2},
		},
		Msgpack: {
			{"two bytes of the length", truncate(func(int64) int64 { return 2 }), ErrTorn, 0},
			{"the length alone", truncate(func(int64) int64 { return 4 }), ErrTorn, 0},
			{"half the record", truncate(func(l int64) int64 { return l / 2 }), ErrTorn, 0},
			{"one byte short", truncate(func(l int64) int64 { return l - 1 }), ErrTorn, 0},
			{"zeros after the last record", appendBytes(make([]byte, 4096)), ErrCorrupt, 0},
			{"a length with zeros after it", appendBytes(append([]byte{0, 0, 0, 8}, make([]byte, 8)...)), ErrCorrupt, 0},
			{"a record that does not decode, then half a record", appendBytes(append(append([]byte{0, 0, 0, 8}, make([]byte, 8)...), 0, 0, 0, 100, 1, 2)), ErrCorrupt, 2},
		},
	}
	for _, format := range formats {
		for _, c := range cases[format] {
			t.Run(string(format)+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				cfg := Config{Dir: dir, Format: format, MaxSize: -1}
				path := filepath.Join(dir, "events"+format.ext())
				g := sinktest.NewGenerator(7)
				events := g.Batch(10)
				s := mustNew(t, cfg)
				mustWrite(t, s, events)
				mustClose(t, s)
				ends := recordEnds(format, events)
				whole := c.do(t, path, ends)
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				damaged := fi.Size()

				// A Reader returns the whole records, then says what the
				// tail is, and where.
				got, err := ReadAll(cfg)
				var re *RecordError
				if !errors.Is(err, c.want) || !errors.As(err, &re) {
					t.Fatalf("ReadAll of the damaged file: %v, want a *RecordError matching %v", err, c.want)
				}
				if re.Offset != ends[whole-1] || re.File != path {
					t.Errorf("RecordError at %s offset %d, want %s offset %d", re.File, re.Offset, path, ends[whole-1])
				}
				sinktest.Check(t, events[:whole], got, sinktest.CheckOptions{})

				// New cuts it, reports it, and writing continues.
				var torn []Torn
				cfg.OnTorn = func(x Torn) { torn = append(torn, x) }
				s = mustNew(t, cfg)
				records := max(c.records, 1)
				want := []Torn{{File: path, Offset: ends[whole-1], Bytes: damaged - ends[whole-1], Records: records}}
				if d := cmp.Diff(want, torn, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Reason" }, cmp.Ignore())); d != "" {
					t.Errorf("OnTorn (-want +got):\n%s", d)
				}
				if len(torn) == 1 {
					t.Logf("reason: %s", torn[0].Reason)
				}
				if st := s.Stats(); st.Torn != 1 || st.TornBytes != uint64(damaged-ends[whole-1]) {
					t.Errorf("Stats: Torn %d, TornBytes %d; want 1, %d", st.Torn, st.TornBytes, damaged-ends[whole-1])
				}
				// The pipeline takes it as a loss, once.
				losses := s.TakeLosses()
				if len(losses) != 1 || losses[0].Count != records || losses[0].Reason != "torn_tail" || !strings.Contains(losses[0].Detail, path) {
					t.Errorf("TakeLosses: %+v, want one torn_tail loss of %d records naming %s", losses, records, path)
				}
				if again := s.TakeLosses(); again != nil {
					t.Errorf("TakeLosses again: %+v, want nil", again)
				}
				more := g.Batch(5)
				mustWrite(t, s, more)
				mustClose(t, s)
				sinktest.Check(t, append(events[:whole:whole], more...), mustReadAll(t, cfg), sinktest.CheckOptions{})

				// Once cut, a New finds nothing to cut.
				torn = nil
				s = mustNew(t, cfg)
				mustClose(t, s)
				if len(torn) != 0 {
					t.Errorf("second New cut again: %+v", torn)
				}
			})
		}
	}
}

func TestReaderCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxSize: -1}
	events := sinktest.NewGenerator(8).Batch(10)
	s := mustNew(t, cfg)
	mustWrite(t, s, events)
	mustClose(t, s)
	path := filepath.Join(dir, "events.jsonl")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ends := recordEnds(JSONL, events)
	// Break the fifth line's version.
	line := data[ends[3]:ends[4]]
	i := bytes.Index(line, []byte(`"v":1`))
	line[i+4] = '9'
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(cfg)
	var re *RecordError
	if !errors.Is(err, ErrCorrupt) || !errors.Is(err, schema.ErrEventVersion) || !errors.As(err, &re) || re.Offset != ends[3] {
		t.Fatalf("ReadAll = %v, want a RecordError at offset %d matching ErrCorrupt and schema.ErrEventVersion", err, ends[3])
	}
	sinktest.Check(t, events[:4], got, sinktest.CheckOptions{})
}

// TestOtherFormatActiveFile: switching the format rotates the other
// format's active file, so that the order of the events stays.
func TestOtherFormatActiveFile(t *testing.T) {
	dir := t.TempDir()
	g := sinktest.NewGenerator(10)
	a, b := g.Batch(20), g.Batch(20)
	s := mustNew(t, Config{Dir: dir})
	mustWrite(t, s, a)
	mustClose(t, s)
	s = mustNew(t, Config{Dir: dir, Format: Msgpack})
	mustWrite(t, s, b)
	mustClose(t, s)
	n := names(t, dir)
	if len(n) != 2 || !strings.HasSuffix(n[0], ".jsonl.zst") || n[1] != "events.msgpack" {
		t.Errorf("files %v, want a rotated, compressed jsonl file and events.msgpack", n)
	}
	sinktest.Check(t, append(a, b...), mustReadAll(t, Config{Dir: dir}), sinktest.CheckOptions{})
}

// countdownCtx is a fake context whose Err turns to context.Canceled after
// n calls: it ends a batch midway, deterministically.
type countdownCtx struct {
	context.Context
	n int
}

func (c *countdownCtx) Err() error {
	if c.n <= 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

func TestCancelMidBatch(t *testing.T) {
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir, Format: format, MaxSize: -1}
			g := sinktest.NewGenerator(11)
			before, big, after := g.Batch(10), g.Batch(6000), g.Batch(10)
			s := mustNew(t, cfg)
			mustWrite(t, s, before)
			size := s.size
			// Err is asked before the batch, then every 256 events: with 20
			// answers the batch is cancelled at its event 5119, after more
			// than flushSize bytes of it went to the file.
			ctx := &countdownCtx{Context: t.Context(), n: 20}
			if ends := recordEnds(format, big); ends[5118] < flushSize {
				t.Fatalf("the batch's first 5119 events take %d bytes, want more than %d", ends[5118], flushSize)
			}
			if err := s.WriteBatch(ctx, big); !errors.Is(err, context.Canceled) {
				t.Fatalf("WriteBatch = %v, want context.Canceled", err)
			}
			fi, err := os.Stat(filepath.Join(dir, "events"+format.ext()))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != size {
				t.Errorf("after the cancelled batch the file has %d bytes, want %d", fi.Size(), size)
			}
			if st := s.Stats(); st.Events != 10 || st.Errors != 1 {
				t.Errorf("Stats: %+v", st)
			}
			mustWrite(t, s, after)
			mustClose(t, s)
			sinktest.Check(t, append(before, after...), mustReadAll(t, cfg), sinktest.CheckOptions{})
		})
	}
}

func TestReaderFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxSize: 8 << 10, Compression: None}
	s := mustNew(t, cfg)
	mustWrite(t, s, sinktest.NewGenerator(12).Batch(60))
	mustClose(t, s)
	// Foreign files are not read.
	for _, n := range []string{"events-1-20260314T100000Z.jsonl", "events-0000000001-2026.jsonl", "other.jsonl", "events.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("junk\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	files := r.Files()
	if len(files) < 3 || files[len(files)-1] != "events.jsonl" {
		t.Errorf("Files() = %v", files)
	}
	for _, f := range files[:len(files)-1] {
		if _, _, ok := parseRotated("events", f); !ok {
			t.Errorf("Files() holds %s", f)
		}
	}
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 60 {
		t.Errorf("%d events, want 60", n)
	}
}

// TestPing: a writable directory answers; once it is gone, Ping says so.
func TestPing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	s, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 1 {
		t.Errorf("Ping left files behind: %v", entries)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(t.Context()); err == nil || !strings.HasPrefix(err.Error(), "file: ping: ") {
		t.Errorf("Ping of a removed directory = %v", err)
	}
}
