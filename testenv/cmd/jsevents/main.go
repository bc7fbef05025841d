// Command jsevents prints how many cnstream events a JetStream stream holds:
// the sum over its messages of the Cnstream-Events header (sink/nats with
// events_per_message above 1: the events a message holds), a message without
// that header counting as one event. testenv/bench-pipeline uses it to check
// what a NATS run delivered when its messages hold several events, where the
// stream's message count says nothing about the events.
//
//	jsevents -url nats://127.0.0.1:4222 -stream BENCH_NATS_S1
//
// It reads the messages' headers only (an ordered consumer with
// headers_only), up to the stream's last sequence at the start, prints the
// count of events on stdout and "jsevents: stream S: E events in M
// messages" on stderr. A Cnstream-Events header that is not a positive
// integer is an error (exit status 1), as are a missing stream and a read
// that does not finish within -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	natssink "github.com/cnstream/cnstream/sink/nats"
)

func main() {
	url := flag.String("url", "", "NATS server URL (required)")
	stream := flag.String("stream", "", "JetStream stream name (required)")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	flag.Parse()
	if *url == "" || *stream == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: jsevents -url nats://host:port -stream NAME [-timeout D]")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	nc, err := nats.Connect(*url, nats.Timeout(*timeout))
	if err != nil {
		fmt.Fprintf(os.Stderr, "jsevents: %v\n", err)
		os.Exit(1)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "jsevents: %v\n", err)
		os.Exit(1)
	}
	events, msgs, err := count(ctx, js, *stream)
	if err != nil {
		fmt.Fprintf(os.Stderr, "jsevents: stream %s: %v\n", *stream, err)
		os.Exit(1)
	}
	fmt.Println(events)
	fmt.Fprintf(os.Stderr, "jsevents: stream %s: %d events in %d messages\n", *stream, events, msgs)
}

// count returns the events (the sum of Cnstream-Events, 1 for a message
// without it) and the messages of stream, up to its last sequence when
// count starts.
func count(ctx context.Context, js jetstream.JetStream, stream string) (events, msgs uint64, err error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, 0, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		return 0, 0, err
	}
	for {
		batch, err := cons.Fetch(4096, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return 0, 0, err
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return 0, 0, err
			}
			n := uint64(1)
			if h := m.Headers().Get(natssink.HeaderEvents); h != "" {
				n, err = strconv.ParseUint(h, 10, 32)
				if err != nil || n == 0 {
					return 0, 0, fmt.Errorf("message %d: %s %q is not a positive integer", md.Sequence.Stream, natssink.HeaderEvents, h)
				}
			}
			events += n
			msgs++
			if md.Sequence.Stream >= last {
				return events, msgs, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return 0, 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, 0, fmt.Errorf("read %d messages of %d: %w", msgs, info.State.Msgs, err)
		}
	}
}
