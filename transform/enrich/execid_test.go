package enrich

import (
	"regexp"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// wallClock0 is a pipeline clock whose monotonic 0 is wall time base.
type wallClock0 struct{ base time.Time }

func (c wallClock0) Wall(mono uint64) time.Time { return c.base.Add(time.Duration(mono)) }

var (
	execIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)
	wallBase = time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
)

// idFixture is a fake /proc with start times and layouts, a fixed boot id,
// a fixed clock, and CLOCK_BOOTTIME 2 s ahead of CLOCK_MONOTONIC.
func idFixture(t *testing.T, boot string, procs ...fakeProc) *fixture {
	t.Helper()
	f := newFixture(t, Config{BootID: boot, Clock: wallClock0{wallBase}}, procs...)
	f.tab.measureBoot = func() (time.Duration, error) { return 2 * time.Second, nil }
	f.tab.bootOffset = func() (int64, bool) { return int64(2 * time.Second), true } // the start-time check's
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	return f
}

func at(ev schema.ProcEvent, ns uint64) schema.ProcEvent {
	ev.TimestampNS = ns
	return ev
}

var (
	idInit = fakeProc{pid: 1, name: "systemd", args: []string{"/sbin/init"}, exe: "/usr/lib/systemd/systemd", start: 1, layout: 1000}
	idBash = fakeProc{pid: 100, ppid: 1, name: "bash", uid: 1000, gid: 1000, args: []string{"-bash"}, exe: "/usr/bin/bash",
		start: 500, layout: 2000, threads: []fakeThread{{101, "bash-io"}}}
)

const bootA = "8c5d9f3a-1b2e-4c7d-9a0f-3e4b5c6d7e8f"

// TestExecIDsJoin follows one process through fork, exec, exec, a uid
// change, a thread and exit: each image has its own id, the links name
// the image before, and every event of an image carries its id.
func TestExecIDsJoin(t *testing.T) {
	f := idFixture(t, bootA, idInit, idBash)
	tab := f.tab
	init, bash := tab.Ancestors(1, 1), tab.m[100]
	if init != nil || bash == nil {
		t.Fatalf("seed: %v %v", init, bash)
	}
	bashID := bash.execID
	if !execIDRE.MatchString(bashID) || !execIDRE.MatchString(tab.m[1].execID) || bashID == tab.m[1].execID {
		t.Fatalf("seeded ids %q (bash), %q (init)", bashID, tab.m[1].execID)
	}
	if th := tab.m[101]; th.execID != bashID {
		t.Errorf("seeded thread's id %q, want its process's %q", th.execID, bashID)
	}
	if bash.parentExecID != tab.m[1].execID {
		t.Errorf("bash's parent id %q, want init's %q", bash.parentExecID, tab.m[1].execID)
	}

	fork := tab.Enrich(at(forkEv(100, 100, 300, 300), 10*uint64(time.Second)))
	if !execIDRE.MatchString(fork.ExecID) || fork.ExecID == bashID {
		t.Fatalf("fork: exec id %q (bash's %q)", fork.ExecID, bashID)
	}
	if fork.ParentExecID != bashID || fork.PrevExecID != "" {
		t.Errorf("fork: parent %q prev %q, want parent %q, no prev", fork.ParentExecID, fork.PrevExecID, bashID)
	}
	// Started at the fork: 10 s monotonic, 12 s after boot, wall base+10 s.
	if fork.StartBootNS != 12*uint64(time.Second) || !fork.StartTime.Equal(wallBase.Add(10*time.Second)) {
		t.Errorf("fork: start %d ns after boot, %v; want 12 s, %v", fork.StartBootNS, fork.StartTime, wallBase.Add(10*time.Second))
	}
	if len(fork.Ancestors) == 0 || fork.Ancestors[0].ExecID != bashID {
		t.Errorf("fork: ancestors %+v, want bash's id first", fork.Ancestors)
	}

	writeFakeProc(t, f.root, fakeProc{pid: 300, ppid: 100, name: "sh", args: []string{"sh", "-c", "x"}, exe: "/usr/bin/dash", start: 1200, layout: 3000})
	exec1 := tab.Enrich(at(execEv(300), 11*uint64(time.Second)))
	removeFakeProc(t, f.root, 300)
	writeFakeProc(t, f.root, fakeProc{pid: 300, ppid: 100, name: "x", args: []string{"x"}, exe: "/usr/bin/x", start: 1200, layout: 4000})
	exec2 := tab.Enrich(at(execEv(300), 12*uint64(time.Second)))
	for i, p := range []*schema.Process{exec1, exec2} {
		if !execIDRE.MatchString(p.ExecID) {
			t.Fatalf("exec %d: id %q", i+1, p.ExecID)
		}
		if p.ParentExecID != bashID {
			t.Errorf("exec %d: parent %q, want bash's %q (an exec keeps the parent)", i+1, p.ParentExecID, bashID)
		}
		// exec keeps the start time: the fork's, to the ns.
		if p.StartBootNS != fork.StartBootNS || !p.StartTime.Equal(fork.StartTime) {
			t.Errorf("exec %d: start %d %v, want the fork's %d %v", i+1, p.StartBootNS, p.StartTime, fork.StartBootNS, fork.StartTime)
		}
	}
	if exec1.PrevExecID != fork.ExecID || exec2.PrevExecID != exec1.ExecID {
		t.Errorf("prev links: exec1 %q (want the fork's %q), exec2 %q (want exec1's %q)", exec1.PrevExecID, fork.ExecID, exec2.PrevExecID, exec1.ExecID)
	}
	if ids := map[string]bool{fork.ExecID: true, exec1.ExecID: true, exec2.ExecID: true, bashID: true}; len(ids) != 4 {
		t.Errorf("ids not distinct: %v", ids)
	}

	uid := tab.Enrich(at(idEv(schema.ProcEventUID, 300, 300, 0, 0), 13*uint64(time.Second)))
	thread := tab.Enrich(at(forkEv(300, 300, 301, 300), 14*uint64(time.Second)))
	texit := tab.Enrich(at(exitEv(301, 300, 100), 15*uint64(time.Second)))
	exit := tab.Enrich(at(exitEv(300, 300, 100), 16*uint64(time.Second)))
	for name, p := range map[string]*schema.Process{"uid": uid, "thread fork": thread, "thread exit": texit, "exit": exit} {
		if p.ExecID != exec2.ExecID || p.PrevExecID != exec1.ExecID || p.ParentExecID != bashID || p.StartBootNS != fork.StartBootNS {
			t.Errorf("%s: ids %q prev %q parent %q start %d; want exec2's %q %q %q %d", name, p.ExecID, p.PrevExecID, p.ParentExecID, p.StartBootNS,
				exec2.ExecID, exec1.ExecID, bashID, fork.StartBootNS)
		}
	}
}

