package enrich

import (
	"fmt"
	"os/user"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cnstream/cnstream/schema"
)

func forkEv(ppid, ptgid, cpid, ctgid uint32) schema.ProcEvent {
	return schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ParentPID: ppid, ParentTGID: ptgid, ChildPID: cpid, ChildTGID: ctgid}}
}

func execEv(pid uint32) schema.ProcEvent {
	return schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: pid, TGID: pid}}
}

func exitEv(pid, tgid, parent uint32) schema.ProcEvent {
	return schema.ProcEvent{What: schema.ProcEventExit, Exit: schema.ExitEvent{PID: pid, TGID: tgid, ParentPID: parent, ParentTGID: parent}}
}

func commEv(pid, tgid uint32, name string) schema.ProcEvent {
	ev := schema.ProcEvent{What: schema.ProcEventComm, Comm: schema.CommEvent{PID: pid, TGID: tgid}}
	copy(ev.Comm.Comm[:15], name)
	return ev
}

func idEv(w schema.What, pid, tgid, real, eff uint32) schema.ProcEvent {
	return schema.ProcEvent{What: w, ID: schema.IDEvent{PID: pid, TGID: tgid, Real: real, Effective: eff}}
}

// fakeNames resolves a few ids and counts lookups.
type fakeNames struct {
	names map[uint32]string
	calls map[uint32]int
	fail  map[uint32]bool // fail with an error other than "unknown"
	group bool
}

func newFakeNames(group bool, names map[uint32]string) *fakeNames {
	return &fakeNames{names: names, calls: map[uint32]int{}, fail: map[uint32]bool{}, group: group}
}

func (f *fakeNames) lookup(id uint32) (string, error) {
	f.calls[id]++
	if f.fail[id] {
		return "", fmt.Errorf("nss is down")
	}
	if n, ok := f.names[id]; ok {
		return n, nil
	}
	if f.group {
		return "", user.UnknownGroupIdError(fmt.Sprint(id))
	}
	return "", user.UnknownUserIdError(int(id))
}

type fixture struct {
	root          string
	tab           *Table
	users, groups *fakeNames
}

var (
	procInit = fakeProc{pid: 1, name: "systemd", args: []string{"/sbin/init"}, exe: "/usr/lib/systemd/systemd", cwd: "/",
		cgroup: "0::/init.scope\n"}
	procBash = fakeProc{pid: 100, ppid: 1, name: "bash", uid: 1000, gid: 1000, args: []string{"-bash"}, exe: "/usr/bin/bash", cwd: "/home/alice",
		cgroup: "0::/user.slice/user-1000.slice/session-1.scope\n", threads: []fakeThread{{101, "bash-io"}, {102, "bash-gc"}}}
	procMake = fakeProc{pid: 200, ppid: 100, name: "make", uid: 1000, gid: 1000, args: []string{"make", "-j2"}, exe: "/usr/bin/make",
		cwd: "/home/alice/src", cgroup: "0::/system.slice/docker-" + id1 + ".scope\n"}
)

func newFixture(t *testing.T, cfg Config, procs ...fakeProc) *fixture {
	t.Helper()
	f := &fixture{
		root:   fakeRoot(t, procs...),
		users:  newFakeNames(false, map[uint32]string{0: "root", 1000: "alice"}),
		groups: newFakeNames(true, map[uint32]string{0: "root", 1000: "staff"}),
	}
	cfg.ProcRoot = f.root
	cfg.LookupUser, cfg.LookupGroup = f.users.lookup, f.groups.lookup
	tab, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.tab = tab
	return f
}

func u32(v uint32) *uint32 { return &v }

var dockerC = &schema.Container{ID: id1, Runtime: "docker"}

