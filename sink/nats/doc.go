// Package natssink is the sink that publishes events to NATS: one message
// per event (or several events per message, when configured), on core NATS
// or JetStream, with nats.go
// (github.com/nats-io/nats.go and its jetstream package). It lives in
// sink/nats and is named natssink so as not to shadow nats.go's package.
//
// # Messages
//
// Each event is one message whose payload is schema.AppendMsgpack (the
// default) or schema.AppendJSON (Config.Encoding), on the subject that
// Config.Subject renders for it (default "cnstream.{host}.{kind}": the host
// name with '.', whitespace and wildcards replaced by '_', then the kind's
// name). Headers: Nats-Msg-Id is the event id (schema.Event.ID), the same
// across the pipeline's retries; Content-Type is "application/msgpack" or
// "application/json"; Cnstream-Schema-Version is the event's schema version.
//
// # Several events per message
//
// With Config.EventsPerMessage N > 1 (cnstream's YAML:
// nats.events_per_message), a message holds up to N events of a batch: the
// batch's events that share a subject (and a schema version), in their
// order, cut before the payload would pass the server's maximum payload
// (less 4 KiB for the headers). The messages go in the order of their first
// events, so the order per subject is kept; events of different subjects
// may be published in another order than the batch's. A JetStream server
// spends about as much CPU on a message whatever its size, so this divides
// its cost per event by up to N. This changes what consumers read:
//
//   - Content-Type is "application/vnd.cnstream.events+msgpack" (a
//     MessagePack array whose elements are events as schema.AppendMsgpack
//     writes them: any MessagePack library splits the array, and
//     schema.DecodeMsgpack reads each element) or "application/jsonl" (the
//     events as schema.AppendJSON writes them, each followed by '\n');
//   - Cnstream-Events is the number of events;
//   - Nats-Msg-Id is the event id of a message of one event, else the first
//     event's id, "..", and the last one's: the pipeline retries a batch
//     with the same events, which make the same messages, so JetStream
//     still drops the copies a retry brings within its duplicate window.
//     Events that come back in different batches (a restart that replays
//     the disk spool) make different messages and may be stored twice:
//     consumers dedupe on the event ids, as the sink contract says;
//   - Stats.Published, Acked and Duplicates count messages, and
//     Config.MaxPending bounds messages.
//
// Default (0 or 1): one event per message, as above.
//
// # Ordering
//
// A Sink has one connection and publishes a batch's messages in the order
// of the batch (with several events per message, in the order of their
// first events), and batches in the order of the WriteBatch calls; the
// server keeps a connection's publish order, so consumers of a subject see
// its events in order (the sink contract's ordering key for NATS is the
// subject). A JetStream stream stores them in that order too. After a
// failed batch, the pipeline's retry republishes the whole batch: under
// JetStream the messages stored the first time are dropped as duplicates,
// so the stream holds each event once, in its first publish's place. That
// place keeps the batch's order because nothing is published while the
// connection is down (see Errors): what reached the server before a
// disconnection is a prefix of the batch, and the retry stores the rest
// after it.
//
// # Delivery semantics
//
// Core NATS (the default) has no acknowledgement beyond the server's
// receipt: WriteBatch publishes the batch, then flushes (a PING answered by
// a PONG after the server has read and routed every message before it) and
// returns nil then, unless the connection was lost while the batch was
// being published: nats.go drops what it had not yet written to the lost
// connection, so a flush answered on the next connection does not vouch for
// the batch, and WriteBatch fails with a retriable error wrapping
// nats.ErrDisconnected. Delivery is at most once beyond that point: a
// subscriber that is not connected, or too slow, does not get the messages,
// and the server keeps nothing. A test subscriber must subscribe before the
// sink publishes.
//
// A server that refuses to publish a message for want of permission
// (a permissions violation: the user may not publish on its subject) says
// so only asynchronously, with an -ERR, and the flush that follows still
// succeeds. The server answers in order, so the -ERR arrives before the
// flush's PONG, and nats.go sets it as the connection's last error as it
// reads it, before it reads the PONG: WriteBatch compares the last error
// after the flush with the one before the batch and, when it is a new
// permissions violation, fails the batch with a permanent error wrapping
// nats.ErrPermissionViolation, naming the subject the server named last
// and how many of the batch's messages went to it (Stats.Rejected counts
// these batches). The pipeline does not retry it (a refused subject stays
// refused until the server's configuration changes) and states the whole
// batch as lost (a dropped record, reason sink_failed), although the
// batch's messages on allowed subjects were delivered: nats.go keeps only
// the last -ERR, so which messages were refused cannot be told exactly,
// and the record over-states rather than hides. The refusals are also
// counted as asynchronous errors (Stats.AsyncErrors, Counters().Errors).
// Under JetStream a refused message gets no PubAck: the batch fails when
// Config.Timeout passes, and is retried like any timeout.
//
// JetStream (Config.JetStream) publishes every message asynchronously, at
// most Config.MaxPending awaiting their ack (a larger batch goes in
// windows), and returns nil once every message has its PubAck: the stream
// has stored it (and replicated it, per the stream's settings). The sink
// does what nats.go's PublishMsgAsync does, more cheaply: each message is a
// core publish whose reply subject is the sink's own inbox prefix followed
// by a token (a counter never reused during the Sink's life), one
// wildcard subscription receives every PubAck, and the token maps it to its
// message, so acks may come in any order; a second reply to a message, or
// a late one to a message of an earlier, failed batch, is ignored. PubAcks
// are decoded without reflection (encoding/json only for forms the server
// does not write).
// The stream deduplicates on Nats-Msg-Id within its duplicate window
// (StreamConfig.Duplicates, 2 minutes by default and for the streams
// Config.Stream creates): a retried batch is stored once; its already stored
// messages are acknowledged as duplicates, which count as acknowledged and
// in Stats.Duplicates. Past the window, a retry stores a second copy, and
// consumers dedupe on the event id as the sink contract says.
//
// # Errors
//
// WriteBatch returns ctx's error when ctx ends, an error wrapping
// ErrAckTimeout when acknowledgements take longer than Config.Timeout, and
// sink.ErrClosed after Close. Some messages of a failed batch may have
// been stored. Errors are retriable (the pipeline retries the batch)
// except these, marked sink.Permanent:
//
//   - invalid configuration, from New (and Validate): a *sink.ConfigError
//     naming the field as cnstream's YAML spells it (nats.url, ...);
//   - an authorization violation when New connects;
//   - under JetStream, no stream storing the subject (the server answers
//     "no responders", and the sink's look-up of the subject's stream
//     finds none): a configuration error, the operator must create the
//     stream or set Config.Stream (errors.Is jetstream.ErrNoStreamResponse
//     and nats.ErrNoResponders); a stream that has the subject but no
//     leader for now (a cluster's election) is retriable;
//   - a message larger than the server's or the stream's maximum, and a bad
//     subject;
//   - a connection closed for good after Config.MaxReconnects attempts.
//
// A server that cannot be reached, a disconnection (the error wraps
// nats.ErrDisconnected: a JetStream batch fails with it at once when the
// connection is lost before all its acks came, and so does a core batch
// during which the connection was lost), a full stream (MaxMsgs
// or MaxBytes with the discard-new policy: the server's *jetstream.APIError
// is wrapped) and timeouts are retriable. While the connection is
// reconnecting, WriteBatch fails at once with a retriable error wrapping
// nats.ErrDisconnected: nats.go's reconnect buffer is off
// (nats.ReconnectBufSize(-1)), since it would deliver the end of a batch
// whose middle was lost with the connection before the retry brings that
// middle, out of order. The pipeline's retries wait for the reconnection.
// Passwords, tokens and a URL's user information never appear in errors.
//
// # Concurrency
//
// WriteBatch and Close may be called from any goroutine; they take turns,
// and give up waiting for the other when their ctx ends. Stats and
// Counters (sink.StatsReporter: asynchronous errors, reconnections) may be
// called at any time. The Sink starts no goroutine of its own and does not retry:
// the only goroutines are nats.go's (the connection's reader and flusher,
// and under JetStream the PubAcks' subscription's handler), which Close
// stops by closing the connection. The events passed to WriteBatch are only
// read and not kept after it returns; nats.go copies each message into its
// write buffer as it is published, so the memory of a batch in flight is
// the batch's encoding, bounded by the pipeline's batch size.
package natssink
