package natssink

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
)

// Header names set on every message.
const (
	// HeaderMsgID is the event id: JetStream drops a message whose id it
	// stored within the stream's duplicate window.
	HeaderMsgID = jetstream.MsgIDHeader // "Nats-Msg-Id"
	// HeaderContentType is "application/msgpack" or "application/json".
	HeaderContentType = "Content-Type"
	// HeaderSchemaVersion is the event's schema version ("1").
	HeaderSchemaVersion = "Cnstream-Schema-Version"
	// HeaderEvents, set only with Config.EventsPerMessage > 1, is how many
	// events the message holds (see the package documentation).
	HeaderEvents = "Cnstream-Events"
)

// Content types of messages of several events (Config.EventsPerMessage).
const (
	// ContentTypeEventsMsgpack is a MessagePack array whose elements are
	// the events, each as schema.AppendMsgpack writes it.
	ContentTypeEventsMsgpack = "application/vnd.cnstream.events+msgpack"
	// ContentTypeEventsJSONL is JSON lines: each event as
	// schema.AppendJSON writes it (no newline inside), followed by '\n'.
	ContentTypeEventsJSONL = "application/jsonl"
)

// ErrAckTimeout is wrapped by WriteBatch's error when the batch was not
// acknowledged within Config.Timeout. It is retriable.
var ErrAckTimeout = errors.New("nats: batch not acknowledged within Config.Timeout")

// errConnLost is wrapped, with nats.ErrDisconnected, by the retriable error
// of a core NATS batch during which the connection was lost: nats.go drops
// what it had not yet written to the lost connection, so the flush that
// succeeds on the next one does not vouch for the whole batch.
var errConnLost = errors.New("the connection was lost while the batch was being published, some messages may not have reached the server")

// Stats is a snapshot of a Sink's counters since New.
type Stats struct {
	// Messages, not events: with Config.EventsPerMessage > 1 a message
	// holds several.
	Published  uint64 // messages handed to the connection
	Acked      uint64 // messages acknowledged (JetStream: PubAcks, duplicates included; core NATS: covered by a flush)
	Duplicates uint64 // JetStream PubAcks that reported a duplicate: stored before, not stored again
	Errors     uint64 // WriteBatch calls that failed (context errors included)
	Reconnects uint64 // reconnections of the connection

	// What nats.go reports outside any call (otherwise printed to stderr
	// by its default handler): connections lost, and asynchronous errors
	// (slow consumer, permissions violations, broken pipes), the last one
	// with secrets redacted.
	Disconnects    uint64
	AsyncErrors    uint64
	LastAsyncError string

	// Rejected counts core NATS batches failed because the server refused
	// some of their messages (a permissions violation; see the package
	// documentation).
	Rejected uint64
}

