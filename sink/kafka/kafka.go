package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// Header names and values set on every message.
const (
	HeaderContentType   = "content-type"            // "application/msgpack" or "application/json"
	HeaderSchemaVersion = "cnstream-schema-version" // the event's version, "1"
	HeaderEventID       = "cnstream-event-id"       // schema.Event.ID: dedupe on it
)

// Content types of the message values.
const (
	ContentTypeMsgpack = "application/msgpack"
	ContentTypeJSON    = "application/json"
)

// kafka-go's per-partition batch size: the messages of one partition in one
// WriteBatch go in requests of up to this many. kafka-go allocates room for
// this many messages per partition batch.
const batchSize = 1000

// Sink writes events to Kafka topics with kafka-go. It implements sink.Sink;
// see the package documentation.
type Sink struct {
	r  *resolved
	w  *kafkago.Writer
	tr *kafkago.Transport

	// lock is a mutex that a ctx can give up waiting for: WriteBatch and
	// Close hold it.
	lock chan struct{}

	// Guarded by lock.
	closed bool
	buf    []byte // keys, values and event ids of a batch
	msgs   []kafkago.Message
	hdrs   []kafkago.Header
	offs   []msgOffsets
	topics map[string]string // expanded topic templates, to reuse the strings
	known  map[string]bool   // topics written to
	fresh  []string          // topics of the batch not in known

	contentType []byte

	st struct {
		messages, bytes, batches, errors atomic.Uint64
	}
	kmu sync.Mutex // guards kst
	kst kafkaStats
}

type msgOffsets struct {
	key, val, id, ver int // ends in buf; each starts where the one before ends
	topic             string
}

// kafkaStats accumulates kafka-go's WriterStats, which reset on every read.
type kafkaStats struct {
	requests, retries, requestErrors uint64
}

// Stats is a snapshot of a Sink's counters since New.
type Stats struct {
	Messages uint64 // events acknowledged (one message each)
	Bytes    uint64 // bytes of their keys and values, uncompressed
	Batches  uint64 // non-empty WriteBatch calls acknowledged
	Errors   uint64 // failed WriteBatch calls (cancelled ones included)

	// From kafka-go's WriterStats.
	Requests      uint64 // produce requests sent, retries included
	Retries       uint64 // produce requests retried by kafka-go within a WriteBatch
	RequestErrors uint64 // produce requests that failed
}

// New checks cfg and returns a Sink. It connects to no broker: the first
// WriteBatch does. Its errors name the Config field and are permanent
// (sink.IsPermanent).
func New(cfg Config) (*Sink, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	c := r.cfg
	dialTimeout := c.WriteTimeout
	if dialTimeout > defaultDialTimeout {
		dialTimeout = defaultDialTimeout
	}
	tr := &kafkago.Transport{
		DialTimeout: dialTimeout,
		MetadataTTL: c.MetadataTTL,
		ClientID:    "cnstream",
		TLS:         r.tls,
		SASL:        r.sasl,
	}
	w := &kafkago.Writer{
		Addr:                   kafkago.TCP(c.Brokers...),
		Balancer:               &kafkago.Hash{},
		BatchSize:              batchSize,
		BatchTimeout:           c.BatchTimeout,
		ReadTimeout:            c.WriteTimeout,
		WriteTimeout:           c.WriteTimeout,
		RequiredAcks:           r.acks,
		Compression:            r.compression,
		Transport:              tr,
		AllowAutoTopicCreation: true,
	}
	s := &Sink{
		r: r, w: w, tr: tr,
		lock:        make(chan struct{}, 1),
		topics:      make(map[string]string),
		known:       make(map[string]bool),
		contentType: []byte(ContentTypeMsgpack),
	}
	if r.json {
		s.contentType = []byte(ContentTypeJSON)
	}
	return s, nil
}

// defaultDialTimeout bounds a connection attempt (TCP, TLS, SASL) when
// WriteTimeout is longer.
const defaultDialTimeout = 5 * time.Second

// Config returns the configuration in use, with defaults applied.
func (s *Sink) Config() Config { return s.r.cfg }

// Stats returns the counters. It is safe to call at any time, from any
// goroutine.
func (s *Sink) Stats() Stats {
	ks := s.w.Stats() // resets kafka-go's counters: accumulate them
	s.kmu.Lock()
	s.kst.requests += uint64(ks.Writes)
	s.kst.retries += uint64(ks.Retries)
	s.kst.requestErrors += uint64(ks.Errors)
	k := s.kst
	s.kmu.Unlock()
	return Stats{
		Messages:      s.st.messages.Load(),
		Bytes:         s.st.bytes.Load(),
		Batches:       s.st.batches.Load(),
		Errors:        s.st.errors.Load(),
		Requests:      k.requests,
		Retries:       k.retries,
		RequestErrors: k.requestErrors,
	}
}

