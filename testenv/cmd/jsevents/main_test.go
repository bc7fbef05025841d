package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natssink "github.com/cnstream/cnstream/sink/nats"
	"github.com/cnstream/cnstream/testenv/brokers"
)

// TestCount: against a real nats-server, count sums Cnstream-Events over a
// stream's messages, a message without it counting as one event; an empty
// stream holds 0; a header that is not a positive integer is an error
// naming the message; a missing stream is an error.
func TestCount(t *testing.T) {
	nc, err := nats.Connect(brokers.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tag := fmt.Sprint(rand.Uint32())
	stream, subject := "JSEVENTS_TEST_"+tag, "jsevents-test-"+tag
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject + ".>"}}); err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), stream)

	if e, m, err := count(ctx, js, stream); err != nil || e != 0 || m != 0 {
		t.Fatalf("empty stream: %d events in %d messages, %v: want 0, 0, nil", e, m, err)
	}
	publish := func(events string) {
		t.Helper()
		msg := nats.NewMsg(subject + ".raw")
		msg.Data = []byte("payload")
		if events != "" {
			msg.Header.Set(natssink.HeaderEvents, events)
		}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	// 5000 messages: more than one fetch of 4096.
	var want uint64
	for i := range 5000 {
		switch i % 3 {
		case 0:
			publish("") // one event
			want++
		case 1:
			publish("16")
			want += 16
		default:
			publish(fmt.Sprint(i%16 + 1))
			want += uint64(i%16 + 1)
		}
	}
	if e, m, err := count(ctx, js, stream); err != nil || e != want || m != 5000 {
		t.Fatalf("%d events in %d messages, %v: want %d in 5000", e, m, err, want)
	}

	publish("0")
	if _, _, err := count(ctx, js, stream); err == nil || !strings.Contains(err.Error(), `message 5001: Cnstream-Events "0" is not a positive integer`) {
		t.Errorf("header 0: error %v, want it to name message 5001", err)
	}
	if _, _, err := count(ctx, js, "JSEVENTS_TEST_MISSING_"+tag); err == nil {
		t.Error("missing stream: no error")
	}
}
