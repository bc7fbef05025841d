package pipeline

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaks a goroutine. The tests that read the
// kernel connector ask for root themselves (need.Root); the queue and
// delivery tests run anywhere.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
