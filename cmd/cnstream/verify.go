package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/cnstream/cnstream/archive"
	"github.com/cnstream/cnstream/audit"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
)

const verifySynopsis = `Verifies a tamper-evident archive (a file sink with archive: true): every
closed file's records against its Merkle tree, the chain of signed checkpoints and
their signatures with the archive's public key, and the completeness of the event
streams (per host, boot and stream: delivered distinct + gap missing + dropped +
filtered == the seq span). Prints a table per host and boot: files, events, first
and last time, events provably lost (gap and dropped records) and events unaccounted
(holes no record explains).

Exit status: 0 when the archive is intact and every event is accounted for; 1 with
the first broken file, record and reason otherwise (or with the hosts whose
streams have unaccounted holes); 2 for a usage error. Records of the active file
(the one being written) are counted but not signed yet: they are reported, and
do not fail verification.`

// verifyReport is what verify found; --json prints it.
type verifyReport struct {
	Dir         string        `json:"dir"`
	Prefix      string        `json:"prefix"`
	Key         string        `json:"key"`
	Origin      string        `json:"origin"`
	Checkpoints int           `json:"checkpoints"`
	Files       []verifyFile  `json:"files"`
	Records     int64         `json:"records"`
	Bytes       int64         `json:"bytes"`
	Unsigned    int64         `json:"unsigned_records"` // records of the active file
	Intact      bool          `json:"intact"`
	Complete    bool          `json:"complete"`
	Problem     *verifyIssue  `json:"problem,omitempty"` // the first broken link
	Seconds     float64       `json:"seconds"`
	Decoded     int64         `json:"decoded_in_full"` // records read by the full decoder (loss records, unusual layouts)
	Hosts       []verifyHost  `json:"hosts"`
	Audit       *audit.Report `json:"audit"`
	fileIndex   map[string]int
	hostFiles   map[hostBoot]map[int]bool
}

type verifyFile struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Records int64  `json:"records"`
	Root    string `json:"root,omitempty"`
	Signed  bool   `json:"signed"`
	Active  bool   `json:"active,omitempty"`
}

// verifyIssue names where verification failed: a checkpoint (Checkpoint
// >= 0) or a file (Record -1 when the record is not known).
type verifyIssue struct {
	File       string `json:"file,omitempty"`
	Record     int64  `json:"record"`
	Checkpoint int    `json:"checkpoint"`
	Reason     string `json:"reason"`
}

func (p *verifyIssue) String() string {
	switch {
	case p.Checkpoint >= 0:
		return fmt.Sprintf("checkpoint %d: %s", p.Checkpoint, p.Reason)
	case p.File == "":
		return p.Reason
	case p.Record >= 0:
		return fmt.Sprintf("file %s: record %d: %s", p.File, p.Record, p.Reason)
	}
	return fmt.Sprintf("file %s: %s", p.File, p.Reason)
}

// verifyHost is one row of the table: a host and boot.
type verifyHost struct {
	Hostname    string    `json:"hostname"`
	BootID      string    `json:"boot_id"`
	Files       int       `json:"files"`
	Events      uint64    `json:"events"`
	First       time.Time `json:"first"`
	Last        time.Time `json:"last"`
	Lost        uint64    `json:"provably_lost"`
	Unaccounted uint64    `json:"unaccounted"`
}

type hostBoot struct{ host, boot string }

func verifyCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify DIR --key PUB [--json]", verifySynopsis, stderr)
	keyArg := fs.String("key", "", "the archive's public key: `PUB`, a file written by cnstream keygen (FILE.pub) or the key text (required)")
	prefix := fs.String("prefix", "events", "the file sink's `prefix` (its file.prefix)")
	origin := fs.String("origin", "", "the checkpoints' `origin` to require (default: the first checkpoint's, cnstream/<hostname> unless configured)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	dir, err := parseDirFlags(fs, args)
	if err != nil {
		return err
	}
	if dir == "" {
		return usageErr("verify takes the archive's DIR")
	}
	if *keyArg == "" {
		return usageErr("--key PUB is required: the archive's public key (FILE.pub from cnstream keygen), kept apart from the archive")
	}
	verifier, err := loadVerifier(*keyArg)
	if err != nil {
		return err
	}
	start := time.Now()
	r, err := verifyArchive(dir, *prefix, *origin, verifier)
	if err != nil {
		return err
	}
	r.Seconds = time.Since(start).Seconds()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printVerify(stdout, r)
	}
	switch {
	case r.Problem != nil:
		return errors.New(r.Problem.String())
	case !r.Complete:
		return errors.New("intact, but events are unaccounted for: holes in the streams that no gap or dropped record explains")
	}
	return nil
}