// Sink publishes events to NATS, one message per event (or per group of
// events: Config.EventsPerMessage). See the package
// documentation.
type Sink struct {
	cfg     *resolved
	nc      *nats.Conn
	js      jetstream.JetStream // nil under core NATS
	secrets []string

	// lost receives the connection's RECONNECTING (and, under JetStream,
	// CLOSED) transitions (nats.go sends them synchronously, under the
	// connection's lock, as it stops writing to the lost connection); read
	// under turn.
	lost chan nats.Status
	// replySub is JetStream's reply subscription: every PubAck comes to
	// acks.prefix followed by its message's token.
	replySub *nats.Subscription

	// turn is held by WriteBatch and Close: they take turns, and give up
	// waiting when their ctx ends.
	turn   sink.Turn
	closed bool // under turn

	// Under turn.
	subjects map[subjectKey]string
	buf      []byte
	ends     []int // of each event's encoding in buf
	msgs     []nats.Msg
	replies  []byte // JetStream: the batch's reply subjects, one string
	// next is the token of the next JetStream message (under turn).
	next        uint64
	acks        *ackWindow // JetStream only
	contentType []string
	groupType   []string // the Content-Type of grouped messages

	// Config.EventsPerMessage > 1, under turn: see group.
	gid        []int
	groups     []msgGroup
	openGroups map[groupKey]int
	grouped    []byte
	version    []string

	st struct {
		published, acked, duplicates, errors atomic.Uint64
		disconnects, asyncErrors, rejected   atomic.Uint64
		lastAsync                            atomic.Pointer[string]
	}
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and connects. Invalid configuration is a permanent
// error naming the field; a server that cannot be reached is a retriable
// error, an authorization violation a permanent one. With JetStream and
// Config.Stream, New creates the stream if it does not exist. The only
// goroutines are nats.go's own (the connection's reader and flusher, and
// under JetStream the PubAcks' subscription handler), which Close stops.
func New(cfg Config) (*Sink, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, redact(err, cfg.secrets())
	}
	s := &Sink{
		cfg:        r,
		secrets:    cfg.secrets(),
		turn:       sink.NewTurn(),
		subjects:   make(map[subjectKey]string),
		openGroups: make(map[groupKey]int),
		version:    []string{strconv.Itoa(schema.EventVersion)},
	}
	s.contentType = []string{"application/" + string(r.Encoding)}
	s.groupType = []string{ContentTypeEventsMsgpack}
	if r.Encoding == JSON {
		s.groupType = []string{ContentTypeEventsJSONL}
	}

	opts := []nats.Option{
		nats.Name("cnstream"),
		nats.ReconnectWait(r.ReconnectWait),
		nats.MaxReconnects(r.MaxReconnects),
		nats.Timeout(r.Timeout),
		// No publishing while reconnecting: nats.go would keep what is
		// published then and send it on the next connection, after
		// dropping what it had not yet written to the lost one, so the end
		// of a batch would be delivered (and stored) before the part that
		// only the retry brings. WriteBatch fails at once instead.
		nats.ReconnectBufSize(-1),
		// Count and keep what nats.go would print to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.st.asyncErrors.Add(1)
			s.noteAsync(err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.st.disconnects.Add(1)
			s.noteAsync(err)
		}),
	}
	switch {
	case r.CredsFile != "":
		opts = append(opts, nats.UserCredentials(r.CredsFile))
	case r.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(r.NKeyFile)
		if err != nil {
			return nil, sink.Permanent(fmt.Errorf("nats: Config.NKeyFile: %w", s.redact(err)))
		}
		opts = append(opts, o)
	}
	switch {
	case r.Token != "":
		opts = append(opts, nats.Token(r.Token))
	case r.User != "":
		opts = append(opts, nats.UserInfo(r.User, r.Password))
	}
	if r.tlsConfig != nil {
		opts = append(opts, nats.Secure(r.tlsConfig))
	}
	nc, err := nats.Connect(strings.Join(r.urls, ","), opts...)
	if err != nil {
		err = fmt.Errorf("nats: connecting to %s: %w", s.serversForErrors(), err)
		if errors.Is(err, nats.ErrAuthorization) {
			err = sink.Permanent(err)
		}
		return nil, s.redact(err)
	}
	s.nc = nc
	if !r.JetStream {
		s.lost = nc.StatusChanged(nats.RECONNECTING)
		return s, nil
	}
	s.lost = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(r.Timeout))
	if err != nil {
		nc.Close()
		return nil, s.redact(fmt.Errorf("nats: jetstream: %w", err))
	}
	s.js = js
	s.acks = newAckWindow(nc.NewInbox()+".", &s.st.acked, &s.st.duplicates)
	// nats.go re-subscribes on every new connection. Its handler
	// goroutine delivers the acks; the subscription has no pending limit
	// (MaxPending bounds the acks awaited).
	sub, err := nc.Subscribe(s.acks.prefix+"*", s.acks.onReply)
	if err == nil {
		err = sub.SetPendingLimits(-1, -1)
	}
	if err != nil {
		nc.Close()
		return nil, s.redact(fmt.Errorf("nats: subscribing to the PubAcks' subject: %w", err))
	}
	s.replySub = sub
	if r.Stream != "" {
		if err := s.ensureStream(); err != nil {
			nc.Close()
			return nil, s.redact(err)
		}
	}
	return s, nil
}

