//go:build linux

package enrich

import (
	"os/exec"
	"testing"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/transform/redact"
)

// BenchmarkEnrichExec is the cost of one exec event: reading /proc/PID of a
// live process (status, stat, exe, cwd, cgroup, loginuid, sessionid, the
// seven ns links, cmdline) and describing it, with
// ancestors from a table seeded from the real /proc.
func BenchmarkEnrichExec(b *testing.B) {
	cmd := exec.Command("/bin/sleep", "600", "1s")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	pid := uint32(cmd.Process.Pid)
	for _, depth := range []int{-1, 4} {
		name := "ancestors=0"
		if depth > 0 {
			name = "ancestors=4"
		}
		b.Run(name, func(b *testing.B) {
			tab, err := New(Config{AncestorDepth: depth})
			if err != nil {
				b.Fatal(err)
			}
			if err := tab.Seed(""); err != nil {
				b.Fatal(err)
			}
			ev := schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: pid, TGID: pid}}
			b.ReportAllocs()
			for b.Loop() {
				if p := tab.Enrich(ev); p.Source != SourceProc {
					b.Fatalf("%+v", p)
				}
			}
		})
	}
	// With the built-in redaction rules: the argv of sleep holds no
	// candidate; the shell's holds two secrets.
	sh := exec.Command("/bin/sh", "-c", "read x", "sh", "--password=hunter2", "TOKEN=abc")
	if _, err := sh.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = sh.Process.Kill()
		_ = sh.Wait()
	})
	for _, c := range []struct {
		name string
		pid  uint32
		n    uint32
	}{{"ancestors=4,redact", pid, 0}, {"ancestors=4,redact-secrets", uint32(sh.Process.Pid), 2}} {
		b.Run(c.name, func(b *testing.B) {
			tab, err := New(Config{AncestorDepth: 4, Redact: redact.Default()})
			if err != nil {
				b.Fatal(err)
			}
			if err := tab.Seed(""); err != nil {
				b.Fatal(err)
			}
			ev := schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: c.pid, TGID: c.pid}}
			b.ReportAllocs()
			for b.Loop() {
				if p := tab.Enrich(ev); p.Source != SourceProc || p.Redacted != c.n {
					b.Fatalf("%+v", p)
				}
			}
		})
	}
	b.Run("gone", func(b *testing.B) {
		// A pid above pid_max (4194304 at most) never exists.
		tab, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		ev := schema.ProcEvent{What: schema.ProcEventExec, Exec: schema.ExecEvent{PID: 1 << 23, TGID: 1 << 23}}
		b.ReportAllocs()
		for b.Loop() {
			if p := tab.Enrich(ev); p.Source != SourceGone {
				b.Fatalf("%+v", p)
			}
		}
	})
}

// BenchmarkClockWall is the hot path of the clock: no refresh due.
func BenchmarkClockWall(b *testing.B) {
	c, err := NewClock(ClockConfig{})
	if err != nil {
		b.Fatal(err)
	}
	m := uint64(1e9)
	b.ReportAllocs()
	for b.Loop() {
		_ = c.Wall(m)
	}
	b.ReportMetric(float64(c.Stats().Bracket.Nanoseconds()), "bracket-ns")
}

// BenchmarkClockMeasure is the cost of one measurement (8 brackets), paid
// once per ClockConfig.Refresh.
func BenchmarkClockMeasure(b *testing.B) {
	c, err := NewClock(ClockConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Refresh(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Stats().Bracket.Nanoseconds()), "bracket-ns")
}
