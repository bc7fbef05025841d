package file

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/sinktest"
)

const testOrigin = "cnstream/test-host"

// newKeyFile writes a new signer key, mode 0600, and returns its path and
// the verifier.
func newKeyFile(t testing.TB, name string) (string, note.Verifier) {
	t.Helper()
	skey, vkey, err := archive.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name+".key")
	if err := os.WriteFile(p, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return p, v
}

// verified is what verifyArchive found.
type verified struct {
	files       int   // rotated files
	records     int64 // their records
	checkpoints int
	active      int64 // records of the active file (unsigned)
}

// verifyArchive checks the archive in dir with the archive package alone:
// every checkpoint opens with v and the chain signs exactly the rotated
// files, whose records (read with Records) hash to the signed roots and to
// their leaves files.
func verifyArchive(t *testing.T, dir, prefix string, v note.Verifier) verified {
	t.Helper()
	a, err := OpenArchive(dir, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var got verified
	var cps []*archive.Checkpoint
	signed := map[string]archive.FileEntry{}
	for _, p := range a.Checkpoints {
		msg, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, err := archive.OpenCheckpoint(msg, v)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if want := checkpointName(a.Prefix, c.Size); filepath.Base(p) != want {
			t.Errorf("checkpoint %s of log size %d, want the name %s", p, c.Size, want)
		}
		for _, e := range c.Files {
			signed[e.Name] = e
		}
		cps = append(cps, c)
	}
	got.checkpoints = len(cps)
	var entries []archive.FileEntry
	for _, f := range a.Files {
		var recs [][]byte
		if err := f.Records(func(i int64, rec []byte) error {
			if i != int64(len(recs)) {
				t.Fatalf("%s: record %d given as %d", f.Path, len(recs), i)
			}
			recs = append(recs, append([]byte(nil), rec...))
			return nil
		}); err != nil {
			t.Fatalf("Records: %v", err)
		}
		if f.Active {
			got.active += int64(len(recs))
			continue
		}
		e := archive.FileEntry{Name: f.Name, Records: int64(len(recs)), Root: archive.HashRecords(recs)}
		entries = append(entries, e)
		got.files++
		got.records += e.Records
		want, ok := signed[f.Name]
		if !ok {
			t.Errorf("%s: in no checkpoint", f.Name)
			continue
		}
		leaves, err := f.ReadLeaves()
		if err != nil {
			t.Errorf("ReadLeaves: %v", err)
			continue
		}
		if err := archive.VerifyFileLeaves(recs, leaves, want); err != nil {
			t.Errorf("VerifyFileLeaves: %v", err)
		}
	}
	if err := archive.VerifyChain(testOrigin, cps, entries); err != nil {
		t.Errorf("VerifyChain: %v", err)
	}
	return got
}

func archiveConfig(dir, key string) Config {
	return Config{Dir: dir, MaxSize: 16 << 10, Archive: &ArchiveConfig{Key: key, Origin: testOrigin}}
}

// TestArchiveRoundTrip writes events across several rotations with the
// archive on, closes, and verifies the archive with the archive package:
// each file's records hash to its leaves and its signed root, the chain
// signs every file, every event is read back, and each rotation made one
// checkpoint (plus Close's).
func TestArchiveRoundTrip(t *testing.T) {
	for _, format := range formats {
		for _, comp := range []Compression{Zstd, None} {
			for _, policy := range []SyncPolicy{SyncAlways, SyncNever} {
				t.Run(fmt.Sprintf("%s/%s/%s", format, comp, policy), func(t *testing.T) {
					dir := t.TempDir()
					key, v := newKeyFile(t, "test-host")
					cfg := archiveConfig(dir, key)
					cfg.Format, cfg.Compression, cfg.Sync = format, comp, policy
					g := sinktest.NewGenerator(3)
					var want []schema.Event
					s := mustNew(t, cfg)
					for range 20 {
						b := g.Batch(37)
						mustWrite(t, s, b)
						want = append(want, b...)
					}
					mustClose(t, s)
					st := s.Stats()
					if st.Rotations < 3 || st.Checkpoints != st.Rotations {
						t.Errorf("%d rotations, %d checkpoints: want at least 3 rotations, one checkpoint each", st.Rotations, st.Checkpoints)
					}
					got := verifyArchive(t, dir, "", v)
					if got.records != int64(len(want)) || got.active != 0 || got.files != int(st.Rotations) || got.checkpoints != int(st.Checkpoints) {
						t.Errorf("verified %+v, want %d records in %d files, none active, %d checkpoints", got, len(want), st.Rotations, st.Checkpoints)
					}
					if d := cmp.Diff(want, mustReadAll(t, Config{Dir: dir})); d != "" {
						t.Errorf("events read back (-want +got):\n%s", d)
					}
					// A clean restart changes nothing and the chain goes on.
					s = mustNew(t, cfg)
					mustWrite(t, s, g.Batch(5))
					mustClose(t, s)
					again := verifyArchive(t, dir, "", v)
					if again.records != got.records+5 || again.checkpoints != got.checkpoints+1 {
						t.Errorf("after a restart: %+v, want 5 more records and one more checkpoint than %+v", again, got)
					}
				})
			}
		}
	}
}

// TestArchiveMaxAge: rotation by age signs the rotated file.
func TestArchiveMaxAge(t *testing.T) {
	dir := t.TempDir()
	key, v := newKeyFile(t, "test-host")
	clock := newClock()
	cfg := Config{Dir: dir, MaxSize: -1, MaxAge: 10e9, Now: clock.Now, Archive: &ArchiveConfig{Key: key, Origin: testOrigin}}
	g := sinktest.NewGenerator(4)
	s := mustNew(t, cfg)
	mustWrite(t, s, g.Batch(10))
	clock.Add(11e9)
	mustWrite(t, s, g.Batch(10))
	if st := s.Stats(); st.Rotations != 1 || st.Checkpoints != 1 {
		t.Errorf("stats %+v: want one rotation by age, signed", st)
	}
	got := verifyArchive(t, dir, "", v)
	if got.records != 10 || got.active != 10 {
		t.Errorf("before Close: %+v, want 10 records signed and 10 in the active file", got)
	}
	mustClose(t, s)
	if got := verifyArchive(t, dir, "", v); got.records != 20 || got.files != 2 || got.checkpoints != 2 {
		t.Errorf("after Close: %+v, want 20 records in 2 signed files", got)
	}
}

// TestArchiveFailedBatchRollsBack: a batch cancelled midway, after
// thousands of its records were hashed and more than a megabyte of them
// written, leaves neither records nor hashes: the file's tree and leaves
// are those of the acknowledged records.
func TestArchiveFailedBatchRollsBack(t *testing.T) {
	dir := t.TempDir()
	key, v := newKeyFile(t, "test-host")
	cfg := Config{Dir: dir, MaxSize: -1, Archive: &ArchiveConfig{Key: key, Origin: testOrigin}}
	g := sinktest.NewGenerator(5)
	s := mustNew(t, cfg)
	mustWrite(t, s, g.Batch(10))
	ctx := &countdownCtx{Context: t.Context(), n: 20} // cancelled at event 5119
	if err := s.WriteBatch(ctx, g.Batch(6000)); !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteBatch = %v, want context.Canceled", err)
	}
	mustWrite(t, s, g.Batch(10))
	mustClose(t, s)
	if got := verifyArchive(t, dir, "", v); got.records != 20 || got.files != 1 {
		t.Errorf("%+v: want 20 records in one signed file", got)
	}
}

