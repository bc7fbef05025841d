package source

import (
	"errors"
	"fmt"
	"runtime"
)

var (
	// ErrNotSupported is returned on systems without NETLINK_CONNECTOR.
	ErrNotSupported = fmt.Errorf("source: the kernel connector is not supported on %s/%s", runtime.GOOS, runtime.GOARCH)

	// ErrClosed is returned by calls on a closed Conn, including a
	// ReadBatch interrupted by Close.
	ErrClosed = errors.New("source: connection closed")

	// ErrNoAck is wrapped by Subscribe's error when the process-events
	// connector never acknowledged LISTEN.
	ErrNoAck = errors.New("source: no ACK from the process-events connector")

	// ErrNotHeard is wrapped by the error of Send and Subscribe when a
	// message to the process-events connector would be ignored: the kernel
	// drops, without an answer, what comes from outside the initial user
	// and pid namespaces. The OpError's Hint says which namespace.
	ErrNotHeard = errors.New("the process-events connector ignores this process")
)

// An OpError is a failed socket operation. Unwrap reaches the errno, so
// errors.Is(err, unix.ENOBUFS) works.
type OpError struct {
	Op   string // "dial", "join group 3", "recvmmsg", "send", ...
	Err  error
	Hint string // what the errno most likely means here
}

func (e *OpError) Error() string {
	if e.Hint == "" {
		return fmt.Sprintf("source: %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("source: %s: %v (%s)", e.Op, e.Err, e.Hint)
}

func (e *OpError) Unwrap() error { return e.Err }