func (s *Sink) acquire(ctx context.Context) error {
	select {
	case s.lock <- struct{}{}:
		return nil
	default:
	}
	select {
	case s.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sink) release() { <-s.lock }

// WriteBatch writes events as one kafka-go WriteMessages call and returns
// once the brokers acknowledged every message (per Config.RequiredAcks), or
// with an error; see the package documentation for which errors are
// permanent. The events are only read.
func (s *Sink) WriteBatch(ctx context.Context, events []schema.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	if s.closed {
		return sink.ErrClosed
	}
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		s.st.errors.Add(1)
		return err
	}
	msgs, size, err := s.encode(events)
	if err != nil {
		s.st.errors.Add(1)
		return err
	}

	wctx, cancel := context.WithTimeoutCause(ctx, s.r.cfg.WriteTimeout, errWriteTimeout)
	if len(s.fresh) > 1 {
		// kafka-go asks for the metadata of one topic at a time and stops
		// at the first that does not exist yet: ask for all of them at
		// once, so that the broker creates them in one round.
		_, _ = s.tr.RoundTrip(wctx, s.w.Addr, &metadataAPI.Request{TopicNames: s.fresh, AllowAutoTopicCreation: true})
	}
	err = s.w.WriteMessages(wctx, msgs...)
	ended := wctx.Err() != nil
	cancel()
	if ended {
		// WriteMessages may have returned before kafka-go is done with the
		// messages: they still point into buf and hdrs, which must not be
		// reused.
		s.buf, s.hdrs = nil, nil
	}
	if err != nil {
		s.st.errors.Add(1)
		return s.classify(ctx, wctx, err)
	}
	for _, t := range s.fresh {
		if len(s.known) >= 4096 {
			clear(s.known)
		}
		s.known[t] = true
	}
	s.st.messages.Add(uint64(len(events)))
	s.st.bytes.Add(uint64(size))
	s.st.batches.Add(1)
	return nil
}

// encode makes the messages of events in s.msgs, their bytes in s.buf.
func (s *Sink) encode(events []schema.Event) ([]kafkago.Message, int, error) {
	buf := s.buf[:0]
	offs := s.offs[:0]
	s.fresh = s.fresh[:0]
	var tb []byte
	for i := range events {
		e := &events[i]
		var o msgOffsets
		if s.r.topic.static != "" {
			o.topic = s.r.topic.static
		} else {
			tb = s.r.topic.appendTo(tb[:0], e)
			t, ok := s.topics[string(tb)]
			if !ok {
				if len(tb) == 0 {
					return nil, 0, sink.Permanent(fmt.Errorf("kafka: event %q: Config.Topic %q expands to an empty topic name", e.EventID(), s.r.cfg.Topic))
				}
				if len(s.topics) >= 4096 {
					clear(s.topics)
				}
				t = string(tb)
				s.topics[t] = t
			}
			o.topic = t
		}
		if !s.known[o.topic] && !slices.Contains(s.fresh, o.topic) {
			s.fresh = append(s.fresh, o.topic)
		}
		buf = s.r.key.appendTo(buf, e)
		o.key = len(buf)
		if s.r.json {
			buf = schema.AppendJSON(buf, e)
		} else {
			buf = schema.AppendMsgpack(buf, e)
		}
		o.val = len(buf)
		if e.ID != "" {
			buf = append(buf, e.ID...)
		} else {
			buf = schema.AppendEventID(buf, e)
		}
		o.id = len(buf)
		v := e.Version
		if v == 0 {
			v = schema.EventVersion
		}
		buf = strconv.AppendUint(buf, uint64(v), 10)
		o.ver = len(buf)
		offs = append(offs, o)
	}
	s.buf, s.offs = buf, offs

	if cap(s.msgs) < len(events) {
		s.msgs = make([]kafkago.Message, len(events))
	}
	if cap(s.hdrs) < 3*len(events) {
		s.hdrs = make([]kafkago.Header, 3*len(events))
	}
	msgs, hdrs := s.msgs[:len(events)], s.hdrs[:3*len(events)]
	size, start := 0, 0
	for i, o := range offs {
		h := hdrs[3*i : 3*i+3 : 3*i+3]
		h[0] = kafkago.Header{Key: HeaderContentType, Value: s.contentType}
		h[1] = kafkago.Header{Key: HeaderSchemaVersion, Value: buf[o.id:o.ver:o.ver]}
		h[2] = kafkago.Header{Key: HeaderEventID, Value: buf[o.val:o.id:o.id]}
		msgs[i] = kafkago.Message{
			Topic:   o.topic,
			Key:     buf[start:o.key:o.key],
			Value:   buf[o.key:o.val:o.val],
			Headers: h,
		}
		size += o.val - start
		start = o.ver
	}
	return msgs, size, nil
}

// Close marks the sink closed and closes the kafka-go writer, which waits
// for requests still in flight (those of a WriteBatch that returned early
// on its ctx) and closes the connections. It gives up when ctx ends, leaving
// the writer to finish closing in the background. A second Close returns
// sink.ErrClosed.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.acquire(ctx); err != nil {
		return err
	}
	if s.closed {
		s.release()
		return sink.ErrClosed
	}
	s.closed = true
	s.release()

	done := make(chan error, 1)
	go func() { done <- s.w.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("kafka: close: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafka: close: %w", ctx.Err())
	}
}

// classify turns WriteMessages' error into the sink's: ctx's error when the
// caller's ctx ended, ErrWriteTimeout when WriteTimeout ran out, else the
// kafka-go error, marked permanent when retrying cannot help.
func (s *Sink) classify(ctx, wctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("kafka: write: %w", cerr)
	}
	if errors.Is(context.Cause(wctx), errWriteTimeout) {
		return fmt.Errorf("kafka: write to %v: %w (%v): %v", s.r.cfg.Brokers, ErrWriteTimeout, s.r.cfg.WriteTimeout, err)
	}
	if errors.Is(err, io.ErrClosedPipe) {
		// The writer is closed only by Close, which waits for WriteBatch.
		return sink.ErrClosed
	}
	werr := fmt.Errorf("kafka: write to %v: %w", s.r.cfg.Brokers, describe(err))
	if permanent(err) {
		return sink.Permanent(werr)
	}
	return werr
}
