package file

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/sink"
)

// Format is how events are written in a file.
type Format string

const (
	// JSONL writes one schema.AppendJSON object per event, each ended by a
	// newline. Files end in ".jsonl".
	JSONL Format = "jsonl"
	// Msgpack writes each event as a 4-byte big-endian length followed by
	// that many bytes of schema.AppendMsgpack. Files end in ".msgpack".
	Msgpack Format = "msgpack"
)

// SyncPolicy is when the active file is fsynced.
type SyncPolicy string

const (
	// SyncAlways fsyncs the file at the end of every WriteBatch, before it
	// returns: an acknowledged batch survives a crash of the machine.
	SyncAlways SyncPolicy = "always"
	// SyncInterval fsyncs at the end of a WriteBatch when SyncInterval has
	// passed since the last fsync, at rotation, on Sync and on Close. An
	// acknowledged batch survives a crash of the process; a crash of the
	// machine loses at most what was written since the last fsync, and an
	// idle sink holds unsynced data until its next batch, Sync or Close.
	SyncInterval SyncPolicy = "interval"
	// SyncNever leaves writing back to the kernel: an acknowledged batch
	// survives a crash of the process only. Compressed files are still
	// fsynced before the file they replace is removed.
	SyncNever SyncPolicy = "never"
)

// Compression is what happens to a file once it is rotated.
type Compression string

const (
	// Zstd compresses rotated files to "<name>.zst" (zstd, fastest level)
	// and removes the uncompressed file once the compressed one is synced.
	Zstd Compression = "zstd"
	// None leaves rotated files as they are.
	None Compression = "none"
)

// Config configures a Sink. The zero value works: events as JSON lines in
// ./cnstream-data, rotated at 64 MiB or after an hour, compressed with zstd,
// fsynced at every batch.
type Config struct {
	// Dir is the directory of the files, created (with its parents) if
	// missing. Default "./cnstream-data".
	Dir string

	// Prefix starts every file name: the active file is "<prefix>.<ext>",
	// rotated files "<prefix>-<seq>-<UTC time>.<ext>[.zst]". It must not
	// hold a path separator. Default "events".
	Prefix string

	// Format is JSONL or Msgpack; "json" is JSONL (cnstream's YAML names
	// it encoding: json, as for the other sinks). Default JSONL.
	Format Format

	// MaxSize rotates the active file before a record would take it past
	// MaxSize bytes (a record larger than MaxSize gets a file of its own).
	// Default 64 MiB; negative: never rotate by size.
	MaxSize int64

	// MaxAge rotates the active file at the first WriteBatch after it has
	// been open for MaxAge: since it was created, or, for a file found by
	// New, since New. Default 1 hour; negative: never rotate by age.
	MaxAge time.Duration

	// Compression is Zstd or None. Default Zstd.
	Compression Compression

	// Sync is SyncAlways, SyncInterval or SyncNever. Default SyncAlways.
	Sync SyncPolicy

	// SyncInterval is the least time between two fsyncs under
	// SyncInterval. Default 1 second.
	SyncInterval time.Duration

	// FileMode is the permission of the files the sink creates, set
	// exactly (with fchmod), whatever the umask. Default 0640.
	FileMode fs.FileMode

	// DirMode is the permission of the directories the sink creates, set
	// exactly, whatever the umask. Default 0750.
	DirMode fs.FileMode

	// Now tells the time for rotation by age, rotated file names and
	// SyncInterval. Default time.Now.
	Now func() time.Time

	// OnTorn, when set, is called when New cuts a torn record off the end of
	// a file it finds (after a crash), with what was cut. Either way the
	// cut is counted in Stats and handed over as a sink.Loss (TakeLosses,
	// reason "torn_tail"), which the pipeline states in a dropped record.
	OnTorn func(Torn)

	// OnError, when set, is called with the errors that fail no WriteBatch
	// or Close because no event is at stake: compressing a rotated file,
	// and compression left for the next New because Close's ctx ended.
	// They are counted in Stats.Errors and Stats.BackgroundErrors, and the
	// last one is kept for Counters (the pipeline logs it). It is called
	// from WriteBatch or Close, with the sink's lock held: it must not call
	// the Sink. Default: counted and kept only.
	OnError func(error)

	// Archive, when set, makes the directory a tamper-evident archive:
	// every rotated file's records are hashed into an RFC 6962 tree and
	// the files are listed in a chain of signed checkpoints (see # Archive
	// in the package documentation). Default nil: off.
	Archive *ArchiveConfig
}

