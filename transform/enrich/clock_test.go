package enrich

import (
	"errors"
	"testing"
	"time"
)

// fakeClocks stands for CLOCK_MONOTONIC and the wall clock, so that a step
// of the wall clock can be made without changing the machine's.
type fakeClocks struct {
	mono  uint64        // next monotonic reading
	step  uint64        // added per monotonic reading
	wall  time.Duration // wall = mono + wall offset
	fail  bool
	reads int
}

func (f *fakeClocks) readMono() (uint64, error) {
	f.reads++
	if f.fail {
		return 0, errors.New("no clock")
	}
	m := f.mono
	f.mono += f.step
	return m, nil
}

// now reads the wall clock one step after the last monotonic reading: in
// the middle of the bracket.
func (f *fakeClocks) now() time.Time {
	t := time.Unix(0, int64(f.mono)+int64(f.wall))
	f.mono += f.step
	return t
}

func TestClockFollowsStep(t *testing.T) {
	const off = 1_700_000_000 * time.Second
	f := &fakeClocks{mono: 1e9, step: 100, wall: off}
	c, err := newClock(ClockConfig{Refresh: 10 * time.Second}, f.readMono, f.now)
	if err != nil {
		t.Fatal(err)
	}
	// The bracket is 200 ns wide (two readings of 100 ns steps), the wall
	// reading sits at its start + 100: the middle.
	if s := c.Stats(); s.Bracket != 200 || s.Offset != off || s.Refreshes != 1 {
		t.Fatalf("stats %+v", s)
	}
	if got, want := c.Wall(5e9), time.Unix(0, 5e9+int64(off)); !got.Equal(want) {
		t.Errorf("Wall = %v, want %v", got, want)
	}
	f.wall += time.Hour // the wall clock steps
	reads := f.reads
	if got, want := c.Wall(5e9), time.Unix(0, 5e9+int64(off)); !got.Equal(want) {
		t.Errorf("before the refresh is due: Wall = %v, want %v", got, want)
	}
	if f.reads != reads {
		t.Errorf("Wall read the clock %d times before a refresh was due", f.reads-reads)
	}
	// An event stamped after the refresh time, while the clock itself has
	// not got there (a timestamp from the future): no refresh.
	c.Wall(20e9)
	if s := c.Stats(); s.Refreshes != 1 {
		t.Errorf("refreshed on a timestamp ahead of the clock: %+v", s)
	}
	// The clock gets there: the next event past it refreshes.
	f.mono = 12e9
	if got, want := c.Wall(12e9), time.Unix(0, 12e9+int64(off+time.Hour)); !got.Equal(want) {
		t.Errorf("after the step: Wall = %v, want %v", got, want)
	}
	if s := c.Stats(); s.Refreshes != 2 || s.Offset != off+time.Hour {
		t.Errorf("stats %+v", s)
	}
	// No refresh for another 10 s of monotonic time.
	f.wall -= time.Hour
	c.Wall(12e9 + 9e9)
	if s := c.Stats(); s.Refreshes != 2 {
		t.Errorf("refreshed early: %+v", s)
	}
	// Refresh forces one.
	if err := c.Refresh(); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Refreshes != 3 || s.Offset != off {
		t.Errorf("after Refresh: %+v", s)
	}
}

func TestClockKeepsOffsetOnError(t *testing.T) {
	f := &fakeClocks{mono: 1e9, step: 10, wall: time.Hour}
	c, err := newClock(ClockConfig{Refresh: time.Second}, f.readMono, f.now)
	if err != nil {
		t.Fatal(err)
	}
	f.fail = true
	if got, want := c.Wall(3e9), time.Unix(0, 3e9+int64(time.Hour)); !got.Equal(want) {
		t.Errorf("Wall = %v, want %v", got, want)
	}
	if s := c.Stats(); s.Errors != 1 || s.Refreshes != 1 {
		t.Errorf("stats %+v", s)
	}
	if err := c.Refresh(); err == nil {
		t.Error("Refresh without a clock succeeded")
	}
	if _, err := newClock(ClockConfig{}, f.readMono, f.now); err == nil {
		t.Error("newClock without a clock succeeded")
	}
}

func TestClockNeverRefreshes(t *testing.T) {
	f := &fakeClocks{mono: 1e9, step: 10}
	c, err := newClock(ClockConfig{Refresh: -1}, f.readMono, f.now)
	if err != nil {
		t.Fatal(err)
	}
	reads := f.reads
	c.Wall(1 << 62)
	c.Wall(^uint64(0))
	if f.reads != reads || c.Stats().Refreshes != 1 {
		t.Errorf("refreshed: %d reads, %+v", f.reads-reads, c.Stats())
	}
}

// The tightest bracket wins, even when it is not the first.
func TestClockTightestBracket(t *testing.T) {
	widths := []uint64{900, 500, 120, 700, 300, 800, 600, 400}
	var mono uint64 = 1e9
	i, second := 0, false
	readMono := func() (uint64, error) {
		m := mono
		if second {
			mono += widths[i%len(widths)]
			m = mono
			i++
		}
		second = !second
		return m, nil
	}
	// The wall clock is mono + 1h exactly at the first reading of each
	// pair: the middle of a bracket of width w is off by w/2.
	now := func() time.Time { return time.Unix(0, int64(mono)+int64(time.Hour)) }
	c, err := newClock(ClockConfig{}, readMono, now)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Bracket != 120 || s.Offset != time.Hour-60 {
		t.Errorf("stats %+v, want bracket 120ns, offset 1h-60ns", s)
	}
}
