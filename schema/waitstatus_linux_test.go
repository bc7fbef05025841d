//go:build linux

package schema

import (
	"syscall"
	"testing"
)

// TestExitHelpersMatchWaitStatus compares the exit helpers with
// syscall.WaitStatus, the Linux wait status decoder of the standard library,
// on the table of known encodings and on the exit codes of the captured
// exit datagrams (which wait4 returned to the capture program).
func TestExitHelpersMatchWaitStatus(t *testing.T) {
	codes := map[string]uint32{}
	for _, ws := range waitStatuses {
		codes[ws.name] = ws.status
	}
	var captured int
	for _, c := range loadCaptured(t) {
		if c.sc.Kind == "exit" {
			codes[c.name] = c.field(t, "exit_code")
			captured++
		}
	}
	if captured == 0 {
		t.Fatal("no captured exit datagram")
	}
	for name, code := range codes {
		e, ws := ExitEvent{ExitCode: code}, syscall.WaitStatus(code)
		if e.Exited() != ws.Exited() {
			t.Errorf("%s (%#x): Exited() = %v, WaitStatus.Exited() = %v", name, code, e.Exited(), ws.Exited())
		}
		if e.Signaled() != ws.Signaled() {
			t.Errorf("%s (%#x): Signaled() = %v, WaitStatus.Signaled() = %v", name, code, e.Signaled(), ws.Signaled())
		}
		if e.CoreDumped() != ws.CoreDump() {
			t.Errorf("%s (%#x): CoreDumped() = %v, WaitStatus.CoreDump() = %v", name, code, e.CoreDumped(), ws.CoreDump())
		}
		if ws.Exited() && e.Status() != ws.ExitStatus() {
			t.Errorf("%s (%#x): Status() = %d, WaitStatus.ExitStatus() = %d", name, code, e.Status(), ws.ExitStatus())
		}
		if ws.Signaled() && e.Signal() != int(ws.Signal()) {
			t.Errorf("%s (%#x): Signal() = %d, WaitStatus.Signal() = %d", name, code, e.Signal(), int(ws.Signal()))
		}
	}
}