// TestArchiveCrashActive: a Sink abandoned without Close, with a torn
// record appended (a crash while writing), is recovered by New: the torn
// tail is cut and reported, the active file is rotated and signed at
// once, its stale leaves replaced, and the chain verifies.
func TestArchiveCrashActive(t *testing.T) {
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			key, v := newKeyFile(t, "test-host")
			cfg := archiveConfig(dir, key)
			cfg.Format = format
			g := sinktest.NewGenerator(6)
			s := mustNew(t, cfg)
			for range 10 {
				mustWrite(t, s, g.Batch(20))
			}
			crashed := s.Stats()
			abandon(t, s)
			active := filepath.Join(dir, activeName("events", format))
			f, err := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte{0, 0, 1, 0, '{', '"'}); err != nil { // half a record
				t.Fatal(err)
			}
			f.Close()

			s = mustNew(t, cfg)
			losses := s.TakeLosses()
			if len(losses) != 1 || losses[0].Reason != "torn_tail" {
				t.Errorf("losses %+v, want one torn_tail", losses)
			}
			if _, err := os.Stat(active); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the active file is still there after New: %v", err)
			}
			if _, err := os.Stat(active + leavesExt); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the active file's stale leaves are still there after New: %v", err)
			}
			got := verifyArchive(t, dir, "", v)
			if got.records != 200 || got.files != int(crashed.Rotations)+1 || got.checkpoints != int(crashed.Checkpoints)+1 {
				t.Errorf("after recovery %+v, want 200 records, %d files, %d checkpoints", got, crashed.Rotations+1, crashed.Checkpoints+1)
			}
			mustWrite(t, s, g.Batch(20))
			mustClose(t, s)
			if got := verifyArchive(t, dir, "", v); got.records != 220 {
				t.Errorf("after more writes: %+v, want 220 records", got)
			}
		})
	}
}