func TestSeedAndTable(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash, procMake)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	if got, want := f.tab.Stats().Seeded, uint64(5); got != want {
		t.Errorf("Seeded = %d, want %d", got, want)
	}
	if diff := cmp.Diff([]schema.Ancestor{{PID: 100, Comm: "bash", Exe: "/usr/bin/bash"}, {PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}},
		f.tab.Ancestors(200, 4), noIDs); diff != "" {
		t.Errorf("Ancestors(200) (-want +got):\n%s", diff)
	}
	if got := f.tab.Ancestors(200, 1); len(got) != 1 || got[0].PID != 100 {
		t.Errorf("Ancestors(200, 1) = %v", got)
	}
	if got := f.tab.Ancestors(200, 0); got != nil {
		t.Errorf("Ancestors(200, 0) = %v", got)
	}
	// A seeded thread shares its process's program, with its own name.
	got := f.tab.Enrich(schema.ProcEvent{What: schema.ProcEventSID, SID: schema.SIDEvent{PID: 101, TGID: 100}})
	want := &schema.Process{PID: 101, TGID: 100, PPID: 1, Source: "table", Comm: "bash-io", Exe: "/usr/bin/bash", Cmdline: []string{"-bash"},
		Cwd: "/home/alice", UID: u32(1000), EUID: u32(1000), GID: u32(1000), EGID: u32(1000), User: "alice", Group: "staff",
		Cgroup:    "/user.slice/user-1000.slice/session-1.scope",
		Ancestors: []schema.Ancestor{{PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}}}
	if diff := cmp.Diff(want, got, noIDs); diff != "" {
		t.Errorf("thread (-want +got):\n%s", diff)
	}
	if f.tab.Stats().ProcReads != 0 {
		t.Errorf("ProcReads = %d: a seeded subject was read again", f.tab.Stats().ProcReads)
	}
}

func TestForkExecExit(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash, procMake)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	anc := []schema.Ancestor{{PID: 200, Comm: "make", Exe: "/usr/bin/make"}, {PID: 100, Comm: "bash", Exe: "/usr/bin/bash"}, {PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}}
	makeChild := &schema.Process{PID: 300, TGID: 300, PPID: 200, Source: "table", Comm: "make", Exe: "/usr/bin/make", Cmdline: []string{"make", "-j2"},
		Cwd: "/home/alice/src", UID: u32(1000), EUID: u32(1000), GID: u32(1000), EGID: u32(1000), User: "alice", Group: "staff",
		Cgroup: "/system.slice/docker-" + id1 + ".scope", Container: dockerC, Ancestors: anc}

	// fork: the child has its parent's program.
	if diff := cmp.Diff(makeChild, f.tab.Enrich(forkEv(200, 200, 300, 300)), noIDs); diff != "" {
		t.Errorf("fork (-want +got):\n%s", diff)
	}
	// a thread of the child: the kernel names the parent of the process.
	th := *makeChild
	th.PID = 301
	if diff := cmp.Diff(&th, f.tab.Enrich(forkEv(200, 200, 301, 300)), noIDs); diff != "" {
		t.Errorf("thread fork (-want +got):\n%s", diff)
	}
	if n := f.tab.Stats().Entries; n != 7 {
		t.Errorf("Entries = %d, want 7", n)
	}

	// exec: /proc is read at once; the other thread is gone.
	writeFakeProc(t, f.root, fakeProc{pid: 300, ppid: 200, name: "cc", uid: 1000, gid: 1000, args: []string{"cc", "-c", "x.c"},
		exe: "/usr/bin/gcc-14", cwd: "/home/alice/src/sub", cgroup: "0::/system.slice/docker-" + id1 + ".scope\n"})
	execd := &schema.Process{PID: 300, TGID: 300, PPID: 200, Source: "proc", Comm: "cc", Exe: "/usr/bin/gcc-14", Cmdline: []string{"cc", "-c", "x.c"},
		Cwd: "/home/alice/src/sub", UID: u32(1000), EUID: u32(1000), GID: u32(1000), EGID: u32(1000), User: "alice", Group: "staff",
		Cgroup: "/system.slice/docker-" + id1 + ".scope", Container: dockerC, Ancestors: anc}
	if diff := cmp.Diff(execd, f.tab.Enrich(execEv(300)), noIDs); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
	if s := f.tab.Stats(); s.ProcReads != 1 || s.ProcGone != 0 || s.Entries != 6 {
		t.Errorf("stats after exec: %+v", s)
	}

	// exit: the last known program, then nothing.
	removeFakeProc(t, f.root, 300)
	exited := *execd
	exited.Source = "table"
	exited.PPID = 1 // reparented: the kernel's parent wins
	exited.Ancestors = anc[2:]
	if diff := cmp.Diff(&exited, f.tab.Enrich(exitEv(300, 300, 1)), noIDs); diff != "" {
		t.Errorf("exit (-want +got):\n%s", diff)
	}
	if got := f.tab.Enrich(exitEv(300, 300, 1)); got.Source != "gone" || got.Exe != "" {
		t.Errorf("second exit: %+v", got)
	}
	if n := f.tab.Stats().Entries; n != 5 {
		t.Errorf("Entries = %d, want 5", n)
	}
}

