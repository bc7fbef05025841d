package main

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cnstream/cnstream/assemble"
	"github.com/cnstream/cnstream/fleet"
	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/file"
	kafkasink "github.com/cnstream/cnstream/sink/kafka"
	natssink "github.com/cnstream/cnstream/sink/nats"
	stdoutsink "github.com/cnstream/cnstream/sink/stdout"
	"github.com/cnstream/cnstream/source"
	"github.com/cnstream/cnstream/telemetry"
	"github.com/cnstream/cnstream/transform"
	"github.com/cnstream/cnstream/transform/redact"
)

// defaultConfig is what `cnstream run` uses without --config: every process
// event, enriched, to rotating JSON-lines files under ./cnstream-data/.
//
//go:embed default.yaml
var defaultConfig []byte

// Config is the YAML configuration of `cnstream run` and `cnstream validate`.
// Unknown keys are errors; every error names the file, the line and the
// field, and says why.
type Config struct {
	Source    SourceConfig    `yaml:"source"`
	Transform TransformConfig `yaml:"transform"`
	Pipeline  PipelineConfig  `yaml:"pipeline"`
	Spool     SpoolConfig     `yaml:"spool"`
	Sinks     []SinkConfig    `yaml:"sinks"`
	Telemetry TelemetryConfig `yaml:"telemetry"`
	Log       LogConfig       `yaml:"log"`
	Archiver  *ArchiverConfig `yaml:"archiver"` // cnstream archive only; a file with it needs no sinks
}

// SourceConfig: the connector socket and the subscription.
type SourceConfig struct {
	ProcessEvents   *bool    `yaml:"process_events"`   // subscribe to the proc connector (group 1); default true
	Groups          []uint32 `yaml:"groups"`           // other connector multicast groups to join (1..26); default none
	UserspaceGroups []uint32 `yaml:"userspace_groups"` // groups whose userspace senders may use kernel-owned ids; default none
	DatagramSize    Size     `yaml:"datagram_size"`    // receive buffer per datagram; default 512, 16420 with groups
	ReadBuffer      Size     `yaml:"read_buffer"`      // default 64MiB; -1 keeps the kernel default
	NoENOBUFS       bool     `yaml:"no_enobufs"`       // default false
	Batch           int      `yaml:"batch"`            // datagrams per recvmmsg, default 64
	KernelFilter    []string `yaml:"kernel_filter"`    // kinds the kernel sends; default all (keeps ACKs and exact gaps)
}

// TransformConfig: enrichment and filters.
type TransformConfig struct {
	Enrich       *bool        `yaml:"enrich"`        // default true
	Ancestors    *int         `yaml:"ancestors"`     // default 4
	MaxProcesses int          `yaml:"max_processes"` // default 65536
	Filter       FilterConfig `yaml:"filter"`
	Redact       RedactConfig `yaml:"redact"`
}

// RedactConfig: secrets in command lines replaced by "[redacted]" in the
// enrichment stage (transform/redact), before any sink, spool or archive.
type RedactConfig struct {
	Enabled  *bool        `yaml:"enabled"`  // default true
	Defaults *bool        `yaml:"defaults"` // the built-in rules; default true
	Rules    []RedactRule `yaml:"rules"`    // user rules, after the built-in ones; default none
}

// RedactRule mirrors redact.Rule.
type RedactRule struct {
	Match   string `yaml:"match"`   // regular expression (RE2)
	On      string `yaml:"on"`      // argv (default) or exe
	Replace string `yaml:"replace"` // value (default) or whole
}

// redactor returns the Redactor the section describes: nil when disabled.
// Errors name the field (transform.redact.rules[i].match).
func (c RedactConfig) redactor() (*redact.Redactor, error) {
	if c.Enabled != nil && !*c.Enabled {
		return nil, nil
	}
	cfg := redact.Config{NoDefaults: c.Defaults != nil && !*c.Defaults}
	for _, r := range c.Rules {
		cfg.Rules = append(cfg.Rules, redact.Rule{Match: r.Match, On: r.On, Replace: r.Replace})
	}
	rd, err := redact.New(cfg)
	var re *redact.RuleError
	if errors.As(err, &re) {
		return nil, fieldErr(fmt.Sprintf("transform.redact.rules[%d].%s", re.Index, re.Field), "%v", re.Err)
	}
	return rd, err
}

// FilterConfig mirrors transform.Filter.
type FilterConfig struct {
	Kinds             []string `yaml:"kinds"`
	ExcludeKinds      []string `yaml:"exclude_kinds"`
	UIDs              []uint32 `yaml:"uids"`
	ExcludeUIDs       []uint32 `yaml:"exclude_uids"`
	Comms             []string `yaml:"comms"`
	ExcludeComms      []string `yaml:"exclude_comms"`
	Exes              []string `yaml:"exes"`
	ExcludeExes       []string `yaml:"exclude_exes"`
	Containers        []string `yaml:"containers"`
	ExcludeContainers []string `yaml:"exclude_containers"`
}

// PipelineConfig: shutdown.
type PipelineConfig struct {
	DrainTimeout Duration `yaml:"drain_timeout"` // default 10s
}

// SpoolConfig: the durable disk spool between the reader and the sinks
// (pipeline/spool; docs/DELIVERY.md, "Durable spool"). With dir set, file,
// kafka and nats sinks take their events from it (queue.policy spool is
// their default): what a sink has not acknowledged survives a restart.
type SpoolConfig struct {
	Dir           string   `yaml:"dir"`            // default "": no spool
	MaxSize       Size     `yaml:"max_size"`       // default 1GiB; at least 1MiB
	WhenFull      string   `yaml:"when_full"`      // block (default) or drop_oldest
	Fsync         string   `yaml:"fsync"`          // interval (default), always, never
	FsyncInterval Duration `yaml:"fsync_interval"` // default 1s: with fsync interval, what a power loss may cost
}

