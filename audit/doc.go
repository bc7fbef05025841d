// Package audit proves, or refutes, the completeness of a stream of
// cnstream events: it counts what a sink (or an archive, or a topic)
// delivered against the kernel's sequence numbers and the pipeline's loss
// and accounting records, and names every number nothing accounts for.
// It is pure: it reads events given to it, does no I/O, and imports
// schema only from the project. `cnstream verify` prints its [Report].
//
// # The identity
//
// A stream is (host, boot, connector idx and val, cpu, sender, epoch); see
// docs/DELIVERY.md, "Proving completeness". For each stream:
//
//	delivered distinct seqs + sum of gap.missing (every reason) + sum of filtered.count == seq span
//
// The span runs from the lowest number seen to the highest, in u32 wrap
// order: numbers are compared by int32(seq - ref), ref being the first
// number the [Tally] saw of the stream, so a stream may wrap through 0
// within one epoch (it must not run over 2^31 numbers: the epoch changes
// before that). The numbers seen are the delivered events' Stream.Seq, the
// [expected, got) ranges of gap records, the [first, last] ranges of
// filtered records, and the [first, last] of a stream_closed record (the
// first and last number cnstream saw of the epoch, so loss at a closed
// stream's end shows too).
//
// dropped records carry no stream: a count, a reason and a sink. The
// numbers they account for are holes in the streams of their host and
// boot. So the audit is per (host, boot):
//
//	Holes         = sum over streams of (Span - Delivered - GapMissing - Filtered), each when positive
//	Unaccounted   = max(0, Holes - Dropped)     numbers nothing accounts for: loss nobody recorded
//	OverAccounted = max(0, Dropped - Holes)     allowed: sink_failed counts a whole batch, torn_tail an upper bound
//	ProvablyLost  = GapMissing + Dropped
//
// [Report.Complete] is true when no host has Unaccounted numbers.
//
// # What each number means
//
// Per stream ([StreamReport]): First and Last, the lowest and highest
// number seen; Span, Last - First + 1; Delivered, the distinct numbers of
// delivered events; Duplicates, events delivered again with a number
// already seen (a redelivery after a restart or retry, never counted
// twice); GapMissing and Filtered, the sums of the stream's gap and
// filtered records; Holes, what the identity lacks; Excess, what it has
// beyond the span (a gap or filtered record counting numbers also
// delivered, or more than its range holds). Excess on one stream never
// covers holes on another. Closed is the reason of a stream_closed record.
//
// Per host and boot ([HostReport]): Events, the distinct delivered events
// (records never count as events), including Unnumbered ones that have no
// stream (counted, in no stream, not deduplicated); Records, the distinct
// loss and accounting records ([schema.Kind.IsLoss]) by kind name, and
// RecordDuplicates, the records restated with an id already seen; the
// sums GapMissing, Dropped (and DroppedBy reason), Filtered and Overrun
// (the overrun records' kernel drops); Holes, Excess, Unaccounted,
// OverAccounted and ProvablyLost as above; First and Last, the earliest and
// latest Time of its events and records. Invalid counts records that lack
// what their kind needs (a gap, filtered or stream_closed record without a
// stream or its info, or whose range runs backwards; a gap of no range
// that says something is missing; a dropped record without its info):
// they are counted in Records and left out of every sum. Events without a
// Host are reported under a host of empty names.
//
// # Deduplication
//
// Events of a stream are deduplicated by (stream, seq); a record by its
// id (Event.ID, or the id derived from its Record member), over the whole
// Tally: the pipeline restates a record with its id at the head of every
// batch after a failed one. A record with neither is never deduplicated.
// The set of record ids grows with the records, which are few; the
// numbers of a stream are held in chunks of 65536 numbers, each a sorted
// array of up to 4096 members, then an 8 KiB bitmap: at most about 2
// bytes per member plus a chunk's overhead, 8 KiB per 65536 numbers of a
// dense stream (10M events of 2 streams hold about 1.2 MB).
//
// # Decoding archived records
//
// A [Decoder] turns archived records (JSON lines or msgpack values, as the
// file sink writes them) into the events a Tally reads, fast enough for
// verifying archives of millions of events: a JSON line of a connector
// event is read by its fixed prefix (v, id, kind, time, mono_ns, host,
// stream, in schema.AppendJSON's order) without allocating, and anything
// else (loss and accounting records, other layouts, escaped strings) by
// schema.DecodeJSON in full. FuzzDecode checks that the two agree.
//
// # Limits
//
//   - dropped records carry no stream, so holes and drops are matched per
//     host and boot, not per stream: a hole on one stream and a drop
//     that came from another are not told apart.
//   - Loss before the first number a stream delivered, or after its last
//     (beyond any record's range), has no number on the other side: it
//     shows only in the overrun records' kernel drops (Overrun), which
//     the audit sums but does not match.
//   - The audit sees what it is given. To audit one sink, give it that
//     sink's events and records only; a dropped record names its Sink, and
//     the audit does not filter by it.
//   - corrupt, malformed and forged records are counted in Records only:
//     the events a corrupt spool region held are counted by the
//     spool_corrupt gaps of their streams.
//
// # Concurrency
//
// A [Tally] is not safe for concurrent use. [Tally.Add] keeps no
// reference to its event and allocates nothing for an event of a stream
// it has seen, but when a chunk of 65536 numbers starts, grows its array
// (doubling) or turns into a bitmap; [Tally.Report] copies everything it returns, and
// Add may go on after it.
package audit