func TestExecGone(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	// forked, and gone before its exec could be read: nothing of bash may
	// stay attached to it.
	if p := f.tab.Enrich(forkEv(100, 100, 400, 400)); p.Exe != "/usr/bin/bash" {
		t.Fatalf("fork: %+v", p)
	}
	// The entry keeps the process's identity and parent (exec changes
	// neither), so that its exit names the image.
	anc := []schema.Ancestor{{PID: 100, Comm: "bash", Exe: "/usr/bin/bash"}, {PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}}
	want := &schema.Process{PID: 400, TGID: 400, PPID: 100, Source: "gone", Ancestors: anc}
	if diff := cmp.Diff(want, f.tab.Enrich(execEv(400)), noIDs); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
	wantExit := &schema.Process{PID: 400, TGID: 400, PPID: 100, Source: "gone",
		Ancestors: []schema.Ancestor{{PID: 100, Comm: "bash", Exe: "/usr/bin/bash"}, {PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}}}
	if diff := cmp.Diff(wantExit, f.tab.Enrich(exitEv(400, 400, 100)), noIDs); diff != "" {
		t.Errorf("exit (-want +got):\n%s", diff)
	}
	if s := f.tab.Stats(); s.ProcReads != 1 || s.ProcGone != 1 {
		t.Errorf("stats: %+v", s)
	}
}

func TestExecPartial(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	f.tab.Apply(forkEv(100, 100, 401, 401))
	// Only status could be read: what was read stays, bash's program does
	// not, and the source is "gone".
	writeFakeProc(t, f.root, fakeProc{pid: 401, ppid: 100, name: "dying", uid: 0, gid: 0, omit: []string{"cmdline", "cgroup"}})
	want := &schema.Process{PID: 401, TGID: 401, PPID: 100, Source: "gone", Comm: "dying",
		UID: u32(0), EUID: u32(0), GID: u32(0), EGID: u32(0), User: "root", Group: "root",
		Ancestors: []schema.Ancestor{{PID: 100, Comm: "bash", Exe: "/usr/bin/bash"}, {PID: 1, Comm: "systemd", Exe: "/usr/lib/systemd/systemd"}}}
	if diff := cmp.Diff(want, f.tab.Enrich(execEv(401)), noIDs); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
	// exe read, then gone at cgroup (cmdline, read last, is not): "proc",
	// without a cgroup or a command line.
	writeFakeProc(t, f.root, fakeProc{pid: 402, ppid: 100, name: "half", args: []string{"half"}, exe: "/usr/bin/half", omit: []string{"cgroup"}})
	got := f.tab.Enrich(execEv(402))
	if got.Source != "proc" || got.Cgroup != "" || got.Exe != "/usr/bin/half" || got.Cmdline != nil {
		t.Errorf("exec half: %+v", got)
	}
	if s := f.tab.Stats(); s.ProcReads != 2 || s.ProcGone != 1 {
		t.Errorf("stats: %+v", s)
	}
}

