package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC: run collects at GOGC=50 unless GOGC or GOMEMLIMIT
// says otherwise.
func TestTuneGC(t *testing.T) {
	before := debug.SetGCPercent(-1)
	debug.SetGCPercent(before)
	t.Cleanup(func() { debug.SetGCPercent(before) })
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	if p, set := tuneGC(env(nil)); p != runGCPercent || !set {
		t.Errorf("no environment: percent %d set %v, want %d true", p, set, runGCPercent)
	}
	if got := debug.SetGCPercent(-1); got != runGCPercent {
		t.Errorf("the collector's percent is %d, want %d", got, runGCPercent)
	}
	debug.SetGCPercent(120)
	for _, e := range []map[string]string{{"GOGC": "120"}, {"GOMEMLIMIT": "200MiB"}, {"GOGC": "off"}} {
		if p, set := tuneGC(env(e)); set || p != 120 {
			t.Errorf("%v: percent %d set %v, want the one in effect (120) left alone", e, p, set)
		}
	}
}
