package archive

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A FileEntry describes one closed archive file: a leaf of the log.
type FileEntry struct {
	Name    string    // base name of the file in the archive directory
	Records int64     // number of records (the size of the file's tree)
	Root    tlog.Hash // the file's tree hash (Tree.Root)
}

// Leaf returns the canonical leaf text of f (see # Format in the package
// documentation); the log's leaf hash is tlog.RecordHash(f.Leaf()).
func (f FileEntry) Leaf() []byte {
	return fmt.Appendf(nil, "file %s\nrecords %d\nroot %s\n", f.Name, f.Records, f.Root)
}

func (f FileEntry) valid() error {
	if err := validText(f.Name); err != nil {
		return fmt.Errorf("archive: file name %q: %w", f.Name, err)
	}
	if f.Records < 0 {
		return fmt.Errorf("archive: file %s: %d records: %w", f.Name, f.Records, ErrMalformed)
	}
	return nil
}

// validText accepts a non-empty line of UTF-8 text without control
// characters and without leading or trailing white space.
func validText(s string) error {
	if s == "" || !utf8.ValidString(s) || strings.TrimSpace(s) != s ||
		strings.ContainsFunc(s, unicode.IsControl) {
		return ErrMalformed
	}
	return nil
}

// LogRoot returns the tree hash of the log whose leaves are files.
func LogRoot(files []FileEntry) tlog.Hash {
	var t Tree
	for _, f := range files {
		t.Add(f.Leaf())
	}
	return t.Root()
}

// A Checkpoint is a parsed, verified signed checkpoint.
type Checkpoint struct {
	Origin string
	Size   int64     // files in the log
	Root   tlog.Hash // LogRoot of those files
	// Prev is TextHash of the previous checkpoint; zero for the first.
	Prev tlog.Hash
	// Files are the entries this checkpoint adds: files Size-len(Files)
	// to Size-1 of the log.
	Files []FileEntry
	// Text is the signed text; Msg the signed note as opened.
	Text, Msg []byte
}

// TextHash returns the SHA-256 of the checkpoint's signed text, which the
// next checkpoint names on its prev line.
func (c *Checkpoint) TextHash() tlog.Hash { return sha256.Sum256(c.Text) }

// NewCheckpoint returns the text of the checkpoint of the log whose leaves
// are files, following prev (nil for the first checkpoint). files holds
// every file of the log in order: prev's files and at least one new one.
func NewCheckpoint(origin string, files []FileEntry, prev *Checkpoint) ([]byte, error) {
	if err := validText(origin); err != nil {
		return nil, fmt.Errorf("archive: origin %q: %w", origin, err)
	}
	for _, f := range files {
		if err := f.valid(); err != nil {
			return nil, err
		}
	}
	var from int64
	if prev != nil {
		if prev.Origin != origin {
			return nil, fmt.Errorf("archive: previous checkpoint of origin %q, not %q: %w", prev.Origin, origin, ErrOrigin)
		}
		from = prev.Size
		if from > int64(len(files)) || LogRoot(files[:from]) != prev.Root {
			return nil, fmt.Errorf("archive: the first %d files are not those of the previous checkpoint: %w", from, ErrChain)
		}
	}
	if int64(len(files)) == from {
		return nil, fmt.Errorf("archive: checkpoint adds no file")
	}
	text := fmt.Appendf(nil, "%s\n%d\n%s\n", origin, len(files), LogRoot(files))
	if prev != nil {
		text = fmt.Appendf(text, "prev %s\n", prev.TextHash())
	}
	for _, f := range files[from:] {
		text = fmt.Appendf(text, "file %d %s %s\n", f.Records, f.Root, f.Name)
	}
	return text, nil
}

// Sign signs a checkpoint text with signer and returns the signed note.
func Sign(text []byte, signer note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		return nil, fmt.Errorf("archive: sign: %w", err)
	}
	return msg, nil
}

// GenerateKey returns a new Ed25519 signer key and its verifier key, in
// the encodings of note.NewSigner and note.NewVerifier.
func GenerateKey(name string) (skey, vkey string, err error) {
	skey, vkey, err = note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("archive: generate key: %w", err)
	}
	return skey, vkey, nil
}

// OpenCheckpoint verifies a signed checkpoint with verifier and parses it.
// A note that verifier did not sign (another key, even of the same name)
// fails with the note package's error (*note.UnverifiedNoteError, or
// *note.InvalidSignatureError for a bad signature of verifier's key).
func OpenCheckpoint(msg []byte, verifier note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return nil, fmt.Errorf("archive: open checkpoint: %w", err)
	}
	c, err := parseCheckpoint(n.Text)
	if err != nil {
		return nil, err
	}
	c.Msg = msg
	return c, nil
}

func parseCheckpoint(text string) (*Checkpoint, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("archive: checkpoint: %s: %w", fmt.Sprintf(format, args...), ErrMalformed)
	}
	body, ok := strings.CutSuffix(text, "\n")
	if !ok {
		return nil, bad("no final newline")
	}
	lines := strings.Split(body, "\n")
	if len(lines) < 3 {
		return nil, bad("%d lines, want at least 3", len(lines))
	}
	c := &Checkpoint{Origin: lines[0], Text: []byte(text)}
	if validText(c.Origin) != nil {
		return nil, bad("origin %q", c.Origin)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return nil, bad("size %q", lines[1])
	}
	c.Size = n
	if c.Root, err = parseHash(lines[2]); err != nil {
		return nil, bad("root %q", lines[2])
	}
	rest := lines[3:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], "prev ") {
		if c.Prev, err = parseHash(rest[0][len("prev "):]); err != nil || c.Prev == (tlog.Hash{}) {
			return nil, bad("line %q", rest[0])
		}
		rest = rest[1:]
	}
	for _, l := range rest {
		f, ok := strings.CutPrefix(l, "file ")
		records, f, ok1 := strings.Cut(f, " ")
		root, name, ok2 := strings.Cut(f, " ")
		e := FileEntry{Name: name}
		e.Records, err = strconv.ParseInt(records, 10, 64)
		if !ok || !ok1 || !ok2 || err != nil || strconv.FormatInt(e.Records, 10) != records {
			return nil, bad("line %q", l)
		}
		if e.Root, err = parseHash(root); err != nil || e.valid() != nil {
			return nil, bad("line %q", l)
		}
		c.Files = append(c.Files, e)
	}
	if int64(len(c.Files)) > c.Size || len(c.Files) == 0 {
		return nil, bad("%d file lines for size %d", len(c.Files), c.Size)
	}
	return c, nil
}

// parseHash decodes a canonical base64 hash.
func parseHash(s string) (tlog.Hash, error) {
	h, err := tlog.ParseHash(s)
	if err == nil && h.String() != s {
		err = ErrMalformed
	}
	if err != nil {
		return tlog.Hash{}, err
	}
	return h, nil
}
