package archive

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// FuzzCheckpoint parses checkpoint texts from outside: nothing panics, and
// what parses formats back to the same text.
func FuzzCheckpoint(f *testing.F) {
	files := []FileEntry{{Name: "a.jsonl", Records: 3, Root: HashRecords([][]byte{[]byte("x")})}, {Name: "b.jsonl", Records: 1}}
	first, err := NewCheckpoint("cnstream/host-a", files[:1], nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(first))
	c, err := parseCheckpoint(string(first))
	if err != nil {
		f.Fatal(err)
	}
	second, err := NewCheckpoint("cnstream/host-a", files, c)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(second))
	f.Add("o\n0\n\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := parseCheckpoint(text)
		if err != nil {
			return
		}
		again := fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, c.Root)
		if c.Prev != (tlog.Hash{}) {
			again += fmt.Sprintf("prev %s\n", c.Prev)
		}
		for _, e := range c.Files {
			again += fmt.Sprintf("file %d %s %s\n", e.Records, e.Root, e.Name)
		}
		if again != text {
			t.Errorf("parsed %q, formats back as %q", text, again)
		}
	})
}

// TestTreeMatchesTlog compares Tree with tlog over every stored hash.
func TestTreeMatchesTlog(t *testing.T) {
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	var tr Tree
	for n := int64(0); n <= 300; n++ {
		want, err := tlog.TreeHash(n, r)
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.Root(); got != want || tr.Size() != n {
			t.Fatalf("%d records: Root %v size %d, tlog %v", n, got, tr.Size(), want)
		}
		rec := record(n)
		hs, err := tlog.StoredHashes(n, rec, r)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
		tr.Add(rec)
	}
}

// TestRFC6962 checks the empty tree and a one-record tree against RFC 6962.
func TestRFC6962(t *testing.T) {
	if got, want := HashRecords(nil).String(), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="; got != want {
		t.Errorf("empty tree %s, want %s", got, want)
	}
	// SHA-256(0x00): the leaf hash of the empty record.
	if got, want := HashRecords([][]byte{{}}).String(), "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="; got != want {
		t.Errorf("one empty record %s, want %s", got, want)
	}
}

// record returns the n-th test record: one JSON line of an event, ~300 bytes.
func record(n int64) []byte {
	return fmt.Appendf(nil, `{"v":1,"id":"host-a/7f3c/0/%d","host":"host-a","boot_id":"7f3c9a2e-1b4d-4c8e-9f0a-3d2e1c4b5a69","cpu":0,"seq":%d,"time":"2026-12-06T17:40:32.%09dZ","kind":"exec","pid":%d,"tgid":%d,"comm":"bash","exe":"/usr/bin/bash","argv":["bash","-c","true"]}`, n, n, n%1e9, 1000+n, 1000+n)
}

type file struct {
	entry   FileEntry
	records [][]byte
}

// archive is a test archive: files of records and their signed checkpoints,
// one per file.
type archive struct {
	files []file
	msgs  [][]byte
	vkey  string
}

// testKey signs every test archive unless a test re-signs.
var testKey, testVkey = func() (string, string) {
	s, v, err := GenerateKey("cnstream-test")
	if err != nil {
		panic(err)
	}
	return s, v
}()

