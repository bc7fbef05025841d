package fleet

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/file"
)

// Config configures an Archiver. Brokers, Dir and Key are required; every
// other field has a default.
type Config struct {
	// Brokers are the Kafka bootstrap brokers (host:port). Required.
	Brokers []string
	// Topic is the topic consumed. Default "cnstream-events".
	Topic string
	// Group is the consumer group id. Default "cnstream-archive".
	Group string
	// Opts are extra franz-go options from the caller (a TLS dialer,
	// SASL), applied after the archiver's own.
	Opts []kgo.Opt
	// Dir is the archive root: <Dir>/<hostname>/<boot_id>/ holds one host
	// and boot's archive (a file sink directory with the archive on).
	// Required.
	Dir string
	// Key is the signer key file (cnstream keygen). Required.
	Key string
	// Origin prefixes the checkpoints' origin: a host archive's origin is
	// Origin+"/"+hostname+"/"+boot_id. Default "cnstream-archive".
	Origin string
	// Format is the archive files' encoding. Default file.Msgpack.
	Format file.Format
	// MaxSize rotates a host's active file at this many bytes. Default 64 MiB.
	MaxSize int64
	// MaxAge rotates (closes and signs) a host's active file at the first
	// write after it has been open this long. Default 10 minutes.
	MaxAge time.Duration
	// Compression of rotated files. Default file.Zstd.
	Compression file.Compression
	// Batch is the records per poll-write-fsync-commit round. Default 8192.
	Batch int
	// DedupeWindow is the event ids remembered per host and boot: at
	// least Batch (a round repeated after a crash must fit in it). Default
	// 1<<17 (about 6 MiB per open host archive).
	DedupeWindow int
	// Silence: a host with no event for this long is reported Silent.
	// Default 5 minutes.
	Silence time.Duration
	// IdleClose: a host archive with no event for this long is closed
	// (signed) and its lock released. Default 2 minutes.
	IdleClose time.Duration
	// Log receives the archiver's log. Default: discarded.
	Log *slog.Logger
	// Now tells the time (receive times, silence, idle close, file
	// rotation). Default time.Now.
	Now func() time.Time
}

const (
	defaultTopic        = "cnstream-events"
	defaultGroup        = "cnstream-archive"
	defaultOrigin       = "cnstream-archive"
	defaultMaxSize      = 64 << 20
	defaultMaxAge       = 10 * time.Minute
	defaultBatch        = 8192
	defaultDedupeWindow = 1 << 17
	defaultSilence      = 5 * time.Minute
	defaultIdleClose    = 2 * time.Minute
)

// Validate checks c as New does, without touching the file system or the
// network. Errors are permanent (sink.Permanent) and wrap a
// *sink.ConfigError whose Field is "archiver.<key>" (archiver.brokers,
// archiver.dir, archiver.key, ...).
func (c Config) Validate() error {
	if _, err := c.resolve(); err != nil {
		return sink.Permanent(err)
	}
	return nil
}

// resolve returns c with its defaults, or a *sink.ConfigError naming the
// first bad field.
func (c Config) resolve() (Config, error) {
	bad := func(field, format string, args ...any) (Config, error) {
		return Config{}, &sink.ConfigError{Field: "archiver." + field, Msg: fmt.Sprintf(format, args...)}
	}
	if len(c.Brokers) == 0 {
		return bad("brokers", "required: at least one host:port")
	}
	for _, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " \t\n\x00") {
			return bad("brokers", "%q is not a host:port", b)
		}
	}
	if c.Topic == "" {
		c.Topic = defaultTopic
	}
	if !validTopic(c.Topic) {
		return bad("topic", "%q is not a Kafka topic name (1-249 of [a-zA-Z0-9._-], not . or ..)", c.Topic)
	}
	if c.Group == "" {
		c.Group = defaultGroup
	}
	if strings.ContainsRune(c.Group, 0) {
		return bad("group", "%q holds a NUL byte", c.Group)
	}
	if c.Dir == "" {
		return bad("dir", "required: the archive root directory")
	}
	if strings.ContainsRune(c.Dir, 0) {
		return bad("dir", "%q holds a NUL byte", c.Dir)
	}
	if c.Key == "" {
		return bad("key", "required: the path of the signer key file (cnstream keygen)")
	}
	if strings.ContainsRune(c.Key, 0) {
		return bad("key", "%q holds a NUL byte", c.Key)
	}
	if c.Origin == "" {
		c.Origin = defaultOrigin
	}
	if err := archive.ValidOrigin(c.Origin); err != nil {
		return bad("origin", "%q: want a line of UTF-8 text without control characters or leading and trailing spaces", c.Origin)
	}
	switch c.Format {
	case "":
		c.Format = file.Msgpack
	case "json":
		c.Format = file.JSONL
	case file.JSONL, file.Msgpack:
	default:
		return bad("encoding", "%q: want json or msgpack", c.Format)
	}
	switch {
	case c.MaxSize == 0:
		c.MaxSize = defaultMaxSize
	case c.MaxSize < 0:
		return bad("max_size", "%d: must be positive", c.MaxSize)
	}
	switch {
	case c.MaxAge == 0:
		c.MaxAge = defaultMaxAge
	case c.MaxAge < 0:
		return bad("max_age", "%v: must be positive", c.MaxAge)
	}
	switch c.Compression {
	case "":
		c.Compression = file.Zstd
	case file.Zstd, file.None:
	default:
		return bad("compression", "%q: want %s or %s", c.Compression, file.Zstd, file.None)
	}
	switch {
	case c.Batch == 0:
		c.Batch = defaultBatch
	case c.Batch < 0:
		return bad("batch", "%d: must be positive", c.Batch)
	}
	switch {
	case c.DedupeWindow == 0:
		c.DedupeWindow = defaultDedupeWindow
	case c.DedupeWindow < 0:
		return bad("dedupe_window", "%d: must be positive", c.DedupeWindow)
	}
	if c.DedupeWindow < c.Batch {
		return bad("dedupe_window", "%d is less than batch %d: a round repeated after a crash would not fit in it", c.DedupeWindow, c.Batch)
	}
	switch {
	case c.Silence == 0:
		c.Silence = defaultSilence
	case c.Silence < 0:
		return bad("silence", "%v: must be positive", c.Silence)
	}
	switch {
	case c.IdleClose == 0:
		c.IdleClose = defaultIdleClose
	case c.IdleClose < 0:
		return bad("idle_close", "%v: must be positive", c.IdleClose)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// validTopic reports whether t is a legal Kafka topic name.
func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
