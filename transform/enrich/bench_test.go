package enrich

import (
	"testing"
)

// benchTable is a table seeded from a fake tree: a chain 1 <- 100 <- 200 <-
// 300 <- 400, so that a child of 400 has four ancestors, and names that
// resolve without I/O.
func benchTable(b *testing.B, cfg Config) *Table {
	b.Helper()
	root := fakeRoot(b,
		fakeProc{pid: 1, name: "systemd", args: []string{"/sbin/init"}, exe: "/usr/lib/systemd/systemd"},
		fakeProc{pid: 100, ppid: 1, name: "sshd", args: []string{"sshd: alice"}, exe: "/usr/sbin/sshd"},
		fakeProc{pid: 200, ppid: 100, name: "bash", uid: 1000, gid: 1000, args: []string{"-bash"}, exe: "/usr/bin/bash"},
		fakeProc{pid: 300, ppid: 200, name: "make", uid: 1000, gid: 1000, args: []string{"make", "-j2"}, exe: "/usr/bin/make"},
		fakeProc{pid: 400, ppid: 300, name: "sh", uid: 1000, gid: 1000, args: []string{"/bin/sh", "-c", "cc -c x.c"}, exe: "/usr/bin/dash",
			cgroup: "0::/system.slice/docker-" + id1 + ".scope\n"},
	)
	cfg.ProcRoot = root
	cfg.LookupUser = func(uint32) (string, error) { return "alice", nil }
	cfg.LookupGroup = func(uint32) (string, error) { return "staff", nil }
	tab, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := tab.Seed(""); err != nil {
		b.Fatal(err)
	}
	return tab
}

// BenchmarkApplyFork is the table-only path of a fork: no /proc read, no
// description.
func BenchmarkApplyFork(b *testing.B) {
	b.Run("fork+exit", func(b *testing.B) {
		tab := benchTable(b, Config{})
		fork, exit := forkEv(400, 400, 5000, 5000), exitEv(5000, 5000, 400)
		b.ReportAllocs()
		for b.Loop() {
			tab.Apply(fork)
			tab.Apply(exit)
		}
	})
	b.Run("fork-full-table", func(b *testing.B) {
		// Every fork adds a new pid to a full table and evicts one.
		tab := benchTable(b, Config{MaxEntries: 1024})
		pid := uint32(5000)
		b.ReportAllocs()
		for b.Loop() {
			pid++
			if pid > 1<<22 {
				pid = 5000
			}
			tab.Apply(forkEv(400, 400, pid, pid))
		}
		if s := tab.Stats(); b.N > 2048 && s.Evictions == 0 {
			b.Fatalf("no evictions: %+v", s)
		}
	})
}

// BenchmarkEnrichFork describes the child of a fork from the table: four
// ancestors, cached names, one allocation.
func BenchmarkEnrichFork(b *testing.B) {
	tab := benchTable(b, Config{})
	fork, exit := forkEv(400, 400, 5000, 5000), exitEv(5000, 5000, 400)
	b.ReportAllocs()
	for b.Loop() {
		p := tab.Enrich(fork)
		if len(p.Ancestors) != 4 || p.User != "alice" {
			b.Fatalf("%+v", p)
		}
		tab.Apply(exit)
	}
}