func TestExitOfLeaderTakesGroup(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	if n := f.tab.Stats().Entries; n != 4 {
		t.Fatalf("Entries = %d, want 4", n)
	}
	// A thread's exit takes only the thread.
	if p := f.tab.Enrich(exitEv(102, 100, 0)); p.Source != "table" || p.Comm != "bash-gc" || p.PPID != 1 {
		t.Errorf("thread exit: %+v", p)
	}
	if n := f.tab.Stats().Entries; n != 3 {
		t.Errorf("Entries = %d, want 3", n)
	}
	// The leader's exit takes the rest of the group.
	if p := f.tab.Enrich(exitEv(100, 100, 1)); p.Source != "table" || p.Exe != "/usr/bin/bash" {
		t.Errorf("leader exit: %+v", p)
	}
	if n := f.tab.Stats().Entries; n != 1 {
		t.Errorf("Entries = %d, want 1 (init)", n)
	}
	if p := f.tab.Enrich(exitEv(101, 100, 0)); p.Source != "gone" || p.Exe != "" {
		t.Errorf("late thread exit: %+v", p)
	}
}

func TestCommAndIDs(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	if p := f.tab.Enrich(commEv(101, 100, "renamed")); p.Comm != "renamed" || p.PID != 101 {
		t.Errorf("comm: %+v", p)
	}
	// the leader keeps its name
	if a := f.tab.Enrich(forkEv(100, 100, 500, 500)).Ancestors; len(a) == 0 || a[0].Comm != "bash" {
		t.Errorf("ancestors after a thread's comm: %+v", a)
	}
	p := f.tab.Enrich(idEv(schema.ProcEventUID, 100, 100, 1000, 0))
	if *p.UID != 1000 || *p.EUID != 0 || p.User != "alice" || *p.GID != 1000 {
		t.Errorf("uid: %+v", p)
	}
	p = f.tab.Enrich(idEv(schema.ProcEventGID, 100, 100, 0, 1000))
	if *p.GID != 0 || *p.EGID != 1000 || p.Group != "root" || *p.UID != 1000 || *p.EUID != 0 {
		t.Errorf("gid: %+v", p)
	}
	// ids are per thread
	if p := f.tab.Enrich(commEv(101, 100, "x")); *p.EUID != 1000 {
		t.Errorf("thread 101 euid = %d, want 1000", *p.EUID)
	}
}

