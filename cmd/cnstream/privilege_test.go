//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

// nobody is the unprivileged user the least-privilege tests run cnstream as.
const nobody = 65534

// unprivileged is a `cnstream run` started by unprivilegedRun.
type unprivileged struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	data   string        // the file sink's directory
	exited chan struct{} // closed when cmd.Wait returned err
	err    error
}

// unprivilegedRun starts `cnstream run` as uid and gid 65534 with no
// supplementary groups, no new privileges, and exactly caps (for example
// "net_admin", "sys_ptrace") as its inheritable, ambient and bounding sets,
// as the systemd unit starts it. The file sink writes to a directory owned
// by that user; telemetry is off.
func unprivilegedRun(t *testing.T, caps ...string) *unprivileged {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is needed to run cnstream as another user with chosen capabilities")
	}
	// <tmp>/<test>/<n> is made 0700: open the path to the user.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "cnstream")
	src, err := os.ReadFile(cnstreamBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &unprivileged{stderr: &syncBuffer{}, data: filepath.Join(dir, "data"), exited: make(chan struct{})}
	if err := os.Mkdir(r.data, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(r.data, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "cnstream.yaml")
	text := fmt.Sprintf("sinks:\n  - name: files\n    type: file\n    file:\n      dir: %s\n      compression: none\ntelemetry:\n  listen: \"off\"\n", r.data)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	r.cmd = exec.Command("setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups",
		"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--no-new-privs",
		bin, "run", "--config", cfg)
	r.cmd.Dir = dir
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.err = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); <-r.exited })
	return r
}

// started waits until run listens (true) or exits (false).
func (r *unprivileged) started(t *testing.T) bool {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.stderr.String(), "cnstream run: listening to ") {
		select {
		case <-r.exited:
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run neither listens nor exits within 20 s; stderr: %s", r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond) // polling its stderr with a deadline
	}
	return true
}

// stop sends SIGINT, waits for the exit and returns stderr with the final
// report; it fails the test unless run exits with status 0.
func (r *unprivileged) stop(t *testing.T) string {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not stop within 30 s of SIGINT; stderr: %s", r.stderr.String())
	}
	if r.err != nil {
		t.Errorf("run after SIGINT: %v\n%s", r.err, r.stderr.String())
	}
	return r.stderr.String()
}

// rootExec runs /bin/sleep as root (this test) in a directory of its own
// until r writes its exec event to its file sink, and returns that event's process.
func rootExec(t *testing.T, r *unprivileged) (proc *schema.Process, cwd string) {
	t.Helper()
	cwd = t.TempDir()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no exec event of a root process in %s within 20 s; stderr: %s", r.data, r.stderr.String())
		}
		child := exec.Command("/bin/sleep", "0.05")
		child.Dir = cwd
		if err := child.Run(); err != nil {
			t.Fatal(err)
		}
		pid := uint32(child.ProcessState.Pid())
		for wait := time.Now().Add(time.Second); time.Now().Before(wait); {
			events, _ := file.ReadAll(file.Config{Dir: r.data}) // a batch being written may show as torn: read again
			for i := range events {
				if e := &events[i]; e.Exec != nil && e.Exec.PID == pid && e.Process != nil && e.Process.Source == "proc" {
					return e.Process, cwd
				}
			}
			time.Sleep(20 * time.Millisecond) // polling the files with a deadline
		}
	}
}

