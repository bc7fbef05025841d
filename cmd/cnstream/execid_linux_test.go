//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/testenv/need"
)

// eventLog collects the process events `cnstream tail --json` prints, per
// subject tgid, and lets a test wait for a condition on them.
type eventLog struct {
	mu     sync.Mutex
	cond   *sync.Cond
	by     map[uint32][]schema.Event
	closed bool
}

func tailEvents(t *testing.T, kinds string) (*eventLog, *bytes.Buffer) {
	t.Helper()
	tail := exec.Command(cnstreamBin, "tail", "--json", "--kinds", kinds)
	var stderr bytes.Buffer
	tail.Stderr = &stderr
	lines := jsonLines(t, tail)
	t.Cleanup(func() { _ = tail.Process.Kill(); _ = tail.Wait() })
	l := &eventLog{by: map[uint32][]schema.Event{}}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		for m := range lines {
			b, _ := json.Marshal(m)
			var ev schema.Event
			if json.Unmarshal(b, &ev) != nil || ev.Process == nil {
				continue
			}
			l.mu.Lock()
			l.by[ev.Process.TGID] = append(l.by[ev.Process.TGID], ev)
			l.cond.Broadcast()
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		l.cond.Broadcast()
		l.mu.Unlock()
	}()
	return l, &stderr
}