// SinkConfig is one output. The section named after its type (file, kafka,
// nats; stdout has none) configures the backend; sinkTypes says how.
type SinkConfig struct {
	Name  string       `yaml:"name"`
	Type  string       `yaml:"type"` // file, kafka, nats, stdout
	Queue QueueConfig  `yaml:"queue"`
	Batch BatchConfig  `yaml:"batch"`
	Retry RetryConfig  `yaml:"retry"`
	File  *FileConfig  `yaml:"file"`
	Kafka *KafkaConfig `yaml:"kafka"`
	NATS  *NATSConfig  `yaml:"nats"`
}

// KafkaConfig is the kafka sink's section (sink/kafka.Config).
type KafkaConfig struct {
	Brokers          commaList `yaml:"brokers"`           // required: a list, or a comma-separated string
	Topic            string    `yaml:"topic"`             // default cnstream-events; {kind}, {host}, {machine_id}, {boot_id}, {stream}
	Key              string    `yaml:"key"`               // default {host}: per-host order; {host}-{stream}: per-stream order, a host over several partitions
	RequiredAcks     string    `yaml:"required_acks"`     // all (default), one, none
	Compression      string    `yaml:"compression"`       // zstd (default), lz4, snappy, gzip, none
	Encoding         string    `yaml:"encoding"`          // msgpack (default) or json
	MaxRequestBytes  Size      `yaml:"max_request_bytes"` // default 1000000: uncompressed bytes per produce request
	Timeout          Duration  `yaml:"timeout"`           // default 10s: a batch until every message is acknowledged
	MetadataTTL      Duration  `yaml:"metadata_ttl"`      // default 500ms
	Client           string    `yaml:"client"`            // franz-go (default) or kafka-go: the producer library (sink/kafka's doc)
	CompressionLevel int       `yaml:"compression_level"` // zstd 1..22 or gzip 1..9 (franz-go only); default 0: the codec's (zstd 3)
	TLS              struct {
		Enable             bool   `yaml:"enable"`
		CAFile             string `yaml:"ca_file"`
		CertFile           string `yaml:"cert_file"`
		KeyFile            string `yaml:"key_file"`
		ServerName         string `yaml:"server_name"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	} `yaml:"tls"`
	SASL struct {
		Mechanism string `yaml:"mechanism"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
		Username  string `yaml:"username"`
		Password  string `yaml:"password"` // use ${VAR}: never written in a file you commit
		// PLAIN sends the password in clear: refused without tls.enable
		// unless this is true. Default false.
		AllowPlaintext bool `yaml:"allow_plaintext"`
	} `yaml:"sasl"`
}