// abandon drops a Sink as a crash would: nothing synced or renamed, its
// descriptors closed (the process is gone).
func abandon(t *testing.T, s *Sink) {
	t.Helper()
	if s.f != nil {
		s.f.Close()
	}
	if s.ar.lf != nil {
		s.ar.lf.Close()
	}
	s.cz.abort()
	s.root.Close()
}

// TestArchiveUnsignedRotated: a rotated file no checkpoint lists, that
// the intent file names (a crash between its rename and its checkpoint,
// made here by removing the last checkpoint and writing the intent file
// as rotate wrote it before the rename), and a leaves file left behind
// for a data file that is gone: New hashes and signs the file again,
// once (a second New adds nothing), and removes the orphan.
func TestArchiveUnsignedRotated(t *testing.T) {
	for _, comp := range []Compression{Zstd, None} {
		t.Run(string(comp), func(t *testing.T) {
			dir := t.TempDir()
			key, v := newKeyFile(t, "test-host")
			cfg := archiveConfig(dir, key)
			cfg.Compression = comp
			g := sinktest.NewGenerator(8)
			s := mustNew(t, cfg)
			for range 10 {
				mustWrite(t, s, g.Batch(20))
			}
			mustClose(t, s)
			a, err := OpenArchive(dir, "")
			if err != nil {
				t.Fatal(err)
			}
			n := len(a.Checkpoints)
			if err := os.Remove(a.Checkpoints[n-1]); err != nil {
				t.Fatal(err)
			}
			// Its leaves, stale (one hash short), and an orphan.
			last := a.Files[len(a.Files)-1]
			if err := os.WriteFile(filepath.Join(dir, intentName("events")), []byte(last.Name+"\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(last.Leaves, 32); err != nil {
				t.Fatal(err)
			}
			orphan := filepath.Join(dir, "events-0000009999-20260314T090000Z.jsonl.leaves")
			if err := os.WriteFile(orphan, make([]byte, 64), 0o640); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				s = mustNew(t, cfg)
				mustClose(t, s)
			}
			got := verifyArchive(t, dir, "", v)
			if got.records != 200 || got.checkpoints != n {
				t.Errorf("%+v, want 200 records in %d checkpoints", got, n)
			}
			if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("orphan leaves file still there: %v", err)
			}
		})
	}
}