// loadVerifier reads a note verifier key from a file, or takes arg as the
// key text itself.
func loadVerifier(arg string) (note.Verifier, error) {
	text := arg
	if b, err := os.ReadFile(arg); err == nil {
		text = strings.TrimSpace(string(b))
	} else if !strings.Contains(arg, "+") {
		return nil, fmt.Errorf("--key %s: %w", arg, err)
	}
	if strings.HasPrefix(text, "PRIVATE+KEY+") {
		return nil, fmt.Errorf("--key %s: this is the signer (private) key; verify takes its public key, FILE.pub", arg)
	}
	v, err := note.NewVerifier(text)
	if err != nil {
		return nil, fmt.Errorf("--key %s: not a public key of cnstream keygen (note verifier key <name>+<hash>+<key>): %v", arg, err)
	}
	return v, nil
}

// verifyArchive checks dir's archive; the report says what holds and the
// first broken link. The error is for what keeps verify from reading the
// archive at all.
func verifyArchive(dir, prefix, origin string, verifier note.Verifier) (*verifyReport, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("archive directory: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("archive directory %s: not a directory", dir)
	}
	a, err := file.OpenArchive(dir, prefix)
	if err != nil {
		return nil, err
	}
	if len(a.Files) == 0 && len(a.Checkpoints) == 0 {
		return nil, fmt.Errorf("%s holds no archive files of prefix %q (and no checkpoints)", dir, prefix)
	}
	r := &verifyReport{Dir: dir, Prefix: prefix, Key: verifier.Name() + "+" + fmt.Sprintf("%08x", verifier.KeyHash()),
		Checkpoints: len(a.Checkpoints), fileIndex: map[string]int{}, hostFiles: map[hostBoot]map[int]bool{}}
	// The first broken link, by kind: a signature, then the chain and the
	// files' trees, then a record the reader could not frame, an event of
	// another host, a record that is not an event.
	var sigIssue, frameIssue, hostIssue, decodeIssue *verifyIssue
	first := func(p **verifyIssue, v verifyIssue) {
		if *p == nil {
			*p = &v
		}
	}

	// Checkpoints: signatures first; the chain is checked with the files.
	var cps []*archive.Checkpoint
	for i, path := range a.Checkpoints {
		msg, err := os.ReadFile(path)
		if err == nil {
			var c *archive.Checkpoint
			if c, err = archive.OpenCheckpoint(msg, verifier); err == nil {
				cps = append(cps, c)
				continue
			}
		}
		first(&sigIssue, verifyIssue{Checkpoint: i, Record: -1, Reason: fmt.Sprintf("%s: %v", path, checkpointReason(err))})
		break
	}
	switch {
	case origin != "":
	case len(cps) > 0:
		origin = cps[0].Origin
	}
	r.Origin = origin
	wantHost, wantBoot, checkHost := originHost(origin)
	signed := map[string]bool{}
	for _, c := range cps {
		for _, f := range c.Files {
			signed[f.Name] = true
		}
	}

	// Files: hash every record, feed the audit.
	var tally audit.Tally
	var dec audit.Decoder
	var entries []archive.FileEntry
	for fi, f := range a.Files {
		vf := verifyFile{Name: f.Name, Path: f.Path, Active: f.Active, Signed: signed[f.Name]}
		r.fileIndex[f.Name] = fi
		var t archive.Tree
		var otherHost *verifyIssue
		var lastHost *schema.Host
		err := f.Records(func(i int64, rec []byte) error {
			t.Add(rec)
			r.Bytes += int64(len(rec))
			var e *schema.Event
			var err error
			if f.Format == file.Msgpack {
				e, err = dec.Msgpack(rec)
			} else {
				e, err = dec.JSON(rec)
			}
			if err != nil {
				// Hashed like any record: whether it is the writer's is the
				// tree's to say; the audit cannot count it.
				first(&decodeIssue, verifyIssue{File: f.Name, Record: i, Checkpoint: -1, Reason: fmt.Sprintf("not an event: %v", err)})
				return nil
			}
			tally.Add(e)
			// The decoder keeps one *Host while the host stays the same.
			if h := e.Host; h != nil && h != lastHost {
				lastHost = h
				k := hostBoot{h.Hostname, h.BootID}
				if r.hostFiles[k] == nil {
					r.hostFiles[k] = map[int]bool{}
				}
				r.hostFiles[k][fi] = true
				if checkHost && (h.Hostname != wantHost || wantBoot != "" && h.BootID != wantBoot) && otherHost == nil {
					otherHost = &verifyIssue{File: f.Name, Record: i, Checkpoint: -1,
						Reason: fmt.Sprintf("an event of host %q boot %q in the archive of %q (origin %s)", h.Hostname, h.BootID, wantHost, origin)}
				}
			}
			return nil
		})
		vf.Records = t.Size()
		r.Records += t.Size()
		if err != nil {
			first(&frameIssue, verifyIssue{File: f.Name, Record: t.Size(), Checkpoint: -1, Reason: err.Error()})
		}
		if f.Active {
			r.Unsigned += t.Size()
		} else {
			vf.Root = t.Root().String()
			entries = append(entries, archive.FileEntry{Name: f.Name, Records: t.Size(), Root: t.Root()})
		}
		r.Files = append(r.Files, vf)
		if otherHost != nil && vf.Signed {
			// Signed with our key: whoever holds it put it there. Unsigned,
			// the chain below names the file as such.
			first(&hostIssue, *otherHost)
		}
	}
	r.Decoded = int64(dec.Full())

	var chain *verifyIssue
	if err := archive.VerifyChain(origin, cps, entries); err != nil {
		p := chainIssue(a, err)
		chain = &p
	}
	for _, p := range []*verifyIssue{sigIssue, chain, frameIssue, hostIssue, decodeIssue} {
		if p != nil {
			r.Problem = p
			break
		}
	}
	rep := tally.Report()
	r.Audit = &rep
	r.Intact = r.Problem == nil
	r.Complete = rep.Complete()
	for _, h := range rep.Hosts {
		r.Hosts = append(r.Hosts, verifyHost{Hostname: h.Hostname, BootID: h.BootID,
			Files: len(r.hostFiles[hostBoot{h.Hostname, h.BootID}]), Events: h.Events,
			First: h.First, Last: h.Last, Lost: h.GapMissing + h.Dropped, Unaccounted: h.Unaccounted})
	}
	return r, nil
}