func TestMissingSubjectIsRead(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash, procMake)
	// not seeded: the subject is read from /proc
	p := f.tab.Enrich(commEv(200, 200, "gmake"))
	want := &schema.Process{PID: 200, TGID: 200, PPID: 100, Source: "proc", Comm: "gmake", Exe: "/usr/bin/make", Cmdline: []string{"make", "-j2"},
		Cwd: "/home/alice/src", UID: u32(1000), EUID: u32(1000), GID: u32(1000), EGID: u32(1000), User: "alice", Group: "staff",
		Cgroup: "/system.slice/docker-" + id1 + ".scope", Container: dockerC}
	if diff := cmp.Diff(want, p, noIDs); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// then it is in the table
	if p := f.tab.Enrich(commEv(200, 200, "make")); p.Source != "table" {
		t.Errorf("second event: source %q", p.Source)
	}
	// fork from an unknown parent: the child is read
	writeFakeProc(t, f.root, fakeProc{pid: 600, ppid: 555, name: "child", args: []string{"child"}})
	if p := f.tab.Enrich(forkEv(555, 555, 600, 600)); p.Source != "proc" || p.PPID != 555 || p.Comm != "child" {
		t.Errorf("fork of unknown parent: %+v", p)
	}
	// neither in the table nor in /proc: the kernel's fields
	if diff := cmp.Diff(&schema.Process{PID: 700, TGID: 700, PPID: 555, Source: "gone"}, f.tab.Enrich(forkEv(555, 555, 700, 700)), noIDs); diff != "" {
		t.Errorf("gone fork (-want +got):\n%s", diff)
	}
	// the kernel's fields include a comm event's name and a uid event's ids
	if diff := cmp.Diff(&schema.Process{PID: 701, TGID: 701, Source: "gone", Comm: "x"}, f.tab.Enrich(commEv(701, 701, "x")), noIDs); diff != "" {
		t.Errorf("gone comm (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&schema.Process{PID: 702, TGID: 702, Source: "gone", UID: u32(1000), EUID: u32(0), User: "alice"},
		f.tab.Enrich(idEv(schema.ProcEventUID, 702, 702, 1000, 0)), noIDs); diff != "" {
		t.Errorf("gone uid (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&schema.Process{PID: 703, TGID: 703, Source: "gone", GID: u32(0), EGID: u32(1000), Group: "root"},
		f.tab.Enrich(idEv(schema.ProcEventGID, 703, 703, 0, 1000))); diff != "" {
		t.Errorf("gone gid (-want +got):\n%s", diff)
	}
	if s := f.tab.Stats(); s.ProcReads != 6 || s.ProcGone != 4 {
		t.Errorf("stats: %+v", s)
	}
	// ptrace and coredump, through the transform.Enricher method
	ptrace := schema.ProcEvent{What: schema.ProcEventPtrace, Ptrace: schema.PtraceEvent{PID: 200, TGID: 200, TracerPID: 100, TracerTGID: 100}}
	if p := f.tab.Process(&ptrace); p.Source != "table" || p.Exe != "/usr/bin/make" {
		t.Errorf("ptrace: %+v", p)
	}
	core := schema.ProcEvent{What: schema.ProcEventCoredump, Coredump: schema.CoredumpEvent{PID: 200, TGID: 200, ParentPID: 1, ParentTGID: 1}}
	if p := f.tab.Process(&core); p.Source != "table" || p.PPID != 1 {
		t.Errorf("coredump: %+v", p)
	}
	// ACK and unknown types have no subject
	if p := f.tab.Enrich(schema.ProcEvent{What: schema.ProcEventNone}); p != nil {
		t.Errorf("ack: %+v", p)
	}
	if p := f.tab.Enrich(schema.ProcEvent{What: 0x1234}); p != nil {
		t.Errorf("unknown: %+v", p)
	}
}

func TestStaleEntries(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	// bash's exit was lost; pid 100 comes back as another process's thread.
	writeFakeProc(t, f.root, fakeProc{pid: 900, ppid: 1, name: "java", args: []string{"java"}, threads: []fakeThread{{100, "worker"}}})
	removeFakeProc(t, f.root, 100)
	if p := f.tab.Enrich(commEv(100, 900, "worker")); p.Source != "gone" || p.Exe != "" {
		// /proc/100 is gone in the fake tree (a real kernel would show the
		// thread there): what matters is that bash's data is not used.
		t.Errorf("comm of a reused pid: %+v", p)
	}
	if n := f.tab.Stats().Entries; n != 1 {
		t.Errorf("Entries = %d, want 1: bash's group should be gone", n)
	}
	// A fork onto a pid the table still holds replaces it.
	f.tab.Apply(forkEv(1, 1, 50, 50))
	f.tab.Apply(forkEv(1, 1, 51, 50)) // thread
	f.tab.Apply(forkEv(1, 1, 50, 50)) // exit of 50 was lost
	if n := f.tab.Stats().Entries; n != 2 {
		t.Errorf("Entries = %d, want 2 (init and the new 50)", n)
	}
}

func TestEviction(t *testing.T) {
	f := newFixture(t, Config{MaxEntries: 4}, procInit)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	f.tab.Apply(forkEv(1, 1, 10, 10))
	f.tab.Apply(forkEv(1, 1, 11, 10)) // a thread of 10
	f.tab.Apply(forkEv(1, 1, 20, 20)) // full: 1, 10, 11, 20
	if s := f.tab.Stats(); s.Entries != 4 || s.Evictions != 0 {
		t.Fatalf("stats: %+v", s)
	}
	// init is the least recently used, but it was touched as the ancestor
	// of 20; 10's thread was touched after 10, so 10 (leader) is more
	// recent than 11 (thread): 11 goes first, then 10.
	f.tab.Apply(forkEv(1, 1, 30, 30))
	if _, ok := f.tab.m[11]; ok {
		t.Errorf("thread 11 should have been evicted first")
	}
	f.tab.Apply(forkEv(1, 1, 40, 40))
	if _, ok := f.tab.m[10]; ok {
		t.Errorf("10 should have been evicted")
	}
	s := f.tab.Stats()
	if s.Entries != 4 || s.Evictions != 2 {
		t.Errorf("stats: %+v", s)
	}
	for _, pid := range []uint32{1, 20, 30, 40} {
		if _, ok := f.tab.m[pid]; !ok {
			t.Errorf("%d evicted", pid)
		}
	}
	checkTable(t, f.tab)
}

// checkTable verifies the table's invariants: map, LRU ring and thread
// lists agree.
func checkTable(t *testing.T, tab *Table) {
	t.Helper()
	n := 0
	for e := tab.lru.next; e != &tab.lru; e = e.next {
		n++
		if tab.m[e.pid] != e {
			t.Errorf("entry %d in the ring but not the map", e.pid)
		}
		if e.next.prev != e {
			t.Errorf("ring broken at %d", e.pid)
		}
		if l := e.leader; l != nil && (l.threads[e.tidx] != e || tab.m[l.pid] != l) {
			t.Errorf("thread %d: bad leader link", e.pid)
		}
		for i, th := range e.threads {
			if th.leader != e || th.tidx != i {
				t.Errorf("leader %d: bad thread %d", e.pid, th.pid)
			}
		}
		if n > len(tab.m)+1 {
			t.Fatal("ring loops")
		}
	}
	if n != len(tab.m) || int(tab.entries.Load()) != n {
		t.Errorf("ring %d, map %d, counter %d", n, len(tab.m), tab.entries.Load())
	}
}

func TestSeedBound(t *testing.T) {
	f := newFixture(t, Config{MaxEntries: 3}, procInit, procBash, procMake)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	// processes first: 1, 100, 200; bash's two threads left out
	s := f.tab.Stats()
	if s.Entries != 3 || s.Seeded != 3 || s.SeedSkipped != 2 || s.Evictions != 0 {
		t.Errorf("stats: %+v", s)
	}
	checkTable(t, f.tab)
}

func TestAncestorGuards(t *testing.T) {
	f := newFixture(t, Config{AncestorDepth: 10},
		fakeProc{pid: 1, ppid: 7, name: "init"}, // stops at 1 even with a parent
		fakeProc{pid: 7, ppid: 0, name: "seven"},
		fakeProc{pid: 2, ppid: 1, name: "two"},
		fakeProc{pid: 3, ppid: 2, name: "three"},
		fakeProc{pid: 4, ppid: 99, name: "orphan"}, // parent missing
		fakeProc{pid: 10, ppid: 11, name: "a"},     // a loop: 10 -> 11 -> 10
		fakeProc{pid: 11, ppid: 10, name: "b"},
		fakeProc{pid: 12, ppid: 12, name: "self"},
		fakeProc{pid: 20, ppid: 21, name: "child"}, // its parent exits and the pid comes back
		fakeProc{pid: 21, ppid: 1, name: "parent"},
	)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	pids := func(a []schema.Ancestor) []uint32 {
		var out []uint32
		for _, x := range a {
			out = append(out, x.PID)
		}
		return out
	}
	for _, tt := range []struct {
		pid  uint32
		want []uint32
	}{
		{3, []uint32{2, 1}},
		{1, nil}, // pid 1 is where chains end
		{4, nil},
		{10, []uint32{11}},
		{11, []uint32{10}},
		{12, nil},
		{20, []uint32{21, 1}},
	} {
		if diff := cmp.Diff(tt.want, pids(f.tab.Ancestors(tt.pid, 10))); diff != "" {
			t.Errorf("Ancestors(%d) (-want +got):\n%s", tt.pid, diff)
		}
	}
	// 21 exits (20 is reparented, silently); a new process gets pid 21.
	f.tab.Apply(exitEv(21, 21, 1))
	f.tab.Apply(forkEv(2, 2, 21, 21))
	if got := f.tab.Ancestors(20, 10); got != nil {
		t.Errorf("Ancestors(20) after pid reuse = %v: the new 21 is younger than 20", got)
	}
	if got := pids(f.tab.Ancestors(21, 10)); !cmp.Equal(got, []uint32{2, 1}) {
		t.Errorf("Ancestors(new 21) = %v", got)
	}
	// the exit event's parent is current: 20 exits as a child of 1
	if got := pids(f.tab.Enrich(exitEv(20, 20, 1)).Ancestors); !cmp.Equal(got, []uint32{1}) {
		t.Errorf("exit ancestors = %v", got)
	}
	// depth from Config
	f2 := newFixture(t, Config{AncestorDepth: -1}, fakeProc{pid: 1}, fakeProc{pid: 2, ppid: 1})
	if err := f2.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	if p := f2.tab.Enrich(forkEv(2, 2, 3, 3)); p.Ancestors != nil {
		t.Errorf("AncestorDepth -1: %v", p.Ancestors)
	}
	f3 := newFixture(t, Config{AncestorDepth: 6}, procInit, procBash)
	if err := f3.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	for i := uint32(0); i < 8; i++ {
		parent := uint32(100)
		if i > 0 {
			parent = 1000 + i - 1
		}
		f3.tab.Apply(forkEv(parent, parent, 1000+i, 1000+i))
	}
	if got := pids(f3.tab.Enrich(commEv(1007, 1007, "x")).Ancestors); !cmp.Equal(got, []uint32{1006, 1005, 1004, 1003, 1002, 1001}) {
		t.Errorf("depth 6: %v", got)
	}
}

func TestNameCache(t *testing.T) {
	f := newFixture(t, Config{NameCacheSize: 2, NameTTL: time.Second},
		fakeProc{pid: 1, uid: 0, gid: 0}, fakeProc{pid: 2, ppid: 1, uid: 4242, gid: 4242})
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	ev := func(pid uint32, ts uint64) *schema.Process {
		e := commEv(pid, pid, "x")
		e.TimestampNS = ts
		return f.tab.Enrich(e)
	}
	for i := 0; i < 5; i++ {
		if p := ev(2, 1e9+uint64(i)); p.User != "" || p.Group != "" || *p.UID != 4242 {
			t.Fatalf("unknown ids: %+v", p)
		}
	}
	if f.users.calls[4242] != 1 || f.groups.calls[4242] != 1 {
		t.Errorf("lookups of a missing id: users %d, groups %d; want 1 each (negative cache)", f.users.calls[4242], f.groups.calls[4242])
	}
	if s := f.tab.Stats(); s.NameMisses != 2 || s.NameHits != 8 || s.NameErrors != 0 {
		t.Errorf("stats: %+v", s)
	}
	// after the TTL (event time) it is looked up again
	ev(2, 2e9+5)
	if f.users.calls[4242] != 2 {
		t.Errorf("after TTL: %d lookups, want 2", f.users.calls[4242])
	}
	// bounded: 2 entries per cache; 0, then 4242, then 7 pushes 0 out
	ev(1, 2e9+6)
	ev(2, 2e9+6) // 4242 more recent than 0
	f.tab.Apply(idEv(schema.ProcEventUID, 2, 2, 7, 7))
	ev(2, 2e9+7)
	if n := len(f.tab.users.m); n != 2 {
		t.Errorf("user cache holds %d, want 2", n)
	}
	ev(1, 2e9+8)
	if f.users.calls[0] != 2 {
		t.Errorf("uid 0 looked up %d times, want 2 (evicted once)", f.users.calls[0])
	}
	// other failures are cached too, and counted
	f.users.fail[8] = true
	f.tab.Apply(idEv(schema.ProcEventUID, 2, 2, 8, 8))
	ev(2, 2e9+9)
	ev(2, 2e9+10)
	if f.users.calls[8] != 1 || f.tab.Stats().NameErrors != 1 {
		t.Errorf("failing lookup: %d calls, %d errors", f.users.calls[8], f.tab.Stats().NameErrors)
	}
}

func TestApplyMatchesEnrich(t *testing.T) {
	evs := []schema.ProcEvent{
		forkEv(100, 100, 300, 300), forkEv(1, 1, 301, 300), commEv(301, 300, "w"), idEv(schema.ProcEventUID, 300, 300, 0, 0),
		exitEv(301, 300, 0), forkEv(300, 300, 302, 302), exitEv(300, 300, 1), execEv(200), exitEv(999, 999, 1),
	}
	a := newFixture(t, Config{}, procInit, procBash, procMake)
	b := newFixture(t, Config{}, procInit, procBash, procMake)
	for _, f := range []*fixture{a, b} {
		if err := f.tab.Seed(""); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range evs {
		a.tab.Apply(ev)
		b.tab.Enrich(ev)
	}
	dump := func(tab *Table) map[uint32]string {
		out := map[uint32]string{}
		for pid, e := range tab.m {
			in := e.info
			out[pid] = fmt.Sprintf("%d %d %q %v %v %q %q %q %q %v", e.tgid, e.ppid, e.comm, e.uid, e.gid,
				in.exe, in.cwd, in.cgroup, in.cmdline, in.container != nil)
		}
		return out
	}
	if diff := cmp.Diff(dump(a.tab), dump(b.tab)); diff != "" {
		t.Errorf("Apply and Enrich disagree (-apply +enrich):\n%s", diff)
	}
	checkTable(t, a.tab)
	checkTable(t, b.tab)
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{{MaxEntries: -1}, {NameCacheSize: -1}, {NameTTL: -1}, {MaxCmdline: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tab.max != DefaultMaxEntries || tab.depth != DefaultAncestorDepth || tab.procRoot != "/proc" || tab.rd.maxCmdline != DefaultMaxCmdline {
		t.Errorf("defaults: %+v", tab)
	}
}

func TestSeedError(t *testing.T) {
	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Seed(t.TempDir() + "/missing"); err == nil {
		t.Error("Seed of a missing directory succeeded")
	}
}

// Process values must be safe to hand to another goroutine: nothing the
// table does later changes a Process it returned.
func TestProcessIsSnapshot(t *testing.T) {
	f := newFixture(t, Config{}, procInit, procBash)
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	p := f.tab.Enrich(commEv(100, 100, "bash"))
	before := *p
	before.Cmdline = append([]string(nil), p.Cmdline...)
	f.tab.Apply(commEv(100, 100, "zsh"))
	f.tab.Apply(idEv(schema.ProcEventUID, 100, 100, 5, 5))
	f.tab.Apply(exitEv(100, 100, 1))
	for i := uint32(0); i < 100; i++ {
		f.tab.Apply(forkEv(1, 1, 2000+i, 2000+i))
	}
	if diff := cmp.Diff(&before, p, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("returned Process changed (-before +after):\n%s", diff)
	}
}

// The caller may change a Process (transform rewrites invalid UTF-8 in
// place): the table and other Processes do not see it.
func TestProcessBelongsToCaller(t *testing.T) {
	args := []string{"make", "a", "b", "c", "d", "e", "f", "g", "h", "i"} // more than procBox holds
	f := newFixture(t, Config{}, procInit, procBash, procMake,
		fakeProc{pid: 250, ppid: 100, name: "make", args: args, exe: "/usr/bin/make", cgroup: "0::/docker/" + id1 + "\n"})
	if err := f.tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []uint32{200, 250} {
		p1 := f.tab.Enrich(commEv(pid, pid, "make"))
		want := f.tab.Enrich(commEv(pid, pid, "make"))
		p1.Cmdline[0] = "changed"
		p1.Container.ID = "changed"
		*p1.UID = 7
		p1.Ancestors[0].Comm = "changed"
		if diff := cmp.Diff(want, f.tab.Enrich(commEv(pid, pid, "make"))); diff != "" {
			t.Errorf("pid %d: a change to a returned Process reached the table (-want +got):\n%s", pid, diff)
		}
		if want.Cmdline[0] != "make" || want.Container.ID != id1 || want.Ancestors[0].Comm != "bash" {
			t.Errorf("pid %d: a change to one Process reached another: %+v", pid, want)
		}
	}
}

// noIDs leaves the exec ids and start times out of a comparison: tests of
// them are in execid_test.go.
var noIDs = cmp.Options{
	cmpopts.IgnoreFields(schema.Process{}, "ExecID", "ParentExecID", "PrevExecID", "StartTime", "StartBootNS"),
	cmpopts.IgnoreFields(schema.Ancestor{}, "ExecID"),
}
