package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"golang.org/x/mod/sumdb/note"

	"github.com/cnstream/cnstream/audit"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink/file"
	kafkasink "github.com/cnstream/cnstream/sink/kafka"
)

const auditSynopsis = `audit DIR [--key PUB] [--silence D] [--json]
       audit --kafka BROKERS [--topic T] [--from-beginning] [--silence D] [--json]
       audit --config FILE [--json]    (the archiver: section's brokers, topic, TLS and SASL)

The fleet's completeness table, one row per host and boot.

With DIR (the archiver's dir: <DIR>/<hostname>/<boot_id>/ archives), each
archive is checked: with --key, as cnstream verify does (every record against
its file's tree, the signed chain of checkpoints, the completeness audit);
without it, completeness only (signatures not checked). Status: OK, BROKEN
(and why: the first broken link, or events of another host in the archive),
or INCOMPLETE (events unaccounted for: holes no gap or dropped record explains).

With --kafka, the topic itself is read (no consumer group: every partition
from its log start to the high watermark it had when the audit started) into
one tally: what the archivers are fed, with no archive involved.

Columns: files, events (distinct), first and last event time, provably lost
(gap and dropped records), unaccounted, silent (the last event is older than
--silence) and the status. Exit status: 0 when every row is OK; 1 otherwise;
2 for a usage error.`

// defaultSilence is after how long without an event a host is silent,
// unless --silence (or archiver.silence) says otherwise.
const defaultSilence = 5 * time.Minute

// defaultArchiverTopic is the kafka sink's default topic.
const defaultArchiverTopic = "cnstream-events"

// auditTable is what audit found; --json prints it.
type auditTable struct {
	Source     string     `json:"source"`             // the DIR, or kafka://BROKERS/TOPIC
	Signatures bool       `json:"signatures_checked"` // DIR with --key
	Key        string     `json:"key,omitempty"`
	Silence    string     `json:"silence"`
	At         time.Time  `json:"at"`
	Archives   int        `json:"archives,omitempty"`
	Messages   uint64     `json:"messages,omitempty"`  // --kafka: messages read
	Malformed  uint64     `json:"malformed,omitempty"` // --kafka: messages that are not events
	Hosts      []auditRow `json:"hosts"`
	OK         bool       `json:"ok"`
}

// auditRow is one host and boot.
type auditRow struct {
	Dir         string    `json:"dir,omitempty"` // its archive
	Hostname    string    `json:"hostname"`
	BootID      string    `json:"boot_id"`
	Files       int       `json:"files"`
	Events      uint64    `json:"events"`
	Duplicates  uint64    `json:"duplicates"`
	First       time.Time `json:"first,omitzero"`
	Last        time.Time `json:"last,omitzero"`
	Lost        uint64    `json:"provably_lost"`
	Unaccounted uint64    `json:"unaccounted"`
	Unsigned    int64     `json:"unsigned_records,omitempty"` // records of an archive's active file
	Silent      bool      `json:"silent"`
	Status      string    `json:"status"` // OK, BROKEN, INCOMPLETE
	Problem     string    `json:"problem,omitempty"`
}