// NATSConfig is the nats sink's section (sink/nats.Config).
type NATSConfig struct {
	URL              commaList `yaml:"url"`                // required: nats://host:port; a list or comma-separated string for a cluster
	Subject          string    `yaml:"subject"`            // default cnstream.{host}.{kind}
	JetStream        bool      `yaml:"jetstream"`          // default false (core NATS)
	Stream           string    `yaml:"stream"`             // JetStream: create this stream if missing
	MaxPending       int       `yaml:"max_pending"`        // JetStream: default 4096
	Encoding         string    `yaml:"encoding"`           // msgpack (default) or json
	EventsPerMessage int       `yaml:"events_per_message"` // default 0: one per message; up to 65535 events of a subject per message (sink/nats's doc)
	CredsFile        string    `yaml:"creds_file"`         //
	NKeyFile         string    `yaml:"nkey_file"`          //
	Token            string    `yaml:"token"`              //
	Username         string    `yaml:"username"`           //
	Password         string    `yaml:"password"`           //
	ReconnectWait    Duration  `yaml:"reconnect_wait"`     // default 1s
	MaxReconnects    int       `yaml:"max_reconnects"`     // default forever
	Timeout          Duration  `yaml:"timeout"`            // default 10s: a batch until it is acknowledged
	TLS              struct {
		Enable             bool   `yaml:"enable"` // default false; any other key, or a tls:// URL, turns TLS on too
		CAFile             string `yaml:"ca_file"`
		CertFile           string `yaml:"cert_file"`
		KeyFile            string `yaml:"key_file"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	} `yaml:"tls"`
}

// QueueConfig bounds a sink's queue.
type QueueConfig struct {
	Events int    `yaml:"events"` // default 65536
	Bytes  Size   `yaml:"bytes"`  // default 64MiB
	Policy string `yaml:"policy"` // block, drop_newest, drop_oldest, spool; default spool for file, kafka and nats with spool.dir, else block
}

// BatchConfig shapes a sink's writes.
type BatchConfig struct {
	Events int      `yaml:"events"` // default 512; kafka 8192, nats 4096
	Bytes  Size     `yaml:"bytes"`  // default 1MiB; kafka 8MiB, nats 4MiB
	Linger Duration `yaml:"linger"` // default 5ms
}

// RetryConfig bounds retries of a failed write.
type RetryConfig struct {
	Initial    Duration `yaml:"initial"`     // default 100ms
	Max        Duration `yaml:"max"`         // default 5s
	MaxElapsed Duration `yaml:"max_elapsed"` // default 30s
}

// FileConfig is the file sink's section.
type FileConfig struct {
	Dir          string   `yaml:"dir"`           // default ./cnstream-data
	Prefix       string   `yaml:"prefix"`        // default events
	Encoding     string   `yaml:"encoding"`      // json (default: JSON lines, files *.jsonl) or msgpack
	MaxSize      Size     `yaml:"max_size"`      // default 64MiB
	MaxAge       Duration `yaml:"max_age"`       // default 1h
	Compression  string   `yaml:"compression"`   // zstd (default) or none
	Sync         string   `yaml:"sync"`          // always (default), interval, never
	SyncInterval Duration `yaml:"sync_interval"` // default 1s
	// Archive makes the directory a tamper-evident archive: a Merkle tree
	// per file and a signed checkpoint per closed file (cnstream verify).
	Archive       bool   `yaml:"archive"`
	ArchiveKey    string `yaml:"archive_key"`    // signer key file (cnstream keygen), required with archive
	ArchiveOrigin string `yaml:"archive_origin"` // default cnstream/<hostname>
}

// commaList is a list of strings, written as a YAML list or as one
// comma-separated string ("b1:9092,b2:9092", as an environment variable
// gives it); elements are trimmed and empty ones dropped.
type commaList []string

func (l *commaList) UnmarshalYAML(n *yaml.Node) error {
	var items []string
	switch n.Kind {
	case yaml.ScalarNode:
		items = []string{n.Value}
	case yaml.SequenceNode:
		if err := n.Decode(&items); err != nil {
			return err
		}
	default:
		return fmt.Errorf("line %d: want a list, or a comma-separated string", n.Line)
	}
	*l = nil
	for _, it := range items {
		for s := range strings.SplitSeq(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				*l = append(*l, s)
			}
		}
	}
	return nil
}

// Size is a byte count: an integer, or a number with a unit (KiB, MiB, GiB,
// KB, MB, GB).
type Size int64

var sizeUnits = map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

var sizeRE = regexp.MustCompile(`^(-?[0-9]+)\s*([KMG]i?B|B)?$`)

func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(n.Value))
	if n.Kind != yaml.ScalarNode || m == nil {
		return fmt.Errorf("line %d: %q is not a size (examples: 65536, 64MiB, 1GB)", n.Line, n.Value)
	}
	v, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return fmt.Errorf("line %d: size %q: %v", n.Line, n.Value, err)
	}
	*s = Size(v * sizeUnits[m[2]])
	return nil
}

// Duration is a Go duration string ("5ms", "10s", "1h").
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration (examples: 5ms, 10s, 1h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ConfigError is an invalid configuration: where and why.
type ConfigError struct {
	File  string
	Line  int    // 0 when unknown
	Field string // dotted path, "sinks[0].queue.policy"
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": " + e.Field)
	}
	return b.String() + ": " + e.Msg
}

// envRE matches an environment reference: ${VAR}, ${VAR:-default} or
// ${VAR:?message}, on one line.
var envRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}\n]*))?\}`)

// expansion is what expandEnv did to a configuration: the references it
// hid from the YAML parser, the values it expanded (so that an error shows
// a value as it was written, never what the environment gave), and the
// values that are secrets however they were written.
type expansion struct {
	file    string
	refs    map[string]string  // placeholder -> the reference as written
	byLine  map[int][]expanded // values expanded, by line
	secrets []string
}

type expanded struct{ value, written string }

// hideRefs replaces every environment reference in text by a placeholder
// that is a plain YAML scalar anywhere (also inside a flow collection, where
// "${" and "}" would be syntax), so that the text parses as it would with
// literal values; line numbers stay true.
func (x *expansion) hideRefs(text []byte) []byte {
	prefix := "cnstreamenvref"
	for bytes.Contains(text, []byte(prefix)) {
		prefix += "x"
	}
	x.refs = map[string]string{}
	return envRE.ReplaceAllFunc(text, func(m []byte) []byte {
		p := fmt.Sprintf("%s%dz", prefix, len(x.refs))
		x.refs[p] = string(m)
		return []byte(p)
	})
}

// written returns s with its placeholders back to the references they hide.
func (x *expansion) written(s string) string {
	for p, ref := range x.refs {
		s = strings.ReplaceAll(s, p, ref)
	}
	return s
}

// expandEnv expands the environment references in the scalar values of the
// parsed tree root: never in a key, never in a comment. An expanded value
// is never parsed as YAML: "s3cr3t #x", "!x" and "*x" stay what they are.
// An unquoted, untagged value has its type resolved as if the expanded text
// had been written there (port: ${PORT} gives an int, enable: ${TLS} a
// bool), except that it never becomes null (an empty value is the empty
// string); a quoted value stays a string. An unset ${VAR} without a default
// is an error: a silently empty value is a misconfiguration.
func (x *expansion) expandEnv(root *yaml.Node) error {
	x.byLine = map[int][]expanded{}
	seen := map[*yaml.Node]bool{}
	var errs []error
	var walk func(n *yaml.Node, key bool)
	walk = func(n *yaml.Node, key bool) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, false)
			}
		case yaml.MappingNode:
			for i, c := range n.Content {
				walk(c, i%2 == 0)
			}
		case yaml.AliasNode:
			walk(n.Alias, false)
		case yaml.ScalarNode:
			written := x.written(n.Value)
			if written == n.Value {
				return
			}
			if key {
				n.Value = written
				return
			}
			v := envRE.ReplaceAllStringFunc(written, func(m string) string {
				sm := envRE.FindStringSubmatch(m)
				name, op, arg := sm[1], sm[2], sm[3]
				v, ok := os.LookupEnv(name)
				switch {
				case ok && v != "":
					return v
				case op == ":-":
					return arg
				case op == ":?":
					errs = append(errs, &ConfigError{File: x.file, Line: n.Line, Msg: fmt.Sprintf("${%s}: %s", name, arg)})
				default:
					errs = append(errs, &ConfigError{File: x.file, Line: n.Line, Msg: fmt.Sprintf("${%s} is not set (use ${%s:-default} for a default)", name, name)})
				}
				return ""
			})
			n.Value = v
			if n.Style&(yaml.TaggedStyle|yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = ""
				if n.Tag = n.ShortTag(); n.Tag == "!!null" {
					n.Tag = "!!str"
				}
			}
			x.byLine[n.Line] = append(x.byLine[n.Line], expanded{value: v, written: written})
		}
	}
	walk(root, false)
	return errors.Join(errs...)
}

// collectSecrets records the values that must never be shown: passwords,
// tokens, header values, and the user information of URLs.
func (x *expansion) collectSecrets(n *yaml.Node) {
	add := func(s string) {
		if len(s) >= 3 && !slices.Contains(x.secrets, s) {
			x.secrets = append(x.secrets, s)
		}
	}
	var walk func(n *yaml.Node, key string, depth int)
	walk = func(n *yaml.Node, key string, depth int) {
		if n == nil || depth > 64 {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, key, depth+1)
			}
		case yaml.AliasNode:
			walk(n.Alias, key, depth+1)
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if key == "headers" {
					k = "headers"
				}
				walk(n.Content[i+1], k, depth+1)
			}
		case yaml.ScalarNode:
			switch key {
			case "password", "token", "headers":
				add(n.Value)
			case "endpoint", "url", "brokers":
				for _, u := range strings.Split(n.Value, ",") {
					user, pw := telemetry.Userinfo(strings.TrimSpace(u))
					if pw != "" {
						add(pw)
					} else {
						add(user) // a token in the user position
					}
				}
			}
		}
	}
	walk(n, "", 0)
}