// ensureStream creates Config.Stream if it does not exist.
func (s *Sink) ensureStream() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	_, err := s.js.Stream(ctx, s.cfg.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("nats: looking up stream %s (Config.Stream): %w", s.cfg.Stream, err)
	}
	subject := s.cfg.subject.wildcard()
	_, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       s.cfg.Stream,
		Subjects:   []string{subject},
		Storage:    jetstream.FileStorage,
		Duplicates: duplicateWindow,
	})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		var api *jetstream.APIError
		if errors.As(err, &api) && api.Code == 400 {
			// Overlapping subjects, a bad name: configuration.
			err = sink.Permanent(err)
		}
		return fmt.Errorf("nats: creating stream %s for %s (Config.Stream): %w", s.cfg.Stream, subject, err)
	}
	return nil
}

func (s *Sink) serversForErrors() string {
	out := make([]string, len(s.cfg.urls))
	for i, u := range s.cfg.urls {
		out[i] = redactURL(u)
	}
	return strings.Join(out, ",")
}

func (s *Sink) redact(err error) error { return redact(err, s.secrets) }

// WriteBatch publishes one message per event (or group), in order, and returns once
// all are acknowledged: under core NATS when a flush (PING/PONG) after them
// returned, so the server has received them; under JetStream when every
// message has its PubAck (a duplicate counts as acknowledged: the stream
// stored it before). It returns ctx's error when ctx ends first, an error
// wrapping ErrAckTimeout after Config.Timeout, and sink.ErrClosed after
// Close. Errors are retriable unless sink.IsPermanent: see the package
// documentation. The events are only read.
func (s *Sink) WriteBatch(ctx context.Context, events []schema.Event) error {
	if err := s.turn.Acquire(ctx); err != nil {
		s.st.errors.Add(1)
		return err
	}
	defer s.turn.Release()
	if s.closed {
		return sink.ErrClosed
	}
	if len(events) == 0 {
		return nil
	}
	err := ctx.Err()
	if err == nil && s.nc.IsReconnecting() {
		// Nothing is published while reconnecting (see New).
		err = fmt.Errorf("nats: publish: not connected, reconnecting: %w", nats.ErrDisconnected)
	} else if err == nil {
		s.encode(events)
		if s.js == nil {
			err = s.writeCore(ctx)
		} else {
			err = s.writeJetStream(ctx)
		}
	}
	if err != nil {
		s.st.errors.Add(1)
		return s.redact(err)
	}
	return nil
}

// encode fills s.msgs with the batch's messages: one per event, or with
// Config.EventsPerMessage, groups of events.
func (s *Sink) encode(events []schema.Event) {
	buf := s.buf[:0]
	ends := s.ends[:0]
	for i := range events {
		e := &events[i]
		if s.cfg.Encoding == JSON {
			buf = schema.AppendJSON(buf, e)
			if s.cfg.EventsPerMessage > 1 {
				buf = append(buf, '\n')
			}
		} else {
			buf = schema.AppendMsgpack(buf, e)
		}
		ends = append(ends, len(buf))
	}
	s.buf, s.ends = buf, ends
	if s.cfg.EventsPerMessage > 1 {
		s.group(events)
		return
	}
	s.sizeMsgs(len(events))
	start := 0
	for i := range events {
		e := &events[i]
		m := &s.msgs[i]
		m.Subject = s.subjectOf(e)
		m.Data = buf[start:ends[i]:ends[i]]
		start = ends[i]
		s.setHeaders(m, eventID(e), e.Version, 0)
	}
}

func (s *Sink) sizeMsgs(n int) {
	if cap(s.msgs) < n {
		s.msgs = append(s.msgs[:cap(s.msgs)], make([]nats.Msg, n-cap(s.msgs))...)
	}
	s.msgs = s.msgs[:n]
}

func eventID(e *schema.Event) string {
	if e.ID != "" {
		return e.ID
	}
	return e.EventID()
}