// TestArchiveForeignCheckpoint: a checkpoint signed by another key (of the
// same name) in the directory makes New fail naming it, and New changes
// nothing: the torn tail it would cut is still there.
func TestArchiveForeignCheckpoint(t *testing.T) {
	dir := t.TempDir()
	key, _ := newKeyFile(t, "test-host")
	other, _ := newKeyFile(t, "test-host")
	cfg := archiveConfig(dir, key)
	g := sinktest.NewGenerator(9)
	s := mustNew(t, cfg)
	for range 5 {
		mustWrite(t, s, g.Batch(30))
	}
	mustClose(t, s)

	// The other key signs the next checkpoint of the chain.
	cfg2 := cfg
	cfg2.Archive = &ArchiveConfig{Key: other, Origin: testOrigin}
	a, err := OpenArchive(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, checkpointDir, checkpointName("events", int64(len(a.Files)+1)))
	signer, _, _, err := archive.ParseSignerKey(strings.TrimSpace(string(mustRead(t, other))))
	if err != nil {
		t.Fatal(err)
	}
	text, err := archive.NewCheckpoint(testOrigin, []archive.FileEntry{{Name: "x", Records: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := archive.Sign(text, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, msg, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), foreign) || !strings.Contains(err.Error(), "key changed") {
		t.Errorf("New with a foreign checkpoint: %v, want an error naming %s", err, foreign)
	}
	// With the other key, every checkpoint but that one is foreign.
	if _, err := New(cfg2); err == nil || !strings.Contains(err.Error(), a.Checkpoints[0]) {
		t.Errorf("New with another key: %v, want an error naming %s", err, a.Checkpoints[0])
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestArchiveKeyErrors: the key file must exist, hold a signer key and be
// private; errors name the file, never quote the key; a missing path is a
// ConfigError.
func TestArchiveKeyErrors(t *testing.T) {
	key, _ := newKeyFile(t, "test-host")
	skey := strings.TrimSpace(string(mustRead(t, key)))
	secret := skey[strings.LastIndexByte(skey, '+')+1:]
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"mode 0644", write("k", []byte(skey+"\n"), 0o644), "mode 0644"},
		{"mode 0640", write("k", []byte(skey+"\n"), 0o640), "chmod 600"},
		{"verifier key", write("k", []byte(skey[len("PRIVATE+KEY+"):]+"\n"), 0o600), "not a signer key"},
		{"truncated", write("k", []byte(skey[:len(skey)-3]), 0o600), "not a signer key"},
		{"two lines", write("k", []byte(skey+"\n"+skey+"\n"), 0o600), "more than one line"},
		{"missing", filepath.Join(t.TempDir(), "nothing"), "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := New(archiveConfig(dir, c.path))
			if err == nil || !strings.Contains(err.Error(), c.path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, want an error naming %s and saying %q", err, c.path, c.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("the error quotes the key: %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("New failed and left %d entries in the directory", len(entries))
			}
		})
	}
	for _, c := range []struct {
		name string
		cfg  ArchiveConfig
		want *sink.ConfigError
	}{
		{"no key", ArchiveConfig{}, &sink.ConfigError{Field: "file.archive_key", Msg: "required with the archive on: the path of the signer key file"}},
		{"origin newline", ArchiveConfig{Key: key, Origin: "a\nb"}, &sink.ConfigError{Field: "file.archive_origin", Msg: `"a\nb": want a line of UTF-8 text without control characters or leading and trailing spaces`}},
		{"origin space", ArchiveConfig{Key: key, Origin: " a"}, &sink.ConfigError{Field: "file.archive_origin", Msg: `" a": want a line of UTF-8 text without control characters or leading and trailing spaces`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := c.cfg
			_, err := New(Config{Dir: t.TempDir(), Archive: &a})
			var got *sink.ConfigError
			if !errors.As(err, &got) || !sink.IsPermanent(err) {
				t.Fatalf("New: %v, want a permanent *sink.ConfigError", err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// The default origin is cnstream/<hostname>.
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Config{Archive: &ArchiveConfig{Key: key}}.resolve()
	if err != nil || c.Archive.Origin != "cnstream/"+host {
		t.Errorf("resolve: origin %q, %v; want cnstream/%s", c.Archive.Origin, err, host)
	}
}

// TestArchiveRecordsErrors: Records reports a torn end and a corrupt
// length as ErrCorrupt with the offset, after the whole records before
// it; ReadLeaves refuses a size that is not a multiple of 32.
func TestArchiveRecordsErrors(t *testing.T) {
	dir := t.TempDir()
	rec := []byte(`{"a":1}`)
	for _, c := range []struct {
		name   string
		format Format
		data   []byte
		whole  int64
		off    int64
		torn   bool
	}{
		{"jsonl torn", JSONL, append(append(rec, '\n'), rec...), 1, 8, true},
		{"msgpack torn", Msgpack, []byte{0, 0, 0, 1, 0x80, 0, 0, 0, 9, 1}, 1, 5, true},
		{"msgpack short length", Msgpack, []byte{0, 0, 0, 1, 0x80, 0, 0}, 1, 5, true},
		{"msgpack zero length", Msgpack, []byte{0, 0, 0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 0x80}, 1, 5, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var n int64
			err := ArchiveFile{Path: p, Format: c.format}.Records(func(int64, []byte) error { n++; return nil })
			var re *RecordError
			if !errors.As(err, &re) || !errors.Is(err, ErrCorrupt) || re.Offset != c.off || errors.Is(err, ErrTorn) != c.torn {
				t.Errorf("Records: %v, want ErrCorrupt at offset %d (torn %v)", err, c.off, c.torn)
			}
			if n != c.whole {
				t.Errorf("%d records before the error, want %d", n, c.whole)
			}
		})
	}
	p := filepath.Join(dir, "x.leaves")
	if err := os.WriteFile(p, make([]byte, 33), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (ArchiveFile{Leaves: p}).ReadLeaves(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadLeaves of 33 bytes: %v, want ErrCorrupt", err)
	}
}

// TestArchiveRecordsLarge: records larger than the read buffer, and many
// records straddling its end, come back whole and in order.
func TestArchiveRecordsLarge(t *testing.T) {
	dir := t.TempDir()
	var want [][]byte
	var jsonl, mp []byte
	for i := range 300 {
		r := []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("y", (i*7919)%9000)))
		if i == 100 {
			r = []byte(fmt.Sprintf(`{"big":"%s"}`, strings.Repeat("z", 3*recordsBuf)))
		}
		want = append(want, r)
		jsonl = append(append(jsonl, r...), '\n')
		mp = append(mp, byte(len(r)>>24), byte(len(r)>>16), byte(len(r)>>8), byte(len(r)))
		mp = append(mp, r...)
	}
	for format, data := range map[Format][]byte{JSONL: jsonl, Msgpack: mp} {
		p := filepath.Join(dir, string(format))
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		if err := (ArchiveFile{Path: p, Format: format}).Records(func(_ int64, rec []byte) error {
			got = append(got, append([]byte(nil), rec...))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || archive.HashRecords(got) != archive.HashRecords(want) {
			t.Errorf("%s: %d records read, want %d, or they differ", format, len(got), len(want))
		}
	}
}

// TestSinktestArchive runs the conformance suite with the archive on
// (small files: rotations, hence checkpoints, within batches), and
// verifies each archive it leaves (at the end of each test, before its
// directory is removed).
func TestSinktestArchive(t *testing.T) {
	key, v := newKeyFile(t, "test-host")
	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			cfg := Config{Format: format, MaxSize: 32 << 10, Archive: &ArchiveConfig{Key: key, Origin: testOrigin}}
			h := portableHarness(cfg)
			var signed int64
			newSink := h.New
			h.New = func(t *testing.T) (sink.Sink, error) {
				s, err := newSink(t)
				if err == nil {
					dir := s.(*Sink).cfg.Dir
					t.Cleanup(func() { signed += verifyArchive(t, dir, "", v).records })
				}
				return s, err
			}
			sinktest.Run(t, h)
			if signed == 0 {
				t.Error("no signed record verified")
			}
		})
	}
}

// FuzzRecords reads arbitrary bytes as a data file of each format: nothing
// panics, and the records given, framed again, are exactly the bytes
// before the error's offset (all of them without an error).
func FuzzRecords(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\":2}\n"))
	f.Add([]byte{0, 0, 0, 1, 0x80, 0, 0, 0, 2, 0x81, 0xa0})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte("no newline"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range formats {
			var again []byte
			err := readRecords(bytes.NewReader(data), "fuzz", format, false, func(_ int64, rec []byte) error {
				if format == JSONL {
					again = append(append(again, rec...), '\n')
				} else {
					again = binary.BigEndian.AppendUint32(again, uint32(len(rec)))
					again = append(again, rec...)
				}
				return nil
			})
			want := data
			if err != nil {
				var re *RecordError
				if !errors.As(err, &re) || !errors.Is(err, ErrCorrupt) || re.Offset > int64(len(data)) {
					t.Fatalf("%s: %v, want a *RecordError matching ErrCorrupt within the data", format, err)
				}
				want = data[:re.Offset]
			}
			if !bytes.Equal(again, want) {
				t.Fatalf("%s: records framed again are %q, want %q (err %v)", format, again, want, err)
			}
		}
	})
}

