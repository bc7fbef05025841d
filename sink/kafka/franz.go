package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// Bounds of what franz-go buffers (kgo.MaxBufferedRecords and
// kgo.MaxBufferedBytes, keys, values and headers): the records of the
// WriteBatch in progress and those of earlier batches that failed and that
// franz-go still holds. A batch larger than this is produced as the records
// before it are acknowledged. Both are above the pipeline's default Kafka
// batch (8192 events, 8 MiB).
const (
	franzMaxBufferedRecords = 32768
	franzMaxBufferedBytes   = 32 << 20
)

// franz is the state of a Sink whose Config.Client is franz-go.
type franz struct {
	opts []kgo.Opt
	// mu guards cl, made on first use (New starts no goroutine) and
	// closed by Close.
	mu     sync.Mutex
	cl     *kgo.Client
	closed bool
	// batch is the state of the last WriteBatch, reused when every one of
	// its records was reported on; nil after a WriteBatch returned before
	// that (franz-go may still read its records).
	batch *franzBatch
	// cur is the batch in progress, for the connection hook.
	cur atomic.Pointer[franzBatch]
	// lastConnErr is the last error connecting to a broker (dial, TLS,
	// SASL), told with a timeout.
	lastConnErr atomic.Pointer[connErr]
}

type connErr struct{ err error }

// franzBatch is the records of one WriteBatch and what their promises
// report. buf holds their keys, values and header values.
type franzBatch struct {
	buf     []byte
	recs    []kgo.Record
	hdrs    []kgo.RecordHeader
	promise func(*kgo.Record, error)

	pending atomic.Int64
	done    chan struct{} // closed when pending reaches 0

	mu     sync.Mutex
	failed int
	// timeouts counts the failures for want of time: the record's
	// context (WriteBatch's deadline) or kgo.RecordDeliveryTimeout.
	timeouts int
	errs     []error // distinct (by message), at most maxDistinctErrs
	perm     bool    // every failure so far is permanent

	abortOnce sync.Once
	abort     chan struct{} // closed by fail
	abortErr  error
}

const maxDistinctErrs = 8

func newFranzBatch() *franzBatch {
	b := &franzBatch{}
	b.promise = b.report
	return b
}

// report is the promise of every record of b.
func (b *franzBatch) report(_ *kgo.Record, err error) {
	if err != nil {
		b.mu.Lock()
		if b.failed == 0 {
			b.perm = true
		}
		b.failed++
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrRecordTimeout) {
			b.timeouts++
		}
		b.perm = b.perm && franzPermanent(err)
		msg := err.Error()
		seen := false
		for _, e := range b.errs {
			if e.Error() == msg {
				seen = true
				break
			}
		}
		if !seen && len(b.errs) < maxDistinctErrs {
			b.errs = append(b.errs, franzError(err))
		}
		b.mu.Unlock()
	}
	if b.pending.Add(-1) == 0 {
		close(b.done)
	}
}

// fail makes the WriteBatch of b return err at once: a connection to a
// broker failed for good (a certificate that does not verify, failed
// authentication).
func (b *franzBatch) fail(err error) {
	b.abortOnce.Do(func() {
		b.abortErr = err
		close(b.abort)
	})
}

// franzHooks counts produce requests and watches connections.
type franzHooks struct{ s *Sink }

var (
	_ kgo.HookBrokerWrite   = franzHooks{}
	_ kgo.HookBrokerRead    = franzHooks{}
	_ kgo.HookBrokerConnect = franzHooks{}
)

func (h franzHooks) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != 0 { // Produce
		return
	}
	h.s.st.requests.Add(1)
	if err != nil {
		h.s.st.requestErrors.Add(1)
	}
}

func (h franzHooks) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 0 && err != nil {
		h.s.st.requestErrors.Add(1)
	}
}

func (h franzHooks) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	err = franzError(err)
	h.s.fg.lastConnErr.Store(&connErr{err})
	// A connection that fails for good, or that the broker closes before
	// answering anything (TLS spoken to a PLAINTEXT listener, SASL
	// missing: kgo.ErrFirstReadEOF, retriable as kafka-go's io.EOF is),
	// ends the WriteBatch at once rather than at WriteTimeout.
	var firstEOF *kgo.ErrFirstReadEOF
	if franzPermanent(err) || errors.As(err, &firstEOF) {
		if b := h.s.fg.cur.Load(); b != nil {
			b.fail(err)
		}
	}
}