func newArchive(t testing.TB, origin string, nfiles, nrecords int) *archive {
	t.Helper()
	skey, vkey := testKey, testVkey
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	a := &archive{vkey: vkey}
	var entries []FileEntry
	var prev *Checkpoint
	verifier := a.verifier(t)
	for i := range nfiles {
		var f file
		var tr Tree
		for j := range nrecords {
			r := record(int64(i*nrecords + j))
			f.records = append(f.records, r)
			tr.Add(r)
		}
		f.entry = FileEntry{Name: fmt.Sprintf("events-%04d.jsonl", i), Records: tr.Size(), Root: tr.Root()}
		a.files = append(a.files, f)
		entries = append(entries, f.entry)
		text, err := NewCheckpoint(origin, entries, prev)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := Sign(text, signer)
		if err != nil {
			t.Fatal(err)
		}
		a.msgs = append(a.msgs, msg)
		if prev, err = OpenCheckpoint(msg, verifier); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func (a *archive) verifier(t testing.TB) note.Verifier {
	v, err := note.NewVerifier(a.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// verify opens every checkpoint, then checks the chain and every file.
func (a *archive) verify(t testing.TB, origin string) error {
	v := a.verifier(t)
	var cps []*Checkpoint
	for _, m := range a.msgs {
		c, err := OpenCheckpoint(m, v)
		if err != nil {
			return err
		}
		cps = append(cps, c)
	}
	var entries []FileEntry
	for _, f := range a.files {
		entries = append(entries, FileEntry{Name: f.entry.Name, Records: int64(len(f.records)), Root: HashRecords(f.records)})
	}
	if err := VerifyChain(origin, cps, entries); err != nil {
		return err
	}
	// Each file against its signed entry (the last checkpoint's list).
	for i, f := range a.files {
		if err := VerifyFile(f.records, cps[i].Files[0]); err != nil {
			return err
		}
	}
	return nil
}

func TestVerify(t *testing.T) {
	const origin = "cnstream/host-a"
	other := newArchive(t, "cnstream/host-b", 3, 5)
	tests := []struct {
		name   string
		change func(t *testing.T, a *archive)
		want   string // error text; "" for intact
		is     error
	}{
		{name: "intact", change: func(*testing.T, *archive) {}},
		{
			name:   "flipped byte",
			change: func(_ *testing.T, a *archive) { a.files[1].records[3][40] ^= 0x01 },
			want:   "archive: file events-0001.jsonl: root ",
			is:     ErrEdited,
		},
		{
			name:   "truncated",
			change: func(_ *testing.T, a *archive) { a.files[2].records = a.files[2].records[:3] },
			want:   "archive: file events-0002.jsonl: 3 records, signed 5: edited",
			is:     ErrEdited,
		},
		{
			name: "missing middle file",
			change: func(_ *testing.T, a *archive) {
				a.files = append(a.files[:1], a.files[2:]...)
			},
			want: "archive: file events-0001.jsonl: file 1 of the log: missing",
			is:   ErrMissing,
		},
		{
			name: "reordered files",
			change: func(_ *testing.T, a *archive) {
				a.files[1], a.files[2] = a.files[2], a.files[1]
			},
			want: "archive: file events-0001.jsonl: file 1 of the log is at position 2: reordered",
			is:   ErrReordered,
		},
		{
			name:   "file after the last checkpoint",
			change: func(_ *testing.T, a *archive) { a.msgs = a.msgs[:2] },
			want:   "archive: file events-0002.jsonl: file 2 of 4: not covered by any checkpoint",
			is:     ErrUnsigned,
		},
		{
			name: "deleted middle checkpoint",
			change: func(_ *testing.T, a *archive) {
				a.msgs = append(a.msgs[:1], a.msgs[2:]...)
			},
			want: "archive: checkpoint 1 (size 3): prev ",
			is:   ErrChain,
		},
		{
			name: "re-signed with another key",
			change: func(t *testing.T, a *archive) {
				skey, _, err := GenerateKey("cnstream-test") // same name, new key
				if err != nil {
					t.Fatal(err)
				}
				s, err := note.NewSigner(skey)
				if err != nil {
					t.Fatal(err)
				}
				n, err := note.Open(a.msgs[1], note.VerifierList(a.verifier(t)))
				if err != nil {
					t.Fatal(err)
				}
				if a.msgs[1], err = Sign([]byte(n.Text), s); err != nil {
					t.Fatal(err)
				}
			},
			want: "archive: open checkpoint: note has no verifiable signatures",
			is:   new(note.UnverifiedNoteError),
		},
		{
			name:   "checkpoint of another host",
			change: func(_ *testing.T, a *archive) { a.msgs[1] = other.msgs[1] },
			want:   `archive: checkpoint 1 (size 2): origin "cnstream/host-b", want "cnstream/host-a": another origin`,
			is:     ErrOrigin,
		},
		{
			name: "archive of another host",
			change: func(_ *testing.T, a *archive) {
				a.msgs, a.files = other.msgs, other.files
			},
			want: `archive: checkpoint 0 (size 1): origin "cnstream/host-b", want "cnstream/host-a": another origin`,
			is:   ErrOrigin,
		},
		{
			name: "edited entry, re-signed with the key",
			change: func(t *testing.T, a *archive) {
				// Whoever holds the key can rewrite a file and its
				// checkpoint, but not the checkpoints after it.
				a.files[1].records[0][10] ^= 1
				var entries []FileEntry
				for _, f := range a.files[:2] {
					entries = append(entries, FileEntry{Name: f.entry.Name, Records: int64(len(f.records)), Root: HashRecords(f.records)})
				}
				prev, err := OpenCheckpoint(a.msgs[0], a.verifier(t))
				if err != nil {
					t.Fatal(err)
				}
				text, err := NewCheckpoint(origin, entries, prev)
				if err != nil {
					t.Fatal(err)
				}
				s, err := note.NewSigner(testKey)
				if err != nil {
					t.Fatal(err)
				}
				if a.msgs[1], err = Sign(text, s); err != nil {
					t.Fatal(err)
				}
			},
			want: "archive: checkpoint 2 (size 3): prev ",
			is:   ErrChain,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newArchive(t, origin, 4, 5)
			tt.change(t, a)
			err := a.verify(t, origin)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("verify: nil, want %q", tt.want)
			}
			got := err.Error()
			if len(got) > len(tt.want) && tt.want[len(tt.want)-1] == ' ' {
				got = got[:len(tt.want)] // the rest is hashes
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if ue := new(note.UnverifiedNoteError); errors.As(tt.is, &ue) {
				if !errors.As(err, &ue) {
					t.Errorf("error %v is not a *note.UnverifiedNoteError", err)
				}
			} else if !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestVerifyFile(t *testing.T) {
	var recs [][]byte
	for i := range 10 {
		recs = append(recs, record(int64(i)))
	}
	want := FileEntry{Name: "f.jsonl", Records: 10, Root: HashRecords(recs)}
	clone := func() [][]byte {
		c := make([][]byte, len(recs))
		for i, r := range recs {
			c[i] = append([]byte(nil), r...)
		}
		return c
	}
	tests := []struct {
		name    string
		records func() [][]byte
		want    *FileError // Err compared by sentinel
		is      error
		// wantLeaves is VerifyFileLeaves' error when it is not want.
		wantLeaves *FileError
	}{
		{"intact", clone, nil, nil, nil},
		{"flipped byte", func() [][]byte { c := clone(); c[7][100] ^= 0x80; return c }, &FileError{File: "f.jsonl", Record: -1}, ErrEdited, &FileError{File: "f.jsonl", Record: 7}},
		{"truncated", func() [][]byte { return clone()[:6] }, &FileError{File: "f.jsonl", Record: 6}, ErrTruncated, nil},
		{"extra", func() [][]byte { return append(clone(), record(10)) }, &FileError{File: "f.jsonl", Record: 10}, ErrExtra, nil},
		{"dropped last byte", func() [][]byte { c := clone(); c[9] = c[9][:len(c[9])-1]; return c }, &FileError{File: "f.jsonl", Record: -1}, ErrEdited, &FileError{File: "f.jsonl", Record: 9}},
		{"swapped records", func() [][]byte { c := clone(); c[2], c[3] = c[3], c[2]; return c }, &FileError{File: "f.jsonl", Record: -1}, ErrEdited, &FileError{File: "f.jsonl", Record: 2}},
	}
	var leafTree Tree
	var leaves []tlog.Hash
	for _, r := range recs {
		leaves = append(leaves, leafTree.Add(r))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records := tt.records()
			check := func(t *testing.T, err error, want *FileError) {
				t.Helper()
				if want == nil {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				var fe *FileError
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is not a *FileError", err)
				}
				if diff := cmp.Diff(*want, *fe, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Err" }, cmp.Ignore())); diff != "" {
					t.Errorf("FileError (-want +got):\n%s", diff)
				}
				if !errors.Is(err, tt.is) {
					t.Errorf("error %v does not wrap %v", err, tt.is)
				}
			}
			t.Run("leaves", func(t *testing.T) {
				want := tt.wantLeaves
				if want == nil {
					want = tt.want
				}
				check(t, VerifyFileLeaves(records, leaves, FileEntry{Name: "f.jsonl", Records: 10, Root: HashRecords(recs)}), want)
			})
			check(t, VerifyFile(records, want), tt.want)
		})
	}
}

func TestCheckpointText(t *testing.T) {
	files := []FileEntry{
		{Name: "a.jsonl", Records: 2, Root: HashRecords([][]byte{[]byte("x"), []byte("y")})},
		{Name: "b c.msgpack", Records: 0, Root: HashRecords(nil)},
	}
	text, err := NewCheckpoint("cnstream/host-a", files[:1], nil)
	if err != nil {
		t.Fatal(err)
	}
	first, err := parseCheckpoint(string(text))
	if err != nil {
		t.Fatal(err)
	}
	text2, err := NewCheckpoint("cnstream/host-a", files, first)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("cnstream/host-a\n2\n%s\nprev %s\nfile 0 %s b c.msgpack\n", LogRoot(files), first.TextHash(), HashRecords(nil))
	if diff := cmp.Diff(want, string(text2)); diff != "" {
		t.Errorf("text (-want +got):\n%s", diff)
	}
	c, err := parseCheckpoint(string(text2))
	if err != nil {
		t.Fatal(err)
	}
	wantC := &Checkpoint{Origin: "cnstream/host-a", Size: 2, Root: LogRoot(files), Prev: first.TextHash(), Files: files[1:], Text: text2}
	if diff := cmp.Diff(wantC, c); diff != "" {
		t.Errorf("parsed (-want +got):\n%s", diff)
	}

	for _, bad := range []struct {
		name   string
		origin string
		files  []FileEntry
		prev   *Checkpoint
	}{
		{"empty origin", "", files, nil},
		{"newline in origin", "a\nb", files, nil},
		{"newline in name", "o", []FileEntry{{Name: "a\nb"}}, nil},
		{"no new file", "cnstream/host-a", files[:1], first},
		{"other origin than prev", "cnstream/host-b", files, first},
		{"files disagree with prev", "cnstream/host-a", files[1:], first},
	} {
		if _, err := NewCheckpoint(bad.origin, bad.files, bad.prev); err == nil {
			t.Errorf("%s: NewCheckpoint succeeded", bad.name)
		}
	}
	for _, bad := range []string{
		"o\n1\n",
		"o\n01\n" + HashRecords(nil).String() + "\nfile 0 " + HashRecords(nil).String() + " a\n",
		"o\n1\nnot-base64\nfile 0 " + HashRecords(nil).String() + " a\n",
		"o\n1\n" + HashRecords(nil).String() + "\n",
		"o\n1\n" + HashRecords(nil).String() + "\nfile x " + HashRecords(nil).String() + " a\n",
		"o\n1\n" + HashRecords(nil).String() + "\nunknown line\n",
	} {
		if _, err := parseCheckpoint(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("parse %q: %v, want ErrMalformed", bad, err)
		}
	}
}
