// Package file is the sink that writes events to files in a directory: JSON
// lines or length-delimited MessagePack, rotated by size and by age, rotated
// files compressed with zstd.
//
// # Files
//
// The active file is "<prefix>.jsonl" (one schema.AppendJSON object per
// event, each ended by '\n') or "<prefix>.msgpack" (per event, a 4-byte
// big-endian length, then that many bytes of schema.AppendMsgpack). When
// the next record would take it past Config.MaxSize, or at the first batch
// after it has been open for Config.MaxAge, it is renamed to
// "<prefix>-<seq>-<UTC time>.<ext>": seq counts up from the highest in the
// directory, so names sort in the order the files were written. A Reader
// reads a directory back in that order: rotated files, compressed or not,
// then the active file. Files (the active file, the .zst and .zst.tmp
// files, Ping's probe) are created with mode 0640 and directories with 0750
// (Config.FileMode, Config.DirMode), set exactly with fchmod whatever the
// umask; directories that exist already keep theirs. One Sink per
// directory and prefix: two would interleave their writes (this is not
// checked).
//
// # Links planted in the directory
//
// The sink often runs as root in a directory others may write to. It opens
// the directory once, as an os.Root, and opens, creates, renames and
// removes every file relative to that descriptor (openat), so nothing
// escapes it. It never writes or reads through a link planted under one of
// its names: it creates files with O_CREATE|O_EXCL (never following a
// symlink), checks every existing file it opens (the active file at New, a
// rotated file to compress) against the directory entry (a regular file,
// the very one opened, and for the active file a single link), removes a
// stale .zst.tmp entry before creating it, and renames entries, not what
// they point to. A symlink, hard link or special file under the active
// file's name is not replaced by another name (readers expect the fixed
// one) and not removed (the sink removes only what it made): New, or the
// WriteBatch that would create the active file, fails with an error
// matching ErrUnsafeFile that names the entry, and the pipeline retries
// until an operator removes it. Such an entry under a rotated file's name
// is not a file of the sink's: it is skipped, never read or compressed.
//
// # Compression
//
// With Config.Compression Zstd (the default), a rotated file is compressed
// to "<name>.zst" by the Sink itself, without a goroutine: after each
// acknowledged batch, WriteBatch compresses a slice of the waiting files
// (twice the batch's bytes, at least 256 KiB; the fastest zstd level does
// about 550 MB/s on this data), so that the work of a 64 MiB file (about
// 120 ms) is spread over the batches of the next half file instead of
// stalling one of them. Close finishes what is left while its ctx allows.
// The .zst is written as "<name>.zst.tmp", fsynced, renamed, and only then
// is the original removed; New cleans up after a crash at any step and
// queues the files still uncompressed. Compression errors cost no event
// (the file stays uncompressed and readable): they go to Config.OnError and
// Stats.Errors, never to WriteBatch's result.
//
// # Durability
//
// WriteBatch returns nil once every record of the batch is written to the
// active file, and, under SyncAlways (the default), fsynced. SyncInterval
// fsyncs at the end of a batch when Config.SyncInterval has passed since
// the last fsync, at rotation and on Sync or Close: an idle sink's data
// waits for the next of these, so a pipeline using it should call Sync on a
// timer. SyncNever never fsyncs the active file. Creating and rotating a
// file fsyncs the directory unless the policy is SyncNever.
//
// A failed fsync is never followed by a silent acknowledgement. Under
// SyncInterval the batches acknowledged since the last good fsync were
// only in the page cache; when an fsync fails (on Sync's timer, at the end
// of a batch, at rotation or Close) they may be lost, and Linux reports a
// writeback error once per file, so the next fsync succeeds. The sink
// cannot write them again (it no longer has them): it counts them
// (Stats.FsyncLost) and hands them over as a sink.Loss of reason
// "fsync_failed" with their count and byte range, which the pipeline
// states in a dropped record. The batch being written when its own fsync
// fails is not acknowledged: it is cut off and the pipeline retries it.
//
// A crash can leave a torn record at the end of the active file (a line
// without its newline, a length prefix with fewer bytes after it, or a last
// record that does not decode). New cuts it off (truncates the file to its
// last whole record), counts it in Stats.Torn and Stats.TornBytes,
// reports it to Config.OnTorn and keeps it as a sink.Loss of reason
// "torn_tail" counting the records the cut bytes held (Torn.Records), which
// TakeLosses hands to the pipeline (sink.LossReporter) to state in a
// dropped record; writing then continues after the last whole record.
// Records are never read in part.
//
// A corrupt region in the middle of a msgpack file (a length that is not
// a record's, with whole records after it: a disk error, pages lost with a
// failed writeback) is skipped, not cut: JSON lines resync at the next
// newline by themselves, and msgpack, whose frames carry no marker,
// resyncs at the next offset where a frame's record decodes as an event
// and is followed by the end of the file, a torn frame, or another frame
// whose record decodes (frames of up to 1 MiB; events are a few KiB).
// New keeps the region's bytes as they are (for forensics) and cuts only
// the torn tail after the last whole record; it counts the region
// (Stats.Corrupt) and hands it over as a sink.Loss of reason
// "corrupt_record", counting one record (the least it held: what was in
// it cannot be counted). A Reader returns an error matching ErrCorrupt for
// the region, once, and the next Next reads the records after it. The
// resync trusts bytes that decode as framed events: inside a damaged
// region, bytes that happen to (or were made to) look like them are read
// as events; without damage no resync happens. Records wholly lost past the torn one
// (never written, or written and lost with the page cache under
// SyncInterval and SyncNever) leave no trace in the file and are not
// counted; under a pipeline that redelivers what the sink did not
// acknowledge (a durable spool), the cut records may come again after the
// dropped record that counts them.
//
// # Archive
//
// With Config.Archive set, the directory is a tamper-evident archive (see
// package archive for the format and its verification). Each record
// written to the active file (a JSON line without its newline, a msgpack
// value without its length prefix: exactly the bytes in the file) is added
// to the RFC 6962 tree of that file, and its leaf hash goes to
// "<active name>.leaves" beside it (32 bytes a record, in order, written
// once per batch, not fsynced per batch: it is derived data, so that a
// verifier can name a changed record; an archive verifies without it).
//
// Rotation closes a file: data and leaves are fsynced (whatever the sync
// policy), the rotated name is recorded in the intent file
// "checkpoints/<prefix>.unsigned" (with the other rotations no checkpoint
// lists yet; written atomically; removed once a checkpoint lists them),
// both are renamed ("<rotated name>" and "<rotated name>.leaves";
// compression later makes the data file a .zst, never the leaves file),
// the directory fsynced, the file's entry (name without .zst, records,
// root) appended to the log, and a signed checkpoint of the log written as
// "checkpoints/<prefix>-<log size, 10 digits>.note" (a .tmp, fsynced,
// renamed, the directory fsynced). A checkpoint that cannot be written
// fails no batch (the events are written and synced): it goes to OnError,
// and the next checkpoint lists its files too. The intent file, written
// before the rename, does fail the rotation (and so the batch, which the
// pipeline retries) when it cannot be written. Close rotates the active
// file if it holds records and writes a checkpoint still owed (its error
// fails Close), so that a clean stop leaves every file signed.
// Stats.Checkpoints counts the checkpoints written.
//
// The key is the signer key file of Config.Archive.Key (note signer key
// text, one line; archive.GenerateKey makes one); New refuses a key file
// that group or others may read or write, or that does not parse, naming
// the file and never quoting the key. The verifier key is derived from it.
//
// New, before it changes anything in the directory, opens every checkpoint
// of the prefix in order with that key: one that does not verify (another
// key, edited), of another origin, or that does not follow the one before
// it fails New with an error naming it (the archive is broken or the key
// changed): New never starts a new chain over a broken one. Then it
// finishes what a crash left: the active file found with records (its
// torn tail cut and reported as usual) is rotated; every rotated file of
// the prefix that no checkpoint lists and that the intent file names (a
// crash between a rename and its checkpoint, or a checkpoint that could
// not be written) is read (decompressed if need be), hashed, given a new
// leaves file, and signed, in sequence order, in one checkpoint. While no
// chain exists (the archive turned on in a directory that holds files),
// every rotated file found is signed so, as found. Once a chain exists,
// a rotated file that no checkpoint lists and the intent file does not
// name is not the sink's (put there by someone, or rotated with the
// archive off): it is never signed, but reported to OnError and left for
// the verifier, which reports it as unsigned (one that
// cannot be written goes to OnError, as at rotation, and is written by
// the next rotation or Close, so that the losses New found are not
// dropped with a failed New); leaves
// files without their data file and unfinished checkpoint .tmp files are
// removed. The checkpoint is written last and lists only files no
// checkpoint lists, so a crash at any step is finished by the next New.
//
// A file whose records cannot all be framed (a corrupt region New kept in
// the middle of a msgpack active file, a torn end of a file rotated with
// the archive off) cannot be signed as it is: New renames it to
// "<name>[.zst].corrupt" (kept as it was, for forensics; no Reader lists
// it), writes its whole records, as a Reader returns them, to "<name>"
// (through a .tmp, fsynced, renamed) and signs that. The regions dropped
// are a "corrupt_record" loss, unless New already reported them for the
// active file (a crash in the middle of this reports them again). A
// .corrupt file without its data file is rewritten by the next New.
//
// OpenArchive lists an archive for the verifier and replay: the data
// files in the order written, their leaves files, the checkpoints;
// ArchiveFile.Records reads a file's raw records without decoding them and
// without an allocation per record (BenchmarkArchiveRecords, one core of
// a 2-vCPU VM: about 8 GB/s, 16-22M records/s from the page cache; 1.6
// GB/s, 3-4M records/s from .zst); ArchiveFile.ReadLeaves reads its leaf
// hashes.
//
// Cost: one SHA-256 of each record and, on average, one more of 65 bytes
// for the tree, which is the floor of RFC 6962 hashing: about 0.45-0.7 µs
// of CPU per event on top of the plain sink for records of 400 (msgpack)
// to 525 bytes (JSON) on that VM, where SHA-256 alone (SHA-NI) takes
// 0.39 µs for 525 bytes and 0.14 µs for 65 (BenchmarkWriteBatchArchive
// beside BenchmarkWriteBatch, metric cpu-ns/event); one write of the
// leaves per batch, no allocation per record; at each rotation two fsyncs
// (even under SyncNever), a rename and a signature.
//
// # Errors and loss
//
// A failed write (ENOSPC, EIO) or fsync returns an error that wraps the
// system's (errors.Is(err, syscall.ENOSPC) works) and cuts the active file
// back to its size before the batch, so the file never holds half a record
// and the pipeline can retry the whole batch. Records that went into a file
// rotated during the failed batch stay there: a retry duplicates them, and
// consumers dedupe on the event id, as the sink contract says. Invalid
// configuration and an event whose record would exceed 64 MiB are permanent
// errors (sink.Permanent). Stats counts events, bytes, batches, fsyncs,
// rotations, compressed files, torn tails cut and errors. Errors that fail
// no call (compressing a rotated file) go to Config.OnError and are
// reported by Counters (sink.StatsReporter) with the last one's text, for
// the pipeline's metrics and log.
//
// # Concurrency
//
// WriteBatch, Sync and Close may be called from any goroutine; they take
// turns (Close waits for a WriteBatch in progress, or gives up when its ctx
// ends). Stats may be called at any time. A Sink starts no goroutine. The
// events passed to WriteBatch are only read, and not kept after it returns.
// A cancelled ctx makes WriteBatch return ctx's error, checked while
// waiting for the sink, before the batch, every 256 events and before the
// fsync (a write or fsync in progress is not interrupted); a batch whose
// write had begun is cut off the file first, so what was written before
// stays intact.
package file
