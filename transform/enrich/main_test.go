package enrich

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaks goroutines or file descriptors:
// the package opens a file per /proc read.
func TestMain(m *testing.M) {
	// Open and close a pipe first, so that the runtime's poller (an epoll
	// fd and an eventfd, opened on first use) is not counted as a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
		if after := openFDs(); before >= 0 && after > before {
			fmt.Fprintf(os.Stderr, "file descriptors leaked: %d open before the tests, %d after\n", before, after)
			code = 1
		}
	}
	os.Exit(code)
}

// openFDs counts this process's open file descriptors, -1 where /dev/fd
// cannot be listed.
func openFDs() int {
	d, err := os.ReadDir("/dev/fd")
	if err != nil {
		return -1
	}
	return len(d) - 1 // the directory being read
}