// originHost returns the host (and boot) an archive's origin names: the
// file sink's "cnstream/<hostname>", the fleet archiver's
// "cnstream-archive/<hostname>/<boot_id>". Other origins name none.
func originHost(origin string) (host, boot string, ok bool) {
	if h, ok := strings.CutPrefix(origin, "cnstream/"); ok && h != "" && !strings.Contains(h, "/") {
		return h, "", true
	}
	if rest, ok := strings.CutPrefix(origin, "cnstream-archive/"); ok {
		if h, b, ok := strings.Cut(rest, "/"); ok && h != "" && b != "" && !strings.Contains(b, "/") {
			return h, b, true
		}
	}
	return "", "", false
}

// chainIssue turns VerifyChain's error into the report's issue; an edited
// file is looked at again with its leaf hashes to name the record.
func chainIssue(a *file.Archive, err error) verifyIssue {
	var fe *archive.FileError
	var ce *archive.CheckpointError
	switch {
	case errors.As(err, &fe):
		p := verifyIssue{File: fe.File, Record: fe.Record, Checkpoint: -1, Reason: fe.Err.Error()}
		if errors.Is(err, archive.ErrEdited) && fe.Record < 0 {
			if rec, why := findEdited(a, fe.File, err); rec >= 0 || why != "" {
				p.Record, p.Reason = rec, why
			}
		}
		return p
	case errors.As(err, &ce):
		return verifyIssue{Checkpoint: ce.Index, Record: -1, Reason: ce.Err.Error()}
	}
	return verifyIssue{Checkpoint: -1, Record: -1, Reason: err.Error()}
}

