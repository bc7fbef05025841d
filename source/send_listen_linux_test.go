//go:build linux

package source_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/transform"
)

// TestSendListenBalanced: a LISTEN sent through Send (as `cnstream send`
// does) makes the socket a listener, and Close sends the IGNORE that
// balances it. The Conn's record is the assertion; the kernel's ACKs, heard
// by a second subscribed socket (so the kernel has a listener left to answer
// the IGNORE), show that the LISTEN and the IGNORE reached it.
func TestSendListenBalanced(t *testing.T) {
	listen8 := schema.AppendProcInput(nil, schema.ProcMcastListen, schema.ProcEventAll, false)
	ignore8 := schema.AppendProcInput(nil, schema.ProcMcastIgnore, schema.ProcEventAll, false)
	listen4 := schema.AppendProcInput(nil, schema.ProcMcastListen, 0, true)
	ignore4 := schema.AppendProcInput(nil, schema.ProcMcastIgnore, 0, true)
	tests := []struct {
		name string
		sent [][]byte // payloads sent to 1:1, in order
		owed []int    // Stats().Subscription.SendListens after each
	}{
		// Linux 6.6+ keeps one listen state per socket: one IGNORE balances
		// any number of 8-byte LISTENs.
		{"8-byte", [][]byte{listen8, listen8}, []int{1, 1}},
		// Kernels before 6.6 count each 4-byte LISTEN.
		{"4-byte", [][]byte{listen4, listen4}, []int{1, 2}},
		{"8-byte then 4-byte", [][]byte{listen8, listen4}, []int{1, 1}},
		// An IGNORE sent through Send settles what it balances.
		{"ignored by hand", [][]byte{listen8, ignore8}, []int{1, 0}},
		{"4-byte, one ignored by hand", [][]byte{listen4, listen4, ignore4}, []int{1, 2, 1}},
		// Not a request the kernel acts on (it takes 4 or 8 bytes only),
		// and not to the proc connector: nothing to balance.
		{"12 bytes", [][]byte{append(listen8[:8:8], 0, 0, 0, 0)}, []int{0}},
	}

	obs := dial(t, source.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := obs.Subscribe(ctx, source.SubscribeConfig{}); err != nil {
		t.Fatal(err)
	}
	// acked waits until obs hears the kernel's ACK to a request with ack.
	acked := func(t *testing.T, ack uint32, what string) {
		t.Helper()
		heard := false
		readUntil(t, obs, 5*time.Second, func(r *transform.Record) {
			if r.Kind == transform.KindProc && r.Proc.What == schema.ProcEventNone && r.Cn.Ack == ack+1 {
				heard = true
				if r.Proc.Ack.Err != 0 {
					t.Errorf("ACK to %s: err %d", what, r.Proc.Ack.Err)
				}
			}
		}, func() bool { return heard })
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, source.Config{})
			for i, data := range tc.sent {
				m := schema.CnMsg{ID: schema.ProcID, Seq: uint32(i), Ack: rand.Uint32(), Data: data}
				if err := c.Send(m, 0); err != nil {
					t.Fatalf("Send %x: %v", data, err)
				}
				if len(data) == 4 || len(data) == schema.ProcInputLen {
					acked(t, m.Ack, "the request sent through Send")
				}
				if got := c.Stats().Subscription.SendListens; got != tc.owed[i] {
					t.Errorf("after sending %x: SendListens = %d, want %d", data, got, tc.owed[i])
				}
			}
			// A LISTEN payload to another connector id is no request.
			if err := c.Send(schema.CnMsg{ID: testID(), Data: listen8}, 0); err != nil {
				t.Fatal(err)
			}
			if got := c.Stats().Subscription.SendListens; got != tc.owed[len(tc.owed)-1] {
				t.Errorf("a LISTEN payload to another id changed SendListens to %d", got)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			st := c.Stats().Subscription
			if st.SendListens != 0 || st.Active {
				t.Errorf("after Close: %+v, want nothing owed", st)
			}
			if want := tc.owed[len(tc.owed)-1] > 0; st.IgnoreSent != want {
				t.Fatalf("after Close: IgnoreSent = %v, want %v (%+v)", st.IgnoreSent, want, st)
			}
			if st.IgnoreSent {
				acked(t, st.IgnoreAck, "Close's IGNORE")
			}
		})
	}
}