const (
	statusOK         = "OK"
	statusBroken     = "BROKEN"
	statusIncomplete = "INCOMPLETE"
)

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("audit DIR [--key PUB] | --kafka BROKERS --topic T", auditSynopsis, stderr)
	keyArg := fs.String("key", "", "the archives' public key `PUB` (FILE.pub of cnstream keygen): check signatures and trees too")
	prefix := fs.String("prefix", "events", "the archives' file `prefix`")
	silence := fs.Duration("silence", 0, "a host whose last event is older than this is silent (default 5m, or the config's archiver.silence)")
	asJSON := fs.Bool("json", false, "print the table as one JSON object")
	var brokers []string
	stringList(fs, "kafka", "read the topic from these Kafka `BROKERS` (host:port, comma-separated) instead of archives", &brokers)
	topic := fs.String("topic", "", "with --kafka: the `topic` (default cnstream-events)")
	fromBeginning := fs.Bool("from-beginning", true, "with --kafka: read each partition from its log start (the only starting point: the audit needs every event the topic still holds)")
	configPath := fs.String("config", "", "with --kafka or alone: take the brokers, topic, TLS, SASL and silence from the archiver: section of `FILE`")
	dir, err := parseDirFlags(fs, args)
	if err != nil {
		return err
	}
	kafkaMode := len(brokers) > 0 || *configPath != ""
	switch {
	case dir != "" && kafkaMode:
		return usageErr("give DIR (archives) or --kafka/--config (a topic), not both")
	case dir == "" && !kafkaMode:
		return usageErr("audit takes the archiver's DIR, or --kafka BROKERS (and --topic)")
	case !*fromBeginning:
		return usageErr("--from-beginning=false: the audit reads every event the topic holds; there is no other starting point")
	case *silence < 0:
		return usageErr("--silence %v is negative", *silence)
	}
	now := time.Now()
	var t *auditTable
	if dir != "" {
		if *topic != "" {
			return usageErr("--topic is for --kafka")
		}
		var verifier note.Verifier
		if *keyArg != "" {
			v, err := loadVerifier(*keyArg)
			if err != nil {
				return err
			}
			verifier = v
		}
		var err error
		if t, err = auditDir(dir, *prefix, verifier, cmpDuration(*silence, defaultSilence), now); err != nil {
			return err
		}
	} else {
		if *keyArg != "" {
			return usageErr("--key is for archives (DIR): a topic holds no signatures")
		}
		a := &ArchiverConfig{}
		if *configPath != "" {
			c, err := loadConfigFile(*configPath)
			if err != nil {
				return err
			}
			if c.Archiver == nil {
				return fmt.Errorf("%s has no archiver: section", *configPath)
			}
			a = c.Archiver
		}
		if len(brokers) > 0 {
			a.Brokers = brokers
		}
		if *topic != "" {
			a.Topic = *topic
		}
		if err := a.kafka().validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		opts, err := a.kgoOpts()
		if err != nil {
			return err
		}
		var err2 error
		t, err2 = auditKafka(ctx, opts, a.Brokers, cmpOr(a.Topic, defaultArchiverTopic), cmpDuration(*silence, cmpDuration(time.Duration(a.Silence), defaultSilence)), now)
		if err2 != nil {
			return err2
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(t); err != nil {
			return err
		}
	} else {
		printAudit(stdout, t)
	}
	if !t.OK {
		bad := 0
		for _, r := range t.Hosts {
			if r.Status != statusOK {
				bad++
			}
		}
		return fmt.Errorf("%d of %d hosts and boots not OK", bad, len(t.Hosts))
	}
	return nil
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// auditDir audits every <dir>/<host>/<boot>/ archive; verifier nil checks
// completeness only. The error is for a dir that holds no archive at all.
func auditDir(dir, prefix string, verifier note.Verifier, silence time.Duration, now time.Time) (*auditTable, error) {
	hosts, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("archives directory: %w", err)
	}
	t := &auditTable{Source: dir, Signatures: verifier != nil, Silence: silence.String(), At: now.UTC()}
	if verifier != nil {
		t.Key = fmt.Sprintf("%s+%08x", verifier.Name(), verifier.KeyHash())
	}
	for _, h := range hosts {
		if !h.IsDir() || strings.HasPrefix(h.Name(), ".") {
			continue
		}
		boots, err := os.ReadDir(filepath.Join(dir, h.Name()))
		if err != nil {
			return nil, fmt.Errorf("archives directory: %w", err)
		}
		for _, b := range boots {
			if !b.IsDir() || strings.HasPrefix(b.Name(), ".") {
				continue
			}
			t.Archives++
			path := filepath.Join(dir, h.Name(), b.Name())
			t.Hosts = append(t.Hosts, auditArchive(path, h.Name(), b.Name(), prefix, verifier)...)
		}
	}
	if t.Archives == 0 {
		return nil, fmt.Errorf("%s holds no archives: want <hostname>/<boot_id>/ directories (the archiver's dir)", dir)
	}
	t.finish(silence, now)
	return t, nil
}