// setHeaders sets m's headers: id, the schema version, and with events > 0
// the grouped form's Content-Type and event count.
func (s *Sink) setHeaders(m *nats.Msg, id string, version, events int) {
	if m.Header == nil {
		m.Header = nats.Header{HeaderMsgID: {id}, HeaderContentType: s.contentType, HeaderSchemaVersion: nil}
	} else {
		m.Header[HeaderMsgID][0] = id
	}
	if version == schema.EventVersion || version == 0 {
		m.Header[HeaderSchemaVersion] = s.version
	} else {
		m.Header[HeaderSchemaVersion] = []string{strconv.Itoa(version)}
	}
	if events > 0 {
		m.Header[HeaderEvents] = []string{strconv.Itoa(events)}
	}
}

// groupSlack is what a grouped message's payload leaves of the server's
// maximum payload to its headers.
const groupSlack = 4096

// group fills s.msgs with messages of up to EventsPerMessage events each:
// the events of the batch that share a subject and a schema version, in
// their order, cut when the next would take the payload past the server's
// maximum; the messages are in the order of their first events. s.buf
// and s.ends hold the events' encodings in batch order; the payloads are
// copied to s.grouped.
func (s *Sink) group(events []schema.Event) {
	limit := int(s.nc.MaxPayload()) - groupSlack
	if limit <= 0 {
		limit = 1
	}
	size := func(i int) int {
		if i == 0 {
			return s.ends[0]
		}
		return s.ends[i] - s.ends[i-1]
	}
	// gid[i]: the group of event i; groups in the order of their first
	// event.
	s.gid = s.gid[:0]
	s.groups = s.groups[:0]
	openGroups := s.openGroups
	clear(openGroups)
	for i := range events {
		e := &events[i]
		k := groupKey{s.subjectOf(e), e.Version}
		g, ok := openGroups[k]
		if ok {
			gr := &s.groups[g]
			if gr.n >= s.cfg.EventsPerMessage || gr.bytes+size(i) > limit {
				ok = false
			}
		}
		if !ok {
			g = len(s.groups)
			s.groups = append(s.groups, msgGroup{subject: k.subject, version: k.version, first: i})
			openGroups[k] = g
		}
		gr := &s.groups[g]
		gr.n++
		gr.bytes += size(i)
		gr.last = i
		s.gid = append(s.gid, g)
	}
	// Each group's place in the grouped payloads.
	off := 0
	for g := range s.groups {
		s.groups[g].off, s.groups[g].fill = off, off+arrayHeaderLen(s.groups[g].n, s.cfg.Encoding)
		off += arrayHeaderLen(s.groups[g].n, s.cfg.Encoding) + s.groups[g].bytes
	}
	if cap(s.grouped) < off {
		s.grouped = make([]byte, off)
	}
	out := s.grouped[:off]
	for g := range s.groups {
		gr := &s.groups[g]
		appendArrayHeader(out[gr.off:gr.off], gr.n, s.cfg.Encoding)
	}
	for i := range events {
		gr := &s.groups[s.gid[i]]
		gr.fill += copy(out[gr.fill:], s.buf[s.ends[i]-size(i):s.ends[i]])
	}
	s.grouped = out
	s.sizeMsgs(len(s.groups))
	for g := range s.groups {
		gr := &s.groups[g]
		m := &s.msgs[g]
		m.Subject = gr.subject
		end := gr.off + arrayHeaderLen(gr.n, s.cfg.Encoding) + gr.bytes
		m.Data = out[gr.off:end:end]
		id := eventID(&events[gr.first])
		if gr.n > 1 {
			id += ".." + eventID(&events[gr.last])
		}
		s.setHeaders(m, id, gr.version, gr.n)
		m.Header[HeaderContentType] = s.groupType
	}
}

// groupKey: the events of a message share a subject and a schema version.
type groupKey struct {
	subject string
	version int
}

// msgGroup is a message of several events.
type msgGroup struct {
	subject     string
	version     int
	first, last int // events
	n, bytes    int // events, bytes of their encodings
	off, fill   int // in s.grouped: the payload's start, the next event's place
}

