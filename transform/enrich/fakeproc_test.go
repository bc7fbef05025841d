package enrich

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProc describes one process of a fake /proc tree: a fake, because the
// parsing tests need contents and failures (missing files, odd values) that
// a real process cannot be made to show on demand.
type fakeProc struct {
	pid, tgid, ppid uint32
	name            string   // status Name, written escaped as the kernel does
	uid, gid        uint32   // real; effective is +1 when diffIDs
	diffIDs         bool     // effective ids differ from the real ones
	args            []string // cmdline; nil: empty file
	exe, cwd        string   // symlink targets; "": no link (readlink fails)
	cgroup          string   // file contents; "": "0::/\n"
	kthread         bool
	threads         []fakeThread
	omit            []string // files not to write ("status", "cmdline", "cgroup")
	rawStatus       string   // when set, the status file as is
	start           uint64   // stat's start time (ticks after boot); 0: no stat file
	layout          uint64   // when not 0, stat has fields 26-51, the layout ones (26-28, 45-51) layout, layout+1, ...
}

type fakeThread struct {
	tid  uint32
	name string
}

func escapeName(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return strings.ReplaceAll(s, "\n", `\n`)
}

func (p fakeProc) status(pid uint32, name string) string {
	if p.rawStatus != "" {
		return p.rawStatus
	}
	tgid := p.tgid
	if tgid == 0 {
		tgid = p.pid
	}
	e := uint32(0)
	if p.diffIDs {
		e = 1
	}
	kt := 0
	if p.kthread {
		kt = 1
	}
	return fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nNgid:\t0\nPid:\t%d\nPPid:\t%d\nTracerPid:\t0\n"+
		"Uid:\t%d\t%d\t%d\t%d\nGid:\t%d\t%d\t%d\t%d\nFDSize:\t64\nGroups:\t \nKthread:\t%d\nThreads:\t%d\n",
		escapeName(name), tgid, pid, p.ppid, p.uid, p.uid+e, p.uid, p.uid, p.gid, p.gid+e, p.gid, p.gid, kt, 1+len(p.threads))
}

func (p fakeProc) omitted(f string) bool {
	for _, o := range p.omit {
		if o == f {
			return true
		}
	}
	return false
}

// writeFakeProc writes p under root/<pid>, with task/<tid> for itself and
// its threads.
func writeFakeProc(t testing.TB, root string, p fakeProc) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(p.pid))
	write := func(name, s string) {
		if p.omitted(name) {
			return
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "task"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("status", p.status(p.pid, p.name))
	var cmd string
	for _, a := range p.args {
		cmd += a + "\x00"
	}
	write("cmdline", cmd)
	cg := p.cgroup
	if cg == "" {
		cg = "0::/\n"
	}
	write("cgroup", cg)
	if p.start != 0 {
		// The kernel's format; the name may hold spaces and parentheses.
		stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 %d 1000 100 18446744073709551615",
			p.pid, p.name, p.ppid, p.pid, p.pid, p.start)
		if p.layout != 0 {
			l := p.layout
			stat += fmt.Sprintf(" %d %d %d 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 %d %d %d %d %d %d %d 0", l, l+1, l+2, l+3, l+4, l+5, l+6, l+7, l+8, l+9)
		}
		write("stat", stat+"\n")
	}
	for name, target := range map[string]string{"exe": p.exe, "cwd": p.cwd} {
		if target != "" {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tasks := append([]fakeThread{{tid: p.pid, name: p.name}}, p.threads...)
	for _, th := range tasks {
		td := filepath.Join(dir, "task", fmt.Sprint(th.tid))
		if err := os.MkdirAll(td, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(td, "status"), []byte(p.status(th.tid, th.name)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func removeFakeProc(t testing.TB, root string, pid uint32) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, fmt.Sprint(pid))); err != nil {
		t.Fatal(err)
	}
}

func fakeRoot(t testing.TB, procs ...fakeProc) string {
	root := t.TempDir()
	for _, p := range procs {
		writeFakeProc(t, root, p)
	}
	return root
}
