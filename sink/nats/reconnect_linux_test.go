//go:build linux

package natssink

import "syscall"

// The reconnect tests' nats-server dies with the test process, even one
// that -timeout or a signal ends before its cleanups run.
func init() { serverProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
