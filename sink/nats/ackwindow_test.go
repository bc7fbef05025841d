package natssink

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// reply is the message the server sends to the reply subject of the
// batch's message of token.
func reply(w *ackWindow, token uint64, data string) *nats.Msg {
	return &nats.Msg{Subject: w.prefix + strconv.FormatUint(token, 10), Data: []byte(data)}
}

func newTestWindow() (*ackWindow, *atomic.Uint64, *atomic.Uint64) {
	var acked, dups atomic.Uint64
	return newAckWindow("_INBOX.test.", &acked, &dups), &acked, &dups
}

// TestAckWindowOrder: acks are mapped to their messages by token whatever
// their order; the waiter is woken when the acks it waits for have come,
// not before; a second reply to a message and a reply to a message of an
// earlier batch count for nothing.
func TestAckWindowOrder(t *testing.T) {
	w, acked, dups := newTestWindow()
	w.start(100, 4)
	if done, failed, _ := w.wait(4); done || failed >= 0 {
		t.Fatalf("wait(4) before any ack: done %v failed %d", done, failed)
	}
	for _, tok := range []uint64{103, 101, 99, 104, 101} { // 99, 104: not this batch's; 101 twice
		w.onReply(reply(w, tok, `{"stream":"S","seq":`+strconv.FormatUint(tok, 10)+`}`))
	}
	w.onReply(reply(w, 100, `{"stream":"S","seq":100,"duplicate":true}`))
	select {
	case <-w.wake:
		t.Fatal("woken with 3 of the 4 acks awaited")
	default:
	}
	if got := w.unresolved(); got != 1 {
		t.Errorf("unresolved = %d, want 1", got)
	}
	w.onReply(reply(w, 102, `{"stream":"S","seq":102}`))
	select {
	case <-w.wake:
	default:
		t.Fatal("not woken once the 4 acks awaited came")
	}
	if done, failed, err := w.wait(4); !done || failed >= 0 || err != nil {
		t.Errorf("wait(4) after every ack: done %v failed %d err %v", done, failed, err)
	}
	if acked.Load() != 4 || dups.Load() != 1 {
		t.Errorf("acked %d, duplicates %d; want 4, 1", acked.Load(), dups.Load())
	}
	w.stop()
	w.onReply(reply(w, 102, `{"stream":"S","seq":102}`))
	if acked.Load() != 4 {
		t.Errorf("a reply after stop was counted")
	}
	// Foreign subjects and tokens are ignored.
	for _, s := range []string{"_INBOX.test.", "_INBOX.test.x", "_INBOX.other.1", "_INBOX.test.99999999999999999999", "_INBOX.test.1.2"} {
		w.start(1, 1)
		w.onReply(&nats.Msg{Subject: s, Data: []byte(`{"stream":"S","seq":1}`)})
		if w.unresolved() != 1 {
			t.Errorf("reply on %s resolved a message", s)
		}
	}
}

// TestAckWindowErrors: the first refusal wakes the waiter and is the
// batch's failure, whatever came before or after it: an error PubAck (a
// *jetstream.APIError), no responders, a reply that is no PubAck.
func TestAckWindowErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		msg   func(w *ackWindow) *nats.Msg
		check func(error) bool
	}{
		{"api-error", func(w *ackWindow) *nats.Msg {
			return reply(w, 11, `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}`)
		}, func(err error) bool {
			var api *jetstream.APIError
			return errors.As(err, &api) && api.ErrorCode == 10077 && api.Code == 503
		}},
		{"no-responders", func(w *ackWindow) *nats.Msg {
			m := reply(w, 11, "")
			m.Header = nats.Header{statusHdr: {noResponders}}
			return m
		}, func(err error) bool { return errors.Is(err, nats.ErrNoResponders) }},
		{"not-an-ack", func(w *ackWindow) *nats.Msg { return reply(w, 11, `{"seq":1}`) },
			func(err error) bool { return errors.Is(err, errInvalidAck) }},
		{"bad-json", func(w *ackWindow) *nats.Msg { return reply(w, 11, `{"stream":`) },
			func(err error) bool { return errors.Is(err, errInvalidAck) }},
		{"other-status", func(w *ackWindow) *nats.Msg {
			m := reply(w, 11, "")
			m.Header = nats.Header{statusHdr: {"408"}}
			return m
		}, func(err error) bool { return errors.Is(err, errInvalidAck) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, acked, _ := newTestWindow()
			w.start(10, 3)
			w.wait(3)
			w.onReply(reply(w, 12, `{"stream":"S","seq":2}`))
			w.onReply(c.msg(w))
			select {
			case <-w.wake:
			default:
				t.Fatal("a refusal did not wake the waiter")
			}
			w.onReply(reply(w, 10, `{"error":{"code":500,"err_code":1,"description":"later"}}`))
			done, failed, err := w.wait(3)
			if done || failed != 1 || !c.check(err) {
				t.Errorf("wait = done %v, failed %d, %v; want message 1's refusal", done, failed, err)
			}
			if acked.Load() != 1 {
				t.Errorf("acked %d, want 1", acked.Load())
			}
		})
	}
}

// FuzzParseToken: parseToken never panics, reads back every token a reply
// subject is made of, and accepts only prefix and a number.
func FuzzParseToken(f *testing.F) {
	f.Add("_INBOX.abc.", "_INBOX.abc.12", uint64(12))
	f.Fuzz(func(t *testing.T, prefix, subject string, n uint64) {
		if n, ok := parseToken(subject, prefix); ok && subject != prefix+strconv.FormatUint(n, 10) && !strings.HasPrefix(subject, prefix+"0") {
			t.Fatalf("parseToken(%q, %q) = %d: not what the subject says", subject, prefix, n)
		}
		if got, ok := parseToken(prefix+strconv.FormatUint(n, 10), prefix); !ok || got != n {
			t.Fatalf("parseToken(%q) = %d, %v; want %d", prefix+strconv.FormatUint(n, 10), got, ok, n)
		}
	})
}
