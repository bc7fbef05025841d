package enrich

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cnstream/cnstream/source"
)

// What made an exec image: the input that makes its exec id unique.
const (
	originFork = 'f' // a fork cnstream saw: the fork event's timestamp
	originExec = 'e' // an exec cnstream saw: the exec event's timestamp
	originProc = 'p' // found running: start time and memory layout from /proc/PID/stat
)

// execID returns the exec id (22 characters) of the image of process tgid that origin made
// at v (a kernel timestamp, or start ticks with the layout hash): base64url
// (unpadded) of the first 16 bytes of SHA-256 over a domain tag, the boot
// id, the tgid, the origin and v, layout. A kernel timestamp names one
// event of one process (two events of a process never share a nanosecond),
// so ids from events never collide on a boot; the boot id makes them unique
// across boots and hosts.
func (t *Table) execID(tgid uint32, origin byte, v, layout uint64) string {
	var a [128]byte
	b := append(a[:0], "cnstream exec id\x00"...)
	b = append(b, t.bootID...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, tgid)
	b = append(b, origin)
	b = binary.BigEndian.AppendUint64(b, v)
	b = binary.BigEndian.AppendUint64(b, layout)
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// readBootID reads the boot id under procRoot, "" when it cannot.
func readBootID(procRoot string) string {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/kernel/random/boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// bootOffRefresh is how often, on the events' clock, CLOCK_BOOTTIME -
// CLOCK_MONOTONIC is measured again: it grows only by suspends.
const bootOffRefresh = uint64(10 * time.Second)

// bootOff returns CLOCK_BOOTTIME - CLOCK_MONOTONIC in ns for an event at
// monotonic time mono, measured again when the last measurement is older
// than bootOffRefresh on the events' clock. ok is false where the clocks
// cannot be read.
func (t *Table) bootOff(mono uint64) (int64, bool) {
	if !t.bootOK || mono > t.bootAt+bootOffRefresh || mono+bootOffRefresh < t.bootAt {
		off, err := t.measureBoot()
		if err != nil {
			return t.bootNS, t.bootOK
		}
		t.bootNS, t.bootOK, t.bootAt = int64(off), true, mono
	}
	return t.bootNS, true
}

// startOfFork returns the boot-relative start time (ns) of a process whose
// fork event was at monotonic time mono, 0 when unknown.
func (t *Table) startOfFork(mono uint64) uint64 {
	off, ok := t.bootOff(mono)
	if !ok || mono == 0 || int64(mono)+off <= 0 {
		return 0
	}
	return uint64(int64(mono) + off)
}

// startWall converts a boot-relative start time into wall-clock time
// through the configured clock: zero when either is unknown.
func (t *Table) startWall(startNS, mono uint64) time.Time {
	if startNS == 0 || t.clock == nil {
		return time.Time{}
	}
	off, ok := t.bootOff(mono)
	if !ok {
		return time.Time{}
	}
	// Wall(0) + (start - offset): a start before a suspend is negative
	// on the monotonic clock.
	return t.clock.Wall(0).Add(time.Duration(int64(startNS) - off)).UTC()
}

var measureBoot = source.BootOffset
