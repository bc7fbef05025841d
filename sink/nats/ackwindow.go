package natssink

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// ackWindow maps the PubAcks of the batch being published to its
// messages. Message i of the batch has the reply subject prefix+token,
// token = base+i in decimal; tokens are never reused during a Sink's life,
// so a late reply to a message of an earlier batch (one that failed or
// timed out) falls outside [base, base+n) and is ignored, and so is a
// second reply to the same message. onReply runs on the reply
// subscription's goroutine (nats.go's), the other methods under the
// Sink's turn.
type ackWindow struct {
	prefix string        // "_INBOX.<nuid>."
	wake   chan struct{} // capacity 1: the waiter's want is met, or a failure

	acked, dups *atomic.Uint64 // the Sink's Stats counters

	mu       sync.Mutex
	active   bool
	base     uint64
	done     []bool // per message: its reply came
	resolved int    // replies come (acks and refusals)
	want     int    // the waiter wakes when resolved reaches it
	failed   int    // index of the first message refused, -1: none
	ferr     error  // its error

	// The reply goroutine's own.
	ack        pubAck
	lastStream string
}

func newAckWindow(prefix string, acked, dups *atomic.Uint64) *ackWindow {
	return &ackWindow{prefix: prefix, wake: make(chan struct{}, 1), acked: acked, dups: dups, failed: -1}
}

// start makes the window the batch's: n messages, tokens from base.
func (w *ackWindow) start(base uint64, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.active, w.base = true, base
	if cap(w.done) < n {
		w.done = make([]bool, n)
	} else {
		w.done = w.done[:n]
		clear(w.done)
	}
	w.resolved, w.want, w.failed, w.ferr = 0, n+1, -1, nil
	select {
	case <-w.wake:
	default:
	}
}

// stop ends the batch: later replies are ignored.
func (w *ackWindow) stop() {
	w.mu.Lock()
	w.active = false
	w.mu.Unlock()
}

// wait returns done when want replies have come, or the first refused
// message and its error (failed >= 0). Otherwise w.wake will be signalled
// once want replies have come or a message is refused.
func (w *ackWindow) wait(want int) (done bool, failed int, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed >= 0 {
		return false, w.failed, w.ferr
	}
	if w.resolved >= want {
		return true, -1, nil
	}
	w.want = want
	return false, -1, nil
}

// unresolved returns how many of the batch's messages have no reply.
func (w *ackWindow) unresolved() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.done) - w.resolved
}

// statusHdr and noResponders: a reply without payload whose Status
// header is 503 says that no stream stores the subject (or none has a
// leader): nobody subscribes to it on the server's side.
const (
	statusHdr    = "Status"
	noResponders = "503"
)

// onReply is the reply subscription's handler.
func (w *ackWindow) onReply(m *nats.Msg) {
	token, ok := parseToken(m.Subject, w.prefix)
	if !ok {
		return
	}
	var dup bool
	var err error
	if len(m.Data) == 0 && m.Header != nil {
		if st := m.Header.Get(statusHdr); st == noResponders {
			err = nats.ErrNoResponders
		} else {
			err = fmt.Errorf("%w: status %q %s", errInvalidAck, st, m.Header.Get("Description"))
		}
	} else if err = parsePubAck(m.Data, &w.ack, w.lastStream); err == nil {
		w.lastStream = w.ack.Stream
		dup, err = w.ack.result()
	}
	w.resolve(token, dup, err)
}

// resolve records the reply to the message of token.
func (w *ackWindow) resolve(token uint64, dup bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.active || token < w.base || token-w.base >= uint64(len(w.done)) {
		return // a reply to a message of an earlier batch
	}
	i := int(token - w.base)
	if w.done[i] {
		return // a second reply to the message
	}
	w.done[i] = true
	w.resolved++
	wake := w.resolved == w.want
	if err != nil {
		if w.failed < 0 {
			w.failed, w.ferr, wake = i, err, true
		}
	} else {
		w.acked.Add(1)
		if dup {
			w.dups.Add(1)
		}
	}
	if wake {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// parseToken reads the decimal token after prefix in subject.
func parseToken(subject, prefix string) (uint64, bool) {
	if len(subject) <= len(prefix) || subject[:len(prefix)] != prefix {
		return 0, false
	}
	var n uint64
	for i := len(prefix); i < len(subject); i++ {
		c := subject[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