var terrorRE = regexp.MustCompile("(cannot unmarshal !!\\w+ )`[^`]*`")

// scrub returns msg, an error about line (0: unknown) of the configuration,
// with every value expanded on that line shown as it was written, and
// every secret redacted.
func (x *expansion) scrub(msg string, line int) string {
	msg = x.written(msg)
	if exp := x.byLine[line]; len(exp) > 0 {
		shown := "(a value from the environment)"
		if len(exp) == 1 {
			shown = exp[0].written
		}
		// yaml.v3 shows a value it cannot convert, cut to 7 bytes.
		msg = terrorRE.ReplaceAllString(msg, "${1}`"+strings.ReplaceAll(shown, "$", "$$")+"`")
		for _, e := range exp {
			if e.value != "" && e.value != e.written {
				msg = strings.ReplaceAll(msg, strconv.Quote(e.value), strconv.Quote(e.written))
				if len(e.value) >= 3 {
					msg = strings.ReplaceAll(msg, e.value, e.written)
				}
			}
		}
	}
	for _, s := range x.secrets {
		msg = strings.ReplaceAll(msg, s, "[redacted]")
	}
	return msg
}

// clean scrubs the messages of the ConfigErrors in err.
func (x *expansion) clean(err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	var flatten func(err error)
	flatten = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				flatten(e)
			}
			return
		}
		errs = append(errs, err)
	}
	flatten(err)
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		var ce *ConfigError
		if errors.As(e, &ce) {
			ce.Msg = x.scrub(ce.Msg, ce.Line)
			ce.Field = x.written(ce.Field)
			out = append(out, ce)
			continue
		}
		out = append(out, &ConfigError{File: x.file, Msg: x.scrub(e.Error(), 0)})
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

var renamerType = reflect.TypeFor[renamer]()

// unknownKeys returns an error for every key of n that t has no field for
// (yaml.v3 checks this only when it parses the text itself), and for every
// renamed key, naming the new one. path is n's field path ("sinks[0].file").
func unknownKeys(file string, n *yaml.Node, t reflect.Type, path string, depth int) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n == nil || depth > 64 || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return unknownKeys(file, n.Content[0], t, path, depth+1)
	case yaml.AliasNode:
		return unknownKeys(file, n.Alias, t, path, depth+1)
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // the decoder reports the type
		}
		var renamed map[string]string
		if reflect.PointerTo(t).Implements(renamerType) {
			renamed = reflect.New(t).Interface().(renamer).renamed()
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			fields[cmp.Or(name, strings.ToLower(f.Name))] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				errs = append(errs, unknownKeys(file, v, t, path, depth+1)...)
				if v.Kind == yaml.SequenceNode {
					for _, c := range v.Content {
						errs = append(errs, unknownKeys(file, c, t, path, depth+1)...)
					}
				}
				continue
			}
			at := strings.TrimPrefix(path+"."+k.Value, ".")
			ft, ok := fields[k.Value]
			switch {
			case !ok && renamed[k.Value] != "":
				errs = append(errs, &ConfigError{File: file, Line: k.Line, Field: at, Msg: "renamed: use " + renamed[k.Value]})
				continue
			case !ok:
				errs = append(errs, &ConfigError{File: file, Line: k.Line, Msg: "unknown key " + strconv.Quote(k.Value)})
				continue
			}
			errs = append(errs, unknownKeys(file, v, ft, at, depth+1)...)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, c := range n.Content {
				errs = append(errs, unknownKeys(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)...)
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				errs = append(errs, unknownKeys(file, n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value, depth+1)...)
			}
		}
	}
	return errs
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// LoadConfig reads and validates a configuration; file names it in errors.
// Environment references are expanded in values after parsing (see
// expandEnv); no error shows a value from the environment or a secret.
func LoadConfig(file string, text []byte) (*Config, error) {
	x := &expansion{file: file}
	var root yaml.Node
	if err := yaml.Unmarshal(x.hideRefs(text), &root); err != nil {
		return nil, x.clean(yamlError(file, err))
	}
	if err := x.expandEnv(&root); err != nil {
		return nil, err
	}
	x.collectSecrets(&root)
	var c Config
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		errs := unknownKeys(file, &root, reflect.TypeFor[Config](), "", 0)
		if err := root.Decode(&c); err != nil {
			errs = append(errs, yamlError(file, err))
		}
		if len(errs) > 0 {
			return nil, x.clean(errors.Join(errs...))
		}
	}
	if err := c.validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = file
			ce.Line = lineOf(&root, ce.Field)
		}
		return nil, x.clean(err)
	}
	return &c, nil
}

// yamlError turns yaml.v3's errors ("yaml: unmarshal errors:\n  line 5:
// field x not found in type main.SinkConfig") into ConfigErrors.
func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		var errs []error
		for _, e := range te.Errors {
			ce := &ConfigError{File: file, Msg: e}
			if m := yamlLineRE.FindStringSubmatch(e); m != nil {
				ce.Line, _ = strconv.Atoi(m[1])
				ce.Msg = m[2]
				if f, ok := strings.CutPrefix(ce.Msg, "field "); ok {
					if name, _, ok := strings.Cut(f, " not found in type"); ok {
						ce.Msg = "unknown key " + strconv.Quote(name)
					}
				}
			}
			errs = append(errs, ce)
		}
		return errors.Join(errs...)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	ce := &ConfigError{File: file, Msg: msg}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		ce.Line, _ = strconv.Atoi(m[1])
		ce.Msg = m[2]
	}
	return ce
}

