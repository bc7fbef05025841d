package enrich

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

func TestParseStartTime(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"1 (systemd) S 0 1 1 0 -1 4194560 31215 0 0 0 0 0 0 0 20 0 1 0 12 23425024", 12, true},
		{"42 (a) b) (c) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 987654321 0", 987654321, true},
		{"42 (x) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77\n", 77, true},
		{"42 (x) R 1 42", 0, false},
		{"no parenthesis", 0, false},
		{"42 (x) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -5 0", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseStartTime([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseStartTime(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestPidReuse checks the start-time check over a fake /proc tree (a fake:
// a real pid cannot be made to be reused on demand). A pid whose process
// started after the event, or is not the one the table knew, is "gone":
// nothing of the newcomer is told as the event's process.
func TestPidReuse(t *testing.T) {
	root := fakeRoot(t,
		fakeProc{pid: 1, name: "systemd", args: []string{"/sbin/init"}, exe: "/usr/lib/systemd/systemd", start: 1},
		fakeProc{pid: 500, ppid: 1, name: "old", args: []string{"old"}, exe: "/usr/bin/old", start: 300},
	)
	tab, err := New(Config{ProcRoot: root, LookupUser: noName, LookupGroup: noName})
	if err != nil {
		t.Fatal(err)
	}
	// Boot and monotonic clocks 1 s apart: an event at monotonic 5 s is
	// at 6 s after boot, tick 600.
	tab.bootOffset = func() (int64, bool) { return int64(time.Second), true }
	if err := tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	gone := func(pid uint32) *schema.Process {
		return &schema.Process{PID: pid, TGID: pid, Source: SourceGone}
	}

	// pid 500 exited and its pid went to a new process (same pid, same
	// tgid, started at tick 700) without our seeing the exit: an exec
	// event for the old process reads the newcomer, whose start time is
	// not the one seeded.
	removeFakeProc(t, root, 500)
	writeFakeProc(t, root, fakeProc{pid: 500, ppid: 1, name: "new", args: []string{"new"}, exe: "/usr/bin/new", start: 700})
	ev := execEv(500)
	ev.TimestampNS = uint64(9 * time.Second)
	if diff := cmp.Diff(gone(500), tab.Enrich(ev), noIDs); diff != "" {
		t.Errorf("exec of a reused pid (-want +got):\n%s", diff)
	}
	if s := tab.Stats(); s.ProcReused != 1 || s.ProcGone != 1 {
		t.Errorf("stats %+v", s)
	}

	// A subject missing from the table, read at a comm event at
	// monotonic 5 s (tick 600): a process started at tick 700 came
	// after the event.
	writeFakeProc(t, root, fakeProc{pid: 600, ppid: 1, name: "later", args: []string{"later"}, start: 700})
	comm := commEv(600, 600, "x")
	comm.TimestampNS = uint64(5 * time.Second)
	if p := tab.Enrich(comm); p.Source != SourceGone || p.Cmdline != nil {
		t.Errorf("comm of a younger process: %+v", p)
	}
	// Started at tick 590, before the event: its own.
	writeFakeProc(t, root, fakeProc{pid: 601, ppid: 1, name: "early", args: []string{"early"}, start: 590})
	comm = commEv(601, 601, "y")
	comm.TimestampNS = uint64(5 * time.Second)
	if p := tab.Enrich(comm); p.Source != SourceProc || !cmp.Equal(p.Cmdline, []string{"early"}) {
		t.Errorf("comm of an older process: %+v", p)
	}
	// The same process execs: its start time is the one the table knows.
	ev = execEv(601)
	ev.TimestampNS = uint64(7 * time.Second)
	if p := tab.Enrich(ev); p.Source != SourceProc {
		t.Errorf("exec of a known process: %+v", p)
	}
	// Without a timestamp (0) only the known start time is checked.
	writeFakeProc(t, root, fakeProc{pid: 602, ppid: 1, name: "untimed", args: []string{"u"}, start: 9000})
	if p := tab.Enrich(execEv(602)); p.Source != SourceProc {
		t.Errorf("exec without timestamp: %+v", p)
	}
	if s := tab.Stats(); s.ProcReused != 2 || s.ProcGone != 2 {
		t.Errorf("stats %+v", s)
	}
}

// A stale offset (the boot clock gained a suspend since it was measured)
// is measured again before a pid is called reused.
func TestPidReuseRemeasures(t *testing.T) {
	root := fakeRoot(t, fakeProc{pid: 700, ppid: 1, name: "p", args: []string{"p"}, start: 6100})
	tab, err := New(Config{ProcRoot: root, LookupUser: noName, LookupGroup: noName})
	if err != nil {
		t.Fatal(err)
	}
	off := int64(0)
	measured := 0
	tab.bootOffset = func() (int64, bool) { measured++; return off, true }
	tab.startBound(1) // measured: 0
	off = int64(60 * time.Second)
	ev := execEv(700)
	ev.TimestampNS = uint64(2 * time.Second) // 62 s after boot: tick 6200
	if p := tab.Enrich(ev); p.Source != SourceProc {
		t.Errorf("after a suspend: %+v", p)
	}
	if measured != 2 {
		t.Errorf("offset measured %d times, want 2", measured)
	}
}

func noName(uint32) (string, error) { return "", errNoName }

var errNoName = &noNameError{}

type noNameError struct{}

func (*noNameError) Error() string { return "no name" }
