package source

import (
	"encoding/binary"
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

// procRequest decodes m as a LISTEN or IGNORE request the process-events
// connector acts on: sent to the kernel (group 0) with id 1:1 and a payload
// of exactly the 4-byte op (legacy) or the 8-byte proc_input; the kernel
// drops other lengths.
func procRequest(m schema.CnMsg, group uint32) (op schema.ProcMcastOp, mask schema.What, legacy, ok bool) {
	if group != 0 || m.ID != schema.ProcID {
		return 0, 0, false, false
	}
	switch len(m.Data) {
	case 4:
		return schema.ProcMcastOp(binary.NativeEndian.Uint32(m.Data)), schema.ProcEventAll, true, true
	case schema.ProcInputLen:
		return schema.ProcMcastOp(binary.NativeEndian.Uint32(m.Data)), schema.What(binary.NativeEndian.Uint32(m.Data[4:])), false, true
	}
	return 0, 0, false, false
}

// sentListens is what the LISTEN requests sent through Send left to balance.
// Linux 6.6+ keeps one listen state per socket (any IGNORE undoes it, a
// second LISTEN or IGNORE changes nothing); older kernels take only the
// 4-byte op and count every LISTEN and every IGNORE. So the 8-byte LISTENs
// need one 8-byte IGNORE, and each 4-byte LISTEN one 4-byte IGNORE (which
// also ends the 6.6+ state).
type sentListens struct {
	legacy int         // 4-byte LISTENs not yet balanced
	full   bool        // an 8-byte LISTEN not yet balanced
	mask   schema.What // its event mask
}

func (l *sentListens) note(op schema.ProcMcastOp, mask schema.What, legacy bool) {
	switch {
	case op == schema.ProcMcastListen && legacy:
		l.legacy++
	case op == schema.ProcMcastListen:
		l.full, l.mask = true, mask
	case op == schema.ProcMcastIgnore && legacy:
		// Before 6.6 it undoes one LISTEN; from 6.6 it ends the socket's
		// state, the 8-byte LISTEN's included.
		l.legacy = max(l.legacy-1, 0)
		l.full = false
	case op == schema.ProcMcastIgnore:
		// Before 6.6 the 8-byte form is dropped: the 4-byte LISTENs stand.
		l.full = false
	}
}

// owed is the number of IGNORE requests ignores appends.
func (l sentListens) owed() int {
	if l.legacy == 0 && l.full {
		return 1
	}
	return l.legacy
}

// ignores appends the IGNORE requests that balance l, made by msg.
func (l sentListens) ignores(reqs []schema.CnMsg, msg func(schema.ProcMcastOp, schema.What, bool) schema.CnMsg) []schema.CnMsg {
	for range l.legacy {
		reqs = append(reqs, msg(schema.ProcMcastIgnore, schema.ProcEventAll, true))
	}
	if l.legacy == 0 && l.full {
		reqs = append(reqs, msg(schema.ProcMcastIgnore, l.mask, false))
	}
	return reqs
}