// lineOf finds the line of a dotted field path ("sinks[1].queue.policy") in
// the YAML tree, or of its nearest existing parent.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		key, idx := part, -1
		if k, rest, ok := strings.Cut(part, "["); ok {
			key = k
			idx, _ = strconv.Atoi(strings.TrimSuffix(rest, "]"))
		}
		next := (*yaml.Node)(nil)
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					next = n.Content[i+1]
					line = n.Content[i].Line
				}
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// policy returns the queue policy of s: queue.policy, or its type's
// default: spool for the types that have one (file, kafka, nats) when
// spool.dir is set, else block.
func (c *Config) policy(s SinkConfig) string {
	if s.Queue.Policy != "" {
		return s.Queue.Policy
	}
	if c.Spool.Dir != "" && sinkTypes[s.Type].spooled {
		return pipeline.Spool.String()
	}
	return pipeline.Block.String()
}

// spooledSinks returns the names of the sinks whose policy is spool: the
// cursors of the spool.
func (c *Config) spooledSinks() []string {
	var names []string
	for _, s := range c.Sinks {
		if c.policy(s) == pipeline.Spool.String() {
			names = append(names, s.Name)
		}
	}
	return names
}

// spoolConfig maps the spool section to the library's Config (c is
// valid); the caller sets Records and Logger.
func (s SpoolConfig) spoolConfig() spool.Config {
	whenFull, _ := spool.ParseWhenFull(or(s.WhenFull, spool.Block.String()))
	fsync, _ := spool.ParseFsync(or(s.Fsync, spool.FsyncInterval.String()))
	return spool.Config{Dir: s.Dir, MaxSize: int64(s.MaxSize), WhenFull: whenFull, Fsync: fsync,
		FsyncInterval: time.Duration(s.FsyncInterval)}
}

func (s SpoolConfig) validate() error {
	if s.MaxSize < 0 || (s.MaxSize > 0 && s.MaxSize < 1<<20) {
		return fieldErr("spool.max_size", "%d: want at least 1MiB (default 1GiB)", s.MaxSize)
	}
	if _, ok := spool.ParseWhenFull(s.WhenFull); s.WhenFull != "" && !ok {
		return fieldErr("spool.when_full", "%q: want block or drop_oldest", s.WhenFull)
	}
	if _, ok := spool.ParseFsync(s.Fsync); s.Fsync != "" && !ok {
		return fieldErr("spool.fsync", "%q: want interval, always or never", s.Fsync)
	}
	if s.FsyncInterval < 0 {
		return fieldErr("spool.fsync_interval", "must not be negative")
	}
	return nil
}

// batchDefaults returns the batch bounds of s, with the defaults of its
// type: a Kafka or NATS write costs a round trip to the broker whatever its
// size, so they take larger batches (a busy queue fills them; an idle one
// still sends after linger).
func (s SinkConfig) batchDefaults() (events int, bytes int64) {
	t := sinkTypes[s.Type]
	return cmp.Or(s.Batch.Events, t.batchEvents), cmp.Or(int64(s.Batch.Bytes), t.batchBytes)
}

// processEvents reports whether the source subscribes to process events.
func (s SourceConfig) processEvents() bool { return s.ProcessEvents == nil || *s.ProcessEvents }

// datagramSize is the receive buffer per datagram: 512 bytes holds any
// process event (76 bytes); another connector's datagram may be as large as
// the connector allows.
func (s SourceConfig) datagramSize() int {
	switch {
	case s.DatagramSize != 0:
		return int(s.DatagramSize)
	case len(s.Groups) > 0:
		return source.DefaultDatagramBytes
	}
	return 512
}

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func (c *Config) validate() error {
	if c.Source.ReadBuffer < -1 {
		return fieldErr("source.read_buffer", "%d: want a size, or -1 for the kernel default", c.Source.ReadBuffer)
	}
	if b := c.Source.Batch; b < 0 || b > 1024 {
		return fieldErr("source.batch", "%d: want 1..1024 datagrams per recvmmsg (0: 64)", b)
	}
	if _, err := assemble.ParseKernelFilter(c.Source.KernelFilter); err != nil {
		return fieldErr("source.kernel_filter", "%v", err)
	}
	for i, g := range c.Source.Groups {
		if g < 1 || g > schema.MaxGroup {
			return fieldErr(fmt.Sprintf("source.groups[%d]", i), "%d: connector groups are 1..%d", g, schema.MaxGroup)
		}
	}
	for i, g := range c.Source.UserspaceGroups {
		if g < 1 || g > schema.MaxGroup {
			return fieldErr(fmt.Sprintf("source.userspace_groups[%d]", i), "%d: connector groups are 1..%d", g, schema.MaxGroup)
		}
		if !slices.Contains(c.Source.Groups, g) && !(g == schema.ProcID.Idx && c.Source.processEvents()) {
			return fieldErr(fmt.Sprintf("source.userspace_groups[%d]", i), "%d is not a group the source hears (source.groups, or 1 with process_events)", g)
		}
	}
	if !c.Source.processEvents() && len(c.Source.Groups) == 0 {
		return fieldErr("source.process_events", "false with no source.groups: the source would hear nothing")
	}
	if !c.Source.processEvents() && len(c.Source.KernelFilter) > 0 {
		return fieldErr("source.kernel_filter", "set while source.process_events is false")
	}
	if d := c.Source.DatagramSize; d != 0 && (d < 64 || d > 1<<20) {
		return fieldErr("source.datagram_size", "%d: want 64..1MiB bytes (0: 512, or 16420 with groups)", d)
	}
	if err := c.Telemetry.validate(); err != nil {
		return err
	}
	if err := c.Log.validate(); err != nil {
		return err
	}
	if a := c.Transform.Ancestors; a != nil && *a < 0 {
		return fieldErr("transform.ancestors", "%d: must not be negative", *a)
	}
	if c.Transform.MaxProcesses < 0 {
		return fieldErr("transform.max_processes", "%d: must not be negative", c.Transform.MaxProcesses)
	}
	if _, err := c.Transform.Filter.filter(); err != nil {
		return err
	}
	if _, err := c.Transform.Redact.redactor(); err != nil {
		return err
	}
	if c.Pipeline.DrainTimeout < 0 {
		return fieldErr("pipeline.drain_timeout", "must not be negative")
	}
	if err := c.Spool.validate(); err != nil {
		return err
	}
	if c.Archiver != nil {
		if err := c.Archiver.validate(); err != nil {
			return err
		}
	}
	if len(c.Sinks) == 0 && c.Archiver == nil {
		return fieldErr("sinks", "no sink: configure at least one (types: %s)", strings.Join(sinkTypeNames, ", "))
	}
	names := map[string]bool{}
	for i, s := range c.Sinks {
		at := fmt.Sprintf("sinks[%d]", i)
		switch {
		case s.Name == "":
			return fieldErr(at+".name", "required: names the sink in metrics and dropped records")
		case names[s.Name]:
			return fieldErr(at+".name", "%q is used by another sink", s.Name)
		}
		names[s.Name] = true
		if err := s.validate(at); err != nil {
			return err
		}
		if s.Queue.Policy != "" {
			if _, ok := pipeline.ParsePolicy(s.Queue.Policy); !ok {
				return fieldErr(at+".queue.policy", "%q: want block, drop_newest, drop_oldest or spool", s.Queue.Policy)
			}
		}
		if c.policy(s) == pipeline.Spool.String() && c.Spool.Dir == "" {
			return fieldErr(at+".queue.policy", "spool needs spool.dir: set spool.dir, or choose block, drop_newest or drop_oldest")
		}
		if s.Queue.Events < 0 || s.Queue.Bytes < 0 || s.Batch.Events < 0 || s.Batch.Bytes < 0 {
			return fieldErr(at+".queue", "limits must not be negative")
		}
		if be, _ := s.batchDefaults(); be > 0 && s.Queue.Events > 0 && be > s.Queue.Events {
			return fieldErr(at+".batch.events", "%d is larger than queue.events %d", be, s.Queue.Events)
		}
	}
	return nil
}

