package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/file"
)

const replaySynopsis = `replay DIR --to SINK_CONFIG [flags]

Sends the events of DIR, a directory written by the file sink (JSON lines or
msgpack, rotated, zstd-compressed or not), in the order they were written,
to the sinks of SINK_CONFIG: a cnstream configuration file of which only
"sinks:" is used (kafka, nats, file, stdout). Events go out as they are:
the same ids (Kafka's cnstream-event-id header, NATS's Nats-Msg-Id) and the
same content, hence the same Kafka keys and NATS subjects. Records of loss and accounting (gap, dropped, ...) are
events too and are replayed unless --kind leaves them out.

--since and --until select by the event's time (since <= time < until):
an RFC 3339 time (2026-12-01T10:00:00Z) or a duration meaning that long
before now (90m, 24h; counted from each run's start, a resumed one too).
(Issue 12 named them --from/--to; --to names the sink configuration here.)

Each sink gets batches of its batch.events and batch.bytes, each retried
with backoff (retry.initial, retry.max) until the sink acknowledges it or
the command is stopped; an error the sink marks permanent stops the replay
and names the sink and the event. After every batch all sinks acknowledged,
the progress is saved in the --state file (never in DIR: nothing in DIR is
written or removed). Run the same command again to resume after the last
acknowledged batch: what a sink had acknowledged of an unfinished batch is
sent again, and consumers dedupe on the event id. The resumed run checks
that the archive still holds, at the resume point, the event the state
names. SIGINT stops it with the state saved (exit status 1).

Progress: on a terminal a bar (bytes of the archive's files, events, rate,
ETA); otherwise a line every 5 s on stderr.`

// replayLogEvery is the interval of --progress log lines.
const replayLogEvery = 5 * time.Second

// replayState is the --state file: where a replay of an archive to a sink
// configuration stands. It is written after every batch all sinks
// acknowledged (temporary file, fsync, rename).
type replayState struct {
	Archive string `json:"archive"` // absolute DIR
	Prefix  string `json:"prefix"`
	// ConfigSHA256 is the SHA-256 of SINK_CONFIG's text, hex.
	ConfigSHA256 string `json:"config_sha256"`
	// Filter is the --since, --until and --kind flags as given.
	Filter string `json:"filter"`
	// Read is how many events were read from the archive (before
	// filtering), all of them acknowledged by every sink when kept.
	Read uint64 `json:"read"`
	// LastID is the id of the Read-th event; "" when Read is 0.
	LastID string `json:"last_id"`
	// Sent is the events each sink acknowledged, over every run.
	Sent    map[string]uint64 `json:"sent"`
	Updated time.Time         `json:"updated"`
}

// errArchiveChanged is returned when the archive does not hold, at the
// resume point, the event the state names.
var errArchiveChanged = errors.New("the archive changed since the state was written")