// TestArchiveSalvage: an active msgpack file with a corrupt region in the
// middle (kept by New, reported once) and a torn tail cannot be signed as
// it is: New sets it aside as "<rotated name>.corrupt" and signs its whole
// records, reporting no loss twice. A crash before the rewrite was in
// place (the rewritten file and its checkpoint gone) is finished by the
// next New from the file set aside.
func TestArchiveSalvage(t *testing.T) {
	dir := t.TempDir()
	key, v := newKeyFile(t, "test-host")
	cfg := Config{Dir: dir, Format: Msgpack, MaxSize: -1, Compression: None, Archive: &ArchiveConfig{Key: key, Origin: testOrigin}}
	path := filepath.Join(dir, "events.msgpack")
	g := sinktest.NewGenerator(21)
	events := g.Batch(10)
	s := mustNew(t, cfg)
	mustWrite(t, s, events)
	abandon(t, s)
	ends := recordEnds(Msgpack, events)
	data := mustRead(t, path)
	binary.BigEndian.PutUint32(data[ends[2]:], 0xfffffff0) // the fourth record's length
	data = data[:ends[8]+(ends[9]-ends[8])/2]              // half the last record
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}

	s = mustNew(t, cfg)
	var reasons []string
	for _, l := range s.TakeLosses() {
		reasons = append(reasons, l.Reason)
	}
	if d := cmp.Diff([]string{"corrupt_record", "torn_tail"}, reasons); d != "" {
		t.Errorf("losses (-want +got):\n%s", d)
	}
	mustClose(t, s)
	got := verifyArchive(t, dir, "", v)
	if got.records != 8 || got.files != 1 {
		t.Errorf("%+v: want the 8 whole records in one signed file", got)
	}
	want := append(append([]schema.Event{}, events[:3]...), events[4:9]...)
	sinktest.Check(t, want, mustReadAll(t, cfg), sinktest.CheckOptions{})
	a, err := OpenArchive(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	kept := a.Files[0].Path + corruptExt
	if b := mustRead(t, kept); !bytes.Equal(b, data[:ends[8]]) {
		t.Errorf("%s: %d bytes, want the active file as New found it after the cut (%d bytes)", kept, len(b), ends[8])
	}

	// A crash after the file was set aside, before its rewrite was in
	// place and signed.
	for _, p := range []string{a.Files[0].Path, a.Files[0].Leaves, a.Checkpoints[0]} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	s = mustNew(t, cfg)
	if l := s.TakeLosses(); len(l) != 1 || l[0].Reason != "corrupt_record" || l[0].Count != 1 {
		t.Errorf("losses %+v: want the corrupt region, once", l)
	}
	mustClose(t, s)
	if got := verifyArchive(t, dir, "", v); got.records != 8 || got.files != 1 || got.checkpoints != 1 {
		t.Errorf("%+v: want the 8 whole records in one signed file, one checkpoint", got)
	}
	sinktest.Check(t, want, mustReadAll(t, cfg), sinktest.CheckOptions{})
}