// warnings returns what is valid but weakens security, one line each:
// validate prints them and run logs them at start.
func (c *Config) warnings() []string {
	var w []string
	if c.Spool.Dir != "" && len(c.spooledSinks()) == 0 {
		w = append(w, "spool.dir is set but no sink has queue.policy spool: the spool is not used")
	}
	for i, s := range c.Sinks {
		if sec, _ := s.section(); sec != nil {
			for _, m := range sec.warnings() {
				w = append(w, fmt.Sprintf("sinks[%d].%s.%s", i, s.Type, m))
			}
		}
	}
	if c.Archiver != nil {
		w = append(w, c.Archiver.warnings()...)
	}
	return w
}

func (f FilterConfig) filter() (transform.Filter, error) {
	kinds := func(field string, names []string) ([]schema.Kind, error) {
		var out []schema.Kind
		for _, n := range names {
			k, ok := schema.ParseKind(n)
			if !ok || k.IsLoss() {
				return nil, fieldErr("transform.filter."+field, "%q: unknown kind (fork, exec, exit, uid, gid, sid, ptrace, comm, coredump, ack, raw)", n)
			}
			out = append(out, k)
		}
		return out, nil
	}
	tf := transform.Filter{UIDs: f.UIDs, ExcludeUIDs: f.ExcludeUIDs, Comms: f.Comms, ExcludeComms: f.ExcludeComms,
		Exes: f.Exes, ExcludeExes: f.ExcludeExes, Containers: f.Containers, ExcludeContainers: f.ExcludeContainers}
	var err error
	if tf.Kinds, err = kinds("kinds", f.Kinds); err != nil {
		return tf, err
	}
	if tf.ExcludeKinds, err = kinds("exclude_kinds", f.ExcludeKinds); err != nil {
		return tf, err
	}
	if err := tf.Validate(); err != nil {
		return tf, fieldErr("transform.filter", "%v", err)
	}
	return tf, nil
}

// sinkType is what cmd knows of one sink type: where its YAML section is
// in a SinkConfig, and the batch bounds that suit it. The section maps
// itself to its library's Config, which validates itself (Validate, errors
// naming the key) and builds the sink: validate, run and the warnings all
// go through this table.
type sinkType struct {
	// section returns s's section of this type (its zero value when
	// absent) and whether s has one.
	section func(s *SinkConfig) (sec sinkSection, set bool)
	// batchEvents and batchBytes are the defaults of batch.events and
	// batch.bytes: a Kafka or NATS write costs a round trip to the broker
	// whatever its size, so they take larger batches (a busy queue fills
	// them; an idle one still sends after linger). 0: 512 and 1MiB.
	batchEvents int
	batchBytes  int64
	// spooled: with spool.dir set, the type's default queue.policy is
	// spool (stdout's stays block: a terminal is read as it runs).
	spooled bool
}

var sinkTypes = map[string]sinkType{
	"file":   {section: func(s *SinkConfig) (sinkSection, bool) { return sectionOf(s.File) }, spooled: true},
	"kafka":  {section: func(s *SinkConfig) (sinkSection, bool) { return sectionOf(s.Kafka) }, batchEvents: 8192, batchBytes: 8 << 20, spooled: true},
	"nats":   {section: func(s *SinkConfig) (sinkSection, bool) { return sectionOf(s.NATS) }, batchEvents: 4096, batchBytes: 4 << 20, spooled: true},
	"stdout": {section: func(*SinkConfig) (sinkSection, bool) { return stdoutSection{}, false }},
}

var sinkTypeNames = slices.Sorted(maps.Keys(sinkTypes))

// sinkSection is the YAML section of a sink type. Each maps itself to its
// library's Config in one function (config or sinkConfig below).
type sinkSection interface {
	// validate checks the section as the sink's New would, without
	// connecting: the library's Validate.
	validate() error
	// open builds the sink; stdout is where the stdout sink writes.
	open(stdout io.Writer) (sink.Sink, error)
	// warnings says what is valid but weakens security, one line each,
	// naming the key from the section ("tls.insecure_skip_verify ...").
	warnings() []string
}

