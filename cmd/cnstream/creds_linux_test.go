//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/testenv/need"
)

// TestTailCredentialsNamespaces: `cnstream tail --json` on real events: a
// shell sets its loginuid (as root, allowed while unset or with
// CAP_AUDIT_CONTROL) and execs, through unshare -U -m -n and setpriv
// --no-new-privs, a sleep: that sleep's exec event carries login.auid 4343
// with the kernel's session id, no_new_privs true, the effective set the
// kernel shows (empty: an unmapped uid in a new user namespace loses its
// capabilities at exec), and ns with the inode numbers of its
// /proc/PID/ns links, differing from the host's in mnt, net and user.
func TestTailCredentialsNamespaces(t *testing.T) {
	unshare := need.Tool(t, "unshare", "starts the process under test in new user, mount and network namespaces (util-linux)")
	setpriv := need.Tool(t, "setpriv", "sets no_new_privs before exec'ing the process under test (util-linux)")
	sleepExe, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tail := exec.Command(cnstreamBin, "tail", "--json", "--kinds", "exec")
	var stderr bytes.Buffer
	tail.Stderr = &stderr
	lines := jsonLines(t, tail)
	defer tail.Process.Kill()
	next := func() map[string]any { return nextLine(t, ctx, lines, &stderr) }
	// Any exec printed means tail is reading: the child's are seen.
	go exec.Command("/bin/true").Run()
	next()

	var childErr bytes.Buffer
	child := exec.Command("/bin/sh", "-c", `printf 4343 > /proc/self/loginuid || exit 97; exec "$1" -U -m -n "$2" --no-new-privs /bin/sleep 30`, "sh", unshare, setpriv)
	child.Stderr = &childErr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	defer func() {
		_ = child.Process.Kill()
		<-done
	}()
	pid := uint64(child.Process.Pid)
	var p *schema.Process
	for p == nil {
		select {
		case err := <-done:
			t.Fatalf("the child exited before its sleep was seen: %v; stderr: %s", err, childErr.String())
		default:
		}
		m := next()
		if m["kind"] != "exec" || num(m, "exec", "pid") != pid {
			continue
		}
		b, err := json.Marshal(m["process"])
		if err != nil {
			t.Fatal(err)
		}
		var q schema.Process
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatal(err)
		}
		if q.Exe == sleepExe {
			p = &q
		}
	}
	if p.Source != "proc" {
		t.Fatalf("sleep's exec: source %q: %+v", p.Source, p)
	}
	if p.Login == nil || p.Login.AUID == nil || *p.Login.AUID != 4343 || p.Login.SessionID == nil {
		t.Errorf("login %+v, want auid 4343 and a session id", p.Login)
	} else if want := readU32(t, fmt.Sprintf("/proc/%d/sessionid", pid)); *p.Login.SessionID != want {
		t.Errorf("session_id %d, /proc says %d", *p.Login.SessionID, want)
	}
	if p.NoNewPrivs == nil || !*p.NoNewPrivs {
		t.Errorf("no_new_privs %v, want true", p.NoNewPrivs)
	}
	if want := statusLine(t, int(pid), "CapEff"); p.CapEffHex != want || p.CapFull || (want == "0000000000000000") != (p.CapEff == nil) {
		t.Errorf("cap_eff_hex %q cap_eff %v cap_full %v, /proc says %q", p.CapEffHex, p.CapEff, p.CapFull, want)
	}
	if p.NS == nil {
		t.Fatal("no ns")
	}
	got := p.NS.Inodes()
	for i, n := range schema.NamespaceNames {
		s, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, n))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%s:[%d]", n, got[i]); s != want {
			t.Errorf("ns %s: tail says %s, /proc says %s", n, want, s)
		}
	}
	if !slices.Equal(p.NS.Differs, []string{"mnt", "net", "user"}) {
		t.Errorf("ns differs %v, want mnt, net, user", p.NS.Differs)
	}
}

func readU32(t *testing.T, path string) uint32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

func statusLine(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":\t"); ok {
			return v
		}
	}
	t.Fatalf("no %s in status", key)
	return ""
}
