package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
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

// Sink writes events to Kafka topics with kafka-go. It implements sink.Sink;
// see the package documentation.
type Sink struct {
	r      *resolved
	tr     *kafkago.Transport
	client *kafkago.Client
	addr   net.Addr
	bal    kafkago.Hash
	fg     *franz // Config.Client franz-go: the state of that client; nil with kafka-go

	// turn is a mutex that a ctx can give up waiting for: WriteBatch and
	// Close hold it.
	turn sink.Turn

	// Guarded by turn.
	closed bool
	buf    []byte // keys, values and event ids of a batch
	msgs   []kafkago.Message
	hdrs   []kafkago.Header
	offs   []msgOffsets
	topics map[string]string // expanded topic templates, to reuse the strings
	known  map[string]bool   // topics written to
	fresh  []string          // topics of the batch not in known
	nparts map[string]int    // partition counts of the batch's topics
	parts  []*partBatch      // the batch's (topic, partition) groups
	byPart map[topicPartition]*partBatch
	ids    []int // 0, 1, 2...: the partition list the balancer wants

	contentType []byte

	st struct {
		messages, bytes, batches, errors atomic.Uint64
		requests, retries, requestErrors atomic.Uint64
	}
}

type msgOffsets struct {
	key, val, id, ver int // ends in buf; each starts where the one before ends
	topic             string
}

type topicPartition struct {
	topic     string
	partition int
}

// partBatch is the messages of one WriteBatch for one topic partition,
// written in produce requests of up to MaxRequestBytes, one after the other.
type partBatch struct {
	tp    topicPartition
	idx   []int32 // into Sink.msgs, in order
	size  []int32 // estimated request bytes of each message
	err   error   // of the first request that failed; the messages from there on are not written
	errAt int     // index into idx of the first message not written
	rr    records
}

