//go:build linux

package enrich

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
)

// These tests run against the real kernel's /proc. Those that create
// cgroups or start processes under another uid need root, and say so when
// they skip.

func needRoot(t *testing.T, why string) {
	t.Helper()
	need.Root(t, why)
}

// cgroup2Mount returns where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup on a pure v2 system, /sys/fs/cgroup/unified on a hybrid
// one), from /proc/self/mountinfo.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		pf, ff := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(ff) >= 1 && ff[0] == "cgroup2" && pf[3] == "/" {
			return pf[4]
		}
	}
	t.Fatal("no cgroup2 hierarchy mounted (see /proc/self/mountinfo)")
	return ""
}

// makeCgroup creates <cgroup2>/cnstream-test-<rand>/<leaf> and returns its
// directory and its path as /proc/PID/cgroup shows it. It is removed at
// cleanup, once empty.
func makeCgroup(t *testing.T, leaf string) (dir, path string) {
	t.Helper()
	mnt := cgroup2Mount(t)
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(mnt, "cnstream-test-"+hex.EncodeToString(b[:]))
	dir = filepath.Join(top, leaf)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, top} {
			// A cgroup can be removed once its last process is reaped;
			// wait for that, with a deadline.
			deadline := time.Now().Add(5 * time.Second)
			for {
				err := os.Remove(d)
				if err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
					t.Errorf("remove cgroup %s: %v", d, err)
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	})
	return dir, "/" + filepath.Base(top) + "/" + leaf
}

// startSleep starts /bin/sleep with args, stopped and reaped at cleanup.
func startSleep(t *testing.T, attr *syscall.SysProcAttr, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sleep", args...)
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil { // returns once the exec succeeded
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

func selfExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestRealSeedFindsSelf(t *testing.T) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	self := uint32(os.Getpid())
	p := tab.Enrich(schema.ProcEvent{What: schema.ProcEventSID, SID: schema.SIDEvent{PID: self, TGID: self}})
	if p.Source != "table" || p.Exe != selfExe(t) || !cmp.Equal(p.Cmdline, os.Args) || p.PPID != uint32(os.Getppid()) {
		t.Errorf("self: %+v; want exe %s, cmdline %q, ppid %d", p, selfExe(t), os.Args, os.Getppid())
	}
	if p.UID == nil || *p.UID != uint32(os.Getuid()) || p.GID == nil || *p.GID != uint32(os.Getgid()) {
		t.Errorf("self ids: %+v", p)
	}
	if len(p.Ancestors) == 0 || p.Ancestors[0].PID != uint32(os.Getppid()) {
		t.Errorf("self ancestors: %+v", p.Ancestors)
	}
	if wd, _ := os.Getwd(); p.Cwd != wd {
		t.Errorf("cwd %q, want %q", p.Cwd, wd)
	}
	// The threads that were there before Seed and still are.
	for _, d := range tasks {
		tid, _ := strconv.ParseUint(d.Name(), 10, 32)
		if _, err := os.Stat("/proc/self/task/" + d.Name()); err != nil {
			continue
		}
		e := tab.m[uint32(tid)]
		if e == nil || e.tgid != self || e.info.exe != p.Exe {
			t.Errorf("thread %d: %+v", tid, e)
		}
	}
	// pid 1 is there, and ends every chain.
	if tab.m[1] == nil {
		t.Error("pid 1 not seeded")
	}
	if n := len(p.Ancestors); n > 0 && n < DefaultAncestorDepth && p.Ancestors[n-1].PID != 1 {
		t.Errorf("a short chain should end at pid 1: %+v", p.Ancestors)
	}
	s := tab.Stats()
	if s.Seeded == 0 || s.Entries != int(s.Seeded) || s.ProcReads != 0 {
		t.Errorf("stats: %+v", s)
	}
	t.Logf("seeded %d entries", s.Seeded)
	checkTable(t, tab)
}

func TestRealExec(t *testing.T) {
	needRoot(t, "creates a cgroup and starts a process as nobody (65534)")
	id := strings.Repeat("c0ffee42", 8)
	dir, cgPath := makeCgroup(t, "docker-"+id+".scope")

	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	cmd := startSleep(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, "30", "1")
	pid := uint32(cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	self := uint32(os.Getpid())

	// fork: the child is the test binary until its exec is applied.
	p := tab.Enrich(schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ParentPID: self, ParentTGID: self, ChildPID: pid, ChildTGID: pid}})
	if p.Source != "table" || p.Exe != selfExe(t) || p.PPID != self {
		t.Errorf("fork: %+v", p)
	}

	p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: pid, TGID: pid}})
	sleepExe, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	nobody, err := user.LookupId("65534")
	if err != nil {
		t.Fatal(err)
	}
	nogroup, err := user.LookupGroupId("65534")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	u := uint32(65534)
	want := &schema.Process{PID: pid, TGID: pid, PPID: self, Source: "proc", Comm: "sleep", Exe: sleepExe,
		Cmdline: []string{"/bin/sleep", "30", "1"}, Cwd: wd, UID: &u, EUID: &u, GID: &u, EGID: &u,
		User: nobody.Username, Group: nogroup.Name, Cgroup: cgPath, Container: &schema.Container{ID: id, Runtime: "docker"},
		Login: procLogin(t, int(pid)), CapEffHex: "0000000000000000", NoNewPrivs: new(bool), NS: procNS(t, int(pid))}
	if diff := cmp.Diff(want, p, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Ancestors" }, cmp.Ignore()), noIDs); diff != "" {
		t.Errorf("exec (-want +got):\n%s", diff)
	}
	if len(p.Ancestors) == 0 || p.Ancestors[0].PID != self || p.Ancestors[0].Exe != selfExe(t) {
		t.Errorf("ancestors do not start with the test process %d: %+v", self, p.Ancestors)
	}
	if len(p.Ancestors) > 1 && p.Ancestors[1].PID != uint32(os.Getppid()) {
		t.Errorf("second ancestor %d, want %d", p.Ancestors[1].PID, os.Getppid())
	}
	if s := tab.Stats(); s.ProcReads != 1 || s.ProcGone != 0 {
		t.Errorf("stats: %+v", s)
	}

	// exit: the last known program.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventExit, Exit: schema.ExitEvent{PID: pid, TGID: pid, ExitCode: 9, ParentPID: self, ParentTGID: self}})
	if p.Source != "table" || p.Exe != sleepExe || !cmp.Equal(p.Cmdline, want.Cmdline) || p.Container == nil {
		t.Errorf("exit: %+v", p)
	}
	if tab.m[pid] != nil {
		t.Error("exited process still in the table")
	}
}