// wait returns the events of tgid once ok says they are complete, failing
// the test after 30 s or when tail stops.
func (l *eventLog) wait(t *testing.T, what string, tgid uint32, ok func([]schema.Event) bool) []schema.Event {
	t.Helper()
	timer := time.AfterFunc(30*time.Second, func() {
		l.mu.Lock()
		l.closed = true
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer timer.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for !ok(l.by[tgid]) {
		if l.closed {
			t.Fatalf("%s: tail stopped or 30 s passed; events of %d: %s", what, tgid, kindsOf(l.by[tgid]))
		}
		l.cond.Wait()
	}
	return append([]schema.Event(nil), l.by[tgid]...)
}

func kindsOf(evs []schema.Event) string {
	var b bytes.Buffer
	for _, e := range evs {
		fmt.Fprintf(&b, "%s(%s) ", e.Kind, e.Process.ExecID)
	}
	return b.String()
}

// count returns how many events of each kind evs holds.
func count(evs []schema.Event) map[schema.Kind]int {
	n := map[schema.Kind]int{}
	for _, e := range evs {
		n[e.Kind]++
	}
	return n
}

// until says the events hold at least the given counts of kinds.
func until(want map[schema.Kind]int) func([]schema.Event) bool {
	return func(evs []schema.Event) bool {
		n := count(evs)
		for k, c := range want {
			if n[k] < c {
				return false
			}
		}
		return true
	}
}

// waitTailReady returns once tail prints an exec of a process of ours.
func waitTailReady(t *testing.T, l *eventLog) {
	t.Helper()
	ready := make(chan struct{})
	go func() {
		defer close(ready)
		for i := 0; i < 300; i++ {
			c := exec.Command("/bin/true")
			if c.Run() != nil {
				return
			}
			l.mu.Lock()
			seen := count(l.by[uint32(c.Process.Pid)])[schema.KindExec] > 0
			l.mu.Unlock()
			if seen {
				return
			}
			time.Sleep(100 * time.Millisecond) // a new probe, not a wait for a condition
		}
	}()
	<-ready
}

// TestTailExecIDs: on real kernel events, through `cnstream tail --json`,
// a child that execs twice (env execs true) joins fork -> exec -> exec ->
// exit on exec ids: each image has its own, the exec's prev_exec_id names
// the image it replaced, the exit carries the last exec's id, and all
// four carry one start time (the fork's) and the parent's image; a
// setuid transition (setpriv --reuid) is carried by the image that made
// it, which the next exec names as prev.
func TestTailExecIDs(t *testing.T) {
	setpriv := need.Tool(t, "setpriv", "changes uid and gid before exec'ing (util-linux)")
	envExe, err := exec.LookPath("env")
	if err != nil {
		t.Fatal(err)
	}
	l, _ := tailEvents(t, "fork,exec,exit,uid")
	waitTailReady(t, l)

	before := time.Now()
	child := exec.Command(envExe, "/bin/true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	pid := uint32(child.Process.Pid)
	evs := l.wait(t, "env true", pid, until(map[schema.Kind]int{schema.KindFork: 1, schema.KindExec: 2, schema.KindExit: 1}))
	var fork, exit *schema.Event
	var execs []*schema.Event
	for i := range evs {
		switch e := &evs[i]; e.Kind {
		case schema.KindFork:
			fork = e
		case schema.KindExec:
			execs = append(execs, e)
		case schema.KindExit:
			exit = e
		}
	}
	if len(execs) != 2 {
		t.Fatalf("events of %d: %s; want fork, exec, exec, exit", pid, kindsOf(evs))
	}
	f, e1, e2, x := fork.Process, execs[0].Process, execs[1].Process, exit.Process
	for _, p := range []*schema.Process{f, e1, e2, x} {
		if len(p.ExecID) != 22 {
			t.Fatalf("%s: exec_id %q: want 22 characters", kindsOf(evs), p.ExecID)
		}
	}
	if e1.ExecID == f.ExecID || e2.ExecID == e1.ExecID || e2.ExecID == f.ExecID {
		t.Errorf("ids not distinct: fork %s, exec %s, exec %s", f.ExecID, e1.ExecID, e2.ExecID)
	}
	if f.PrevExecID != "" || e1.PrevExecID != f.ExecID || e2.PrevExecID != e1.ExecID {
		t.Errorf("prev_exec_id: fork %q, exec %q (want the fork's %q), exec %q (want the first exec's %q)",
			f.PrevExecID, e1.PrevExecID, f.ExecID, e2.PrevExecID, e1.ExecID)
	}
	if x.ExecID != e2.ExecID || x.PrevExecID != e1.ExecID {
		t.Errorf("exit: exec_id %q prev %q, want the last exec's %q %q", x.ExecID, x.PrevExecID, e2.ExecID, e1.ExecID)
	}
	for _, p := range []*schema.Process{e1, e2, x} {
		if p.ParentExecID != f.ParentExecID || p.StartBootNS != f.StartBootNS || !p.StartTime.Equal(f.StartTime) {
			t.Errorf("%s of %d: parent %q start %d %v; want the fork's %q %d %v", p.Source, pid, p.ParentExecID, p.StartBootNS, p.StartTime,
				f.ParentExecID, f.StartBootNS, f.StartTime)
		}
	}
	if len(f.ParentExecID) != 22 {
		t.Errorf("fork: parent_exec_id %q: this test process is in the table (seeded), its image has an id", f.ParentExecID)
	}
	// The fork's time, through the pipeline's clock: within the run.
	if f.StartTime.Before(before.Add(-time.Millisecond)) || f.StartTime.After(after.Add(time.Millisecond)) {
		t.Errorf("start_time %v, not within the child's run [%v, %v]", f.StartTime, before, after)
	}
	if st := procStartTicks(t, os.Getpid()); f.StartBootNS/uint64(10*time.Millisecond) < st {
		t.Errorf("start_boot_ns %d: before this test process started (tick %d)", f.StartBootNS, st)
	}

	// setuid: the uid event is setpriv's image's; the exec after it names
	// that image as prev.
	su := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "/bin/true")
	if out, err := su.CombinedOutput(); err != nil {
		t.Fatalf("setpriv: %v: %s", err, out)
	}
	spid := uint32(su.Process.Pid)
	evs = l.wait(t, "setpriv", spid, until(map[schema.Kind]int{schema.KindExec: 2, schema.KindUID: 1, schema.KindExit: 1}))
	var setprivImg, trueImg, uidImg string
	for _, e := range evs {
		switch {
		case e.Kind == schema.KindExec && setprivImg == "":
			setprivImg = e.Process.ExecID
		case e.Kind == schema.KindExec:
			trueImg = e.Process.ExecID
			if e.Process.PrevExecID != setprivImg {
				t.Errorf("true's exec: prev %q, want setpriv's %q", e.Process.PrevExecID, setprivImg)
			}
		case e.Kind == schema.KindUID:
			uidImg = e.Process.ExecID
			if e.UID == nil || e.UID.Effective != 65534 {
				t.Errorf("uid event %+v", e.UID)
			}
		}
	}
	if uidImg == "" || uidImg != setprivImg || trueImg == setprivImg {
		t.Errorf("uid event's exec_id %q, want setpriv's %q (true's is %q): %s", uidImg, setprivImg, trueImg, kindsOf(evs))
	}
}

// TestTailExecIDPidReuse: a pid the kernel gives to a second process (set
// up by writing /proc/sys/kernel/ns_last_pid, as CRIU does) names another
// image: the two processes' events carry different exec ids, and each
// exit the id of its own process's exec.
func TestTailExecIDPidReuse(t *testing.T) {
	const lastPid = "/proc/sys/kernel/ns_last_pid"
	l, _ := tailEvents(t, "fork,exec,exit")
	waitTailReady(t, l)

	first := exec.Command("/bin/true")
	if err := first.Run(); err != nil {
		t.Fatal(err)
	}
	pid := first.Process.Pid
	var second *exec.Cmd
	for try := 0; second == nil; try++ {
		if try == 200 {
			t.Fatalf("pid %d not given again in 200 tries: other tasks took it first each time", pid)
		}
		if err := os.WriteFile(lastPid, []byte(strconv.Itoa(pid-1)), 0); err != nil {
			if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
				t.Fatalf("write %s: %v: needs CAP_SYS_ADMIN (CAP_CHECKPOINT_RESTORE) in the initial user namespace; run the tests as root", lastPid, err)
			}
			t.Fatal(err)
		}
		c := exec.Command("/bin/true")
		if err := c.Run(); err != nil {
			t.Fatal(err)
		}
		if c.Process.Pid == pid {
			second = c
		}
	}
	want := until(map[schema.Kind]int{schema.KindFork: 2, schema.KindExec: 2, schema.KindExit: 2})
	evs := l.wait(t, "two processes of one pid", uint32(pid), want)
	// In stream order: fork, exec, exit of the first, then of the second.
	var ids [2]struct{ fork, exec, exit string }
	n := -1
	for _, e := range evs {
		switch e.Kind {
		case schema.KindFork:
			n++
			if n < 2 {
				ids[n].fork = e.Process.ExecID
			}
		case schema.KindExec:
			if n >= 0 && n < 2 {
				ids[n].exec = e.Process.ExecID
			}
		case schema.KindExit:
			if n >= 0 && n < 2 {
				ids[n].exit = e.Process.ExecID
			}
		}
	}
	for i, id := range ids {
		if len(id.fork) != 22 || len(id.exec) != 22 || id.exit != id.exec || id.fork == id.exec {
			t.Errorf("process %d of pid %d: fork %q exec %q exit %q; want the exit's id the exec's, both 22 characters: %s", i+1, pid, id.fork, id.exec, id.exit, kindsOf(evs))
		}
	}
	if ids[0].exec == ids[1].exec || ids[0].fork == ids[1].fork {
		t.Errorf("pid %d reused: both processes have exec id %q (fork %q)", pid, ids[0].exec, ids[0].fork)
	}
}

// procStartTicks returns a process's start time, ticks after boot.
func procStartTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:])
	v, err := strconv.ParseUint(string(f[19]), 10, 64) // field 22: the 20th after the name
	if err != nil {
		t.Fatal(err)
	}
	return v
}
