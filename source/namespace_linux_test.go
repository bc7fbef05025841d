//go:build linux

package source

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPermissionErrorsKeepErrno: the join, send and ACK errors carry the
// privilege hint of this process and still unwrap to their errno.
func TestPermissionErrorsKeepErrno(t *testing.T) {
	want := ReadPrivileges().NetAdminHint()
	for _, err := range []error{
		opError("join group 1", unix.EPERM),
		opError("send to group 24", unix.EACCES),
		ackError(uint32(unix.EPERM)),
	} {
		var oe *OpError
		if !errors.As(err, &oe) || !strings.Contains(oe.Hint, want) {
			t.Errorf("%v: want the hint %q", err, want)
		}
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
			t.Errorf("%v: errno not reachable", err)
		}
		if strings.Contains(err.Error(), "sudo setcap") {
			t.Errorf("%v: suggests setcap on the binary", err)
		}
	}
}