// TestExecIDPidReuse: a pid used by two processes in turn names two
// images; each exit carries its own process's id.
func TestExecIDPidReuse(t *testing.T) {
	f := idFixture(t, bootA, idInit, idBash)
	tab := f.tab
	first := tab.Enrich(at(forkEv(100, 100, 300, 300), 10*uint64(time.Second)))
	firstExit := tab.Enrich(at(exitEv(300, 300, 100), 11*uint64(time.Second)))
	second := tab.Enrich(at(forkEv(100, 100, 300, 300), 12*uint64(time.Second)))
	if first.ExecID == second.ExecID || firstExit.ExecID != first.ExecID {
		t.Errorf("first %q, its exit %q, second %q: want the exit's equal the first's and the second's different", first.ExecID, firstExit.ExecID, second.ExecID)
	}
	// And when the exit was missed: the new fork replaces the entry.
	third := tab.Enrich(at(forkEv(100, 100, 300, 300), 13*uint64(time.Second)))
	if exit := tab.Enrich(at(exitEv(300, 300, 100), 14*uint64(time.Second))); exit.ExecID != third.ExecID || third.ExecID == second.ExecID {
		t.Errorf("third %q, exit %q, second %q", third.ExecID, exit.ExecID, second.ExecID)
	}
}

// TestExecIDFound: processes found running (seeded, or read when first
// named by an event) get ids from their start time and layout: the same
// for another table on the same boot (a restart of cnstream), another for
// another layout (another exec) or boot; start times are /proc's.
func TestExecIDFound(t *testing.T) {
	a := idFixture(t, bootA, idInit, idBash)
	b := idFixture(t, bootA, idInit, idBash)
	if a.tab.m[100].execID != b.tab.m[100].execID {
		t.Errorf("seeded twice: %q and %q", a.tab.m[100].execID, b.tab.m[100].execID)
	}
	other := idBash
	other.layout = 2001
	c := idFixture(t, bootA, idInit, other)
	if c.tab.m[100].execID == a.tab.m[100].execID {
		t.Errorf("another layout, the same id %q", c.tab.m[100].execID)
	}
	d := idFixture(t, "another-boot", idInit, idBash)
	if d.tab.m[100].execID == a.tab.m[100].execID {
		t.Errorf("another boot, the same id %q", d.tab.m[100].execID)
	}
	// bash started at tick 500: 5 s after boot, 3 s monotonic.
	p := a.tab.Enrich(at(commEv(100, 100, "bash"), 20*uint64(time.Second)))
	if p.StartBootNS != 5*uint64(time.Second) || !p.StartTime.Equal(wallBase.Add(3*time.Second)) {
		t.Errorf("seeded bash: start %d, %v; want 5 s, %v", p.StartBootNS, p.StartTime, wallBase.Add(3*time.Second))
	}
	// A process the table did not have, named by a comm event: read, with
	// its parent's image.
	writeFakeProc(t, a.root, fakeProc{pid: 400, ppid: 100, name: "vim", args: []string{"vim"}, exe: "/usr/bin/vim", start: 900, layout: 5000})
	v := a.tab.Enrich(at(commEv(400, 400, "vim"), 21*uint64(time.Second)))
	if v.Source != SourceProc || !execIDRE.MatchString(v.ExecID) || v.ParentExecID != a.tab.m[100].execID || v.StartBootNS != 9*uint64(time.Second) {
		t.Errorf("read on a comm event: %+v", v)
	}
	// The same process read by another table: the same id.
	writeFakeProc(t, b.root, fakeProc{pid: 400, ppid: 100, name: "vim", args: []string{"vim"}, exe: "/usr/bin/vim", start: 900, layout: 5000})
	if w := b.tab.Enrich(at(commEv(400, 400, "vim"), 22*uint64(time.Second))); w.ExecID != v.ExecID {
		t.Errorf("read by another table: %q, want %q", w.ExecID, v.ExecID)
	}
}