// arrayHeaderLen is the length of the MessagePack array header of n
// events (JSON lines have none).
func arrayHeaderLen(n int, enc Encoding) int {
	switch {
	case enc == JSON:
		return 0
	case n < 16:
		return 1
	case n < 1<<16:
		return 3
	}
	return 5
}

func appendArrayHeader(b []byte, n int, enc Encoding) []byte {
	switch {
	case enc == JSON:
		return b
	case n < 16:
		return append(b, 0x90|byte(n))
	case n < 1<<16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// ackContext bounds the wait for acknowledgements by Config.Timeout.
func (s *Sink) ackContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.cfg.Timeout, ErrAckTimeout)
}

// waitErr is the error of a wait on actx (made by ackContext from ctx)
// that ended: ctx's own error, or the timeout.
func (s *Sink) waitErr(ctx, actx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := fmt.Errorf("nats: %s: %w (%v)", what, context.Cause(actx), s.cfg.Timeout)
	if s.nc.IsClosed() {
		return s.classify(err, "")
	}
	return err
}

// connLost reports whether the connection was lost since the last call.
func (s *Sink) connLost() bool {
	lost := false
	for {
		select {
		case _, ok := <-s.lost:
			if !ok {
				return lost
			}
			lost = true
		default:
			return lost
		}
	}
}

func (s *Sink) writeCore(ctx context.Context) error {
	s.connLost() // losses before this batch are not its concern
	// nats.go sets the connection's last error as its reader meets a
	// server's -ERR, before it reads the PONG that ends the flush: a new
	// permissions violation at the end of the flush is this batch's.
	before := s.nc.LastError()
	for i := range s.msgs {
		if i%256 == 255 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := s.nc.PublishMsg(&s.msgs[i]); err != nil {
			return s.classify(err, s.msgs[i].Subject)
		}
		s.st.published.Add(1)
	}
	actx, cancel := s.ackContext(ctx)
	defer cancel()
	if err := s.nc.FlushWithContext(actx); err != nil {
		if actx.Err() != nil {
			return s.waitErr(ctx, actx, fmt.Sprintf("flushing %d messages", len(s.msgs)))
		}
		if errors.Is(err, nats.ErrConnectionClosed) && !s.nc.IsClosed() {
			// nats.go fails the flushes pending when the connection
			// breaks with ErrConnectionClosed; it is reconnecting.
			err = fmt.Errorf("%w: %w", errConnLost, nats.ErrDisconnected)
		}
		return s.classify(fmt.Errorf("flushing %d messages: %w", len(s.msgs), err), "")
	}
	if s.connLost() {
		// The PONG came on a later connection than some of the messages.
		return fmt.Errorf("nats: publish: %d messages: %w: %w", len(s.msgs), errConnLost, nats.ErrDisconnected)
	}
	if err := s.refused(before); err != nil {
		return err
	}
	s.st.acked.Add(uint64(len(s.msgs)))
	return nil
}

// permissionsSubject finds the subject in nats.go's text of a server's
// "Permissions Violation for Publish to "<subject>"".
var permissionsSubject = regexp.MustCompile(`(?i)publish to "([^"]+)"`)

// refused returns a permanent error when the connection's last error is a
// permissions violation newer than before (the value of LastError when
// the batch began): the server refused to publish some of the batch's
// messages. It names the subject the server named last, and how many of
// the batch's messages went to it; others may have been refused too.
func (s *Sink) refused(before error) error {
	err := s.nc.LastError()
	if err == nil || err == before || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	s.st.rejected.Add(1)
	what := ""
	if m := permissionsSubject.FindStringSubmatch(err.Error()); m != nil {
		n := 0
		for i := range s.msgs {
			if s.msgs[i].Subject == m[1] {
				n++
			}
		}
		what = fmt.Sprintf(" (%d of the batch's %d messages went to %q)", n, len(s.msgs), m[1])
	}
	return sink.Permanent(fmt.Errorf("nats: publish: the server refused messages of the batch%s, the others were delivered: %w", what, s.redact(err)))
}