func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay DIR --to SINK_CONFIG [flags]", replaySynopsis, stderr)
	to := fs.String("to", "", "`SINK_CONFIG`: a cnstream configuration file whose sinks receive the events (required)")
	prefix := fs.String("prefix", "events", "the file sink's `prefix` of the archive's files")
	since := fs.String("since", "", "only events at or after `TIME` (RFC 3339, or a duration: that long ago)")
	until := fs.String("until", "", "only events before `TIME` (RFC 3339, or a duration: that long ago)")
	var kinds []string
	stringList(fs, "kind", "only events of these `kinds` (comma-separated or repeated: fork,exec,exit,...,gap,dropped,...)", &kinds)
	statePath := fs.String("state", "", "the state `FILE` (default ./cnstream-replay-<hash of DIR, prefix and SINK_CONFIG>.state)")
	restart := fs.Bool("restart", false, "ignore the state file and replay from the start (it is overwritten)")
	progressMode := fs.String("progress", "auto", "`MODE`: auto (a bar on a terminal, else log), bar, log or none")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usageErr("replay needs the archive DIR")
	case len(pos) > 1:
		return usageErr("replay takes one DIR, got %q", pos)
	case *to == "":
		return usageErr("--to SINK_CONFIG is required")
	case *prefix == "" || strings.ContainsRune(*prefix, '/'):
		return usageErr("--prefix %q: want a file name prefix without a path separator", *prefix)
	}
	switch *progressMode {
	case "auto", "bar", "log", "none":
	default:
		return usageErr("--progress %q: want auto, bar, log or none", *progressMode)
	}
	filter, err := newReplayFilter(time.Now(), *since, *until, kinds)
	if err != nil {
		return err
	}

	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return fmt.Errorf("archive %s: %w", pos[0], err)
	}
	if st, err := os.Stat(dir); err != nil {
		return fmt.Errorf("archive: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("archive %s: not a directory", dir)
	}
	a, err := file.OpenArchive(dir, *prefix)
	if err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}
	if len(a.Files) == 0 {
		return fmt.Errorf("archive %s: no files of prefix %q (%s.jsonl, %s-<seq>-<time>.jsonl.zst, .msgpack, ...): see --prefix", dir, *prefix, *prefix, *prefix)
	}

	text, err := os.ReadFile(*to)
	if err != nil {
		return fmt.Errorf("read sink config: %w", err)
	}
	c, err := LoadConfig(*to, text)
	if err != nil {
		return err
	}
	for _, sc := range c.Sinks {
		if sc.Type == "file" && sc.File != nil {
			if d, err := filepath.Abs(cmp.Or(sc.File.Dir, "cnstream-data")); err == nil && d == dir {
				return fmt.Errorf("sink %q writes into the archive directory %s: replay never writes into the archive", sc.Name, dir)
			}
		}
	}
	sum := sha256.Sum256(text)
	cfgHash := hex.EncodeToString(sum[:])
	if *statePath == "" {
		*statePath = defaultReplayState(dir, *prefix, text)
	}
	state := &replayState{Archive: dir, Prefix: *prefix, ConfigSHA256: cfgHash, Filter: filter.text, Sent: map[string]uint64{}}
	if !*restart {
		old, err := loadReplayState(*statePath)
		if err != nil {
			return err
		}
		if old != nil {
			if err := old.matches(state, *statePath); err != nil {
				return err
			}
			state = old
			if state.Sent == nil {
				state.Sent = map[string]uint64{}
			}
		}
	}
	if ap, err := filepath.Abs(*statePath); err == nil && filepath.Dir(ap) == dir {
		return fmt.Errorf("--state %s is in the archive directory: replay never writes into the archive", *statePath)
	}

	var sinks []*replaySink
	for i := range c.Sinks {
		sc := &c.Sinks[i]
		s, err := sc.open(stdout)
		if err != nil {
			closeReplaySinks(sinks)
			return fmt.Errorf("sink %q: %w", sc.Name, err)
		}
		be, bb := sc.batchDefaults()
		sinks = append(sinks, &replaySink{name: sc.Name, s: s, batchEvents: cmp.Or(be, 512), batchBytes: cmp.Or(bb, 1<<20),
			initial: time.Duration(sc.Retry.Initial), max: time.Duration(sc.Retry.Max), stderr: stderr})
	}

	rp := &replayer{files: a.Files, sinks: sinks, filter: filter, state: state, statePath: *statePath, stderr: stderr}
	for _, f := range a.Files {
		rp.total += fileSize(f.Path)
	}
	rp.show = newReplayDisplay(*progressMode, stderr, rp.total)
	runErr := rp.run(ctx)
	rp.show.finish()
	if cerr := closeReplaySinks(sinks); runErr == nil {
		runErr = cerr
	}
	rp.summary()
	if ctx.Err() != nil && (errors.Is(runErr, context.Canceled) || errors.Is(runErr, context.DeadlineExceeded)) {
		return fmt.Errorf("interrupted after %d events; run the same command again to resume", state.Read)
	}
	return runErr
}

// parseDirFlags parses the flags of a command that takes at most one DIR,
// before or after its flags (cnstream verify DIR --key PUB); "" without one.
func parseDirFlags(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parseInterleaved(fs, args)
	switch {
	case err != nil:
		return "", err
	case len(pos) > 1:
		return "", usageErr("unexpected argument %q", pos[1])
	case len(pos) == 1:
		return pos[0], nil
	}
	return "", nil
}