func want(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

// TestRunLeastPrivilege: as a user that is not root, with only
// CAP_NET_ADMIN and CAP_SYS_PTRACE (the systemd unit's and the DaemonSet's
// set), `cnstream run` delivers the exec event of a root process, with its
// exe and cwd, to the file sink, and warns about nothing.
func TestRunLeastPrivilege(t *testing.T) {
	r := unprivilegedRun(t, "net_admin", "sys_ptrace")
	if !r.started(t) {
		t.Fatalf("run as uid %d with CAP_NET_ADMIN and CAP_SYS_PTRACE: %v\n%s", nobody, r.err, r.stderr.String())
	}
	p, cwd := rootExec(t, r)
	exe, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if p.Exe != exe || p.Cwd != cwd {
		t.Errorf("exec of a root process seen as uid %d: exe %q, cwd %q; want %q, %q", nobody, p.Exe, p.Cwd, exe, cwd)
	}
	out := r.stop(t)
	want(t, "report", out, "0 undelivered")
	if strings.Contains(out, "CAP_") {
		t.Errorf("warnings with both capabilities:\n%s", out)
	}
}

// TestRunWithoutSysPtrace: without CAP_SYS_PTRACE run works, warns at start
// that exe and cwd of other users' processes are lost, and they are: the
// root process's event has neither; the report says so again.
func TestRunWithoutSysPtrace(t *testing.T) {
	r := unprivilegedRun(t, "net_admin")
	if !r.started(t) {
		t.Fatalf("run as uid %d with CAP_NET_ADMIN only: %v\n%s", nobody, r.err, r.stderr.String())
	}
	want(t, "start warning", r.stderr.String(), "without CAP_SYS_PTRACE", "no exe and cwd")
	p, _ := rootExec(t, r)
	if p.Exe != "" || p.Cwd != "" {
		t.Errorf("exec of a root process seen without CAP_SYS_PTRACE: exe %q, cwd %q: want none (nothing guessed)", p.Exe, p.Cwd)
	}
	if len(p.Cmdline) == 0 || p.Cmdline[0] != "/bin/sleep" {
		t.Errorf("cmdline %q: anyone may read it", p.Cmdline)
	}
	out := r.stop(t)
	want(t, "report", out, "0 undelivered", "ran without CAP_SYS_PTRACE: exe and cwd of other users' processes were not recorded")
	if strings.Contains(out, "CAP_NET_ADMIN") {
		t.Errorf("CAP_NET_ADMIN named though it was granted:\n%s", out)
	}
}

// TestRunWithoutNetAdmin: without CAP_NET_ADMIN there is no forced 64 MiB
// receive buffer. Where the kernel lets anyone listen to process events
// (mainline Linux 6.6+), run works, warns at start naming CAP_NET_ADMIN and
// the loss, and the report says so. Where the kernel refuses the join of
// group 1 or LISTEN (before 6.6, and this machine's 6.18 build), nothing
// can work: run exits with status 1 and the reason, naming CAP_NET_ADMIN
// and how to grant it to cnstream alone, not setcap on a binary anyone
// may run.
func TestRunWithoutNetAdmin(t *testing.T) {
	r := unprivilegedRun(t, "sys_ptrace")
	ok := r.started(t)
	out := r.stderr.String()
	want(t, "start warning", out, "without CAP_NET_ADMIN", "receive buffer", "bursts")
	if !ok {
		t.Logf("this kernel refuses process events without CAP_NET_ADMIN:\n%s", out)
		var ee *exec.ExitError
		if !errors.As(r.err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("run without CAP_NET_ADMIN: %v, want exit status 1\n%s", r.err, out)
		}
		if !strings.Contains(out, "join group 1: ") && !strings.Contains(out, "refused LISTEN: ") {
			t.Errorf("the reason does not name the refused step (join of group 1, or LISTEN):\n%s", out)
		}
		want(t, "reason", out, "operation not permitted", "needs CAP_NET_ADMIN", "AmbientCapabilities", "chmod 0750")
		if strings.Contains(out, "sudo setcap") {
			t.Errorf("advises setcap on the binary:\n%s", out)
		}
		return
	}
	t.Log("this kernel lets processes without CAP_NET_ADMIN listen to process events")
	rootExec(t, r)
	out = r.stop(t)
	want(t, "report", out, "0 undelivered", "ran without CAP_NET_ADMIN: receive buffer")
}