// TestArchivePrefixes: two sinks of prefixes "a" and "a-b" in one
// directory each sign, list and recover only their own files.
func TestArchivePrefixes(t *testing.T) {
	dir := t.TempDir()
	key, v := newKeyFile(t, "test-host")
	g := sinktest.NewGenerator(12)
	want := map[string]int64{"a": 100, "a-b": 70}
	for round := range 2 {
		var sinks []*Sink
		for _, prefix := range []string{"a", "a-b"} {
			cfg := archiveConfig(dir, key)
			cfg.Prefix = prefix
			s := mustNew(t, cfg)
			sinks = append(sinks, s)
			mustWrite(t, s, g.Batch(int(want[prefix])/2))
		}
		for _, s := range sinks {
			if round == 0 {
				abandon(t, s) // the next New of each signs its own active file
			} else {
				mustClose(t, s)
			}
		}
	}
	for prefix, n := range want {
		a, err := OpenArchive(dir, prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range a.Files {
			if !strings.HasPrefix(filepath.Base(f.Path), prefix+"-0") {
				t.Errorf("OpenArchive(%q) lists %s", prefix, f.Path)
			}
		}
		for _, c := range a.Checkpoints {
			if _, ok := parseCheckpointName(prefix, filepath.Base(c)); !ok {
				t.Errorf("OpenArchive(%q) lists the checkpoint %s", prefix, c)
			}
		}
		if got := verifyArchive(t, dir, prefix, v); got.records != n {
			t.Errorf("prefix %s: %+v, want %d records", prefix, got, n)
		}
	}
}

// TestArchivePlantedFileNotSigned: a rotated file put into an archive
// whose chain exists, that the sink did not make (not in the intent
// file), is never signed by New: it is reported to OnError and left for
// the verifier, which finds it unsigned; the sink's own files stay signed.
func TestArchivePlantedFileNotSigned(t *testing.T) {
	dir := t.TempDir()
	key, v := newKeyFile(t, "test-host")
	cfg := archiveConfig(dir, key)
	cfg.Compression = None
	g := sinktest.NewGenerator(12)
	s := mustNew(t, cfg)
	for range 6 {
		mustWrite(t, s, g.Batch(20))
	}
	mustClose(t, s)
	a, err := OpenArchive(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(a.Files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	planted := "events-0000000900-20260314T090000Z.jsonl"
	if err := os.WriteFile(filepath.Join(dir, planted), b, 0o640); err != nil {
		t.Fatal(err)
	}
	var reported []error
	cfg.OnError = func(err error) { reported = append(reported, err) }
	s = mustNew(t, cfg)
	mustWrite(t, s, g.Batch(20))
	mustClose(t, s)
	if len(reported) == 0 || !strings.Contains(reported[0].Error(), planted) || !strings.Contains(reported[0].Error(), "left unsigned") {
		t.Fatalf("OnError: %v", reported)
	}
	a, err = OpenArchive(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var cps []*archive.Checkpoint
	for _, p := range a.Checkpoints {
		msg, _ := os.ReadFile(p)
		c, err := archive.OpenCheckpoint(msg, v)
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, c)
		for _, f := range c.Files {
			if f.Name == planted {
				t.Fatalf("checkpoint %s signs the planted file", p)
			}
		}
	}
	var entries []archive.FileEntry
	for _, f := range a.Files {
		var tr archive.Tree
		if err := f.Records(func(_ int64, rec []byte) error { tr.Add(rec); return nil }); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, archive.FileEntry{Name: f.Name, Records: tr.Size(), Root: tr.Root()})
	}
	err = archive.VerifyChain(testOrigin, cps, entries)
	var fe *archive.FileError
	if !errors.As(err, &fe) || fe.File != planted || !errors.Is(err, archive.ErrUnsigned) {
		t.Fatalf("VerifyChain: %v, want the planted file unsigned", err)
	}
}