// ArchiveConfig turns on the archive mode of a Sink.
type ArchiveConfig struct {
	// Key is the path of the signer key file: one line, the signer key in
	// the encoding of golang.org/x/mod/sumdb/note (archive.GenerateKey
	// makes one). It must not be readable or writable by group or others.
	// Required.
	Key string

	// Origin is the first line of every checkpoint, naming the log (a
	// line of UTF-8 text without control characters). Default
	// "cnstream/<hostname>".
	Origin string
}

// Torn describes a torn record cut off the end of a file.
type Torn struct {
	File   string // path of the file
	Offset int64  // where the cut record started: the file's new size
	Bytes  int64  // bytes cut
	// Records is how many records the cut bytes held, at least 1: a
	// partial record counts as one; after a corrupt msgpack length the
	// rest cannot be counted and counts as one.
	Records uint64
	Reason  string // why the tail is not a record
}

const (
	defaultDir          = "./cnstream-data"
	defaultPrefix       = "events"
	defaultMaxSize      = 64 << 20
	defaultMaxAge       = time.Hour
	defaultSyncInterval = time.Second
	defaultFileMode     = 0o640
	defaultDirMode      = 0o750
)

// Validate checks c as New does, without touching the file system:
// cnstream validate uses it. Errors are permanent and wrap a
// *sink.ConfigError naming the field as cnstream's YAML spells it
// ("file.prefix").
func (c Config) Validate() error {
	if _, err := c.resolve(); err != nil {
		return sink.Permanent(err)
	}
	return nil
}

// resolve returns c with defaults applied, or a *sink.ConfigError naming
// the first bad field.
func (c Config) resolve() (Config, error) {
	bad := func(field string, format string, args ...any) (Config, error) {
		return Config{}, &sink.ConfigError{Field: "file." + field, Msg: fmt.Sprintf(format, args...)}
	}
	if c.Dir == "" {
		c.Dir = defaultDir
	}
	if strings.ContainsRune(c.Dir, 0) {
		return bad("dir", "%q holds a NUL byte", c.Dir)
	}
	if c.Prefix == "" {
		c.Prefix = defaultPrefix
	}
	if strings.ContainsAny(c.Prefix, `/\`) || c.Prefix == "." || c.Prefix == ".." || strings.ContainsRune(c.Prefix, 0) {
		return bad("prefix", "%q is not a file name (no '/', '\\', NUL, and not . or ..)", c.Prefix)
	}
	switch c.Format {
	case "", "json":
		c.Format = JSONL
	case JSONL, Msgpack:
	default:
		return bad("encoding", "%q: want json (JSON lines) or msgpack", c.Format)
	}
	switch {
	case c.MaxSize == 0:
		c.MaxSize = defaultMaxSize
	case c.MaxSize < 0:
		c.MaxSize = -1
	}
	switch {
	case c.MaxAge == 0:
		c.MaxAge = defaultMaxAge
	case c.MaxAge < 0:
		c.MaxAge = -1
	}
	switch c.Compression {
	case "":
		c.Compression = Zstd
	case Zstd, None:
	default:
		return bad("compression", "%q: want %s or %s", c.Compression, Zstd, None)
	}
	switch c.Sync {
	case "":
		c.Sync = SyncAlways
	case SyncAlways, SyncInterval, SyncNever:
	default:
		return bad("sync", "%q: want %s, %s or %s", c.Sync, SyncAlways, SyncInterval, SyncNever)
	}
	switch {
	case c.SyncInterval == 0:
		c.SyncInterval = defaultSyncInterval
	case c.SyncInterval < 0:
		return bad("sync_interval", "%v: must not be negative", c.SyncInterval)
	}
	if c.FileMode == 0 {
		c.FileMode = defaultFileMode
	}
	if c.FileMode&^fs.ModePerm != 0 {
		return bad("file_mode", "%v has bits other than permissions", c.FileMode)
	}
	if c.DirMode == 0 {
		c.DirMode = defaultDirMode
	}
	if c.DirMode&^fs.ModePerm != 0 {
		return bad("dir_mode", "%v has bits other than permissions", c.DirMode)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Archive != nil {
		a := *c.Archive // the caller's stays as it is
		if a.Key == "" {
			return bad("archive_key", "required with the archive on: the path of the signer key file")
		}
		if strings.ContainsRune(a.Key, 0) {
			return bad("archive_key", "%q holds a NUL byte", a.Key)
		}
		if a.Origin == "" {
			host, err := os.Hostname()
			if err != nil {
				return bad("archive_origin", "not set, and the default cnstream/<hostname> failed: %v", err)
			}
			a.Origin = "cnstream/" + host
		}
		if err := archive.ValidOrigin(a.Origin); err != nil {
			return bad("archive_origin", "%q: want a line of UTF-8 text without control characters or leading and trailing spaces", a.Origin)
		}
		c.Archive = &a
	}
	return c, nil
}

func (f Format) ext() string { return "." + string(f) }
