package enrich

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/cnstream/cnstream/schema"
)

// /proc contents come from outside (a process chooses its name, arguments
// and, with a cgroup namespace or delegation, cgroup names): the parsers
// must take anything without panicking.

func FuzzParseStatus(f *testing.F) {
	for _, name := range []string{"testdata/status-sleep.txt", "testdata/status-kthreadd.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Name:\ta\\nb\\\\\nUid:\t1\t2\t3\t4\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := parseStatus(b)
		if !s.haveName {
			return
		}
		// Round trip: the kernel's escaping of the name parsed back.
		line := "Name:\t" + escapeName(s.name) + "\n"
		if got := parseStatus([]byte(line)); got.name != s.name {
			t.Errorf("name %q escaped as %q parses as %q", s.name, line, got.name)
		}
	})
}

func FuzzUnescapeName(f *testing.F) {
	for _, s := range []string{"plain", "a\nb", `a\b`, "\\\n\\n", "tab\there"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := unescapeName([]byte(escapeName(s))); got != s {
			t.Errorf("unescape(escape(%q)) = %q", s, got)
		}
	})
}

func FuzzParseCmdline(f *testing.F) {
	f.Add([]byte("/bin/sleep\x0030\x00"), false)
	f.Add([]byte("nginx: worker"), false)
	f.Add([]byte("a\x00\x00b\x00c"), true)
	f.Fuzz(func(t *testing.T, b []byte, truncated bool) {
		args := parseCmdline(b, truncated)
		if truncated {
			// The arguments of a truncated read are the complete ones.
			full := parseCmdline(b, false)
			if len(args) > len(full) {
				t.Fatalf("truncated %q gives more args than untruncated %q", args, full)
			}
			for i := range args {
				if args[i] != full[i] {
					t.Fatalf("truncated %q is not a prefix of %q", args, full)
				}
			}
			return
		}
		// Round trip: joined back with their NULs, the arguments are the
		// file (which may lack its final NUL).
		enc := strings.Join(args, "\x00") + "\x00"
		want := string(b)
		if !bytes.HasSuffix(b, []byte{0}) {
			want += "\x00"
		}
		if enc != want {
			t.Errorf("%q parses as %q, which encodes as %q", b, args, enc)
		}
	})
}

var runtimes = map[string]bool{"docker": true, "containerd": true, "cri-o": true, "podman": true, "systemd": true}

func FuzzParseCgroup(f *testing.F) {
	for _, p := range []string{
		"/system.slice/docker-" + id1 + ".scope",
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + podU + ".slice/cri-containerd-" + id1 + ".scope",
		"/kubepods/burstable/pod" + pod + "/" + id1,
		`/machine.slice/machine-a\x2db.scope`,
		"/system.slice/sshd.service",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		c := ParseCgroup(path)
		if c == nil {
			return
		}
		if !runtimes[c.Runtime] || c.ID == "" {
			t.Errorf("%q: %+v", path, c)
		}
		if c.Runtime != "systemd" && (!isContainerID(c.ID) || !strings.Contains(path, c.ID)) {
			t.Errorf("%q: id %q", path, c.ID)
		}
		if strings.Contains(c.PodUID, "_") {
			t.Errorf("%q: pod uid %q keeps underscores", path, c.PodUID)
		}
	})
}

func FuzzParseCgroupFile(f *testing.F) {
	b, err := os.ReadFile("testdata/cgroup-hybrid.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("0::/system.slice/docker-" + id1 + ".scope\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		path, _, ok := parseCgroupFile(b)
		if ok && !bytes.Contains(b, []byte(path)) {
			t.Errorf("%q: path %q is not in the file", b, path)
		}
	})
}

// FuzzTableEvents applies any sequence of events, with pids from a small
// range so that they collide, to a small table, and checks its invariants
// after each: the map, the LRU ring and the thread lists agree, the bound
// holds, and every event with a subject gets a Process.
func FuzzTableEvents(f *testing.F) {
	f.Add([]byte{0, 1, 2, 2, 0, 2, 3, 2, 1, 2, 2, 0, 5, 3, 2, 1})
	f.Add([]byte{0, 1, 4, 4, 0, 4, 5, 4, 0, 4, 6, 4, 5, 4, 4, 1, 0, 1, 7, 7, 0, 1, 8, 8, 0, 1, 9, 9, 0, 1, 10, 10})
	root := tableEventsTree(f)
	f.Fuzz(func(t *testing.T, b []byte) { runTableEvents(t, root, b) })
}

func tableEventsTree(t testing.TB) string {
	return fakeRoot(t,
		fakeProc{pid: 1, name: "init", args: []string{"init"}, exe: "/init"},
		fakeProc{pid: 2, ppid: 1, name: "two", args: []string{"two"}, threads: []fakeThread{{3, "three"}}},
		fakeProc{pid: 4, ppid: 2, name: "four", exe: "/four"},
	)
}

func runTableEvents(t *testing.T, root string, b []byte) {
	tab, err := New(Config{ProcRoot: root, MaxEntries: 6, AncestorDepth: 3,
		LookupUser: func(uint32) (string, error) { return "u", nil }, LookupGroup: func(uint32) (string, error) { return "g", nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	// Events beyond 64 add time, not states: every entry has been
	// replaced many times over by then.
	if len(b) > 4*64 {
		b = b[:4*64]
	}
	for len(b) >= 4 {
		op, a, c, d := b[0]%8, uint32(b[1]%12), uint32(b[2]%12), uint32(b[3]%12)
		b = b[4:]
		var ev = schema.ProcEvent{TimestampNS: uint64(len(b))}
		switch op {
		case 0:
			ev.What, ev.Fork = schema.ProcEventFork, schema.ForkEvent{ParentPID: a, ParentTGID: a, ChildPID: c, ChildTGID: d}
		case 1:
			ev.What, ev.Exec = schema.ProcEventExec, schema.ExecEvent{PID: a, TGID: a}
		case 2:
			ev.What, ev.Exit = schema.ProcEventExit, schema.ExitEvent{PID: a, TGID: c, ParentPID: d, ParentTGID: d}
		case 3:
			ev.What, ev.Comm = schema.ProcEventComm, schema.CommEvent{PID: a, TGID: c}
		case 4:
			ev.What, ev.ID = schema.ProcEventUID, schema.IDEvent{PID: a, TGID: c, Real: d, Effective: d}
		case 5:
			ev.What, ev.ID = schema.ProcEventGID, schema.IDEvent{PID: a, TGID: c, Real: d, Effective: d}
		case 6:
			ev.What, ev.Coredump = schema.ProcEventCoredump, schema.CoredumpEvent{PID: a, TGID: c, ParentPID: d, ParentTGID: d}
		case 7:
			ev.What = schema.What(uint32(a) << 20) // an unknown type, or an ACK
		}
		p := tab.Enrich(ev)
		if (p == nil) != (op == 7) {
			t.Fatalf("event %+v: process %+v", ev, p)
		}
		if p != nil && (p.Source != SourceProc && p.Source != SourceTable && p.Source != SourceGone || len(p.Ancestors) > 3) {
			t.Fatalf("event %+v: process %+v", ev, p)
		}
		if len(tab.m) > 6+1 { // an entry and its leader are never evicted while added
			t.Fatalf("%d entries, bound 6", len(tab.m))
		}
		checkTable(t, tab)
		if t.Failed() {
			t.Fatalf("after %+v", ev)
		}
	}
}