// auditArchive returns the rows of one host and boot archive (one, unless
// the archive holds events of several hosts or boots: then each is a row,
// all BROKEN).
func auditArchive(path, hostDir, bootDir, prefix string, verifier note.Verifier) []auditRow {
	broken := func(why string) []auditRow {
		return []auditRow{{Dir: path, Hostname: hostDir, BootID: bootDir, Status: statusBroken, Problem: why}}
	}
	var rows []auditRow
	var problem string
	var unsigned int64
	if verifier != nil {
		r, err := verifyArchive(path, prefix, "", verifier)
		if err != nil {
			return broken(err.Error())
		}
		if r.Problem != nil {
			problem = r.Problem.String()
		}
		unsigned = r.Unsigned
		for _, h := range r.Audit.Hosts {
			rows = append(rows, hostRow(path, h, len(r.hostFiles[hostBoot{h.Hostname, h.BootID}])))
		}
	} else {
		rep, files, err := tallyArchive(path, prefix)
		if err != nil {
			return broken(err.Error())
		}
		for _, h := range rep.Hosts {
			rows = append(rows, hostRow(path, h, files[hostBoot{h.Hostname, h.BootID}]))
		}
	}
	if len(rows) == 0 {
		rows = []auditRow{{Dir: path, Hostname: hostDir, BootID: bootDir}}
	}
	if len(rows) > 1 && problem == "" {
		problem = fmt.Sprintf("one archive holds events of %d hosts or boots", len(rows))
	}
	for i := range rows {
		rows[i].Unsigned = unsigned
		switch {
		case problem != "":
			rows[i].Status, rows[i].Problem = statusBroken, problem
		case rows[i].Unaccounted > 0:
			rows[i].Status = statusIncomplete
		default:
			rows[i].Status = statusOK
		}
	}
	return rows
}

func hostRow(dir string, h audit.HostReport, files int) auditRow {
	return auditRow{Dir: dir, Hostname: h.Hostname, BootID: h.BootID, Files: files, Events: h.Events,
		Duplicates: h.Duplicates, First: h.First, Last: h.Last, Lost: h.ProvablyLost, Unaccounted: h.Unaccounted}
}

// tallyArchive reads an archive's records into a tally without checking
// any signature or tree: the completeness audit alone. files counts the
// files holding each host and boot. A record that cannot be framed or
// decoded is an error.
func tallyArchive(dir, prefix string) (audit.Report, map[hostBoot]int, error) {
	a, err := file.OpenArchive(dir, prefix)
	if err != nil {
		return audit.Report{}, nil, err
	}
	if len(a.Files) == 0 {
		return audit.Report{}, nil, fmt.Errorf("%s holds no archive files of prefix %q", dir, prefix)
	}
	var tally audit.Tally
	var dec audit.Decoder
	files := map[hostBoot]int{}
	for _, f := range a.Files {
		seen := map[hostBoot]bool{}
		var last *schema.Host
		err := f.Records(func(i int64, rec []byte) error {
			var e *schema.Event
			var err error
			if f.Format == file.Msgpack {
				e, err = dec.Msgpack(rec)
			} else {
				e, err = dec.JSON(rec)
			}
			if err != nil {
				return fmt.Errorf("record %d: not an event: %w", i, err)
			}
			tally.Add(e)
			if h := e.Host; h != nil && h != last {
				last = h
				if k := (hostBoot{h.Hostname, h.BootID}); !seen[k] {
					seen[k] = true
					files[k]++
				}
			}
			return nil
		})
		if err != nil {
			return audit.Report{}, nil, fmt.Errorf("file %s: %w", f.Name, err)
		}
	}
	return tally.Report(), files, nil
}