// parseInterleaved parses flags before and after positional arguments
// (cnstream replay DIR --to FILE) and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// defaultReplayState is the state file's default name, in the current
// directory: a short hash of the archive, its prefix and the sink
// configuration's text.
func defaultReplayState(dir, prefix string, config []byte) string {
	h := sha256.New()
	h.Write([]byte(dir))
	h.Write([]byte{0})
	h.Write([]byte(prefix))
	h.Write([]byte{0})
	h.Write(config)
	return "cnstream-replay-" + hex.EncodeToString(h.Sum(nil)[:6]) + ".state"
}

func loadReplayState(path string) (*replayState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var s replayState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s: not a replay state file: %v (use --restart to overwrite it)", path, err)
	}
	if s.Archive == "" || (s.Read > 0 && s.LastID == "") {
		return nil, fmt.Errorf("state %s: not a replay state file: no archive or last id (use --restart to overwrite it)", path)
	}
	return &s, nil
}

// matches checks that the state old was written by a replay of the same
// archive to the same sinks with the same filters as want.
func (old *replayState) matches(want *replayState, path string) error {
	switch {
	case old.Archive != want.Archive || old.Prefix != want.Prefix:
		return fmt.Errorf("state %s is for archive %s (prefix %s), not %s (prefix %s): use another --state, or --restart", path, old.Archive, old.Prefix, want.Archive, want.Prefix)
	case old.ConfigSHA256 != want.ConfigSHA256:
		return fmt.Errorf("state %s was written with another sink configuration (its text changed): use another --state, or --restart", path)
	case old.Filter != want.Filter:
		return fmt.Errorf("state %s was written with other filters (%s, now %s): use the same flags, another --state, or --restart", path, or(old.Filter, "none"), or(want.Filter, "none"))
	}
	return nil
}

