package source

import (
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/cnstream/cnstream/schema"
)

// SubscribeConfig configures Subscribe; the zero value subscribes to every
// event and waits 3 x 500 ms per request form.
type SubscribeConfig struct {
	// Events is a kernel-side event mask (schema.ProcEventFork | ...).
	// 0 (default) subscribes to everything, which keeps ACKs and exact gap
	// accounting; filter in userspace instead.
	Events schema.What
	// Timeout is how long to wait for the ACK of one LISTEN. Default 500 ms.
	Timeout time.Duration
	// Attempts is the number of LISTEN requests per form (8-byte, then
	// legacy 4-byte). Default 3.
	Attempts int
	// Backoff is the initial pause between attempts, doubled with jitter.
	// Default 100 ms.
	Backoff time.Duration
	// Legacy sends only the 4-byte op that kernels before 6.6 take,
	// skipping the 8-byte proc_input. Default false: 8-byte first, legacy
	// as the fallback.
	Legacy bool
}

func (s SubscribeConfig) mask() schema.What {
	if s.Events == 0 {
		return schema.ProcEventAll
	}
	return s.Events & schema.ProcEventAll
}

func (s SubscribeConfig) timeout() time.Duration {
	if s.Timeout <= 0 {
		return 500 * time.Millisecond
	}
	return s.Timeout
}

func (s SubscribeConfig) attempts() int {
	if s.Attempts <= 0 {
		return 3
	}
	return s.Attempts
}

func (s SubscribeConfig) backoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	if s.Backoff > 0 {
		b.InitialInterval = s.Backoff
	}
	b.MaxElapsedTime = 0 // bounded by Attempts
	return b
}