// finish sorts the rows, marks the silent ones and sets OK.
func (t *auditTable) finish(silence time.Duration, now time.Time) {
	slices.SortStableFunc(t.Hosts, func(a, b auditRow) int {
		if c := strings.Compare(a.Hostname, b.Hostname); c != 0 {
			return c
		}
		return a.First.Compare(b.First)
	})
	t.OK = len(t.Hosts) > 0
	for i := range t.Hosts {
		r := &t.Hosts[i]
		r.Silent = !r.Last.IsZero() && now.Sub(r.Last) > silence
		t.OK = t.OK && r.Status == statusOK
	}
}

// auditKafka reads every partition of topic from its log start to the high
// watermark it has now into one tally. A partition is done when the record
// before its watermark has been read: on a topic whose last offsets are
// not records the client returns (transaction markers, compacted away;
// the kafka sink writes neither) it would wait until ctx ends, and says
// so.
func auditKafka(ctx context.Context, opts []kgo.Opt, brokers []string, topic string, silence time.Duration, now time.Time) (*auditTable, error) {
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	start, end, err := topicBounds(ctx, cl, topic)
	if err != nil {
		return nil, err
	}
	t := &auditTable{Source: "kafka://" + strings.Join(brokers, ",") + "/" + topic, Silence: silence.String(), At: now.UTC()}
	pending := map[int32]kgo.Offset{}
	for p, e := range end {
		if e > start[p] {
			pending[p] = kgo.NewOffset().At(start[p])
		}
	}
	if len(pending) > 0 {
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: pending})
	}
	var tally audit.Tally
	var dec audit.Decoder
	for len(pending) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("kafka: topic %s: read %d messages, %d partitions not to their end: %w", topic, t.Messages, len(pending), err)
		}
		var fatal error
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Err != nil {
				if fatal == nil && !kerr.IsRetriable(p.Err) {
					fatal = fmt.Errorf("kafka: topic %s partition %d: %w", topic, p.Partition, p.Err)
				}
				return
			}
			if _, ok := pending[p.Partition]; !ok {
				return
			}
			for _, r := range p.Records {
				if r.Offset >= end[p.Partition] {
					break
				}
				t.Messages++
				e, err := decodeMessage(&dec, r)
				if err != nil {
					t.Malformed++
				} else {
					tally.Add(e)
				}
				if r.Offset+1 >= end[p.Partition] {
					delete(pending, p.Partition)
					cl.PauseFetchPartitions(map[string][]int32{topic: {p.Partition}})
					break
				}
			}
		})
		if fatal != nil {
			return nil, fatal
		}
	}
	for _, h := range tally.Report().Hosts {
		r := hostRow("", h, 0)
		r.Status = statusOK
		if r.Unaccounted > 0 {
			r.Status = statusIncomplete
		}
		t.Hosts = append(t.Hosts, r)
	}
	t.finish(silence, now)
	t.OK = t.OK && t.Malformed == 0
	return t, nil
}

// decodeMessage decodes a message of the kafka sink: its content-type
// header says msgpack or JSON (without one: JSON when it starts with '{').
func decodeMessage(dec *audit.Decoder, r *kgo.Record) (*schema.Event, error) {
	ct := ""
	for _, h := range r.Headers {
		if h.Key == kafkasink.HeaderContentType {
			ct = string(h.Value)
		}
	}
	switch {
	case ct == kafkasink.ContentTypeMsgpack:
		return dec.Msgpack(r.Value)
	case ct == kafkasink.ContentTypeJSON, ct == "" && len(r.Value) > 0 && r.Value[0] == '{':
		return dec.JSON(r.Value)
	case ct == "":
		return dec.Msgpack(r.Value)
	}
	return nil, fmt.Errorf("content-type %q", ct)
}