// writeJetStream publishes the batch with core NATS publishes whose reply
// subjects are the sink's own (acks.prefix and a token per message), at
// most MaxPending awaiting their PubAck, and waits for every ack.
func (s *Sink) writeJetStream(ctx context.Context) error {
	s.connLost() // losses before this batch are not its concern
	n := len(s.msgs)
	base := s.next
	s.next += uint64(n)
	// The reply subjects, as one string (ends: encode is done with it).
	r := s.replies[:0]
	ends := s.ends[:0]
	for i := range n {
		r = append(r, s.acks.prefix...)
		r = strconv.AppendUint(r, base+uint64(i), 10)
		ends = append(ends, len(r))
	}
	s.replies, s.ends = r, ends
	replies := string(r)
	start := 0
	for i := range s.msgs {
		s.msgs[i].Reply = replies[start:ends[i]]
		start = ends[i]
	}
	s.acks.start(base, n)
	defer s.acks.stop()

	actx, cancel := s.ackContext(ctx)
	defer cancel()
	var err error
	// The window: before message i, at most MaxPending-step await their
	// ack; the waiter wakes once per step acks, not for each.
	step := min(64, s.cfg.MaxPending)
	for i := range s.msgs {
		if i >= s.cfg.MaxPending && (i-s.cfg.MaxPending)%step == 0 {
			if err = s.awaitAcks(ctx, actx, i-s.cfg.MaxPending+step); err != nil {
				break
			}
		} else if i%256 == 255 && ctx.Err() != nil {
			err = ctx.Err()
			break
		}
		if err = s.nc.PublishMsg(&s.msgs[i]); err != nil {
			err = s.classify(err, s.msgs[i].Subject)
			break
		}
		s.st.published.Add(1)
	}
	if err == nil {
		err = s.awaitAcks(ctx, actx, n)
	}
	return err
}

// awaitAcks waits until want of the batch's messages have their PubAck
// and returns nil, or returns the batch's first failure: an error ack, the
// connection lost, ctx's end, the timeout.
func (s *Sink) awaitAcks(ctx, actx context.Context, want int) error {
	for {
		done, failed, ferr := s.acks.wait(want)
		if failed >= 0 {
			return s.ackErr(ctx, failed, ferr)
		}
		if done {
			return nil
		}
		select {
		case <-s.acks.wake:
		case st := <-s.lost:
			if st == nats.CLOSED || s.nc.IsClosed() {
				return s.classify(nats.ErrConnectionClosed, "")
			}
			return fmt.Errorf("nats: publish: the connection was lost, %d of %d messages not acknowledged: %w", s.acks.unresolved(), len(s.msgs), nats.ErrDisconnected)
		case <-actx.Done():
			return s.waitErr(ctx, actx, fmt.Sprintf("%d of %d messages not acknowledged", s.acks.unresolved(), len(s.msgs)))
		}
	}
}

// ackErr is the error of the batch whose message i was refused with err.
func (s *Sink) ackErr(ctx context.Context, i int, err error) error {
	subject := s.msgs[i].Subject
	if !errors.Is(err, nats.ErrNoResponders) {
		return s.classify(err, subject)
	}
	// No responders: no stream stores the subject, or its stream has
	// no leader for now (a cluster's election). Ask which.
	lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	name, lerr := s.js.StreamNameBySubject(lctx, subject)
	switch {
	case lerr == nil:
		return fmt.Errorf("nats: publish to %s: no responders, although stream %s stores the subject (no leader for now?): %w", subject, name, err)
	case errors.Is(lerr, jetstream.ErrStreamNotFound), errors.Is(lerr, jetstream.ErrJetStreamNotEnabled), errors.Is(lerr, jetstream.ErrJetStreamNotEnabledForAccount):
		return s.classify(fmt.Errorf("%w: %w", jetstream.ErrNoStreamResponse, err), subject)
	}
	return fmt.Errorf("nats: publish to %s: %w (looking up its stream: %v)", subject, err, lerr)
}

