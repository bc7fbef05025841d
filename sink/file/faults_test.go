package file

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

// readEach reads the directory record by record, going on after errors,
// and returns the events and the errors in order.
func readEach(t *testing.T, cfg Config) ([]schema.Event, []error) {
	t.Helper()
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var events []schema.Event
	var errs []error
	for range 1000 {
		e, err := r.Next()
		if err == io.EOF {
			return events, errs
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		events = append(events, e)
	}
	t.Fatal("Reader.Next did not reach the end in 1000 calls")
	return nil, nil
}

// TestRecoveryCorruptMiddle: a msgpack active file with a corrupt length
// in the middle (the fourth record's) and a torn tail at the end (half
// the last record). New cuts the torn tail only: the corrupt record is a
// "corrupt_record" loss, the records after it stay and are read again
// (the Reader reports the corrupt bytes once and resyncs), the torn one a
// "torn_tail" loss, and writing goes on after the last whole record.
func TestRecoveryCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Format: Msgpack, MaxSize: -1}
	path := filepath.Join(dir, "events.msgpack")
	g := sinktest.NewGenerator(21)
	events := g.Batch(10)
	s := mustNew(t, cfg)
	mustWrite(t, s, events)
	mustClose(t, s)
	ends := recordEnds(Msgpack, events)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(data[ends[2]:], 0xfffffff0) // the fourth record's length
	data = data[:ends[8]+(ends[9]-ends[8])/2]              // half the last record
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}

	var torn []Torn
	cfg.OnTorn = func(x Torn) { torn = append(torn, x) }
	s = mustNew(t, cfg)
	if len(torn) != 1 || torn[0].Offset != ends[8] || torn[0].Bytes != int64(len(data))-ends[8] || torn[0].Records != 1 {
		t.Errorf("OnTorn %+v: want one cut at offset %d of %d bytes, 1 record (the torn tail only)", torn, ends[8], int64(len(data))-ends[8])
	}
	var got []string
	for _, l := range s.TakeLosses() {
		got = append(got, l.Reason)
		if l.Count != 1 || !strings.Contains(l.Detail, path) {
			t.Errorf("loss %+v: want 1 record, naming %s", l, path)
		}
	}
	if diff := cmp.Diff([]string{"corrupt_record", "torn_tail"}, got); diff != "" {
		t.Errorf("losses (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.Corrupt != 1 || st.Torn != 1 {
		t.Errorf("Stats %+v: want 1 corrupt region, 1 torn tail", st)
	}
	more := g.Batch(3)
	mustWrite(t, s, more)
	mustClose(t, s)

	read, errs := readEach(t, cfg)
	want := append(append(append([]schema.Event{}, events[:3]...), events[4:9]...), more...)
	sinktest.Check(t, want, read, sinktest.CheckOptions{})
	var re *RecordError
	if len(errs) != 1 || !errors.Is(errs[0], ErrCorrupt) || !errors.As(errs[0], &re) || re.Offset != ends[2] {
		t.Errorf("Reader errors %v: want one ErrCorrupt at offset %d", errs, ends[2])
	}
}

// fakeFsync is a fault-injecting stand-in for the active file's fsync
// (fsync errors cannot be made on demand on a real file system here): it
// fails the calls it is told to, with EIO, as Linux reports a writeback
// error once.
type fakeFsync struct {
	fail  map[int]bool // call numbers (from 1) that fail
	calls int
}

func (f *fakeFsync) sync(file *os.File) error {
	f.calls++
	if f.fail[f.calls] {
		return &os.PathError{Op: "sync", Path: file.Name(), Err: syscall.EIO}
	}
	return file.Sync()
}

// TestFsyncFailureIsALoss: under sync: interval, batches acknowledged
// before a failed fsync (on the pipeline's timer, Sync, or at the end of
// a batch) become a "fsync_failed" loss counting them, never a silent
// acknowledgement; the batch whose fsync failed is not acknowledged (the
// pipeline retries it), and a later good fsync resets the count.
func TestFsyncFailureIsALoss(t *testing.T) {
	clock := newClock()
	fake := &fakeFsync{fail: map[int]bool{1: true, 3: true}}
	s := mustNew(t, Config{Dir: t.TempDir(), Sync: SyncInterval, SyncInterval: time.Second, Now: clock.Now})
	s.fsync = fake.sync
	g := sinktest.NewGenerator(22)

	mustWrite(t, s, g.Batch(3)) // acknowledged, not fsynced
	mustWrite(t, s, g.Batch(2))
	if err := s.Sync(ctxT(t)); !errors.Is(err, syscall.EIO) { // fsync 1 fails
		t.Fatalf("Sync = %v, want EIO", err)
	}
	want := []sink.Loss{{Count: 5, Reason: "fsync_failed"}}
	ignoreDetail := cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Detail" }, cmp.Ignore())
	if diff := cmp.Diff(want, s.TakeLosses(), ignoreDetail); diff != "" {
		t.Errorf("losses after the failed timer fsync (-want +got):\n%s", diff)
	}
	if err := s.Sync(ctxT(t)); err != nil { // fsync 2: the error was reported once
		t.Fatalf("Sync: %v", err)
	}
	if l := s.TakeLosses(); l != nil {
		t.Errorf("losses after a good fsync: %+v, want none", l)
	}

	mustWrite(t, s, g.Batch(4)) // acknowledged, not fsynced
	clock.Add(time.Second)
	if err := s.WriteBatch(ctxT(t), g.Batch(6)); !errors.Is(err, syscall.EIO) { // fsync 3, the batch's, fails
		t.Fatalf("WriteBatch = %v, want EIO", err)
	}
	want = []sink.Loss{{Count: 4, Reason: "fsync_failed"}}
	if diff := cmp.Diff(want, s.TakeLosses(), ignoreDetail); diff != "" {
		t.Errorf("losses after a batch's failed fsync (-want +got):\n%s", diff)
	}
	if st := s.Stats(); st.FsyncLost != 9 || st.Events != 9 {
		t.Errorf("Stats %+v: want 9 events lost to fsync, 9 acknowledged", st)
	}
	mustClose(t, s)
}