// sectionOf returns p, or a zero section when p is nil, and whether p is set.
func sectionOf[T any, P interface {
	*T
	sinkSection
}](p P) (sinkSection, bool) {
	if p == nil {
		return P(new(T)), false
	}
	return p, true
}

// section returns s's section, nil for an unknown type.
func (s *SinkConfig) section() (sinkSection, bool) {
	t, ok := sinkTypes[s.Type]
	if !ok {
		return nil, false
	}
	return t.section(s)
}

// validate checks s's type and section; at is "sinks[i]".
func (s *SinkConfig) validate(at string) error {
	if _, ok := sinkTypes[s.Type]; !ok {
		if s.Type == "" {
			return fieldErr(at+".type", "required: %s", strings.Join(sinkTypeNames, ", "))
		}
		return fieldErr(at+".type", "%q: unknown sink type (%s)", s.Type, strings.Join(sinkTypeNames, ", "))
	}
	for _, name := range sinkTypeNames {
		if _, set := sinkTypes[name].section(s); set && name != s.Type {
			return fieldErr(at+"."+name, "only for sinks of type %s (this sink is %s)", name, s.Type)
		}
	}
	sec, _ := s.section()
	if err := sec.validate(); err != nil {
		// The library names the key as the YAML spells it ("kafka.tls.ca_file").
		if ce, ok := errors.AsType[*sink.ConfigError](err); ok {
			return fieldErr(at+"."+ce.Field, "%s", ce.Msg)
		}
		return fieldErr(at+"."+s.Type, "%v", err)
	}
	return nil
}

// open builds s's sink (s is valid).
func (s *SinkConfig) open(stdout io.Writer) (sink.Sink, error) {
	sec, _ := s.section()
	if sec == nil {
		return nil, fmt.Errorf("unknown sink type %q", s.Type)
	}
	return sec.open(stdout)
}

