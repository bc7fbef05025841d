//go:build linux

package enrich

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/testenv/need"
)

// procNS reads the namespaces of pid the plain way (os.Readlink and
// Sscanf), with differs computed against pid 1's (this process's where
// pid 1's cannot be read, as the enricher does), to check the enricher
// against.
func procNS(t *testing.T, pid int) *schema.Namespaces {
	t.Helper()
	read := func(pid string) ([7]uint64, error) {
		var ns [7]uint64
		for i, n := range schema.NamespaceNames {
			s, err := os.Readlink("/proc/" + pid + "/ns/" + n)
			if err != nil {
				return ns, err
			}
			if _, err := fmt.Sscanf(s, n+":[%d]", &ns[i]); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		return ns, nil
	}
	ns, err := read(strconv.Itoa(pid))
	if err != nil {
		t.Fatal(err)
	}
	host, err := read("1")
	if err != nil {
		t.Logf("pid 1's namespaces: %v (this process has fewer capabilities than pid 1): the host's are this process's", err)
		if host, err = read("self"); err != nil {
			t.Fatal(err)
		}
	}
	out := &schema.Namespaces{PID: ns[0], Mnt: ns[1], Net: ns[2], User: ns[3], UTS: ns[4], IPC: ns[5], Cgroup: ns[6]}
	for i := range ns {
		if ns[i] != host[i] {
			out.Differs = append(out.Differs, schema.NamespaceNames[i])
		}
	}
	return out
}

// procLogin reads loginuid and sessionid of pid the plain way.
func procLogin(t *testing.T, pid int) *schema.Login {
	t.Helper()
	l := &schema.Login{}
	for _, f := range []struct {
		name string
		dst  **uint32
	}{{"loginuid", &l.AUID}, {"sessionid", &l.SessionID}} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f.name))
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		if v != schema.AUIDUnset {
			u := uint32(v)
			*f.dst = &u
		}
	}
	return l
}

// procCapEff reads CapEff of pid's status the plain way.
func procCapEff(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:\t"); ok {
			return v
		}
	}
	t.Fatal("no CapEff line")
	return ""
}

// startThenSleep starts name with args, a program that ends by exec'ing
// /bin/sleep, and returns once /proc/PID/exe is sleep's: the exec the test
// enriches has happened. It fails the test with the program's stderr when
// it exits first.
func startThenSleep(t *testing.T, name string, args ...string) int {
	return startThenSleepWhy(t, "", name, args...)
}

// startThenSleepWhy is startThenSleep, its failure explained by why.
func startThenSleepWhy(t *testing.T, why, name string, args ...string) int {
	t.Helper()
	sleepExe, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	exe := fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s %q exited before exec'ing sleep: %v; stderr: %s%s", name, args, err, stderr.String(), why)
		default:
		}
		if s, err := os.Readlink(exe); err == nil && s == sleepExe {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %q did not exec sleep in 30 s", name, args)
		}
		time.Sleep(time.Millisecond) // polling /proc for the exec: no event to wait on here
	}
}

func enrichExec(t *testing.T, tab *Table, pid int) *schema.Process {
	t.Helper()
	p := tab.Enrich(schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: uint32(pid), TGID: uint32(pid)}})
	if p.Source != SourceProc {
		t.Fatalf("exec of %d: source %q: %+v", pid, p.Source, p)
	}
	return p
}