// topicBounds returns the log start and the high watermark of every
// partition of topic.
func topicBounds(ctx context.Context, cl *kgo.Client, topic string) (start, end map[int32]int64, err error) {
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: metadata: %w", err)
	}
	if len(mresp.Topics) != 1 {
		return nil, nil, fmt.Errorf("kafka: metadata: %d topics in the answer, want 1", len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, nil, fmt.Errorf("kafka: topic %s: %w", topic, err)
	}
	var parts []int32
	for _, p := range mresp.Topics[0].Partitions {
		parts = append(parts, p.Partition)
	}
	list := func(ts int64) (map[int32]int64, error) {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for _, p := range parts {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp = p, ts
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, fmt.Errorf("kafka: list offsets: %w", err)
		}
		out := map[int32]int64{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("kafka: topic %s partition %d: list offsets: %w", topic, p.Partition, err)
				}
				out[p.Partition] = p.Offset
			}
		}
		if len(out) != len(parts) {
			return nil, fmt.Errorf("kafka: topic %s: offsets of %d partitions, want %d", topic, len(out), len(parts))
		}
		return out, nil
	}
	if start, err = list(-2); err != nil {
		return nil, nil, err
	}
	if end, err = list(-1); err != nil {
		return nil, nil, err
	}
	return start, end, nil
}

// kgoOpts returns the franz-go client options of the archiver's
// connection: brokers, TLS and SASL as a kafka sink's (a is valid).
func (a *ArchiverConfig) kgoOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(a.Brokers...)}
	if a.TLS.Enable {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: a.TLS.ServerName,
			InsecureSkipVerify: a.TLS.InsecureSkipVerify} //nolint:gosec // documented as for tests
		if a.TLS.CAFile != "" {
			pem, err := os.ReadFile(a.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("archiver.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("archiver.tls.ca_file: %s holds no PEM certificate", a.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if a.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(a.TLS.CertFile, a.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("archiver.tls.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if mech := strings.ToUpper(a.SASL.Mechanism); mech != "" {
		var m sasl.Mechanism
		switch mech {
		case "PLAIN":
			m = plain.Auth{User: a.SASL.Username, Pass: a.SASL.Password}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: a.SASL.Username, Pass: a.SASL.Password}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			m = scram.Auth{User: a.SASL.Username, Pass: a.SASL.Password}.AsSha512Mechanism()
		default:
			return nil, fmt.Errorf("archiver.sasl.mechanism: %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", a.SASL.Mechanism)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func printAudit(w io.Writer, t *auditTable) {
	switch {
	case t.Archives > 0 && t.Signatures:
		fmt.Fprintf(w, "archives under %s: %d, signatures checked with key %s\n", t.Source, t.Archives, t.Key)
	case t.Archives > 0:
		fmt.Fprintf(w, "archives under %s: %d, signatures not checked (no --key): completeness only\n", t.Source, t.Archives)
	default:
		fmt.Fprintf(w, "topic %s: %d messages read (%d not events), no archive involved\n", t.Source, t.Messages, t.Malformed)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tBOOT\tFILES\tEVENTS\tFIRST\tLAST\tPROVABLY LOST\tUNACCOUNTED\tSILENT\tSTATUS")
	for _, r := range t.Hosts {
		boot := r.BootID
		if len(boot) > 8 {
			boot = boot[:8]
		}
		files := fmt.Sprint(r.Files)
		if t.Archives == 0 {
			files = "-"
		}
		silent := "no"
		if r.Silent {
			silent = "yes"
		}
		status := r.Status
		if r.Problem != "" {
			status += ": " + r.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Hostname, boot, files, r.Events,
			fmtTime(r.First), fmtTime(r.Last), r.Lost, r.Unaccounted, silent, status)
	}
	tw.Flush()
	if t.OK {
		fmt.Fprintln(w, "OK: every host and boot complete"+map[bool]string{true: ", every archive intact", false: ""}[t.Signatures])
		return
	}
	if t.Malformed > 0 {
		fmt.Fprintf(w, "NOT OK: %d messages are not cnstream events\n", t.Malformed)
	}
	if len(t.Hosts) == 0 {
		fmt.Fprintln(w, "NOT OK: no events")
		return
	}
	fmt.Fprintln(w, "NOT OK: see STATUS (INCOMPLETE: events no gap or dropped record explains; BROKEN: the archive cannot be trusted)")
}
