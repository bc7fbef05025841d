//go:build linux

package enrich

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// startStuck starts testdata/stuckcmdline (see its doc): a process whose
// /proc/PID/cmdline read blocks until it exits. It returns once a thread
// of it waits for its mmap lock, with the name of its FUSE connection
// (abortFUSE); the connection is aborted and the process killed at
// cleanup.
func startStuck(t *testing.T) (*exec.Cmd, string) {
	t.Helper()
	needRoot(t, "mounting a FUSE file system and serving it makes the process whose cmdline read blocks")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE in this kernel (%v): the blocked read cannot be made", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "stuckcmdline")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/stuckcmdline").CombinedOutput(); err != nil {
		t.Fatalf("build helper: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, mnt)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // the mount dies with it
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var conn string
	t.Cleanup(func() {
		abortFUSE(t, conn)
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	conn, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok || conn == "" || strings.ContainsAny(conn, "/.") {
		t.Fatalf("helper said %q, %v", line, err)
	}
	// Wait for the writer: a thread in state D (stat does not take the
	// mmap lock).
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); ; {
		tasks, _ := os.ReadDir(filepath.Join("/proc", itoa(pid), "task"))
		for _, task := range tasks {
			b, _ := os.ReadFile(filepath.Join("/proc", itoa(pid), "task", task.Name(), "stat"))
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i >= 0 && strings.HasPrefix(s[i+1:], " D") {
				return cmd, conn
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no thread of the helper waits for its mmap lock")
		}
		time.Sleep(time.Millisecond)
	}
}

// abortFUSE aborts FUSE connection conn through fusectl (mounted on
// /sys/fs/fuse/connections, as systemd does, when it is not), which
// answers every request with an error: the helper's stalled READ, and so
// its mmap lock, are released.
func abortFUSE(t *testing.T, conn string) {
	t.Helper()
	if conn == "" {
		return
	}
	const ctl = "/sys/fs/fuse/connections"
	if _, err := os.Stat(filepath.Join(ctl, conn)); err != nil {
		if err := syscall.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			t.Errorf("mount fusectl: %v: the helper (pid in the log) stays stuck until %s/%s/abort is written", err, ctl, conn)
			return
		}
	}
	if err := os.WriteFile(filepath.Join(ctl, conn, "abort"), []byte("1"), 0); err != nil && !os.IsNotExist(err) {
		t.Errorf("abort FUSE connection %s: %v", conn, err)
	}
}

func itoa(i int) string { return fmtInt(i) }

func fmtInt(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// TestStuckCmdline reads a real process whose /proc/PID/cmdline read
// blocks in the kernel (see testdata/stuckcmdline). The table's deadline
// bounds every event: the stuck process's exec says "timeout" with what was
// read before cmdline, other processes' events keep being read in full
// meanwhile, a second event of the stuck process does not wait again, and
// when every worker is stuck the reads are skipped at once. The workers
// come back when the process exits.
func TestStuckCmdline(t *testing.T) {
	stuck, conn := startStuck(t)
	spid := uint32(stuck.Process.Pid)

	// The read really blocks: a plain read of cmdline does not return.
	got := make(chan struct{})
	go func() {
		_, _ = os.ReadFile(filepath.Join("/proc", itoa(int(spid)), "cmdline"))
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("reading the helper's cmdline did not block")
	case <-time.After(300 * time.Millisecond):
	}

	live := exec.Command("/bin/sleep", "600")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	lpid := uint32(live.Process.Pid)

	const deadline = 50 * time.Millisecond
	tab, err := New(Config{ProcReadTimeout: deadline, ProcReadWorkers: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Margin for the scheduler of a 2-vCPU VM: the read is given up at
	// the deadline, the event is out a little after.
	const late = deadline + 150*time.Millisecond
	enrich := func(ev schema.ProcEvent) (*schema.Process, time.Duration) {
		t0 := time.Now()
		p := tab.Enrich(ev)
		return p, time.Since(t0)
	}
	exe, _ := os.Readlink(filepath.Join("/proc", itoa(int(spid)), "exe"))

	p, took := enrich(execEv(spid))
	if p.Source != SourceTimeout || took > late || took < deadline {
		t.Errorf("exec of the stuck process: source %q after %v, want %q within [%v, %v]", p.Source, took, SourceTimeout, deadline, late)
	}
	// What was read before cmdline is kept: status, exe, cwd, cgroup.
	if p.Cmdline != nil || p.Exe != exe || p.Comm != "stuckcmdline" || p.UID == nil || p.Cgroup == "" {
		t.Errorf("exec of the stuck process: %+v (exe %q)", p, exe)
	}
	if s := tab.Stats(); s.ProcTimeouts != 1 || s.ProcStuck != 1 || s.ProcSkipped != 0 || s.ProcGone != 0 {
		t.Errorf("stats after one timeout: %+v", s)
	}

	// Other processes' events go on, read in full, while the read is
	// stuck in the kernel.
	for i := 0; i < 50; i++ {
		p, took := enrich(execEv(lpid))
		if p.Source != SourceProc || !slicesEqual(p.Cmdline, []string{"/bin/sleep", "600"}) || took > late {
			t.Fatalf("exec %d of a live process beside the stuck one: %+v after %v", i, p, took)
		}
	}
	// A later event of the stuck process comes from the table, flagged,
	// without waiting.
	p, took = enrich(commEv(spid, spid, "x"))
	if p.Source != SourceTimeout || took > deadline {
		t.Errorf("comm of the stuck process: %q after %v", p.Source, took)
	}
	// A second exec waits again (the process may have moved on): the
	// second worker is stuck too, and the third read is skipped at once.
	if p, _ := enrich(execEv(spid)); p.Source != SourceTimeout {
		t.Errorf("second exec: %+v", p)
	}
	p, took = enrich(execEv(lpid))
	if p.Source != SourceTimeout || took > deadline/2 {
		t.Errorf("exec with every worker stuck: %q after %v, want %q at once", p.Source, took, SourceTimeout)
	}
	if s := tab.Stats(); s.ProcTimeouts != 2 || s.ProcStuck != 2 || s.ProcSkipped != 1 {
		t.Errorf("stats with every worker stuck: %+v", s)
	}

	// The hung file answers at last (the connection is aborted): the
	// kernel lets the reads go, the workers return to the pool and reads
	// are made again.
	abortFUSE(t, conn)
	<-got
	for t0 := time.Now(); tab.Stats().ProcStuck != 0; time.Sleep(time.Millisecond) {
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("workers still stuck after the process exited: %+v", tab.Stats())
		}
	}
	p, _ = enrich(execEv(lpid))
	if p.Source != SourceProc {
		t.Errorf("exec after the workers came back: %+v", p)
	}
	t.Logf("stats: %+v", tab.Stats())
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
