//go:build linux

package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lines starts cmd and returns a channel of its stdout lines.
func lines(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ch := make(chan string, 4096)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// TestTailEscapesTerminalSequences execs a copy of sh named with an
// OSC sequence that would set the terminal's title ("\x1b]0;pwned\x07"),
// and an argument holding it too ($0 of sh -c; sh waits on a builtin read
// of a pipe, so it lives until the test ends: a copy of sleep given that
// argument exited at once, and under load was gone before tail read it): `cnstream tail` shows the exec with the
// sequence escaped (exe, comm, cmdline), --json with \u001b, and neither
// writes a raw ESC or BEL.
func TestTailEscapesTerminalSequences(t *testing.T) {
	const seq = "\x1b]0;pwned\x07"
	dir := t.TempDir()
	prog := filepath.Join(dir, "cn"+seq+"x")
	data, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prog, data, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	text := lines(t, exec.Command(cnstreamBin, "tail"))
	js := lines(t, exec.Command(cnstreamBin, "tail", "--json"))
	var seen [2][]string
	next := func(i int, ch <-chan string) string {
		t.Helper()
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("tail %d stopped; lines: %q", i, seen[i])
			}
			seen[i] = append(seen[i], l)
			return l
		case <-ctx.Done():
			t.Fatalf("timed out waiting for tail %d; lines so far: %q", i, seen[i])
		}
		return ""
	}
	// Any line means tail is reading: a child started after that is seen.
	for i, ch := range []<-chan string{text, js} {
		go exec.Command("/bin/true").Run()
		next(i, ch)
	}
	child := exec.Command(prog)
	child.Args = []string{prog, "-c", "read x", seq}
	stdin, err := child.StdinPipe() // never written: read waits
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Kill()
		stdin.Close()
		child.Wait()
	}()
	pid := strconv.Itoa(child.Process.Pid)
	const escaped = `\x1b]0;pwned\a`
	for {
		l := next(0, text)
		if strings.Contains(l, " exec ") && strings.Contains(l, " pid="+pid+" ") {
			for _, w := range []string{
				` comm="cn` + escaped + `x"`,
				` exe=` + filepath.Join(dir, "cn"+escaped+"x"),
				` cmdline="` + filepath.Join(dir, "cn"+escaped+"x") + ` -c read x ` + escaped + `"`,
			} {
				if !strings.Contains(l, w) {
					t.Errorf("tail's exec line %q: want it to contain %q", l, w)
				}
			}
			break
		}
	}
	for {
		l := next(1, js)
		if strings.Contains(l, `"kind":"exec"`) && strings.Contains(l, `"pid":`+pid+`,`) {
			if !strings.Contains(l, `\u001b]0;pwned\u0007`) {
				t.Errorf("tail --json's exec line %q: want ESC and BEL as \\u001b and \\u0007", l)
			}
			break
		}
	}
	for i, ls := range seen {
		for _, l := range ls {
			if strings.ContainsAny(l, "\x1b\x07") {
				t.Errorf("tail %d wrote a raw ESC or BEL: %q", i, l)
			}
		}
	}
}