// TestExecIDGone: an exec whose process is gone before /proc is read
// still names its image, and the exit joins it.
func TestExecIDGone(t *testing.T) {
	f := idFixture(t, bootA, idInit, idBash)
	tab := f.tab
	fork := tab.Enrich(at(forkEv(100, 100, 400, 400), 10*uint64(time.Second)))
	exec := tab.Enrich(at(execEv(400), 11*uint64(time.Second)))
	exit := tab.Enrich(at(exitEv(400, 400, 100), 12*uint64(time.Second)))
	if exec.Source != SourceGone || exit.Source != SourceGone {
		t.Errorf("sources: exec %q exit %q, want gone", exec.Source, exit.Source)
	}
	if !execIDRE.MatchString(exec.ExecID) || exec.ExecID == fork.ExecID || exec.PrevExecID != fork.ExecID || exit.ExecID != exec.ExecID {
		t.Errorf("fork %q, exec %q (prev %q), exit %q", fork.ExecID, exec.ExecID, exec.PrevExecID, exit.ExecID)
	}
	// A fork and an exec of processes nothing is known of: ids from the
	// events alone, equal to what a known parent gives.
	g := idFixture(t, bootA, idInit)
	p := g.tab.Enrich(at(forkEv(100, 100, 400, 400), 10*uint64(time.Second)))
	if p.Source != SourceGone || p.ExecID != fork.ExecID || p.StartBootNS != fork.StartBootNS {
		t.Errorf("fork of an unknown parent: %+v; want id %q, start %d", p, fork.ExecID, fork.StartBootNS)
	}
	if e := g.tab.Enrich(at(execEv(500), 11*uint64(time.Second))); e.Source != SourceGone || !execIDRE.MatchString(e.ExecID) {
		t.Errorf("exec of an unknown process: %+v", e)
	}
}

func TestParseStatLayout(t *testing.T) {
	base := "42 (a b) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 1000 100 18446744073709551615"
	tail := func(f26, f29, f45 string) string {
		return base + " " + f26 + " 2 3 " + f29 + " 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 " + f45 + " 6 7 8 9 10 11 0 0\n"
	}
	s0, l0, ok0 := parseStat([]byte(base))
	s1, l1, ok1 := parseStat([]byte(tail("1", "0", "5")))
	_, l2, _ := parseStat([]byte(tail("1", "99", "5"))) // field 29 (kstkesp) is not layout
	_, l3, _ := parseStat([]byte(tail("9", "0", "5")))
	_, l4, _ := parseStat([]byte(tail("1", "0", "6")))
	if s0 != 777 || s1 != 777 || !ok0 || !ok1 || l0 != 0 {
		t.Fatalf("start %d %d ok %v %v, layout without the fields %d", s0, s1, ok0, ok1, l0)
	}
	if l1 == 0 || l1 != l2 || l1 == l3 || l1 == l4 || l3 == l4 {
		t.Errorf("layouts %x %x %x %x: want field 29 ignored, fields 26 and 45 counted", l1, l2, l3, l4)
	}
}