// findEdited names the changed record of an edited file from its leaves
// file, checked against the signed root first.
func findEdited(a *file.Archive, name string, chainErr error) (int64, string) {
	var f *file.ArchiveFile
	for i := range a.Files {
		if a.Files[i].Name == name {
			f = &a.Files[i]
		}
	}
	var want *archive.FileEntry
	var fe *archive.FileError
	if f == nil || f.Leaves == "" || !errors.As(chainErr, &fe) {
		return -1, ""
	}
	want = signedEntry(a, name)
	if want == nil {
		return -1, ""
	}
	leaves, err := f.ReadLeaves()
	if err != nil {
		return -1, ""
	}
	var records [][]byte
	if err := f.Records(func(_ int64, rec []byte) error {
		records = append(records, append([]byte(nil), rec...))
		return nil
	}); err != nil {
		return -1, ""
	}
	var le *archive.FileError
	if err := archive.VerifyFileLeaves(records, leaves, *want); errors.As(err, &le) {
		return le.Record, le.Err.Error()
	}
	return -1, ""
}

// signedEntry returns name's entry in the archive's checkpoints, read
// without their signatures (they were checked before).
func signedEntry(a *file.Archive, name string) *archive.FileEntry {
	for _, path := range a.Checkpoints {
		msg, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		text, _, ok := strings.Cut(string(msg), "\n\n")
		if !ok {
			continue
		}
		for line := range strings.SplitSeq(text, "\n") {
			rest, ok := strings.CutPrefix(line, "file ")
			if !ok {
				continue
			}
			var n int64
			var root, fname string
			parts := strings.SplitN(rest, " ", 3)
			if len(parts) != 3 || parts[2] != name {
				continue
			}
			if _, err := fmt.Sscan(parts[0], &n); err != nil {
				continue
			}
			root, fname = parts[1], parts[2]
			h, err := tlog.ParseHash(root)
			if err != nil {
				continue
			}
			return &archive.FileEntry{Name: fname, Records: n, Root: h}
		}
	}
	return nil
}

func checkpointReason(err error) string {
	var un *note.UnverifiedNoteError
	var inv *note.InvalidSignatureError
	switch {
	case errors.As(err, &un):
		return "not signed by the key given (re-signed with another key, or another archive's checkpoint)"
	case errors.As(err, &inv):
		return "invalid signature (the text or the signature was changed)"
	}
	return err.Error()
}

func printVerify(w io.Writer, r *verifyReport) {
	fmt.Fprintf(w, "archive %s (prefix %s): %d files, %d checkpoints, key %s, origin %s\n",
		r.Dir, r.Prefix, len(r.Files), r.Checkpoints, r.Key, r.Origin)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tBOOT\tFILES\tEVENTS\tFIRST\tLAST\tPROVABLY LOST\tUNACCOUNTED")
	hosts := append([]verifyHost(nil), r.Hosts...)
	sort.SliceStable(hosts, func(i, j int) bool {
		if hosts[i].Hostname != hosts[j].Hostname {
			return hosts[i].Hostname < hosts[j].Hostname
		}
		return hosts[i].First.Before(hosts[j].First)
	})
	for _, h := range hosts {
		boot := h.BootID
		if len(boot) > 8 {
			boot = boot[:8]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\n", h.Hostname, boot, h.Files, h.Events,
			fmtTime(h.First), fmtTime(h.Last), h.Lost, h.Unaccounted)
	}
	tw.Flush()
	rate := ""
	if r.Seconds > 0 {
		rate = fmt.Sprintf(": %.2fM records/s, %.0f MB/s", float64(r.Records)/r.Seconds/1e6, float64(r.Bytes)/r.Seconds/1e6)
	}
	fmt.Fprintf(w, "read %d records (%d bytes) in %.2f s%s\n", r.Records, r.Bytes, r.Seconds, rate)
	if r.Unsigned > 0 {
		fmt.Fprintf(w, "note: the active file holds %d records not signed yet (the sink is running, or stopped without closing it: its next start signs them)\n", r.Unsigned)
	}
	switch {
	case r.Problem != nil:
		fmt.Fprintf(w, "BROKEN: %s\n", r.Problem)
	case !r.Complete:
		fmt.Fprintln(w, "INTACT, NOT COMPLETE: events are unaccounted for (holes in the streams no gap or dropped record explains)")
	default:
		fmt.Fprintln(w, "OK: intact and every event accounted for")
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
