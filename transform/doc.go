// Package transform turns connector datagrams into schema.Event v1 records:
// decoding, sequence tracking with gap records, wall-clock time, enrichment
// (through an Enricher such as transform/enrich's process table, which
// also replaces secrets in command lines with "[redacted]" as it reads
// them: transform/redact, counted in schema.Process.Redacted) and
// filtering.
//
// # Flow
//
// A Transformer takes each source.Batch in order (Batch), decodes every
// netlink message of every datagram (Decoder), follows each message's
// sequence stream (Tracker: per CPU for process events, per sender for other
// connector ids), and appends Events to a caller-owned slice: the events
// themselves, and records stating each loss where it was found (kind gap,
// overrun, malformed, forged). Records get ids of their own: the run id and a
// counter, from a schema.Records (Config.Records) that the pipeline's
// delivery runtime shares for its dropped records.
//
// # Ownership and concurrency
//
// A Transformer, its Decoder and Tracker are owned by one goroutine, which
// must not be the socket's reader: the reader hands batches over through a
// bounded queue and never waits for decoding or enrichment (cmd/cnstream's
// tail shows the pattern). Stats may be called from any goroutine.
//
// Events point into storage the Transformer allocates in slabs (no
// allocation per event); they stay valid until dropped.
//
// # Loss
//
// Nothing is dropped silently: kernel drops (ENOBUFS, SO_MEMINFO) become
// overrun records, sequence gaps gap records, undecodable input malformed
// records, rejected senders forged records. The filter never drops a loss
// record, and what it drops is stated per stream and batch by a filtered
// record (count, seq range, kinds). Userspace senders' streams are closed
// when idle or evicted at a cap (TrackerConfig), each stated by a
// stream_closed record; see seq.go's package comment for the bounds and for
// how epochs keep event ids unique. A run restarted on the same boot can
// resume the previous run's streams (Config.Resume): the numbers that passed
// while cnstream was not running become a gap record of reason
// schema.GapRestart instead of going unnoticed. Dropping events in the kernel
// (source.SubscribeConfig.Events) costs the ACK and makes gaps meaningless,
// so the default is to filter here.
package transform
