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

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

func TestAppendEscaped(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
	}{
		{"plain", "/usr/bin/sleep", "/usr/bin/sleep"},
		{"space and utf-8", "/tmp/é 日本", "/tmp/é 日本"},
		{"osc title", "\x1b]0;pwned\x07", `\x1b]0;pwned\a`},
		{"csi", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`},
		{"cr bs", "ok\rEVIL\b\b", `ok\rEVIL\b\b`},
		{"newline tab", "a\nb\tc", `a\nb\tc`},
		{"other c0", "\x00\x01\x1f", `\x00\x01\x1f`},
		{"del", "a\x7fb", `a\x7fb`},
		{"c1 as utf-8", "\u0085\u009b2J", `\u0085\u009b2J`},
		{"c1 as raw bytes", "\x9b2J", `\x9b2J`},
		{"invalid utf-8", "\xff\xfe", `\xff\xfe`},
		{"truncated rune", "a\xe2\x80", `a\xe2\x80`},
		{"bidi overrides", "\u202a\u202b\u202c\u202d\u202e", `\u202a\u202b\u202c\u202d\u202e`},
		{"bidi isolates", "\u2066\u2067\u2068\u2069", `\u2066\u2067\u2068\u2069`},
		{"rlo filename", "evil\u202egpj.exe", `evil\u202egpj.exe`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"backslash", `C:\x1b`, `C:\\x1b`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := string(appendEscaped(nil, c.in))
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("appendEscaped(%q) (-want +got):\n%s", c.in, diff)
			}
		})
	}
}

// TestTextEscapesProcessStrings: every string a process controls is
// escaped in the readable line, and no raw control byte is left.
func TestTextEscapesProcessStrings(t *testing.T) {
	const evil = "\x1b]0;pwned\x07\r\u202e\xff"
	const want = `\x1b]0;pwned\a\r\u202e\xff`
	uid := uint32(0)
	exec := func(p *schema.Process) *schema.Event {
		return &schema.Event{
			Kind:    schema.KindExec,
			Time:    time.Unix(1, 0),
			Stream:  &schema.Stream{Idx: 1, Val: 1},
			Exec:    &schema.ExecEvent{PID: 7, TGID: 7},
			Process: p,
		}
	}
	for _, c := range []struct {
		name string
		e    *schema.Event
		want []string
	}{
		{"comm", exec(&schema.Process{Comm: evil}), []string{` comm="` + want + `"`}},
		{"exe", exec(&schema.Process{Exe: "/tmp/" + evil}), []string{` exe=/tmp/` + want}},
		{"cmdline", exec(&schema.Process{Cmdline: []string{"sleep", evil}}), []string{` cmdline="sleep ` + want + `"`}},
		{"cwd", exec(&schema.Process{Cwd: "/tmp/" + evil}), []string{` cwd=/tmp/` + want}},
		{"user", exec(&schema.Process{UID: &uid, User: evil}), []string{` uid=0(` + want + `)`}},
		{"container", exec(&schema.Process{Container: &schema.Container{Runtime: evil, ID: "\x1b[2J", PodUID: evil}}),
			[]string{` container=` + want + `:\x1b[2J`, ` pod=` + want}},
		{"ancestors", exec(&schema.Process{Ancestors: []schema.Ancestor{{PID: 1, Comm: evil}, {PID: 2, Comm: "init"}}}),
			[]string{` parents=1(` + want + `)<2(init)`}},
		{"comm event", &schema.Event{Kind: schema.KindComm, Time: time.Unix(1, 0), Stream: &schema.Stream{Idx: 1, Val: 1},
			Comm: &schema.CommInfo{PID: 7, TGID: 7, Comm: evil}}, []string{` comm="` + want + `"`}},
		{"malformed", &schema.Event{Kind: schema.KindMalformed, Malformed: &schema.MalformedInfo{Error: evil}}, []string{`: ` + want}},
		{"dropped", &schema.Event{Kind: schema.KindDropped, Dropped: &schema.DroppedInfo{Count: 1, Reason: evil, Sink: evil}},
			[]string{`: ` + want + ` ` + want}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := string(appendText(nil, c.e))
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("line %q: want it to contain %q", got, w)
				}
			}
			for _, r := range got {
				if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' || r == '\ufffd' {
					t.Errorf("line %q holds a raw %U", got, r)
				}
			}
		})
	}
}

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

// TestTailEscapesTerminalSequences execs a copy of sleep named with an
// OSC sequence that would set the terminal's title ("\x1b]0;pwned\x07"),
// and an argument holding it too: `cnstream tail` shows the exec with the
// sequence escaped (exe, comm, cmdline), --json with \u001b, and neither
// writes a raw ESC or BEL.
func TestTailEscapesTerminalSequences(t *testing.T) {
	const seq = "\x1b]0;pwned\x07"
	dir := t.TempDir()
	prog := filepath.Join(dir, "cn"+seq+"x")
	data, err := os.ReadFile("/bin/sleep")
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
	child := exec.Command(prog, "30")
	child.Args = []string{prog, "30", seq}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		child.Process.Kill()
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
				` cmdline="` + filepath.Join(dir, "cn"+escaped+"x") + ` 30 ` + escaped + `"`,
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