func newRealTable(t *testing.T) *Table {
	t.Helper()
	tab, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestRealLoginUID: a shell run by root sets its loginuid (allowed once
// while unset, or with CAP_AUDIT_CONTROL while loginuid_immutable is off)
// and execs sleep, whose exec shows it as login.auid; the session id is
// the new one the kernel gave with it.
func TestRealLoginUID(t *testing.T) {
	needRoot(t, "sets /proc/self/loginuid of a child, which needs CAP_AUDIT_CONTROL")
	if _, err := os.Stat("/proc/self/loginuid"); err != nil {
		t.Fatalf("/proc/self/loginuid: %v: the kernel lacks CONFIG_AUDIT(SYSCALL), so login cannot be read", err)
	}
	pid := startThenSleepWhy(t, "\n(exit status 97: the kernel refused to set loginuid, the errno is in stderr above: EPERM when this process lacks CAP_AUDIT_CONTROL, "+
		"or its loginuid is set and loginuid_immutable is on (audit -e 2 / --loginuid-immutable))",
		"/bin/sh", "-c", "printf 4242 > /proc/self/loginuid || exit 97; exec /bin/sleep 30")
	tab := newRealTable(t)
	p := enrichExec(t, tab, pid)
	want := procLogin(t, pid)
	if want.AUID == nil || *want.AUID != 4242 {
		t.Fatalf("the kernel did not keep loginuid 4242: %+v", want)
	}
	if diff := cmp.Diff(want, p.Login); diff != "" {
		t.Errorf("login (-want +got):\n%s", diff)
	}
	// The test process's own: unset or not, as the kernel says.
	self := enrichExec(t, tab, os.Getpid())
	if diff := cmp.Diff(procLogin(t, os.Getpid()), self.Login); diff != "" {
		t.Errorf("own login (-want +got):\n%s", diff)
	}
}

// TestRealNamespaces: a process started in new user, mount and network
// namespaces is reported with those three differing from pid 1's and
// inode numbers equal to its /proc/PID/ns links; a fork's child has no ns
// until its exec (clone may have made new ones); the test process itself
// is in the host's.
func TestRealNamespaces(t *testing.T) {
	needRoot(t, "creates mount and network namespaces")
	tab := newRealTable(t)
	if err := tab.Seed(""); err != nil {
		t.Fatal(err)
	}
	cmd := startSleep(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}, "30")
	pid := cmd.Process.Pid
	self := uint32(os.Getpid())
	p := tab.Enrich(schema.ProcEvent{What: schema.ProcEventFork, Fork: schema.ForkEvent{ParentPID: self, ParentTGID: self, ChildPID: uint32(pid), ChildTGID: uint32(pid)}})
	if p.NS != nil {
		t.Errorf("fork: ns %+v, want none before the exec", p.NS)
	}
	// ... but the login session and capabilities, which fork copies, are
	// the parent's (this test process's, seeded).
	if p.Login == nil || !cmp.Equal(procLogin(t, os.Getpid()), p.Login) || p.CapEffHex != procCapEff(t, os.Getpid()) || p.NoNewPrivs == nil {
		t.Errorf("fork: login %+v cap_eff_hex %q no_new_privs %v, want the parent's %+v %q", p.Login, p.CapEffHex, p.NoNewPrivs, procLogin(t, os.Getpid()), procCapEff(t, os.Getpid()))
	}
	p = enrichExec(t, tab, pid)
	want := procNS(t, pid)
	if !slices.Equal(want.Differs, []string{"mnt", "net", "user"}) {
		t.Fatalf("the kernel shows differing %v, want mnt, net, user", want.Differs)
	}
	if diff := cmp.Diff(want, p.NS); diff != "" {
		t.Errorf("ns (-want +got):\n%s", diff)
	}
	// Later events carry them from the table.
	p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventSID, SID: schema.SIDEvent{PID: uint32(pid), TGID: uint32(pid)}})
	if p.Source != SourceTable || !cmp.Equal(want, p.NS) {
		t.Errorf("sid: %s %+v", p.Source, p.NS)
	}
	me := enrichExec(t, tab, os.Getpid())
	if me.NS == nil || me.NS.Differs != nil || !cmp.Equal(procNS(t, os.Getpid()), me.NS) {
		t.Errorf("test process: %+v, want the host's namespaces %+v", me.NS, procNS(t, os.Getpid()))
	}
}