func (s *replayState) save(path string) error {
	s.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// replayFilter selects events by time and kind.
type replayFilter struct {
	since, until time.Time // zero: unbounded
	kinds        []bool    // by Kind; nil: every kind
	text         string    // the flags as given, for the state
}

func newReplayFilter(now time.Time, since, until string, kinds []string) (*replayFilter, error) {
	f := &replayFilter{}
	var parts []string
	var err error
	if since != "" {
		if f.since, err = parseReplayTime("since", since, now); err != nil {
			return nil, err
		}
		parts = append(parts, "--since "+since)
	}
	if until != "" {
		if f.until, err = parseReplayTime("until", until, now); err != nil {
			return nil, err
		}
		parts = append(parts, "--until "+until)
	}
	if !f.since.IsZero() && !f.until.IsZero() && !f.since.Before(f.until) {
		return nil, usageErr("--since %s is not before --until %s: no event could be sent", f.since.Format(time.RFC3339Nano), f.until.Format(time.RFC3339Nano))
	}
	if len(kinds) > 0 {
		f.kinds = make([]bool, len(schema.Kinds())+1)
		var known []string
		for _, k := range schema.Kinds() {
			known = append(known, k.String())
		}
		var names []string
		for _, s := range kinds {
			k, ok := schema.ParseKind(strings.ToLower(s))
			if !ok {
				return nil, usageErr("--kind: unknown kind %q (known: %s)", s, strings.Join(known, ","))
			}
			f.kinds[k] = true
			names = append(names, k.String())
		}
		slices.Sort(names)
		parts = append(parts, "--kind "+strings.Join(slices.Compact(names), ","))
	}
	f.text = strings.Join(parts, " ")
	return f, nil
}

// parseReplayTime reads an RFC 3339 time, or a positive duration meaning
// that long before now.
func parseReplayTime(name, s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usageErr("--%s %q: want an RFC 3339 time (2026-12-01T10:00:00Z) or a duration meaning that long ago (90m, 24h)", name, s)
}

func (f *replayFilter) keep(e *schema.Event) bool {
	if f.kinds != nil && (int(e.Kind) >= len(f.kinds) || !f.kinds[e.Kind]) {
		return false
	}
	if !f.since.IsZero() && e.Time.Before(f.since) {
		return false
	}
	if !f.until.IsZero() && !e.Time.Before(f.until) {
		return false
	}
	return true
}

// replaySink is one sink of SINK_CONFIG and what it was sent this run.
type replaySink struct {
	name        string
	s           sink.Sink
	batchEvents int
	batchBytes  int64
	initial     time.Duration
	max         time.Duration
	stderr      io.Writer

	sent, batches, retries uint64 // this run; written by the sink's goroutine, read after it ended
}

func closeReplaySinks(sinks []*replaySink) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range sinks {
		if err := s.s.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("sink %q: close: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// send writes events (the archive's events at positions at, 1-based) in
// batches of the sink's bounds, each retried until acknowledged. A
// permanent error is narrowed down to the event the sink refuses.
func (rs *replaySink) send(ctx context.Context, events []schema.Event, at []uint64) error {
	for len(events) > 0 {
		n, bytes := 0, int64(0)
		for n < len(events) && n < rs.batchEvents && (n == 0 || bytes+events[n].SizeEstimate() <= rs.batchBytes) {
			bytes += events[n].SizeEstimate()
			n++
		}
		err := rs.write(ctx, events[:n])
		if err != nil && sink.IsPermanent(err) {
			return rs.refused(ctx, events[:n], at[:n], err)
		}
		if err != nil {
			return err
		}
		rs.sent += uint64(n)
		rs.batches++
		events, at = events[n:], at[n:]
	}
	return nil
}

// write writes one batch, retrying errors that are not permanent until
// ctx ends.
func (rs *replaySink) write(ctx context.Context, b []schema.Event) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = cmp.Or(rs.initial, 100*time.Millisecond)
	bo.MaxInterval = cmp.Or(rs.max, 5*time.Second)
	bo.MaxElapsedTime = 0
	op := func() error {
		err := rs.s.WriteBatch(ctx, b)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return backoff.Permanent(ctx.Err())
		case sink.IsPermanent(err):
			return backoff.Permanent(err)
		}
		rs.retries++
		return err
	}
	return backoff.RetryNotify(op, backoff.WithContext(bo, ctx), func(err error, d time.Duration) {
		fmt.Fprintf(rs.stderr, "cnstream replay: sink %s: a batch of %d events failed, again in %v: %v\n", rs.name, len(b), d.Round(time.Millisecond), err)
	})
}

// refused names the event of b the sink refuses for good: b is sent again
// one event at a time (consumers dedupe what the sink had applied).
func (rs *replaySink) refused(ctx context.Context, b []schema.Event, at []uint64, batchErr error) error {
	if len(b) > 1 {
		for i := range b {
			err := rs.write(ctx, b[i:i+1])
			if err != nil && sink.IsPermanent(err) {
				return fmt.Errorf("sink %q refused event %s (event %d of the archive, kind %s): %w", rs.name, b[i].EventID(), at[i], b[i].Kind, err)
			}
			if err != nil {
				return err
			}
			rs.sent++
			rs.batches++
		}
	}
	return fmt.Errorf("sink %q refused event %s (event %d of the archive, kind %s; a batch of %d ending with event %s): %w",
		rs.name, b[0].EventID(), at[0], b[0].Kind, len(b), b[len(b)-1].EventID(), batchErr)
}

// replayer reads the archive and sends it, round by round: a round is as
// many events as the largest batch of any sink; every sink writes it in its
// own batches, concurrently; the state is saved once all acknowledged it.
type replayer struct {
	files     []file.ArchiveFile
	sinks     []*replaySink
	filter    *replayFilter
	state     *replayState
	statePath string
	stderr    io.Writer
	show      replayDisplay

	resumed  uint64 // events skipped at start: acknowledged by an earlier run
	read     uint64 // events read this run, the skipped ones included
	filtered uint64
	sent     uint64 // events acknowledged by every sink this run

	// Position, in bytes of the archive's files on disk: done is the
	// files read to their end; within a file, the fraction of its records
	// read (from its leaves file: 32 bytes a record) or, without one, of
	// its bytes (an uncompressed file).
	total, done int64

	round      []schema.Event
	at         []uint64 // the archive position (1-based) of each event of round
	roundBytes int64
	lastID     string // of the last event read, kept or not
	maxEvents  int
	maxBytes   int64
}

// fileSize is the size of path on disk, 0 if it cannot be read.
func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// replayFile is where the replay is within one archive file.
type replayFile struct {
	disk    int64 // bytes on disk
	records int64 // from its leaves file; -1 unknown
	plain   bool  // not compressed: bytes read are bytes on disk
}

func (rp *replayer) pos(f replayFile, records, bytes int64) int64 {
	var in int64
	switch {
	case f.records > 0:
		in = min(f.disk, f.disk*records/f.records)
	case f.plain:
		in = min(f.disk, bytes)
	}
	return min(rp.total, rp.done+in)
}

// run reads the archive's records in order and sends them, round by
// round. Records an earlier run had sent (state.Read) are skipped without
// decoding, but the last of them, whose id must be the state's.
func (rp *replayer) run(ctx context.Context) error {
	skip := rp.state.Read
	if skip > 0 {
		fmt.Fprintf(rp.stderr, "cnstream replay: resuming after %d events acknowledged by an earlier run (state %s)\n", skip, rp.statePath)
	}
	rp.maxEvents, rp.maxBytes = 1, 1
	for _, s := range rp.sinks {
		rp.maxEvents, rp.maxBytes = max(rp.maxEvents, s.batchEvents), max(rp.maxBytes, s.batchBytes)
	}
	rp.round = make([]schema.Event, 0, rp.maxEvents)
	rp.at = make([]uint64, 0, rp.maxEvents)
	for _, af := range rp.files {
		f := replayFile{disk: fileSize(af.Path), records: -1, plain: !strings.HasSuffix(af.Path, ".zst")}
		if af.Leaves != "" {
			if n := fileSize(af.Leaves); n > 0 && n%32 == 0 {
				f.records = n / 32
			}
		}
		framing := int64(1) // a JSON line's newline
		if af.Format == file.Msgpack {
			framing = 4
		}
		var bytes int64
		err := af.Records(func(i int64, rec []byte) error {
			rp.read++
			bytes += int64(len(rec)) + framing
			if rp.read%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
				rp.show.update(rp.read, rp.pos(f, i+1, bytes))
			}
			if rp.read < skip {
				return nil
			}
			e, err := decodeRecord(rec, af.Format)
			if err != nil {
				return fmt.Errorf("%s: record %d: %w", af.Path, i, err)
			}
			if rp.read == skip {
				if id := e.EventID(); id != rp.state.LastID {
					return fmt.Errorf("%w: event %d is %s, the state %s says %s (use --restart to send it all again)", errArchiveChanged, skip, id, rp.statePath, rp.state.LastID)
				}
				rp.resumed = skip
				return nil
			}
			rp.lastID = e.EventID()
			if !rp.filter.keep(&e) {
				rp.filtered++
			} else {
				rp.round = append(rp.round, e)
				rp.at = append(rp.at, rp.read)
				rp.roundBytes += e.SizeEstimate()
			}
			if len(rp.round) >= rp.maxEvents || rp.roundBytes >= rp.maxBytes {
				return rp.flush(ctx, rp.pos(f, i+1, bytes))
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return err
			}
			return fmt.Errorf("reading the archive at event %d: %w", rp.read, err)
		}
		rp.done += f.disk
	}
	if rp.read < skip {
		return fmt.Errorf("%w: it holds %d events, the state %s says %d were sent (use --restart to send it all again)", errArchiveChanged, rp.read, rp.statePath, skip)
	}
	if err := rp.flush(ctx, rp.total); err != nil {
		return err
	}
	rp.show.update(rp.read, rp.total)
	return nil
}

// decodeRecord decodes one raw archive record.
func decodeRecord(rec []byte, format file.Format) (schema.Event, error) {
	if format == file.Msgpack {
		return schema.DecodeMsgpack(rec)
	}
	return schema.DecodeJSON(rec)
}

// flush sends the round to every sink and, once all acknowledged it,
// saves the state: read so far, and the last event's id.
func (rp *replayer) flush(ctx context.Context, pos int64) error {
	if rp.read <= rp.state.Read {
		return nil // nothing read beyond the state
	}
	if err := rp.sendRound(ctx, rp.round, rp.at); err != nil {
		return err
	}
	rp.sent += uint64(len(rp.round))
	rp.state.Read, rp.state.LastID = rp.read, rp.lastID
	for _, s := range rp.sinks {
		rp.state.Sent[s.name] += uint64(len(rp.round))
	}
	rp.round, rp.at, rp.roundBytes = rp.round[:0], rp.at[:0], 0
	if err := rp.state.save(rp.statePath); err != nil {
		return err
	}
	rp.show.update(rp.read, pos)
	return nil
}

// sendRound writes round to every sink, concurrently; the first permanent
// failure cancels the others.
func (rp *replayer) sendRound(ctx context.Context, round []schema.Event, at []uint64) error {
	if len(round) == 0 {
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(rp.sinks))
	var wg sync.WaitGroup
	for i, s := range rp.sinks {
		wg.Go(func() {
			if errs[i] = s.send(rctx, round, at); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return errors.Join(errs...)
}

func (rp *replayer) summary() {
	fmt.Fprintf(rp.stderr, "cnstream replay: %d events read from the archive (%d skipped: acknowledged by an earlier run), %d left out by the filters, %d sent\n",
		rp.read, rp.resumed, rp.filtered, rp.sent)
	for _, s := range rp.sinks {
		fmt.Fprintf(rp.stderr, "cnstream replay: sink %s: %d events in %d batches, %d retries (%d over every run)\n",
			s.name, s.sent, s.batches, s.retries, rp.state.Sent[s.name])
	}
}

// replayDisplay shows progress: update is called from the replay's
// goroutine, finish once at the end.
type replayDisplay interface {
	update(events uint64, pos int64)
	finish()
}

func newReplayDisplay(mode string, stderr io.Writer, total int64) replayDisplay {
	if mode == "auto" {
		mode = "log"
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	switch mode {
	case "bar":
		return &barDisplay{bar: progressbar.NewOptions64(total, progressbar.OptionSetWriter(stderr),
			progressbar.OptionSetDescription("replay"), progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30), progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(stderr) }))}
	case "log":
		return newLogDisplay(stderr, total, replayLogEvery)
	}
	return noDisplay{}
}

type noDisplay struct{}

func (noDisplay) update(uint64, int64) {}
func (noDisplay) finish()              {}

type barDisplay struct {
	bar    *progressbar.ProgressBar
	events uint64
}

func (b *barDisplay) update(events uint64, pos int64) {
	if events != b.events {
		b.events = events
		b.bar.Describe(fmt.Sprintf("replay: %d events", events))
	}
	_ = b.bar.Set64(pos)
}

func (b *barDisplay) finish() {
	if b.bar.State().CurrentNum >= b.bar.GetMax64() {
		_ = b.bar.Finish()
		return
	}
	_ = b.bar.Exit() // its OnCompletion ends the line
}

// logDisplay prints a line every interval: events, rate, percent, ETA.
// Rates count from the first update (a resumed run's first is after the
// events it skipped).
type logDisplay struct {
	w                  io.Writer
	total              int64
	started            bool         // updater's goroutine only
	start              atomic.Int64 // unix ns of the first update; 0 before
	baseEvents, events atomic.Uint64
	basePos, pos       atomic.Int64
	stop, done         chan struct{}
}

func newLogDisplay(w io.Writer, total int64, every time.Duration) *logDisplay {
	d := &logDisplay{w: w, total: total, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-d.stop:
				return
			case now := <-tick.C:
				start := d.start.Load()
				if start == 0 {
					continue
				}
				events, pos := d.events.Load(), d.pos.Load()
				fmt.Fprintln(d.w, progressLine(now.Sub(time.Unix(0, start)), events-d.baseEvents.Load(), events, pos-d.basePos.Load(), pos, d.total))
			}
		}
	}()
	return d
}

func (d *logDisplay) update(events uint64, pos int64) {
	if !d.started {
		d.started = true
		d.baseEvents.Store(events)
		d.basePos.Store(pos)
		d.start.Store(time.Now().UnixNano())
	}
	d.events.Store(events)
	d.pos.Store(pos)
}

func (d *logDisplay) finish() {
	close(d.stop)
	<-d.done
}

// progressLine formats a progress log line: after elapsed, newEvents and
// newBytes of this run, events and pos in all, of total bytes.
func progressLine(elapsed time.Duration, newEvents, events uint64, newBytes, pos, total int64) string {
	secs := max(elapsed.Seconds(), 1e-3)
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(pos) / float64(total)
	}
	eta := "unknown"
	if newBytes > 0 && pos <= total {
		eta = time.Duration(float64(total-pos) / (float64(newBytes) / secs) * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("cnstream replay: %d events, %.0f events/s, %.1f%% of %d bytes, ETA %s", events, float64(newEvents)/secs, pct, total, eta)
}
