// Package kafka is the sink that writes events to Apache Kafka with
// github.com/twmb/franz-go (the default, Config.Client "franz-go") or
// github.com/segmentio/kafka-go (Config.Client "kafka-go"): one message per
// event, the event encoded with schema.AppendMsgpack (default) or
// schema.AppendJSON as the value. What follows holds for both clients
// unless it names one; the section franz-go lists how that client differs.
//
// franz-go is the default because kafka-go's transport runs one request
// per connection at a time, so a partition's requests cannot be pipelined
// with their order kept: measured side by side in one run of
// testenv/bench-pipeline (docs/BENCHMARKS.md, "Kafka and JetStream
// throughput"), franz-go drains a burst about 1.8x as fast at about 0.77x
// the CPU per event. kafka-go stays available ("kafka-go") with the same
// partitioning, so a switch in either direction moves no key.
//
// # Compression
//
// Config.Compression (default zstd) with Config.CompressionLevel (franz-go
// only; 0: the codec's default, zstd 3 as librdkafka's). kafka-go's zstd
// codec is replaced by this package's (zstd.go): the same level with a 1
// MiB window instead of 8 MiB, since a produce request is at most
// MaxRequestBytes (1 MB by default): 3.8 MiB per pooled encoder instead of
// 18 MiB, frames of the same size. franz-go's encoders keep a 64 KiB
// window of their own.
//
// # Messages
//
// The topic and the key come from templates (Config.Topic, default
// "cnstream-events"; Config.Key, default "{host}") with the placeholders
// {kind}, {host}, {machine_id}, {boot_id} and {stream} (the event's
// sequence stream: 1.1-c3 for CPU 3's process events, 18.101-s4242 for
// another connector id's sender, r for records without a stream). Every
// message has the headers
// content-type ("application/msgpack" or "application/json"),
// cnstream-schema-version ("1", the event's version) and cnstream-event-id
// (schema.Event.ID). The brokers create a topic on its first use when they
// allow auto-creation (auto.create.topics.enable, Kafka's default), with
// their default partition count: create the topics beforehand to choose it.
// The first write to a topic that does not exist yet fails with a retriable
// UNKNOWN_TOPIC_OR_PARTITION while the broker creates it; the pipeline's
// retry then succeeds (a batch for several new topics asks for all of them
// at once).
//
// # Ordering
//
// The partition of a message is the hash of its key (kafka-go's Hash
// balancer, FNV-1a as sarama: not the murmur2 of the Java client, so a Java
// producer with the same keys picks other partitions; the franz-go client
// uses the same hash, so switching clients does not move keys), and
// Kafka keeps order within a partition: with the default key every host's
// events stay in the order of the WriteBatch calls, which is the ordering
// unit the pipeline asks of this sink. A key of "{host}-{stream}" spreads
// one host's events over the topic's partitions (one partition's records
// are batched and compressed one after the other: more partitions, more
// in parallel) and keeps the order per stream instead of per host: what
// gap detection and the completeness audit need (each stream's sequence
// numbers in order), not a host-wide order (across CPUs the kernel gives
// none; mono_ns orders them). kafka-go writes each partition's
// batches one after the other. Adding partitions to a topic moves keys to
// other partitions: order across the change is not kept.
//
// # Delivery
//
// WriteBatch groups the batch by topic partition and sends each
// partition's messages at once, in produce requests of up to
// Config.MaxRequestBytes (uncompressed) sent one after the other, the
// partitions in parallel (kafka-go's Client.Produce; its Writer would hold
// every partition's messages for a BatchTimeout first). It returns once the
// brokers acknowledged every message: with Config.RequiredAcks "all" (the
// default) once every in-sync replica has it; "one" once the leader has
// it; "none" once it is sent, so that loss goes unseen. All of a WriteBatch
// is bounded by Config.WriteTimeout. A request that fails with a temporary
// error (NOT_LEADER_OR_FOLLOWER after a leader moved, NOT_ENOUGH_REPLICAS,
// a broken or refused connection) is sent again within WriteBatch, up to 10
// times with delays from 25 ms doubling up to 1 s (or until WriteTimeout;
// 3 times for a connection error, as a broker that is down is likely to
// stay down longer),
// which outlast the default MetadataTTL so that a moved leader is found; the partitions already
// written are not written again. The pipeline sizes the batches: the
// larger they are (up to thousands of events), the fewer requests per
// event.
//
// Delivery is at least once. kafka-go has no idempotent producer: a
// message the broker applied before the request failed (a timeout, a
// connection that broke before the answer, NOT_ENOUGH_REPLICAS_AFTER_APPEND)
// is written again by the retry within WriteBatch or by the pipeline, which
// retries a failed WriteBatch whole, partitions already written included. Consumers dedupe on
// the cnstream-event-id header, which stays the same across retries.
//
// # franz-go
//
// With Config.Client "franz-go", WriteBatch hands every record of the batch
// to franz-go's kgo.Client (no linger) and waits until each one's promise
// reported, or until WriteTimeout. Differences from kafka-go:
//
//   - Pipelining: with RequiredAcks "all" the producer is idempotent (kgo's
//     default) and sends up to 5 produce requests per broker at once, order
//     kept by the broker's sequence checks; a request the broker applied and
//     then failed is sent again with the same sequence numbers and not
//     duplicated. With "one" or "none" idempotence is off and one request
//     per broker is in flight (kgo.MaxProduceRequestsInflightPerBroker(1)),
//     to keep order.
//   - Retries: franz-go retries failed requests by itself (refreshing
//     metadata after NOT_LEADER and the like, no sooner than MetadataTTL
//     after the last refresh; MetadataTTL is kgo.MetadataMinAge, and the
//     metadata is refreshed at least every 5 minutes) until the record's
//     WriteTimeout (kgo.RecordDeliveryTimeout and the WriteBatch deadline).
//     A broker that cannot be reached therefore makes WriteBatch fail with
//     ErrWriteTimeout at WriteTimeout, not at once; a connection that fails
//     for good (a certificate that does not verify, failed authentication,
//     a TLS listener spoken to without TLS) or that the broker closes before
//     answering (kgo.ErrFirstReadEOF: TLS to a PLAINTEXT listener, SASL
//     missing; retriable) ends the WriteBatch at once.
//   - At least once after an error: a WriteBatch that returns before every
//     record was reported on (timeout, ctx, a failed connection) leaves
//     the records already sent to franz-go, which may still write them;
//     they are not purged (the pipeline writes the batch again, and the
//     first copies stay in order). Consumers dedupe on cnstream-event-id.
//     Close fails the records franz-go still holds (kgo.Client.Close).
//   - Memory: franz-go buffers at most 32768 records and 32 MiB of keys,
//     values and headers (kgo.MaxBufferedRecords, kgo.MaxBufferedBytes),
//     above the pipeline's default batch of 8192 events and 8 MiB; a larger
//     batch is handed over as earlier records are acknowledged. The batch's
//     encoding buffer is reused once every record of the batch was
//     reported on; otherwise a new one is made.
//   - MaxRequestBytes is kgo.ProducerBatchMaxBytes: the uncompressed bound
//     of one partition's record batch; a request may hold batches of several
//     partitions.
//   - Stats: Requests counts the produce requests written to a connection,
//     RequestErrors those whose write or read failed; a partition the
//     broker refused within an answered request is retried by franz-go and
//     not counted, and Retries (and Counters' Retries) stays 0.
//   - Ping asks the known brokers, then the bootstrap ones, for metadata
//     (kgo.Client.Ping).
//   - Errors: a Kafka error is kerr's *kerr.Error, with the kafka-go
//     error of the same code reachable too (errors.Is(err,
//     kafkago.MessageSizeTooLarge) works with both clients). It is
//     permanent when neither kerr.IsRetriable nor the kafka-go list below
//     calls its code retriable.
//
// # Errors
//
// New checks the Config (as Validate does); its errors wrap a
// *sink.ConfigError naming the field as cnstream's YAML spells it
// ("kafka.topic: ...") and are permanent (sink.IsPermanent). WriteBatch
// returns:
//
//   - ctx's error (wrapped) when ctx ends; messages already handed to
//     kafka-go may still be written.
//   - an error matching ErrWriteTimeout when Config.WriteTimeout runs out:
//     retriable.
//   - a permanent error when the brokers refuse the batch for good: a
//     message too large (MESSAGE_TOO_LARGE, or over
//     Config.MaxRequestBytes), an invalid topic name, failed authentication or
//     authorization, a broker certificate that does not verify, a listener
//     that expects TLS while TLS is off, and every
//     Kafka error code that kafka-go does not call temporary, but
//     BROKER_NOT_AVAILABLE, REPLICA_NOT_AVAILABLE and UNKNOWN_SERVER_ERROR. When messages
//     failed with different errors (kafka.WriteErrors), the batch is
//     permanent only if every failure is. The Kafka error stays reachable:
//     errors.Is(err, kafkago.MessageSizeTooLarge) works, kafkago being
//     github.com/segmentio/kafka-go.
//   - a retriable error otherwise: temporary Kafka errors (NOT_LEADER,
//     UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS...), unreachable
//     brokers, connection failures.
//   - sink.ErrClosed after Close.
//
// Errors never hold the SASL password, nor does Config's String.
//
// # Concurrency
//
// WriteBatch and Close may be called from any goroutine; they take turns
// (Close waits for a WriteBatch in progress, or gives up when its ctx ends).
// Stats may be called at any time. The Sink starts no goroutine that
// outlives a call: WriteBatch writes the partitions of a batch from one
// goroutine each and waits for all of them; kafka-go's Transport keeps its
// connections (and their goroutines) until Close. With franz-go, the
// kgo.Client's goroutines (connections, metadata, the producer's) run from
// the first WriteBatch or Ping until Close. The events passed to
// WriteBatch are only read and not kept after it returns.
package kafka
