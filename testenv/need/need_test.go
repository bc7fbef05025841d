package need

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how the test would have stopped.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = sprintf(f, a...); panic(stop{}) }
func (r *recorder) Skipf(f string, a ...any)  { r.skip = sprintf(f, a...); panic(stop{}) }
func sprintf(f string, a ...any) string       { return strings.TrimSpace(fmt.Sprintf(f, a...)) }

type stop struct{}

func call(r *recorder, f func()) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(stop); !ok {
				panic(v)
			}
		}
	}()
	f()
}

func TestToolMissing(t *testing.T) {
	t.Setenv(SkipEnv, "")
	r := &recorder{TB: t}
	call(r, func() { Tool(r, "kcat-does-not-exist", "it reads the topic back") })
	if r.skip != "" || !strings.Contains(r.fatal, "kcat-does-not-exist not found: it reads the topic back; install it with testenv/setup") {
		t.Errorf("fatal %q, skip %q", r.fatal, r.skip)
	}

	r = &recorder{TB: t}
	call(r, func() { Tool(r, "/nonexistent/prometheus", "the local pipeline scrapes with it") })
	if !strings.Contains(r.fatal, "apt-get install prometheus") {
		t.Errorf("fatal %q: want the Debian package named", r.fatal)
	}
}

func TestToolSkipOnlyWhenAsked(t *testing.T) {
	t.Setenv(SkipEnv, "1")
	r := &recorder{TB: t}
	call(r, func() { Tool(r, "kcat-does-not-exist", "why") })
	if r.fatal != "" || !strings.Contains(r.skip, SkipEnv+"=1") {
		t.Errorf("fatal %q, skip %q", r.fatal, r.skip)
	}
}

func TestToolFound(t *testing.T) {
	r := &recorder{TB: t}
	var p string
	call(r, func() { p = Tool(r, "sh", "why") })
	if p == "" || r.fatal != "" || r.skip != "" {
		t.Errorf("sh: path %q, fatal %q, skip %q", p, r.fatal, r.skip)
	}
	if _, err := os.Stat(p); err != nil {
		t.Error(err)
	}
}