// waitState waits, with a deadline, until /proc/PID/stat shows state.
func waitState(t *testing.T, pid int, state byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) state ...: comm may hold ')' and spaces.
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never reached state %c: %s", pid, state, b)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRealExecGone(t *testing.T) {
	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Exited and reaped before its exec was read: the kernel's fields only.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		t.Skipf("pid %d was reused already: %v", pid, err)
	}
	p := tab.Enrich(schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: pid, TGID: pid}})
	if diff := cmp.Diff(&schema.Process{PID: pid, TGID: pid, Source: "gone"}, p, noIDs); diff != "" {
		t.Errorf("reaped (-want +got):\n%s", diff)
	}

	// Exited, not yet reaped (a zombie): status is there, the program is
	// not.
	z := exec.Command("/bin/true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer z.Wait()
	waitState(t, z.Process.Pid, 'Z')
	zpid := uint32(z.Process.Pid)
	p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: zpid, TGID: zpid}})
	if p.Source != "gone" || p.Exe != "" || p.Cmdline != nil || p.Cwd != "" || p.Comm != "true" || p.PPID != uint32(os.Getpid()) || p.UID == nil {
		t.Errorf("zombie: %+v", p)
	}
	if s := tab.Stats(); s.ProcReads != 2 || s.ProcGone != 2 {
		t.Errorf("stats: %+v", s)
	}
}

// A pid that names a thread of another process (reused) is gone for an
// event that says it leads its own group.
func TestRealThreadOfOtherGroup(t *testing.T) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	for _, d := range tasks {
		tid, _ := strconv.Atoi(d.Name())
		if tid == self {
			continue
		}
		tab, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		p := tab.Enrich(schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: uint32(tid), TGID: uint32(tid)}})
		if p.Source != "gone" || p.Exe != "" {
			t.Errorf("thread %d as its own process: %+v", tid, p)
		}
		// and read as what it is, a thread of this process
		p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventComm, Comm: schema.CommEvent{PID: uint32(tid), TGID: uint32(self)}})
		if p.Source != "proc" || p.Exe != selfExe(t) || p.TGID != uint32(self) {
			t.Errorf("thread %d: %+v", tid, p)
		}
		return
	}
	t.Skip("the test process has a single thread")
}

// The default lookups (os/user) tell a missing id from a failure.
func TestRealNames(t *testing.T) {
	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	if n, hit, failed := tab.users.get(0, 0); n != root.Username || hit || failed {
		t.Errorf("uid 0: %q, hit %v, failed %v", n, hit, failed)
	}
	const missing = 3999999999
	if _, err := user.LookupId(fmt.Sprint(missing)); err == nil {
		t.Skipf("uid %d exists here", missing)
	}
	for i, wantHit := range []bool{false, true} {
		if n, hit, failed := tab.users.get(missing, 0); n != "" || hit != wantHit || failed {
			t.Errorf("missing uid, lookup %d: %q, hit %v, failed %v", i, n, hit, failed)
		}
		if n, hit, failed := tab.groups.get(missing, 0); n != "" || hit != wantHit || failed {
			t.Errorf("missing gid, lookup %d: %q, hit %v, failed %v", i, n, hit, failed)
		}
	}
}

func TestRealReadHost(t *testing.T) {
	h, err := ReadHost("")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	hn, _ := os.Hostname()
	if h.BootID != strings.TrimSpace(string(b)) || h.Hostname != hn || len(h.BootID) != 36 {
		t.Errorf("host %+v", h)
	}
	t.Logf("host %+v", h)
}

// TestClockAccuracy measures the real clocks: the bracket of each
// measurement, and Wall against time.Now.
func TestClockAccuracy(t *testing.T) {
	var widths []time.Duration
	var c *Clock
	for i := 0; i < 200; i++ {
		var err error
		c, err = NewClock(ClockConfig{})
		if err != nil {
			t.Fatal(err)
		}
		widths = append(widths, c.Stats().Bracket)
	}
	slices.Sort(widths)
	t.Logf("tightest bracket of %d samples, over %d measurements: min %v, median %v, p99 %v, max %v (offset within ±half)",
		clockSamples, len(widths), widths[0], widths[len(widths)/2], widths[len(widths)*99/100], widths[len(widths)-1])
	if med := widths[len(widths)/2]; med > 100*time.Microsecond {
		t.Errorf("median bracket %v: the clocks cannot be read close together", med)
	}
	// Wall of "now" is now.
	for i := 0; i < 10; i++ {
		m, err := source.Monotonic()
		if err != nil {
			t.Fatal(err)
		}
		w := c.Wall(m)
		d := time.Since(w) // time.Now is read after m
		if d < -c.Stats().Bracket || d > time.Millisecond {
			t.Errorf("Wall(now) is %v from time.Now", d)
		}
	}
}