// TestRealCapabilities: root's sleep has the full set; a sleep as nobody
// keeping two ambient capabilities shows exactly those; a uid event drops
// the capabilities (no longer known); nobody without ambient ones has an
// empty set: hex zeros, no names.
func TestRealCapabilities(t *testing.T) {
	needRoot(t, "starts processes as nobody with ambient capabilities")
	tab := newRealTable(t)

	// Root's processes: a sleep of this test's, and pid 1. Either has the
	// full set (cap_full, no names) or the kernel's status says which
	// bits lack (this test may run with a reduced bounding set).
	lastB, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(lastB)))
	if err != nil {
		t.Fatal(err)
	}
	full := fmt.Sprintf("%016x", uint64(1)<<(last+1)-1)
	root := startSleep(t, nil, "30")
	sawFull := false
	for _, pid := range []int{root.Process.Pid, 1} {
		p := enrichExec(t, tab, pid)
		hex := procCapEff(t, pid)
		mask, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		if hex == full {
			sawFull = true
			if !p.CapFull || p.CapEff != nil || p.CapEffHex != hex {
				t.Errorf("pid %d: cap_full %v cap_eff %v hex %q, want full (status %q)", pid, p.CapFull, p.CapEff, p.CapEffHex, hex)
			}
		} else if p.CapFull || !slices.Equal(p.CapEff, CapNames(mask)) || p.CapEffHex != hex {
			t.Errorf("pid %d: cap_full %v cap_eff %v hex %q, want the names of status's %q", pid, p.CapFull, p.CapEff, p.CapEffHex, hex)
		} else {
			t.Logf("pid %d: not the full set (%s of %s): %d names", pid, hex, full, len(p.CapEff))
		}
		if p.NoNewPrivs == nil || *p.NoNewPrivs {
			t.Errorf("pid %d: no_new_privs %v, want read and false", pid, p.NoNewPrivs)
		}
	}
	if !sawFull {
		t.Errorf("neither this test's root process nor pid 1 has the full set %s: cap_full was not tested", full)
	}

	const netBindService, sysTime = 10, 25
	nobody := startSleep(t, &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{netBindService, sysTime},
	}, "30")
	pid := nobody.Process.Pid
	p := enrichExec(t, tab, pid)
	want := []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"}
	if p.CapFull || !slices.Equal(p.CapEff, want) || p.CapEffHex != "0000000002000400" || p.CapEffHex != procCapEff(t, pid) {
		t.Errorf("nobody with ambient caps: full %v names %v hex %q (status %q), want %v, 0000000002000400", p.CapFull, p.CapEff, p.CapEffHex, procCapEff(t, pid), want)
	}
	// The description is the caller's: changing its names leaves the table's.
	p.CapEff[0] = "changed"
	if p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventSID, SID: schema.SIDEvent{PID: uint32(pid), TGID: uint32(pid)}}); !slices.Equal(p.CapEff, want) {
		t.Errorf("the table's names changed through a description: %v", p.CapEff)
	}
	p = tab.Enrich(schema.ProcEvent{What: schema.ProcEventUID, ID: schema.IDEvent{PID: uint32(pid), TGID: uint32(pid), Real: 65534, Effective: 65534}})
	if p.CapEffHex != "" || p.CapEff != nil || p.CapFull || p.NoNewPrivs == nil || p.Login == nil {
		t.Errorf("after a uid event: hex %q names %v full %v (want none), no_new_privs %v and login %v (want kept)", p.CapEffHex, p.CapEff, p.CapFull, p.NoNewPrivs, p.Login)
	}

	plain := startSleep(t, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, "30")
	p = enrichExec(t, tab, plain.Process.Pid)
	if p.CapFull || p.CapEff != nil || p.CapEffHex != "0000000000000000" {
		t.Errorf("nobody: full %v names %v hex %q, want an empty set", p.CapFull, p.CapEff, p.CapEffHex)
	}
}

// TestRealNoNewPrivs: a sleep exec'd by setpriv --no-new-privs shows
// no_new_privs true.
func TestRealNoNewPrivs(t *testing.T) {
	setpriv := need.Tool(t, "setpriv", "sets PR_SET_NO_NEW_PRIVS before exec'ing the process under test (util-linux)")
	pid := startThenSleep(t, setpriv, "--no-new-privs", "/bin/sleep", "30")
	p := enrichExec(t, newRealTable(t), pid)
	if p.NoNewPrivs == nil || !*p.NoNewPrivs {
		t.Errorf("no_new_privs %v, want true", p.NoNewPrivs)
	}
}