// newFranz makes the franz-go client of s. It connects to no broker.
func newFranz(s *Sink) (*franz, error) {
	c := s.r.cfg
	fg := &franz{}
	s.fg = fg
	dialTimeout := min(c.WriteTimeout, defaultDialTimeout)
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID("cnstream"),
		kgo.DialTimeout(dialTimeout),
		kgo.AllowAutoTopicCreation(),
		// franz-go refreshes the metadata after NOT_LEADER and the like by
		// itself, no sooner than MetadataMinAge after the last refresh.
		kgo.MetadataMinAge(c.MetadataTTL),
		kgo.MetadataMaxAge(max(c.MetadataTTL, 5*time.Minute)),
		kgo.RetryTimeout(c.WriteTimeout),
		kgo.RecordPartitioner(hashPartitioner{}),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(int32(c.MaxRequestBytes)),
		kgo.ProduceRequestTimeout(c.WriteTimeout),
		kgo.RecordDeliveryTimeout(c.WriteTimeout),
		kgo.MaxBufferedRecords(franzMaxBufferedRecords),
		kgo.MaxBufferedBytes(franzMaxBufferedBytes),
		kgo.WithHooks(franzHooks{s}),
	}
	switch c.RequiredAcks {
	case "all":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "one":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
	case "none":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
	}
	switch c.Compression {
	case "none":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression().WithLevel(c.CompressionLevel)))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		z := kgo.ZstdCompression()
		if lv := c.CompressionLevel; lv != 0 {
			// kgo takes klauspost/compress's speeds (1 fastest .. 4 best),
			// not zstd's levels.
			z = z.WithLevel(int(zstd.EncoderLevelFromZstd(lv)))
		}
		opts = append(opts, kgo.ProducerBatchCompression(z))
	}
	if s.r.tls != nil {
		opts = append(opts, kgo.DialTLSConfig(s.r.tls))
	}
	if m := franzSASL(c.SASL); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	fg.opts = opts
	return fg, nil
}

// client returns the kgo.Client, made on first use; after Close,
// sink.ErrClosed.
func (fg *franz) client() (*kgo.Client, error) {
	fg.mu.Lock()
	defer fg.mu.Unlock()
	if fg.closed {
		return nil, sink.ErrClosed
	}
	if fg.cl == nil {
		cl, err := kgo.NewClient(fg.opts...)
		if err != nil {
			// The options come from a checked Config: a broker address
			// franz-go refuses, say.
			return nil, sink.Permanent(fmt.Errorf("kafka: franz-go client: %w", err))
		}
		fg.cl = cl
	}
	return fg.cl, nil
}

// franzSASL returns the franz-go mechanism of a checked SASLConfig.
func franzSASL(c SASLConfig) sasl.Mechanism {
	switch strings.ToUpper(c.Mechanism) {
	case "PLAIN":
		return plain.Auth{User: c.Username, Pass: c.Password}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: c.Username, Pass: c.Password}.AsSha512Mechanism()
	}
	return nil
}

// hashPartitioner picks partitions as kafka-go's Hash balancer does
// (FNV-1a of the key, as sarama), so that both clients put a key in the
// same partition.
type hashPartitioner struct{}

func (hashPartitioner) ForTopic(string) kgo.TopicPartitioner { return hashPartitioner{} }

