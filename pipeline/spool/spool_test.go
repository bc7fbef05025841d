package spool

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

const testBoot = "6d3c3b4e-8f0a-4f3e-9a51-0f2b7c1d9e11"

func testRecords(boot string) *schema.Records {
	return schema.NewRecords("", schema.Host{Hostname: "h", MachineID: "m", BootID: boot})
}

// forks returns n fork events of stream cpu, numbered from seq on.
func forks(recs *schema.Records, cpu, seq uint32, n int) []schema.Event {
	out := make([]schema.Event, n)
	for i := range out {
		out[i] = schema.Event{Version: schema.EventVersion, Kind: schema.KindFork, Time: time.Unix(1700000000, int64(i)).UTC(),
			MonoNS: uint64(i), Host: recs.Host(),
			Stream: &schema.Stream{Idx: schema.ProcID.Idx, Val: schema.ProcID.Val, CPU: cpu, Seq: seq + uint32(i)},
			Fork:   &schema.ForkEvent{ParentPID: 1, ParentTGID: 1, ChildPID: seq + uint32(i), ChildTGID: seq + uint32(i)}}
		out[i].ID = out[i].EventID()
	}
	return out
}

func open(t *testing.T, cfg Config, sinks ...string) *Spool {
	t.Helper()
	s, err := Open(cfg, sinks)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// takeAll takes from c until it has nothing without waiting, acking
// everything, and returns what it took.
func takeAll(t *testing.T, c *Cursor) []schema.Event {
	t.Helper()
	var out []schema.Event
	for {
		n := len(out)
		out = c.TryTake(out, n+100, 1<<30)
		if len(out) == n {
			return out
		}
		c.Ack(len(out) - n)
	}
}

// dedupe keeps the first event of each id, as a consumer does.
func dedupe(evs []schema.Event) []schema.Event {
	seen := map[string]bool{}
	var out []schema.Event
	for i := range evs {
		if id := evs[i].EventID(); !seen[id] {
			seen[id] = true
			out = append(out, evs[i])
		}
	}
	return out
}

func ids(evs []schema.Event) []string {
	var out []string
	for i := range evs {
		out = append(out, evs[i].EventID())
	}
	return out
}

// kinds counts events by kind, and sums dropped counts by reason.
func tally(evs []schema.Event) (events int, dropped map[string]uint64, corrupt int) {
	dropped = map[string]uint64{}
	for i := range evs {
		switch e := &evs[i]; e.Kind {
		case schema.KindDropped:
			dropped[e.Dropped.Reason] += e.Dropped.Count
		case schema.KindCorrupt:
			corrupt++
		default:
			events++
		}
	}
	return
}

func TestAppendTakeAckReopen(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	cfg := Config{Dir: dir, Records: recs}
	s := open(t, cfg, "a", "b")
	evs := forks(recs, 0, 100, 50)
	if !s.Append(evs[:30]) || !s.Append(evs[30:]) {
		t.Fatal("append failed")
	}
	a, b := s.Cursor("a"), s.Cursor("b")
	got := takeAll(t, a)
	if diff := cmp.Diff(ids(evs), ids(got)); diff != "" {
		t.Fatalf("cursor a (-want +got):\n%s", diff)
	}
	// b takes 20 and acks 10: 40 must come again after a restart.
	bt, _ := b.Take(nil, 20, 1<<30)
	b.Ack(10)
	if len(bt) != 20 {
		t.Fatalf("b took %d, want 20", len(bt))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, cfg, "a", "b")
	defer s.Close()
	if got := takeAll(t, s.Cursor("a")); len(got) != 0 {
		t.Fatalf("cursor a got %d events again, want 0: %v", len(got), ids(got))
	}
	again := takeAll(t, s.Cursor("b"))
	if diff := cmp.Diff(ids(evs[10:]), ids(again)); diff != "" {
		t.Fatalf("cursor b after restart (-want +got):\n%s", diff)
	}
	// Decoded from disk: equal to what was appended.
	if diff := cmp.Diff(evs[10], again[0]); diff != "" {
		t.Fatalf("event from disk (-want +got):\n%s", diff)
	}
	if r := s.Resume(); len(r) != 1 || r[0].Seq != 149 || r[0].CPU != 0 {
		t.Fatalf("Resume = %+v, want cpu 0 at 149", r)
	}
}

func TestBehindTheCacheReadsDisk(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	s := open(t, Config{Dir: dir, Records: recs, CacheEvents: 64, SegmentSize: 64 << 10, MaxSize: 64 << 20}, "slow")
	defer s.Close()
	var all []schema.Event
	for i := range 40 {
		evs := forks(recs, uint32(i%2), uint32(1000*(i%2)+i*100), 100)
		all = append(all, evs...)
		s.Append(evs)
	}
	if st := s.Stats(); st.Segments < 3 {
		t.Fatalf("segments = %d, want several (64 KiB each)", st.Segments)
	}
	got := takeAll(t, s.Cursor("slow"))
	if diff := cmp.Diff(ids(all), ids(got)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 {
		t.Fatalf("segments after every ack and a sync = %d, want 1 (the active one)", st.Segments)
	}
}

func TestResumeForgetsOtherBoots(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	s := open(t, Config{Dir: dir, Records: recs}, "a")
	s.Append(forks(recs, 1, 7, 3))
	s.Append(forks(recs, 0, 40, 2))
	s.Close()
	s = open(t, Config{Dir: dir, Records: recs}, "a")
	r := s.Resume()
	slices.SortFunc(r, func(a, b schema.Stream) int { return int(a.CPU) - int(b.CPU) })
	want := []schema.Stream{{Idx: 1, Val: 1, CPU: 0, Seq: 41}, {Idx: 1, Val: 1, CPU: 1, Seq: 9}}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Fatalf("Resume (-want +got):\n%s", diff)
	}
	s.Close()
	s = open(t, Config{Dir: dir, Records: testRecords("0f6e0a9c-1111-2222-3333-444455556666")}, "a")
	defer s.Close()
	if r := s.Resume(); len(r) != 0 {
		t.Fatalf("Resume on another boot = %+v, want none", r)
	}
}

// TestTruncatedTail cuts the last segment at 20 random offsets: Open
// succeeds, a corrupt record says where, and what the cursor had not
// acknowledged is delivered or counted in a dropped record, exactly.
func TestTruncatedTail(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for tc := range 20 {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			dir := t.TempDir()
			recs := testRecords(testBoot)
			cfg := Config{Dir: dir, Records: recs}
			s := open(t, cfg, "k")
			evs := forks(recs, 0, 1, 500)
			for i := 0; i < len(evs); i += 50 {
				s.Append(evs[i : i+50])
			}
			acked := rng.IntN(len(evs))
			got, _ := s.Cursor("k").Take(nil, acked, 1<<40)
			s.Cursor("k").Ack(len(got))
			s.Close()
			bases, _ := listSegments(dir)
			last := filepath.Join(dir, segName(bases[len(bases)-1]))
			st, _ := os.Stat(last)
			cut := segHeaderLen + rng.Int64N(st.Size()-segHeaderLen)
			if err := os.Truncate(last, cut); err != nil {
				t.Fatal(err)
			}

			s = open(t, cfg, "k")
			defer s.Close()
			after := takeAll(t, s.Cursor("k"))
			n, dropped, corrupt := tally(after)
			unacked := len(evs) - acked
			if uint64(n)+dropped["spool_corrupt"]+dropped["spool_missing"] != uint64(unacked) {
				t.Fatalf("cut at %d of %d, %d acked: %d delivered + %v dropped != %d unacknowledged", cut, st.Size(), acked, n, dropped, unacked)
			}
			torn := n < unacked
			if torn && corrupt == 0 && cut != segHeaderLen {
				// A cut exactly between two records leaves no torn bytes:
				// then the hole alone says it.
				if dropped["spool_missing"]+dropped["spool_corrupt"] == 0 {
					t.Fatalf("events lost without a record")
				}
			}
			// Delivered events are the right ones, in order.
			var gotIDs []string
			for i := range after {
				if after[i].Kind == schema.KindFork {
					gotIDs = append(gotIDs, after[i].EventID())
				}
			}
			if diff := cmp.Diff(ids(evs[acked:acked+n]), gotIDs); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			// New appends continue after the hole and reach the cursor.
			more := forks(recs, 0, 501, 10)
			s.Append(more)
			if got := takeAll(t, s.Cursor("k")); len(got) != 10 {
				t.Fatalf("after reopen: took %d new events, want 10", len(got))
			}
			if r := s.Resume(); len(r) != 1 || r[0].Seq != 510 {
				t.Fatalf("Resume = %+v, want seq 510", r)
			}
		})
	}
}

