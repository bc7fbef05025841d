package main

import (
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

// TestTextLossRecords: the readable lines of the records of the disk spool
// and of a restart, and a line for every loss kind (none dereferences a
// member it does not have).
func TestTextLossRecords(t *testing.T) {
	proc := &schema.Stream{Idx: 1, Val: 1, CPU: 3}
	for _, c := range []struct {
		name string
		e    *schema.Event
		want string
	}{
		{"gap", &schema.Event{Kind: schema.KindGap, Stream: proc, Gap: &schema.GapInfo{Expected: 10, Got: 15, Missing: 5}},
			"--- GAP stream 1:1 cpu=3: expected seq 10, got 15: 5 missing"},
		{"gap restart", &schema.Event{Kind: schema.KindGap, Stream: proc, Gap: &schema.GapInfo{Expected: 10, Got: 15, Missing: 5, Reason: schema.GapRestart}},
			"--- GAP stream 1:1 cpu=3: expected seq 10, got 15: 5 missing (restart)"},
		{"corrupt", &schema.Event{Kind: schema.KindCorrupt, Corrupt: &schema.CorruptInfo{File: "00000000000000000000.seg", Offset: 4096, Bytes: 512, Reason: "crc mismatch"}},
			"--- CORRUPT spool 00000000000000000000.seg at 4096: 512 bytes skipped (crc mismatch)"},
		{"dropped", &schema.Event{Kind: schema.KindDropped, Dropped: &schema.DroppedInfo{Count: 7, Reason: "spool_corrupt", Sink: "files"}},
			"--- DROPPED 7 events: spool_corrupt files"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, string(appendText(nil, c.e))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestTextIdentity: the readable line shows the exec id (also of a process
// gone before it was read), the count of redacted arguments, the login
// uid and the namespaces that are not the host's.
func TestTextIdentity(t *testing.T) {
	auid := uint32(1000)
	ev := func(p *schema.Process) *schema.Event {
		return &schema.Event{Kind: schema.KindExec, Time: time.Unix(1, 0), Stream: &schema.Stream{Idx: 1, Val: 1}, Exec: &schema.ExecEvent{PID: 7, TGID: 7}, Process: p}
	}
	for _, c := range []struct {
		name string
		p    *schema.Process
		want []string
	}{
		{"proc", &schema.Process{Source: "proc", ExecID: "q3Jb0hV7Zc1mTn2kP9xY4w", Comm: "mysql", Cmdline: []string{"mysql", "-p[redacted]"}, Redacted: 1,
			Login: &schema.Login{AUID: &auid}, NS: &schema.Namespaces{Differs: []string{"mnt", "net"}}},
			[]string{` exec_id=q3Jb0hV7Zc1mTn2kP9xY4w comm="mysql"`, ` cmdline="mysql -p[redacted]" redacted=1`, ` auid=1000`, ` ns=mnt,net`}},
		{"gone", &schema.Process{Source: "gone", ExecID: "q3Jb0hV7Zc1mTn2kP9xY4w"},
			[]string{` exec_id=q3Jb0hV7Zc1mTn2kP9xY4w [process gone before it could be read]`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := string(appendText(nil, ev(c.p)))
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("line %q: want it to contain %q", got, w)
				}
			}
		})
	}
}