// opened returns s as a sink.Sink, nil (not a typed nil) on error.
func opened[S sink.Sink](s S, err error) (sink.Sink, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// renamer is a YAML struct some of whose keys were renamed: old key -> the
// key to use instead, as an error says it. unknownKeys reports them.
type renamer interface{ renamed() map[string]string }

// config maps the file section to the library's Config.
func (f *FileConfig) config() file.Config {
	return file.Config{Dir: f.Dir, Prefix: f.Prefix, Format: file.Format(f.Encoding), MaxSize: int64(f.MaxSize),
		MaxAge: time.Duration(f.MaxAge), Compression: file.Compression(f.Compression), Sync: file.SyncPolicy(f.Sync),
		SyncInterval: time.Duration(f.SyncInterval), Archive: f.archive()}
}

func (f *FileConfig) archive() *file.ArchiveConfig {
	if !f.Archive {
		return nil
	}
	return &file.ArchiveConfig{Key: f.ArchiveKey, Origin: f.ArchiveOrigin}
}

func (f *FileConfig) validate() error {
	if f.Encoding == string(file.JSONL) { // the library's name for it; the YAML has one vocabulary across sinks
		return &sink.ConfigError{Field: "file.encoding", Msg: `"jsonl": want json (files are JSON lines) or msgpack`}
	}
	return f.config().Validate()
}

func (f *FileConfig) open(io.Writer) (sink.Sink, error) { return opened(file.New(f.config())) }

func (f *FileConfig) warnings() []string {
	if !f.Archive && (f.ArchiveKey != "" || f.ArchiveOrigin != "") {
		return []string{"archive_key or archive_origin is set but archive is false: the files are not signed"}
	}
	return nil
}

func (f *FileConfig) renamed() map[string]string {
	return map[string]string{"format": "encoding (json | msgpack)"}
}

// stdoutSection stands for the stdout sink's section, which has no key.
type stdoutSection struct{}

func (stdoutSection) validate() error { return stdoutsink.Config{}.Validate() }

func (stdoutSection) open(w io.Writer) (sink.Sink, error) {
	return opened(stdoutsink.New(stdoutsink.Config{Writer: w}))
}

func (stdoutSection) warnings() []string { return nil }

func (k *KafkaConfig) validate() error { return k.sinkConfig().Validate() }

func (k *KafkaConfig) open(io.Writer) (sink.Sink, error) {
	return opened(kafkasink.New(k.sinkConfig()))
}

func (k *KafkaConfig) renamed() map[string]string {
	return map[string]string{"write_timeout": "timeout", "tls_config": "tls"}
}

func (k *KafkaConfig) warnings() []string {
	var w []string
	if k.TLS.InsecureSkipVerify {
		w = append(w, "tls.insecure_skip_verify is true: the brokers' certificates are not verified, anyone on the path can read and change what is sent (for tests only)")
	}
	if k.SASL.AllowPlaintext && strings.EqualFold(k.SASL.Mechanism, "PLAIN") && !k.TLS.Enable {
		w = append(w, "sasl.allow_plaintext is true: the SASL PLAIN password is sent in clear")
	}
	return w
}

// sinkConfig maps the kafka section to the library's Config.
func (k *KafkaConfig) sinkConfig() kafkasink.Config {
	c := kafkasink.Config{Brokers: k.Brokers, Topic: k.Topic, Key: k.Key, RequiredAcks: k.RequiredAcks,
		Compression: k.Compression, Encoding: k.Encoding, MaxRequestBytes: int(k.MaxRequestBytes),
		WriteTimeout: time.Duration(k.Timeout), MetadataTTL: time.Duration(k.MetadataTTL), Client: k.Client,
		CompressionLevel: k.CompressionLevel}
	c.TLS = kafkasink.TLSConfig{Enable: k.TLS.Enable, CAFile: k.TLS.CAFile, CertFile: k.TLS.CertFile, KeyFile: k.TLS.KeyFile,
		ServerName: k.TLS.ServerName, InsecureSkipVerify: k.TLS.InsecureSkipVerify}
	c.SASL = kafkasink.SASLConfig{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username, Password: k.SASL.Password,
		AllowPlaintext: k.SASL.AllowPlaintext}
	return c
}

func (n *NATSConfig) validate() error { return n.sinkConfig().Validate() }

func (n *NATSConfig) open(io.Writer) (sink.Sink, error) { return opened(natssink.New(n.sinkConfig())) }

func (n *NATSConfig) renamed() map[string]string {
	return map[string]string{"user": "username", "tls_config": "tls"}
}

func (n *NATSConfig) warnings() []string {
	if n.TLS.InsecureSkipVerify {
		return []string{"tls.insecure_skip_verify is true: the server's certificate is not verified, anyone on the path can read and change what is sent (for tests only)"}
	}
	return nil
}

// sinkConfig maps the nats section to the library's Config.
func (n *NATSConfig) sinkConfig() natssink.Config {
	return natssink.Config{URL: strings.Join(n.URL, ","), Subject: n.Subject, JetStream: n.JetStream, Stream: n.Stream, MaxPending: n.MaxPending,
		Encoding: natssink.Encoding(n.Encoding), EventsPerMessage: n.EventsPerMessage, CredsFile: n.CredsFile, NKeyFile: n.NKeyFile,
		Token: n.Token, User: n.Username, Password: n.Password, ReconnectWait: time.Duration(n.ReconnectWait), MaxReconnects: n.MaxReconnects,
		Timeout: time.Duration(n.Timeout),
		TLS: natssink.TLS{Enable: n.TLS.Enable, CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile,
			InsecureSkipVerify: n.TLS.InsecureSkipVerify}}
}

// ArchiverConfig is the archiver: section, `cnstream archive`'s (package
// fleet's Config): a Kafka consumer-group member that writes each host's
// events of a topic into a tamper-evident archive of its own,
// <dir>/<hostname>/<boot_id>/. A file with only archiver: (and telemetry:,
// log:) is valid; `cnstream run` needs sinks.
type ArchiverConfig struct {
	Brokers commaList `yaml:"brokers"` // required: a list, or a comma-separated string
	Topic   string    `yaml:"topic"`   // default cnstream-events (what the kafka sink writes)
	Group   string    `yaml:"group"`   // consumer group; default cnstream-archive: archivers of one group share the partitions
	TLS     kafkaTLS  `yaml:"tls"`     // as a kafka sink's tls
	SASL    kafkaSASL `yaml:"sasl"`    // as a kafka sink's sasl
	Dir     string    `yaml:"dir"`     // required: the archives, one per host and boot beneath
	Key     string    `yaml:"key"`     // required: signer key file (cnstream keygen)
	Origin  string    `yaml:"origin"`  // default cnstream-archive: a host archive's checkpoints say <origin>/<hostname>/<boot_id>
	// The archive files, as a file sink's.
	Encoding    string   `yaml:"encoding"`    // msgpack (default) or json (JSON lines)
	MaxSize     Size     `yaml:"max_size"`    // rotate a host's active file at this size; default 64MiB
	MaxAge      Duration `yaml:"max_age"`     // and at the first write after it is this old; default 10m
	Compression string   `yaml:"compression"` // of rotated files: zstd (default) or none
	// The rounds, dedupe, silence.
	Batch        int      `yaml:"batch"`         // records per poll-write-fsync-commit round; default 8192
	DedupeWindow int      `yaml:"dedupe_window"` // event ids remembered per host and boot to drop redeliveries, at least batch; default 131072
	Silence      Duration `yaml:"silence"`       // a host with no event for this long is flagged silent; default 5m
	IdleClose    Duration `yaml:"idle_close"`    // a host archive with no event for this long is closed (signed); default 2m
}

// fleetConfig maps the section to the fleet package's Config; the caller
// adds Opts (kgoOpts) and Log.
func (a *ArchiverConfig) fleetConfig() fleet.Config {
	return fleet.Config{Brokers: a.Brokers, Topic: a.Topic, Group: a.Group, Dir: a.Dir, Key: a.Key, Origin: a.Origin,
		Format: file.Format(a.Encoding), MaxSize: int64(a.MaxSize), MaxAge: time.Duration(a.MaxAge),
		Compression: file.Compression(a.Compression), Batch: a.Batch, DedupeWindow: a.DedupeWindow,
		Silence: time.Duration(a.Silence), IdleClose: time.Duration(a.IdleClose)}
}

// kafkaTLS and kafkaSASL are the types of a kafka sink's tls and sasl
// sections, so that the archiver's are checked by the same code.
type (
	kafkaTLS = struct {
		Enable             bool   `yaml:"enable"`
		CAFile             string `yaml:"ca_file"`
		CertFile           string `yaml:"cert_file"`
		KeyFile            string `yaml:"key_file"`
		ServerName         string `yaml:"server_name"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	}
	kafkaSASL = struct {
		Mechanism      string `yaml:"mechanism"`
		Username       string `yaml:"username"`
		Password       string `yaml:"password"`
		AllowPlaintext bool   `yaml:"allow_plaintext"`
	}
)

// kafka returns the archiver's connection as a kafka sink section: its
// brokers, TLS and SASL are checked and described as the sink's are.
func (a *ArchiverConfig) kafka() *KafkaConfig {
	k := &KafkaConfig{Brokers: a.Brokers}
	k.TLS, k.SASL = a.TLS, a.SASL
	return k
}

// validate checks the section as fleet.New would (its errors name
// archiver.<key>), and the connection as a kafka sink's.
func (a *ArchiverConfig) validate() error {
	if a.Encoding == string(file.JSONL) { // the library's name; the YAML has one vocabulary across sections
		return fieldErr("archiver.encoding", `"jsonl": want json (files are JSON lines) or msgpack`)
	}
	for _, err := range []error{a.fleetConfig().Validate(), a.kafka().validate()} {
		if err == nil {
			continue
		}
		if ce, ok := errors.AsType[*sink.ConfigError](err); ok {
			return fieldErr("archiver."+strings.TrimPrefix(strings.TrimPrefix(ce.Field, "archiver."), "kafka."), "%s", ce.Msg)
		}
		return fieldErr("archiver", "%v", err)
	}
	return nil
}

func (a *ArchiverConfig) warnings() []string {
	var w []string
	for _, m := range a.kafka().warnings() {
		w = append(w, "archiver."+m)
	}
	return w
}
