// Package archive is the pure core of the tamper-evident archive: RFC 6962
// Merkle hashing of an archive file's records, a running log of file roots
// with signed checkpoints (C2SP signed notes, Ed25519), and their
// verification. It works over bytes only: it opens, writes and syncs no
// file, and imports schema only from the project. The hashing is
// golang.org/x/mod/sumdb/tlog and the signing golang.org/x/mod/sumdb/note;
// nothing here is hand-made crypto.
//
// # Format
//
// A record is one encoded event as written to an archive file: one JSON
// line without its newline, or one msgpack value. A closed file's tree is
// the RFC 6962 tree of its records (leaf hash SHA-256(0x00 || record),
// node hash SHA-256(0x01 || left || right)); [Tree] builds it one record
// at a time in O(log n) memory, and a [FileEntry] holds the file's name,
// number of records and tree hash (its root).
//
// The archive's log is the RFC 6962 tree whose leaves are the files in the
// order they were closed. The leaf of a file is the canonical text
//
//	file <name>\n
//	records <decimal count>\n
//	root <base64 file root>\n
//
// ([FileEntry.Leaf]; the name is UTF-8 without control characters or
// leading and trailing white space; decimals without leading zeros; base64
// standard with padding). [LogRoot] is the log's tree hash.
//
// A checkpoint is a C2SP signed note (c2sp.org/signed-note) whose text is
// a C2SP checkpoint (c2sp.org/tlog-checkpoint) with two kinds of extension
// lines:
//
//	<origin>\n                      e.g. cnstream/<host>
//	<log size: number of files>\n
//	<base64 log root>\n
//	prev <base64 SHA-256 of the previous checkpoint's text>\n   (absent in the first)
//	file <records> <base64 file root> <name>\n                 (one per file added)
//
// The file lines list the files added since the previous checkpoint, in
// log order, so the chain of checkpoints alone names every file of the
// archive. The prev line hashes the previous checkpoint's signed text (not
// its signatures, so a witness may add cosignatures without breaking the
// chain; the signature itself is checked by [OpenCheckpoint]). The writer
// makes one checkpoint per closed file or per batch of them with
// [NewCheckpoint], signs it with [Sign] and a key from [GenerateKey].
//
// # Verification
//
// [OpenCheckpoint] checks a checkpoint's signature with the archive's
// verifier key: a checkpoint re-signed with another key, even one of the
// same name, fails with the note package's *note.UnverifiedNoteError.
// [VerifyChain] then checks, first checkpoint to last, that each is of the
// expected origin (a checkpoint of another host fails with [ErrOrigin]),
// names the one before it (a deleted, inserted or rewritten checkpoint
// fails with [ErrChain]), lists files that are in the archive at the same
// position with the same count and root ([ErrMissing], [ErrReordered],
// [ErrEdited]) and has the root of those entries; a file no checkpoint
// covers fails with [ErrUnsigned]. [VerifyFile] checks one file's records
// against its signed entry: a short file names the first missing record
// ([ErrTruncated]), a long one the first extra record ([ErrExtra]), changed
// bytes give [ErrEdited] with Record -1, since the root alone cannot tell
// which record changed. [VerifyFileLeaves] names the changed record too,
// given the file's leaf hashes (returned by [Tree.Add]; 32 bytes a record
// that a writer may keep beside the file), which it first checks against
// the signed root. Errors are a *[CheckpointError] or a *[FileError]
// naming the first broken link and wrapping one sentinel.
//
// The key holder can rewrite history from some point on and sign it anew;
// checkpoints sent elsewhere (a witness, another host, the auditor) are
// what pin it: a copy of any later checkpoint exposes the rewrite.
//
// # Loss
//
// The archive proves that what was written is complete and unaltered from
// the first checkpoint to the last; it does not record lost events. Events
// lost before the sink (kernel overruns, queue drops) are accounted by the
// gap and loss records in the event stream, which are records like any
// other and so are covered by the file roots. Records written after the
// last checkpoint (a crash before a file was closed) are not signed: the
// verifier reports such a file as [ErrUnsigned], and the writer is expected
// to close and checkpoint it on restart.
//
// # Concurrency
//
// Functions are safe for concurrent use; a [Tree] is not.
package archive