// TestFlippedByte corrupts one record in the middle of a segment: the
// cursor gets a corrupt record and a dropped record of exactly one.
func TestFlippedByte(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	cfg := Config{Dir: dir, Records: recs}
	s := open(t, cfg, "k")
	evs := forks(recs, 0, 1, 100)
	s.Append(evs)
	s.Close()
	bases, _ := listSegments(dir)
	path := filepath.Join(dir, segName(bases[0]))
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x40
	os.WriteFile(path, b, 0o640)

	s = open(t, cfg, "k")
	defer s.Close()
	after := takeAll(t, s.Cursor("k"))
	n, dropped, corrupt := tally(after)
	if n != 99 || dropped["spool_corrupt"] != 1 || corrupt != 1 {
		t.Fatalf("delivered %d, dropped %v, corrupt records %d; want 99, spool_corrupt 1, 1", n, dropped, corrupt)
	}
}

func TestDropOldest(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	s := open(t, Config{Dir: dir, Records: recs, MaxSize: 1 << 20, SegmentSize: 128 << 10, WhenFull: DropOldest, CacheEvents: 100}, "slow", "fast")
	defer s.Close()
	fast := s.Cursor("fast")
	var fastGot []schema.Event
	total := 0
	gap := recs.Gap(schema.Stream{Idx: 1, Val: 1}, 5, 9, 4, "")
	s.Append([]schema.Event{gap})
	for i := range 100 {
		s.Append(forks(recs, 0, uint32(i*100), 100))
		total += 100
		fastGot = append(fastGot, takeAll(t, fast)...)
	}
	// The gap record may come again (rescued from a deleted segment, with
	// its id): count distinct ids.
	if n, d, _ := tally(dedupe(fastGot)); n != total+1 || len(d) != 0 {
		t.Fatalf("the fast sink got %d distinct events and records (want %d) and drops %v (want none: the statements are the slow sink's)", n, total+1, d)
	}
	if st := s.Stats(); st.Bytes > 1<<20 || st.FullDropped == 0 {
		t.Fatalf("stats %+v: want <= 1 MiB and drops", st)
	}
	got := dedupe(takeAll(t, s.Cursor("slow")))
	n, dropped, _ := tally(got)
	gaps := 0
	for i := range got {
		if got[i].Kind == schema.KindGap {
			gaps++
		}
	}
	if gaps != 1 {
		t.Fatalf("the gap record in a dropped segment was not delivered (%d)", gaps)
	}
	if uint64(n-gaps)+dropped["spool_full_drop_oldest"] != uint64(total) {
		t.Fatalf("delivered %d + dropped %v != %d", n-gaps, dropped, total)
	}
}

