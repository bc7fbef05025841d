//go:build linux

package source

import (
	"time"

	"golang.org/x/sys/unix"
)

// ClockOffset returns CLOCK_REALTIME minus CLOCK_MONOTONIC, the offset that
// turns a proc event's timestamp_ns into wall-clock time. It brackets a
// realtime reading between two monotonic readings several times and keeps
// the tightest pair; the error is about half that bracket (well under a
// microsecond here), plus any later step of the wall clock.
func ClockOffset() (time.Duration, error) {
	best := time.Duration(1<<63 - 1)
	var off time.Duration
	for i := 0; i < 5; i++ {
		var m1, r, m2 unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1); err != nil {
			return 0, err
		}
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &r); err != nil {
			return 0, err
		}
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2); err != nil {
			return 0, err
		}
		if w := time.Duration(m2.Nano() - m1.Nano()); w < best {
			best = w
			off = time.Duration(r.Nano() - (m1.Nano()+m2.Nano())/2)
		}
	}
	return off, nil
}

// Monotonic returns CLOCK_MONOTONIC in nanoseconds, the clock of a proc
// event's timestamp_ns.
func Monotonic() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	return uint64(ts.Nano()), nil
}

// BootOffset returns CLOCK_BOOTTIME minus CLOCK_MONOTONIC: the time the
// machine spent suspended since boot, which turns a boot-relative time
// (/proc/PID/stat's start time) into a proc event's clock and back. Like
// ClockOffset it brackets one clock between two readings of the other and
// keeps the tightest pair of three.
func BootOffset() (time.Duration, error) {
	best := time.Duration(1<<63 - 1)
	var off time.Duration
	for i := 0; i < 3; i++ {
		var m1, b, m2 unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1); err != nil {
			return 0, err
		}
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &b); err != nil {
			return 0, err
		}
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2); err != nil {
			return 0, err
		}
		if w := time.Duration(m2.Nano() - m1.Nano()); w < best {
			best = w
			off = time.Duration(b.Nano() - (m1.Nano()+m2.Nano())/2)
		}
	}
	return off, nil
}