// classify wraps a publish error, marking the ones retrying cannot fix as
// permanent.
func (s *Sink) classify(err error, subject string) error {
	what := "nats: publish"
	if subject != "" {
		what = fmt.Sprintf("nats: publish to %s", subject)
	}
	var api *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return sink.Permanent(fmt.Errorf("%s: no JetStream stream stores this subject (create one, or set Config.Stream): %w", what, err))
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject):
		return sink.Permanent(fmt.Errorf("%s: %w", what, err))
	case errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return sink.Permanent(fmt.Errorf("%s: %w", what, err))
	case s.nc.IsClosed():
		return sink.Permanent(fmt.Errorf("%s: the connection is closed for good (Config.MaxReconnects reached): %w", what, err))
	case errors.Is(err, nats.ErrReconnectBufExceeded):
		// The reconnect buffer is off: this is "not connected".
		return fmt.Errorf("%s: not connected, reconnecting: %w: %w", what, nats.ErrDisconnected, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Close flushes the connection and closes it; it gives up waiting for a
// WriteBatch in progress, or for the flush, when ctx ends (the connection
// is closed anyway once it has the turn). Events WriteBatch acknowledged are
// already with the server: Close loses none of them. A second Close returns
// Ping reports whether the connection is up (nats.go's status CONNECTED),
// and with JetStream whether the server answers for the account.
func (s *Sink) Ping(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats: ping %s: connection %s", s.serversForErrors(), st)
	}
	if s.js != nil {
		if _, err := s.js.AccountInfo(ctx); err != nil {
			return s.redact(fmt.Errorf("nats: ping %s: jetstream: %w", s.serversForErrors(), err))
		}
		return nil
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return s.redact(fmt.Errorf("nats: ping %s: %w", s.serversForErrors(), err))
	}
	return nil
}

var _ sink.Pinger = (*Sink)(nil)

// nil.
func (s *Sink) Close(ctx context.Context) error {
	if err := s.turn.Acquire(ctx); err != nil {
		return err
	}
	defer s.turn.Release()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if !s.nc.IsClosed() {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if _, ok := ctx.Deadline(); !ok {
			fctx, cancel = context.WithTimeout(ctx, s.cfg.Timeout)
		}
		if ferr := s.nc.FlushWithContext(fctx); ferr != nil && !errors.Is(ferr, nats.ErrConnectionReconnecting) {
			err = s.redact(fmt.Errorf("nats: flushing on close: %w", ferr))
		}
		cancel()
	}
	s.nc.Close()
	s.buf, s.msgs, s.replies = nil, nil, nil
	return err
}

// Stats returns the counters. It is safe to call at any time, from any
// goroutine.
func (s *Sink) Stats() Stats {
	st := Stats{
		Published:   s.st.published.Load(),
		Acked:       s.st.acked.Load(),
		Duplicates:  s.st.duplicates.Load(),
		Errors:      s.st.errors.Load(),
		Reconnects:  s.nc.Stats().Reconnects,
		Disconnects: s.st.disconnects.Load(),
		AsyncErrors: s.st.asyncErrors.Load(),
		Rejected:    s.st.rejected.Load(),
	}
	if p := s.st.lastAsync.Load(); p != nil {
		st.LastAsyncError = *p
	}
	return st
}

// Counters reports the sink's own counters (sink.StatsReporter): the
// asynchronous errors nats.go reported (a permissions violation is also
// the failure of its batch under core NATS), the last one redacted, and
// the reconnections. Safe at any time, from any goroutine.
func (s *Sink) Counters() sink.Counters {
	c := sink.Counters{Errors: s.st.asyncErrors.Load(), Reconnects: s.nc.Stats().Reconnects}
	if p := s.st.lastAsync.Load(); p != nil {
		c.LastError = *p
	}
	return c
}

var _ sink.StatsReporter = (*Sink)(nil)

// noteAsync keeps err, redacted, as the last asynchronous error.
func (s *Sink) noteAsync(err error) {
	if err == nil {
		return
	}
	msg := s.redact(err).Error()
	s.st.lastAsync.Store(&msg)
}