// RequiresConsistency: a key stays in its partition while the partition
// has no leader (writes to it wait), as with kafka-go.
func (hashPartitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (hashPartitioner) Partition(r *kgo.Record, n int) int { return hashPartition(r.Key, n) }

// hashPartition is kafka-go's Hash.Balance over partitions 0..n-1 for a
// non-nil key.
func hashPartition(key []byte, n int) int {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	p := int32(h) % int32(n)
	if p < 0 {
		p = -p
	}
	return int(p)
}

// franzWriteBatch is WriteBatch with franz-go; s.turn is held and events is
// not empty.
func (s *Sink) franzWriteBatch(ctx context.Context, events []schema.Event) error {
	fg := s.fg
	cl, err := fg.client()
	if err != nil {
		s.st.errors.Add(1)
		return err
	}
	b := fg.batch
	if b == nil {
		b = newFranzBatch()
		fg.batch = b
	}
	size, err := s.franzEncode(b, events)
	if err != nil {
		s.st.errors.Add(1)
		return err
	}
	b.failed, b.timeouts, b.errs, b.perm = 0, 0, b.errs[:0], false
	b.done = make(chan struct{})
	b.abort = make(chan struct{})
	b.abortOnce = sync.Once{}
	b.abortErr = nil
	b.pending.Store(int64(len(b.recs)))
	fg.cur.Store(b)
	defer fg.cur.Store(nil)

	wctx, cancel := context.WithTimeoutCause(ctx, s.r.cfg.WriteTimeout, errWriteTimeout)
	defer cancel()
	for i := range b.recs {
		cl.Produce(wctx, &b.recs[i], b.promise)
	}
	var aborted error
	select {
	case <-b.done:
	case <-wctx.Done():
	case <-b.abort:
		aborted = b.abortErr
	}
	finished := true
	select {
	case <-b.done:
	default:
		// franz-go may still read the records, which point into b.buf: the
		// next WriteBatch makes new ones. Cancelling wctx (deferred) fails
		// those not yet sent; those in flight are acknowledged or failed by
		// the broker: they may still be written (at least once).
		finished = false
		fg.batch = nil
	}
	if !finished || b.failed > 0 && (wctx.Err() != nil || b.timeouts == b.failed) {
		s.st.errors.Add(1)
		if aborted != nil {
			werr := fmt.Errorf("kafka: write to %v: %w", s.r.cfg.Brokers, aborted)
			if franzPermanent(aborted) {
				return sink.Permanent(werr)
			}
			return werr
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("kafka: write: %w", cerr)
		}
		var errs []error
		b.mu.Lock()
		for _, e := range b.errs {
			if !errors.Is(e, context.DeadlineExceeded) {
				errs = append(errs, e)
			}
		}
		b.mu.Unlock()
		if len(errs) == 0 {
			if ce := fg.lastConnErr.Load(); ce != nil {
				errs = append(errs, ce.err)
			}
		}
		return fmt.Errorf("kafka: write to %v: %w (%v)%w", s.r.cfg.Brokers, ErrWriteTimeout, s.r.cfg.WriteTimeout, joinCauses(errs))
	}
	if b.failed > 0 {
		s.st.errors.Add(1)
		werr := fmt.Errorf("kafka: write to %v: %w", s.r.cfg.Brokers, &writeErrors{
			msg:  fmt.Sprintf("%d of %d messages failed: %s", b.failed, len(b.recs), joinMessages(b.errs)),
			errs: b.errs,
		})
		if b.perm {
			return sink.Permanent(werr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kafka: write: %w: %w", ctx.Err(), werr)
		}
		return werr
	}
	s.st.messages.Add(uint64(len(events)))
	s.st.bytes.Add(uint64(size))
	s.st.batches.Add(1)
	return nil
}

// joinCauses is ": cause; cause" wrapping errs, or nothing.
func joinCauses(errs []error) error {
	if len(errs) == 0 {
		return noCause{}
	}
	return &writeErrors{msg: ": " + joinMessages(errs), errs: errs}
}

type noCause struct{}

func (noCause) Error() string { return "" }

func joinMessages(errs []error) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// franzEncode makes the records of events in b, their bytes in b.buf, and
// returns the bytes of their keys and values.
func (s *Sink) franzEncode(b *franzBatch, events []schema.Event) (int, error) {
	if cap(b.recs) < len(events) {
		b.recs = make([]kgo.Record, len(events))
	}
	if cap(b.hdrs) < 3*len(events) {
		b.hdrs = make([]kgo.RecordHeader, 3*len(events))
	}
	recs, hdrs := b.recs[:len(events)], b.hdrs[:3*len(events)]
	buf, err := s.encodeAll(b.buf[:0], events, false)
	if err != nil {
		return 0, err
	}
	b.buf = buf
	offs := s.offs
	if buf == nil {
		buf = []byte{} // keys are never nil: nil would be round-robin for kafka-go
	}
	now := time.Now()
	size, start := 0, 0
	for i, o := range offs {
		h := hdrs[3*i : 3*i+3 : 3*i+3]
		h[0] = kgo.RecordHeader{Key: HeaderContentType, Value: s.contentType}
		h[1] = kgo.RecordHeader{Key: HeaderSchemaVersion, Value: buf[o.id:o.ver:o.ver]}
		h[2] = kgo.RecordHeader{Key: HeaderEventID, Value: buf[o.val:o.id:o.id]}
		recs[i] = kgo.Record{
			Topic:     o.topic,
			Key:       buf[start:o.key:o.key],
			Value:     buf[o.key:o.val:o.val],
			Headers:   h,
			Timestamp: now,
		}
		size += o.val - start
		start = o.ver
	}
	b.recs, b.hdrs = recs, hdrs
	return size, nil
}

// franzPermanent reports whether a record that failed with err cannot be
// written by trying again: a Kafka error code that neither franz-go
// (kerr.IsRetriable) nor the kafka-go path (retriableCode) calls
// retriable, or what permanent says of other errors (a certificate that
// does not verify...). A record that ran out of time or retries is
// retriable whatever the last error was.
func franzPermanent(err error) bool {
	if errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrRecordRetries) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, kgo.ErrClientClosed) {
		return false
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return !kerr.IsRetriable(ke) && !retriableCode(kafkago.Error(ke.Code))
	}
	// A listener that expects TLS answers a request sent without it with
	// a TLS alert, which franz-go reads as a response size.
	if strings.Contains(err.Error(), "appear to be a tls alert record") {
		return true
	}
	return permanent(err)
}

// franzError makes the kafka-go error of the same code reachable from a
// franz-go Kafka error, so that errors.Is(err, kafkago.MessageSizeTooLarge)
// works with either client.
func franzError(err error) error {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return err
	}
	return &codeError{err: err, code: kafkago.Error(ke.Code)}
}

type codeError struct {
	err  error
	code kafkago.Error
}

func (e *codeError) Error() string   { return e.err.Error() }
func (e *codeError) Unwrap() []error { return []error{e.err, e.code} }

// franzPing asks the brokers for metadata until one answers.
func (s *Sink) franzPing(ctx context.Context) error {
	cl, err := s.fg.client()
	if err != nil {
		return err
	}
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: ping %v: %w", s.r.cfg.Brokers, err)
	}
	return nil
}

// franzClose closes the franz-go client: records still buffered (those of
// batches that failed) are failed, not written; s.turn is held.
func (s *Sink) franzClose() {
	fg := s.fg
	fg.mu.Lock()
	cl := fg.cl
	fg.closed, fg.cl = true, nil
	fg.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
}