func TestBlockWaitsForAck(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	s := open(t, Config{Dir: dir, Records: recs, MaxSize: 1 << 20, SegmentSize: 128 << 10, CacheEvents: 100}, "k")
	defer s.Close()
	done := make(chan int)
	go func() {
		n := 0
		for i := range 300 {
			if s.Append(forks(recs, 0, uint32(i*100), 100)) {
				n += 100
			}
		}
		done <- n
	}()
	c := s.Cursor("k")
	// Nothing taken yet: the appender must come to wait for room.
	deadline := time.Now().Add(20 * time.Second)
	for s.Stats().FullWaits == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the appender never waited for room: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond) // polling the spool's counters with a deadline
	}
	if st := s.Stats(); st.Bytes > 1<<20 {
		t.Fatalf("spool holds %d bytes while the appender waits: want <= 1 MiB", st.Bytes)
	}
	var got []schema.Event
	for len(got) < 30000 && time.Now().Before(deadline) {
		k := len(got)
		got = c.TryTake(got, k+500, 1<<30)
		c.Ack(len(got) - k)
	}
	if n := <-done; n != 30000 || len(got) != 30000 {
		n1, d1, _ := tally(got)
		t.Fatalf("appended %d, took %d (events %d, drops %v), stats %+v", n, len(got), n1, d1, s.Stats())
	}
	if n, d, _ := tally(got); n != 30000 || len(d) != 0 {
		t.Fatalf("took %d events, drops %v", n, d)
	}
	if st := s.Stats(); st.FullWaits == 0 || st.Bytes > 1<<20+128<<10 {
		t.Fatalf("stats %+v: want waits and the bound kept", st)
	}
}

// TestCompactRecordsFromDisk reads events back from segments larger than
// the reader's buffer (records straddle its refills): compact records get
// their host and their id (empty, or derived) back, whatever their place.
func TestCompactRecordsFromDisk(t *testing.T) {
	dir := t.TempDir()
	recs := testRecords(testBoot)
	other := &schema.Host{Hostname: "elsewhere", BootID: "0f6e0a9c-1111-2222-3333-444455556666"}
	s := open(t, Config{Dir: dir, Records: recs, CacheEvents: 64, SegmentSize: 8 << 20, MaxSize: 64 << 20}, "slow")
	defer s.Close()
	var want []schema.Event
	for i := range 400 {
		evs := forks(recs, uint32(i%3), uint32(i*100), 100)
		for j := range evs {
			switch j % 3 {
			case 0:
				evs[j].ID = "" // compact, id left empty
			case 1:
				evs[j].Host = other // not compact: another host
				evs[j].ID = evs[j].EventID()
			}
		}
		want = append(want, evs...)
		s.Append(evs)
	}
	got := takeAll(t, s.Cursor("slow"))
	if len(got) != len(want) {
		t.Fatalf("took %d, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID || *got[i].Host != *want[i].Host || got[i].Stream.Seq != want[i].Stream.Seq {
			t.Fatalf("event %d: id %q host %+v seq %d; want id %q host %+v seq %d", i,
				got[i].ID, *got[i].Host, got[i].Stream.Seq, want[i].ID, *want[i].Host, want[i].Stream.Seq)
		}
	}
}
