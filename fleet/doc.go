// Package fleet is the fleet archiver: a member of a Kafka consumer group
// that reads the events cnstream hosts send to one topic (the Kafka sink's
// messages) and writes each host and boot's events into its own
// tamper-evident archive, <Dir>/<hostname>/<boot_id>/ (a file sink
// directory with the archive on: see package sink/file, # Archive), while
// keeping a live completeness audit of each (package audit). Archivers
// scale as members of one group: each archives the hosts of the partitions
// it owns (the Kafka sink's default key {host} keeps a host on one
// partition).
//
// # A round, and why fsync comes before commit
//
// Run repeats rounds: PollRecords (at most Config.Batch records); decode
// each value (by its content-type header, without one sniffed: '{' is
// JSON, anything else msgpack); group the events by (hostname, boot_id);
// per host, drop the events whose id is in the host's dedupe window,
// WriteBatch the rest to its archive (fsynced: the sinks use SyncAlways)
// and add them to its audit (decoding runs in GOMAXPROCS slices of the
// round side by side, and the hosts' writes side by side, at most
// GOMAXPROCS at once; archives are opened one after the other, since one
// may wait for a lock); fsync the malformed logs written; only then
// CommitRecords for the whole round, then AllowRebalance. Offsets are
// committed only for records on disk, so a crash repeats a round but never
// skips one, and the repeat writes nothing twice (the dedupe window). A
// failed commit is logged and counted (Stats.CommitErrors), the offsets
// are kept and committed by the next round's commit, at a revoke or at the
// end of Run. A failed write ends Run with the error, without committing
// the round (the file sink cuts the failed batch off its file): the next
// Run, or the partition's next owner, gets the records again.
//
// A record whose value does not decode is counted (Stats.Malformed) and
// appended raw to <Dir>/_malformed/<topic>-<partition>.log (a line
// "topic=... partition=... offset=... bytes=N error=...", the N bytes, a
// newline), fsynced with the round, never dropped silently and never
// blocking the round. Events without a hostname go to
// <Dir>/_unknown/<boot_id>, an empty boot id is "_none". Host names and
// boot ids are outside input: bytes other than [A-Za-z0-9-.:@+=,_], and a
// leading '.' or '_', are %XX-escaped in directory names (and in the
// origin), so no name escapes Dir or collides with _malformed or _unknown.
//
// # Host archives, locks and crashes
//
// A host's archive is opened on first need: <dir>/.lock is locked with
// flock (LOCK_EX|LOCK_NB); while another archiver holds it (a partition's
// previous owner still closing it) the archiver logs it and retries with
// backoff (50 ms doubling to 2 s) until Run's ctx ends, holding its round
// (and so the group's rebalance). Then file.New opens the sink, whose
// crash recovery signs what a killed archiver left (the active file is
// rotated and signed; a torn tail cut); its losses (sink.LossReporter) are
// written into the archive as dropped records (schema.Records.Dropped,
// sink "archive") before the next events, except a torn tail: it holds
// only records of a round not yet fsynced, hence not committed, which
// Kafka delivers again (it is logged, not stated as lost: a dropped
// count would offset, per host, a hole no record explains). The whole archive is then read
// (file.OpenArchive, Records, audit.Decoder: about 1M records/s): every
// record goes to the host's audit.Tally, so the live report is the
// archive's and not only this process's, and the ids of the last
// DedupeWindow records fill the dedupe window, so that a round repeated
// after a crash, a lost partition or a producer's retry is not written
// twice. The checkpoints' origin of a host archive is
// Origin+"/"+hostname+"/"+boot_id.
//
// An archive is closed (file.Sink.Close, which rotates and signs the
// active file) and its lock released when it has had no event for
// Config.IdleClose, when the partitions it was seen on are revoked or
// lost, and at the end of Run. Its audit at the close stays in Report
// (Open false); reopening it reads the archive again.
//
// # Rebalances, and why franz-go
//
// The archiver uses github.com/twmb/franz-go, not segmentio/kafka-go as
// the Kafka sink does: kafka-go's Reader with a GroupID gives no callback
// when partitions are revoked, so an archiver could not flush, fsync,
// commit and close (release) the archives of a partition before another
// member takes it. franz-go has OnPartitionsRevoked and OnPartitionsLost,
// and BlockRebalanceOnPoll, under which no rebalance (and no callback)
// happens between a poll and AllowRebalance: a round's records are
// written, fsynced and committed by the member that owns them. On
// OnPartitionsRevoked the archiver commits what a failed commit left for
// those partitions and closes the archives of the hosts seen on them; on
// OnPartitionsLost (the member was thrown out of the group: nothing can be
// committed) it closes them too, and the next owner gets the uncommitted
// records again and dedupes them against the archive. A round that waits
// long for a lock can exceed the group's rebalance timeout: the member is
// then thrown out (Lost) and rejoins.
//
// Auto-commit is off. A new group starts at the topic's start.
//
// # Dedupe window and its limits
//
// Per host and boot, the 64-bit hashes (hash/maphash, seeded per process)
// of the ids (schema.Event.EventID) of the last Config.DedupeWindow events
// written, in a ring and a set: an id seen again within the window is not
// written and is counted (HostStatus.DuplicatesRemoved, Stats.Duplicates).
// Limits: a repeat older than the window is written again (the audit then
// counts it in Duplicates, not twice in Events); two distinct ids of one
// host with the same 64-bit hash (odds about window/2^64 per event, 5e-14
// at 1<<17) would drop an event, which the audit would show as a hole.
// Events without a host are deduplicated in the _unknown archive.
//
// # Memory
//
// Bounded by: the fetch buffers (FetchMaxBytes 4 MiB per response, 1 MiB
// per partition, at most 2 fetches buffered: 8 MiB of compressed records,
// 7-10x that decompressed for msgpack events with zstd; options in
// Config.Opts override these); one round's
// records and their decoded events (Config.Batch); per open host, the
// dedupe window (about 8 bytes in the ring and 10-20 in the set per id:
// 3-6 MiB at the default 1<<17 ids) and its audit.Tally (about 2 bytes
// per number of a stream, see package audit); a file sink per open host.
// Closing idle hosts frees their window and tally (their report is kept).
//
// # Concurrency
//
// Run must be called once; Report and Stats are safe from any goroutine
// at any time. New starts nothing.
package fleet
