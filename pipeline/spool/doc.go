// Package spool is the pipeline's durable log between the producer (the
// transform, or any producer of the delivery runtime) and the sinks: an
// event the kernel handed to cnstream is delivered, or a record says it
// was lost, across sink outages, crashes and restarts.
//
// # Layout
//
// A spool is a directory: segment files (<20-digit base index>.seg) of
// records, each a length, a CRC-32C, the record's index and kind, and one
// event in MessagePack (schema.AppendMsgpack); a head file of 64-byte
// slots with a CRC each: the next index and, per sequence stream of the
// boot, the last number appended (written after every Append), and each
// sink's acknowledged index (written in place at every Sync and before any
// segment is deleted, so that a full disk does not keep acknowledged
// segments from being deleted); and a lock file (flock: one process at a
// time). Indices increase by one per record across
// segments, so a record destroyed on disk leaves a hole whose size is known.
//
// A format of our own rather than github.com/tidwall/wal: its binary
// records carry no checksum (a flipped byte goes undetected), a torn last
// segment makes Open fail with ErrCorrupt instead of cutting the tail, and
// it has one read position, where the spool needs one cursor per sink.
//
// # Concurrency and ownership
//
// One goroutine appends (Append; Resume before the first Append). Each
// cursor is used by one goroutine (its sink's worker: Take, TryTake, Ack);
// Sync, Stats, Abort and the cursors' Close and Abort are safe from any.
// Append copies the events into its log and keeps them (struct copies) in a
// memory tail of CacheEvents: a cursor that keeps up takes from memory and
// never reads the disk; one that fell behind reads its segments and decodes
// them, then catches up with the memory tail.
//
// # Acknowledgements
//
// A cursor moves its acknowledged position only on Ack: the oldest n items
// taken are done (delivered, or given up and stated by a record). Segments
// are deleted when every cursor acknowledged them, after the positions are
// made durable. What a cursor took and did not acknowledge when the process
// ended is taken again by the next Open, in order, with its ids.
//
// # Loss
//
// Nothing leaves the spool silently. A torn or corrupt tail found by Open
// is cut off and every cursor gets a corrupt record (file, offset, bytes);
// a cursor that meets a hole in the indices (records destroyed, a segment
// gone) gets a dropped record of reason spool_corrupt or spool_missing with
// the exact count. These records have fixed ids (the spool's id and the
// hole's index), so a repeat after a crash is counted once by a consumer
// that dedupes on ids. DropOldest deletes the oldest segment when full:
// each cursor that had not taken it gets a dropped record of reason
// spool_full_drop_oldest, and the loss records in it. An Append that fails
// to write (a full disk) leaves nothing half written: each cursor gets a
// dropped record of reason spool_write_failed, the failure is logged and
// counted, and the next Append tries again.
//
// # Restart continuity
//
// Resume returns the last number handed to the spool per sequence stream of
// this boot: given to the transform (transform.Config.Resume), the first
// message of a stream that does not follow on becomes a gap record of
// reason restart, so what the kernel numbered while cnstream was down is
// counted. Streams of another boot id are forgotten at Open.
package spool