// Stats is a snapshot of a Sink's counters since New.
type Stats struct {
	Messages uint64 // events acknowledged (one message each)
	Bytes    uint64 // bytes of their keys and values, uncompressed
	Batches  uint64 // non-empty WriteBatch calls acknowledged
	Errors   uint64 // failed WriteBatch calls (cancelled ones included)

	Requests      uint64 // produce requests sent, retries included
	Retries       uint64 // produce requests sent again within a WriteBatch after a temporary error
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
	addr := kafkago.TCP(c.Brokers...)
	s := &Sink{
		r: r, tr: tr, addr: addr,
		client:      &kafkago.Client{Addr: addr, Transport: tr, Timeout: c.WriteTimeout},
		turn:        sink.NewTurn(),
		topics:      make(map[string]string),
		known:       make(map[string]bool),
		nparts:      make(map[string]int),
		byPart:      make(map[topicPartition]*partBatch),
		contentType: []byte(ContentTypeMsgpack),
	}
	if r.json {
		s.contentType = []byte(ContentTypeJSON)
	}
	if r.franz {
		s.tr, s.client = nil, nil
		if _, err := newFranz(s); err != nil {
			return nil, err
		}
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
	return Stats{
		Messages:      s.st.messages.Load(),
		Bytes:         s.st.bytes.Load(),
		Batches:       s.st.batches.Load(),
		Errors:        s.st.errors.Load(),
		Requests:      s.st.requests.Load(),
		Retries:       s.st.retries.Load(),
		RequestErrors: s.st.requestErrors.Load(),
	}
}

// Counters reports the sink's own counters (sink.StatsReporter): the
// produce requests sent again inside a WriteBatch after a temporary error
// (Stats.Retries). A request that failed for good fails its WriteBatch,
// so Counters has no Errors. Safe at any time, from any goroutine.
func (s *Sink) Counters() sink.Counters {
	return sink.Counters{Retries: s.st.retries.Load()}
}

var _ sink.StatsReporter = (*Sink)(nil)

// WriteBatch writes events and returns once the brokers acknowledged every
// message (per Config.RequiredAcks), or with an error; see the package
// documentation for which errors are permanent. The messages of each topic
// partition go in produce requests of up to Config.MaxRequestBytes, sent one
// after the other; partitions are written in parallel. The events are only
// read.
func (s *Sink) WriteBatch(ctx context.Context, events []schema.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
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
	if s.fg != nil {
		return s.franzWriteBatch(ctx, events)
	}
	msgs, size, err := s.encode(events)
	if err != nil {
		s.st.errors.Add(1)
		return err
	}

	wctx, cancel := context.WithTimeoutCause(ctx, s.r.cfg.WriteTimeout, errWriteTimeout)
	err = s.write(wctx, msgs)
	ended := wctx.Err() != nil
	cancel()
	if ended {
		// A request cut short by ctx may still be encoded by kafka-go's
		// connection goroutine: its messages point into buf and hdrs, which
		// must not be reused, nor the partition batches that read them.
		s.buf, s.hdrs, s.msgs = nil, nil, nil
		s.parts = nil
		clear(s.byPart)
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

// write sends msgs, grouped by topic partition, and waits for every
// partition's requests to end. It returns nil, or kafkago.WriteErrors with
// the error of each message not written (nil for those written).
func (s *Sink) write(ctx context.Context, msgs []kafkago.Message) error {
	if len(s.fresh) > 1 {
		// Ask for the metadata of the new topics at once, so that a broker
		// that creates topics creates them in one round.
		_, _ = s.tr.RoundTrip(ctx, s.addr, &metadataAPI.Request{TopicNames: s.fresh, AllowAutoTopicCreation: true})
	}
	clear(s.nparts)
	for i := range msgs {
		t := msgs[i].Topic
		if _, ok := s.nparts[t]; ok {
			continue
		}
		n, err := s.partitions(ctx, t)
		if err != nil {
			werr := make(kafkago.WriteErrors, len(msgs))
			for j := range werr {
				werr[j] = err
			}
			return werr
		}
		s.nparts[t] = n
	}

	// Group by partition, in message order.
	if len(s.byPart) >= 4096 {
		clear(s.byPart)
		s.parts = s.parts[:0]
	}
	for _, p := range s.parts {
		p.idx, p.size, p.err, p.errAt = p.idx[:0], p.size[:0], nil, 0
	}
	used := s.parts[:0]
	for i := range msgs {
		m := &msgs[i]
		n := s.nparts[m.Topic]
		for len(s.ids) < n {
			s.ids = append(s.ids, len(s.ids))
		}
		tp := topicPartition{m.Topic, s.bal.Balance(*m, s.ids[:n]...)}
		p := s.byPart[tp]
		if p == nil {
			p = &partBatch{tp: tp}
			s.byPart[tp] = p
		}
		if len(p.idx) == 0 {
			used = append(used, p)
		}
		p.idx = append(p.idx, int32(i))
		p.size = append(p.size, int32(recordSize(m)))
	}
	s.parts = used

	var wg sync.WaitGroup
	for _, p := range used {
		wg.Go(func() { s.produce(ctx, msgs, p) })
	}
	wg.Wait()

	var werr kafkago.WriteErrors
	for _, p := range used {
		if p.err == nil {
			continue
		}
		if werr == nil {
			werr = make(kafkago.WriteErrors, len(msgs))
		}
		for _, i := range p.idx[p.errAt:] {
			werr[i] = p.err
		}
	}
	if werr != nil {
		return werr
	}
	return nil
}

// recordSize estimates the bytes of m in a produce request, uncompressed.
func recordSize(m *kafkago.Message) int {
	n := 24 + len(m.Key) + len(m.Value) // varint lengths, deltas, attributes
	for _, h := range m.Headers {
		n += 4 + len(h.Key) + len(h.Value)
	}
	return n
}

// partitions returns the partition count of topic from the transport's
// metadata cache (refreshed every Config.MetadataTTL), asking the broker to
// create the topic when it allows auto-creation.
func (s *Sink) partitions(ctx context.Context, topic string) (int, error) {
	r, err := s.tr.RoundTrip(ctx, s.addr, &metadataAPI.Request{
		TopicNames: []string{topic}, AllowAutoTopicCreation: true,
	})
	if err != nil {
		return 0, err
	}
	for _, t := range r.(*metadataAPI.Response).Topics {
		if t.Name == topic {
			if t.ErrorCode != 0 {
				return 0, kafkago.Error(t.ErrorCode)
			}
			if len(t.Partitions) == 0 {
				return 0, kafkago.LeaderNotAvailable
			}
			return len(t.Partitions), nil
		}
	}
	return 0, kafkago.UnknownTopicOrPartition
}

// Retries of a produce request within WriteBatch, after a temporary error
// (NOT_LEADER after a leader moved, NOT_ENOUGH_REPLICAS, a broken
// connection): they spare the partitions already written the duplicates of
// a whole-batch retry. The delays (25 ms doubling up to 1 s: 5.6 s in
// all, or until WriteTimeout) outlast the default MetadataTTL, so that a
// moved leader is found, and the leader election of a new topic's
// partitions.
const (
	produceAttempts = 10
	// A broker that refuses or drops connections is likely down for longer
	// than a leader election: fewer attempts (75 ms of delays), and the
	// pipeline's backoff takes over.
	connAttempts  = 3
	retryDelay    = 25 * time.Millisecond // doubled after each attempt
	maxRetryDelay = time.Second
)

// produce writes p's messages in requests of up to MaxRequestBytes, one
// after the other, and records the first failure in p.err.
func (s *Sink) produce(ctx context.Context, msgs []kafkago.Message, p *partBatch) {
	max := s.r.cfg.MaxRequestBytes
	for start := 0; start < len(p.idx); {
		end, bytes := start, 0
		for end < len(p.idx) && (end == start || bytes+int(p.size[end]) <= max) {
			bytes += int(p.size[end])
			end++
		}
		if end == start+1 && bytes > max {
			p.err, p.errAt = sink.Permanent(kafkago.MessageTooLargeError{Message: msgs[p.idx[start]]}), start
			return
		}
		if err := s.request(ctx, msgs, p, start, end); err != nil {
			p.err, p.errAt = err, start
			return
		}
		start = end
	}
}

// request sends p.idx[start:end] in one produce request, retrying
// temporary failures.
func (s *Sink) request(ctx context.Context, msgs []kafkago.Message, p *partBatch, start, end int) error {
	delay := retryDelay
	for attempt := 1; ; attempt++ {
		p.rr = records{msgs: msgs, idx: p.idx[start:end]}
		s.st.requests.Add(1)
		res, err := s.client.Produce(ctx, &kafkago.ProduceRequest{
			Topic:        p.tp.topic,
			Partition:    p.tp.partition,
			RequiredAcks: s.r.acks,
			Compression:  s.r.compression,
			Records:      &p.rr,
		})
		if err == nil && res != nil {
			err = res.Error
		}
		if err == nil {
			return nil
		}
		s.st.requestErrors.Add(1)
		var kerr kafkago.Error
		limit := produceAttempts
		if !errors.As(err, &kerr) {
			limit = connAttempts
		}
		if attempt >= limit || !temporary(err) || ctx.Err() != nil {
			return err
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < delay {
			// No time left for another attempt: the error says more than
			// the timeout would.
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, maxRetryDelay)
		s.st.retries.Add(1)
	}
}

// records reads messages as produce records, reusing one Record.
type records struct {
	msgs     []kafkago.Message
	idx      []int32
	i        int
	rec      kafkago.Record
	key, val bytesReader
}

func (r *records) ReadRecord() (*kafkago.Record, error) {
	if r.i >= len(r.idx) {
		return nil, io.EOF
	}
	m := &r.msgs[r.idx[r.i]]
	r.i++
	r.rec = kafkago.Record{Headers: m.Headers}
	r.key.Reset(m.Key)
	r.rec.Key = &r.key
	r.val.Reset(m.Value)
	r.rec.Value = &r.val
	return &r.rec, nil
}

type bytesReader struct{ bytes.Reader }

var _ kafkago.RecordReader = (*records)(nil)

func (*bytesReader) Close() error { return nil }

// encodeAll appends the key, value, event id and schema version of every
// event to buf, one after the other, and their offsets and topics to
// s.offs (the slices into buf are made by the caller once buf stops
// growing). With trackFresh, topics the sink has not written to yet go to
// s.fresh (kafka-go asks for their metadata at once). An event whose topic
// template expands to nothing fails the batch: permanent.
func (s *Sink) encodeAll(buf []byte, events []schema.Event, trackFresh bool) ([]byte, error) {
	offs := s.offs[:0]
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
					return buf, sink.Permanent(fmt.Errorf("kafka: event %q: Config.Topic %q expands to an empty topic name", e.EventID(), s.r.cfg.Topic))
				}
				if len(s.topics) >= 4096 {
					clear(s.topics)
				}
				t = string(tb)
				s.topics[t] = t
			}
			o.topic = t
		}
		if trackFresh && !s.known[o.topic] && !slices.Contains(s.fresh, o.topic) {
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
	s.offs = offs
	return buf, nil
}

// encode makes the messages of events in s.msgs, their bytes in s.buf.
func (s *Sink) encode(events []schema.Event) ([]kafkago.Message, int, error) {
	s.fresh = s.fresh[:0]
	buf, err := s.encodeAll(s.buf[:0], events, true)
	if err != nil {
		return nil, 0, err
	}
	s.buf = buf
	offs := s.offs

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

// Ping asks the bootstrap brokers, one after the other, for their API
// versions until one answers; it returns nil then, else the last error. It
// does not use a pooled connection's earlier answer: a broker that stopped
// fails the ping.
func (s *Sink) Ping(ctx context.Context) error {
	if s.fg != nil {
		return s.franzPing(ctx)
	}
	var err error
	for _, b := range s.r.cfg.Brokers {
		_, err = s.client.ApiVersions(ctx, &kafkago.ApiVersionsRequest{Addr: kafkago.TCP(b)})
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("kafka: ping %v: %w", s.r.cfg.Brokers, err)
}

var _ sink.Pinger = (*Sink)(nil)

// Close marks the sink closed and closes the idle connections to the
// brokers. WriteBatch returns only once its requests are acknowledged, so
// there is nothing left to flush; Close waits for a WriteBatch in progress,
// or gives up when ctx ends. A second Close returns sink.ErrClosed.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return fmt.Errorf("kafka: close: %w", err)
	}
	defer s.turn.Release()
	if s.closed {
		return sink.ErrClosed
	}
	s.closed = true
	if s.fg != nil {
		s.franzClose()
		return nil
	}
	s.tr.CloseIdleConnections()
	return nil
}

// classify turns write's error into the sink's: ctx's error when the
// caller's ctx ended, ErrWriteTimeout when WriteTimeout ran out, else the
// kafka-go error, marked permanent when retrying cannot help.
func (s *Sink) classify(ctx, wctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("kafka: write: %w", cerr)
	}
	if errors.Is(context.Cause(wctx), errWriteTimeout) {
		return fmt.Errorf("kafka: write to %v: %w (%v): %w", s.r.cfg.Brokers, ErrWriteTimeout, s.r.cfg.WriteTimeout, describe(err))
	}
	werr := fmt.Errorf("kafka: write to %v: %w", s.r.cfg.Brokers, describe(err))
	if permanent(err) {
		return sink.Permanent(werr)
	}
	return werr
}
