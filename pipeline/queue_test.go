package pipeline

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

// ev returns a raw event numbered seq, with a payload of size bytes.
func ev(seq uint32, size int) schema.Event {
	return schema.Event{Version: schema.EventVersion, Kind: schema.KindRaw, Stream: &schema.Stream{Seq: seq},
		Raw: &schema.RawInfo{Payload: make([]byte, size)}}
}

func seqs(events []schema.Event) []uint32 {
	out := []uint32{}
	for _, e := range events {
		out = append(out, e.Stream.Seq)
	}
	return out
}

// takeAll takes what q holds without waiting.
func takeAll(q Queue) []schema.Event {
	return q.TryTake(nil, 1<<20, 1<<40)
}

func TestQueuePolicies(t *testing.T) {
	for _, tc := range []struct {
		policy      Policy
		pushed      int
		wantKept    []bool
		wantQueued  []uint32
		wantDropped uint64
	}{
		{DropNewest, 5, []bool{true, true, true, false, false}, []uint32{0, 1, 2}, 2},
		{DropOldest, 5, []bool{true, true, true, true, true}, []uint32{2, 3, 4}, 2},
		{Block, 3, []bool{true, true, true}, []uint32{0, 1, 2}, 0},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			q := NewMemoryQueue(3, 1<<20, tc.policy)
			var kept []bool
			for i := range tc.pushed {
				e := ev(uint32(i), 1)
				kept = append(kept, q.Push(&e))
			}
			if diff := cmp.Diff(tc.wantKept, kept); diff != "" {
				t.Errorf("Push results (-want +got):\n%s", diff)
			}
			st := q.Stats()
			if st.Events != 3 || st.Dropped != tc.wantDropped {
				t.Errorf("Stats = %+v, want 3 events, %d dropped", st, tc.wantDropped)
			}
			if d := q.TakeDropped(); d != tc.wantDropped {
				t.Errorf("TakeDropped = %d, want %d", d, tc.wantDropped)
			}
			if d := q.TakeDropped(); d != 0 {
				t.Errorf("second TakeDropped = %d, want 0 (reset)", d)
			}
			if diff := cmp.Diff(tc.wantQueued, seqs(takeAll(q))); diff != "" {
				t.Errorf("queued (-want +got):\n%s", diff)
			}
			if st := q.Stats(); st.Events != 0 || st.Bytes != 0 || st.Dropped != tc.wantDropped {
				t.Errorf("Stats after taking all = %+v", st)
			}
		})
	}
}

// TestQueueBlockWaitsForRoom: under Block a full queue holds the producer
// until the consumer takes, or until Abort, which keeps nothing more.
func TestQueueBlockWaitsForRoom(t *testing.T) {
	q := NewMemoryQueue(2, 1<<20, Block)
	for i := range 2 {
		e := ev(uint32(i), 1)
		q.Push(&e)
	}
	pushed := make(chan bool)
	go func() {
		e := ev(2, 1)
		pushed <- q.Push(&e)
	}()
	select {
	case <-pushed:
		t.Fatal("Push into a full Block queue returned without room")
	case <-time.After(50 * time.Millisecond): // proves the wait: the push must not return
	}
	got, ok := q.Take(nil, 1, 1<<20)
	if !ok || len(got) != 1 {
		t.Fatalf("Take = %v, %v", seqs(got), ok)
	}
	if !<-pushed {
		t.Fatal("Push returned false after room was made")
	}
	go func() {
		e := ev(3, 1)
		pushed <- q.Push(&e)
	}()
	time.Sleep(20 * time.Millisecond) // let it block (Abort releases it either way)
	q.Abort()
	if <-pushed {
		t.Error("Push released by Abort reported the event kept")
	}
	if !q.Aborted() {
		t.Error("Aborted = false after Abort")
	}
	e := ev(4, 1)
	if q.Push(&e) {
		t.Error("Push after Abort kept the event")
	}
	if d := q.TakeDropped(); d != 0 {
		t.Errorf("Abort counted %d policy drops: the caller counts them undelivered", d)
	}
	if diff := cmp.Diff([]uint32{1, 2}, seqs(takeAll(q))); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
}

// TestQueueBytesBound: the byte bound limits the queue as the event bound
// does, but one event larger than the bound still passes alone.
func TestQueueBytesBound(t *testing.T) {
	one := eventSize(&schema.Event{Raw: &schema.RawInfo{Payload: make([]byte, 100)}})
	q := NewMemoryQueue(100, 2*one, DropNewest)
	for i := range 3 {
		e := ev(uint32(i), 100)
		q.Push(&e)
	}
	if st := q.Stats(); st.Events != 2 || st.Bytes != 2*one || st.Dropped != 1 {
		t.Errorf("Stats = %+v, want 2 events of %d bytes, 1 dropped", st, one)
	}
	// Take bounds a batch by bytes too, and always takes one event.
	got, _ := q.Take(nil, 10, one)
	if diff := cmp.Diff([]uint32{0}, seqs(got)); diff != "" {
		t.Errorf("Take(maxBytes one event) (-want +got):\n%s", diff)
	}
	got, _ = q.Take(nil, 10, 1)
	if diff := cmp.Diff([]uint32{1}, seqs(got)); diff != "" {
		t.Errorf("Take(maxBytes 1) (-want +got):\n%s", diff)
	}
	big := ev(9, 10*int(one))
	if !q.Push(&big) {
		t.Error("an event larger than the byte bound was refused by an empty queue")
	}
}

// TestQueueCloseDrains: after Close the consumer takes what is queued,
// then Take reports the end; a Take waiting on an empty queue wakes.
func TestQueueCloseDrains(t *testing.T) {
	q := NewMemoryQueue(10, 1<<20, Block)
	done := make(chan bool)
	go func() {
		_, ok := q.Take(nil, 10, 1<<20)
		done <- ok
	}()
	e := ev(0, 1)
	q.Push(&e)
	if !<-done {
		t.Fatal("waiting Take did not get the pushed event")
	}
	for i := 1; i <= 3; i++ {
		e := ev(uint32(i), 1)
		q.Push(&e)
	}
	q.Close()
	got, ok := q.Take(nil, 2, 1<<20)
	if !ok || len(got) != 2 {
		t.Fatalf("Take after Close = %v, %v; want the queued events", seqs(got), ok)
	}
	got = q.TryTake(got, 10, 1<<20)
	if diff := cmp.Diff([]uint32{1, 2, 3}, seqs(got)); diff != "" {
		t.Errorf("taken after Close (-want +got):\n%s", diff)
	}
	if _, ok := q.Take(nil, 10, 1<<20); ok {
		t.Error("Take on a closed empty queue reported ok")
	}
	go func() {
		_, ok := q.Take(nil, 10, 1<<20)
		done <- ok
	}()
	if <-done {
		t.Error("Take after Close waited or reported ok")
	}
	q2 := NewMemoryQueue(10, 1<<20, Block)
	for i := range 4 {
		e := ev(uint32(i), 1)
		q2.Push(&e)
	}
	if n := q2.Drain(); n != 4 || q2.Stats().Events != 0 {
		t.Errorf("Drain = %d, stats %+v; want 4 and empty", n, q2.Stats())
	}
}
