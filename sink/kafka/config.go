package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/cnstream/cnstream/sink"
)

// Config configures a Sink. Only Brokers is required: the zero value of
// every other field is its default.
//
// Config's String and GoString leave the SASL password out, so a Config
// can be logged.
type Config struct {
	// Brokers is the bootstrap list, "host:port" each; an element may also
	// be a comma-separated list ("b1:9092,b2:9092", as an environment
	// variable gives it). Required.
	Brokers []string

	// Topic is the template of the topic of an event: text with the
	// placeholders {kind} (the event kind, "exec"), {host} (the host
	// name), {machine_id}, {boot_id} and {stream} (the event's sequence
	// stream, "1.1-c3"; "r" for records without one). A character a topic name cannot
	// hold (anything but ASCII letters, digits, '.', '_' and '-') that a
	// placeholder expands to becomes '_'. Topics are created by the broker
	// on first use when it allows auto-creation
	// (auto.create.topics.enable, on by default), with its default
	// partition count; otherwise create them beforehand. Default
	// "cnstream-events".
	Topic string

	// Key is the template of the message key, with the placeholders of
	// Topic (expanded as they are, not replaced). The key picks the
	// partition (hash of the key), and order is kept per partition: the
	// default keeps each host's events in order; "{host}-{stream}" spreads
	// a host over partitions with each stream's events in order. Default
	// "{host}".
	Key string

	// RequiredAcks is when the broker acknowledges a write: "all" (every
	// in-sync replica has it), "one" (the leader has it) or "none" (no
	// acknowledgement: WriteBatch returns once the request is sent, and
	// loss goes unseen). Default "all".
	RequiredAcks string

	// Compression of the record batches: "none", "gzip", "snappy", "lz4"
	// or "zstd". Default "zstd".
	Compression string

	// CompressionLevel is the zstd (1..22) or gzip (1..9) level, franz-go
	// only: kafka-go's codecs have one level for the whole program (zstd 3).
	// Lower is cheaper: zstd 1 costs about 14% less CPU per event than 3
	// (docs/BENCHMARKS.md) for somewhat larger batches. Default 0: the
	// codec's default (zstd 3, as librdkafka's; gzip 6).
	CompressionLevel int

	// Encoding of the message values: "msgpack" (schema.AppendMsgpack,
	// content-type application/msgpack) or "json" (schema.AppendJSON,
	// application/json). Default "msgpack".
	Encoding string

	// MaxRequestBytes bounds the uncompressed size of one produce request
	// (the messages of one partition, keys, values and headers): a
	// partition's share of a WriteBatch that is larger goes in several
	// requests, one after the other. A single message larger than this is
	// refused with a permanent error. Keep it at most the brokers'
	// message.max.bytes (1 MiB by default) when Compression is "none".
	// With franz-go it is kgo.ProducerBatchMaxBytes: the bound of one
	// partition's record batch, uncompressed. Default 1,000,000.
	MaxRequestBytes int

	// WriteTimeout bounds a WriteBatch, from the call until every message
	// is acknowledged, kafka-go's own retries of a failed request included;
	// it is also the timeout of each request. A WriteBatch that runs out
	// of it returns a retriable error matching ErrWriteTimeout. With
	// franz-go it is also kgo.RecordDeliveryTimeout and
	// kgo.ProduceRequestTimeout. Default 10 seconds. cnstream's YAML calls it timeout, as for the NATS sink.
	WriteTimeout time.Duration

	// MetadataTTL is how long topic metadata (partitions, leaders) is
	// cached. kafka-go refreshes it only when it expires, also after a
	// NOT_LEADER error, so it bounds how long writes fail after a leader
	// moves. franz-go refreshes the metadata after such errors by itself,
	// no sooner than MetadataTTL after the last refresh
	// (kgo.MetadataMinAge). Default 500 ms.
	MetadataTTL time.Duration

	// TLS configures TLS to the brokers. Default: plain TCP.
	TLS TLSConfig

	// SASL configures SASL authentication. Default: none.
	SASL SASLConfig

	// Client is the Kafka client library that produces: "kafka-go"
	// (github.com/segmentio/kafka-go, one request in flight per partition)
	// or "franz-go" (github.com/twmb/franz-go's kgo, an idempotent producer
	// with up to 5 requests in flight per broker when RequiredAcks is
	// "all"). Both pick the same partition for a key and keep the contract
	// of the package documentation; the differences are listed there.
	// Default "franz-go": it drains a burst 1.8x as fast as kafka-go at
	// 0.77x its CPU per event (docs/BENCHMARKS.md).
	Client string
}

// Clients, as Config.Client spells them.
const (
	ClientKafkaGo = "kafka-go"
	ClientFranzGo = "franz-go"
)

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	// Enable turns TLS on. The other fields need it. Default false.
	Enable bool
	// CAFile is a PEM file of the certificate authorities that sign the
	// brokers' certificates. Default: the system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key, for
	// brokers that ask for one; both or neither. Default: none.
	CertFile string
	KeyFile  string
	// ServerName is the name the brokers' certificates must hold. Default:
	// the host of each broker address.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate: for tests only.
	// Default false.
	InsecureSkipVerify bool
}

// SASLConfig configures SASL authentication.
type SASLConfig struct {
	// Mechanism is "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512". Default:
	// no SASL. PLAIN sends the password as it is: without TLS it is
	// refused unless AllowPlaintext is set.
	Mechanism string
	// Username and Password are the credentials; required with a
	// Mechanism. The password never appears in errors or String output.
	Username string
	Password string
	// AllowPlaintext lets PLAIN send the password without TLS, readable by
	// anyone on the path. Default false: PLAIN needs TLS.Enable.
	AllowPlaintext bool
}

// String describes c without its password.
func (c SASLConfig) String() string {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("{Mechanism:%s Username:%s Password:%s AllowPlaintext:%t}", c.Mechanism, c.Username, pw, c.AllowPlaintext)
}

// GoString is String, so that %#v does not show the password either.
func (c SASLConfig) GoString() string { return "kafka.SASLConfig" + c.String() }

// String describes c without the SASL password.
func (c Config) String() string {
	return fmt.Sprintf("{Brokers:%v Topic:%s Key:%s RequiredAcks:%s Compression:%s Encoding:%s "+
		"MaxRequestBytes:%d WriteTimeout:%v MetadataTTL:%v TLS:%+v SASL:%s Client:%s CompressionLevel:%d}",
		c.Brokers, c.Topic, c.Key, c.RequiredAcks, c.Compression, c.Encoding,
		c.MaxRequestBytes, c.WriteTimeout, c.MetadataTTL, c.TLS, c.SASL, c.Client, c.CompressionLevel)
}

// GoString is String, so that %#v does not show the password either.
func (c Config) GoString() string { return "kafka.Config" + c.String() }

const (
	defaultTopic        = "cnstream-events"
	defaultKey          = "{host}"
	defaultMaxRequest   = 1_000_000
	defaultWriteTimeout = 10 * time.Second
	defaultMetadataTTL  = 500 * time.Millisecond
	maxTopicLen         = 249 // Kafka's limit
)

// configError is a permanent *sink.ConfigError about field (spelled as in
// cnstream's YAML, without the "kafka." prefix).
func configError(field, format string, args ...any) error {
	return sink.Permanent(&sink.ConfigError{Field: "kafka." + field, Msg: fmt.Sprintf(format, args...)})
}

// resolved is a Config with defaults applied, in kafka-go's terms.
type resolved struct {
	cfg         Config
	topic, key  template
	acks        kafkago.RequiredAcks
	compression kafkago.Compression
	json        bool
	tls         *tls.Config
	sasl        sasl.Mechanism
	franz       bool // Client is franz-go
}

// resolve applies defaults and checks c; its errors name the field and are
// permanent.
func (c Config) resolve() (*resolved, error) {
	bad := func(field, format string, args ...any) (*resolved, error) {
		return nil, configError(field, format, args...)
	}
	r := &resolved{}
	if len(c.Brokers) == 0 {
		return bad("brokers", "required: the bootstrap brokers, host:port")
	}
	var brokers []string
	for i, list := range c.Brokers {
		for b := range strings.SplitSeq(list, ",") {
			b = strings.TrimSpace(b)
			if b == "" || strings.ContainsAny(b, " \t") {
				return bad("brokers", "element %d: %q is not a host:port (or a comma-separated list of them)", i, list)
			}
			brokers = append(brokers, b)
		}
	}
	c.Brokers = brokers

	if c.Topic == "" {
		c.Topic = defaultTopic
	}
	t, err := parseTemplate(c.Topic, true)
	if err != nil {
		return bad("topic", "%v", err)
	}
	r.topic = t
	if c.Key == "" {
		c.Key = defaultKey
	}
	if r.key, err = parseTemplate(c.Key, false); err != nil {
		return bad("key", "%v", err)
	}

	switch strings.ToLower(c.RequiredAcks) {
	case "", "all":
		c.RequiredAcks, r.acks = "all", kafkago.RequireAll
	case "one":
		c.RequiredAcks, r.acks = "one", kafkago.RequireOne
	case "none":
		c.RequiredAcks, r.acks = "none", kafkago.RequireNone
	default:
		return bad("required_acks", "%q: want all, one or none", c.RequiredAcks)
	}

	switch strings.ToLower(c.Compression) {
	case "", "zstd":
		c.Compression, r.compression = "zstd", kafkago.Zstd
	case "none":
		c.Compression, r.compression = "none", 0
	case "gzip":
		c.Compression, r.compression = "gzip", kafkago.Gzip
	case "snappy":
		c.Compression, r.compression = "snappy", kafkago.Snappy
	case "lz4":
		c.Compression, r.compression = "lz4", kafkago.Lz4
	default:
		return bad("compression", "%q: want zstd, lz4, snappy, gzip or none", c.Compression)
	}

	switch lv := c.CompressionLevel; {
	case lv == 0:
	case lv < 0:
		return bad("compression_level", "%d: must not be negative (0: the codec's default)", lv)
	case c.Compression == "zstd" && lv > 22, c.Compression == "gzip" && lv > 9:
		return bad("compression_level", "%d: want 1..22 for zstd, 1..9 for gzip (0: the codec's default)", lv)
	case c.Compression != "zstd" && c.Compression != "gzip":
		return bad("compression_level", "%d: only zstd and gzip take a level, not %s", lv, c.Compression)
	}

	switch strings.ToLower(c.Encoding) {
	case "", "msgpack":
		c.Encoding = "msgpack"
	case "json":
		c.Encoding, r.json = "json", true
	default:
		return bad("encoding", "%q: want msgpack or json", c.Encoding)
	}

	for _, d := range []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{
		{"timeout", &c.WriteTimeout, defaultWriteTimeout},
		{"metadata_ttl", &c.MetadataTTL, defaultMetadataTTL},
	} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return bad(d.field, "%v: must not be negative", *d.v)
		}
	}
	switch {
	case c.MaxRequestBytes == 0:
		c.MaxRequestBytes = defaultMaxRequest
	case c.MaxRequestBytes < 1024 || c.MaxRequestBytes > 64<<20:
		return bad("max_request_bytes", "%d: want 1024..67108864 bytes (0: 1000000)", c.MaxRequestBytes)
	}

	switch strings.ToLower(c.Client) {
	case ClientKafkaGo:
		c.Client = ClientKafkaGo
		if c.CompressionLevel != 0 {
			return bad("compression_level", "%d: only with client franz-go (kafka-go's codecs have one level for the program: zstd 3)", c.CompressionLevel)
		}
	case "", ClientFranzGo:
		c.Client, r.franz = ClientFranzGo, true
	default:
		return bad("client", "%q: want kafka-go or franz-go", c.Client)
	}

	if r.tls, err = c.TLS.build(); err != nil {
		return nil, err
	}
	if r.sasl, err = c.SASL.build(); err != nil {
		return nil, err
	}
	if strings.EqualFold(c.SASL.Mechanism, "PLAIN") && !c.TLS.Enable && !c.SASL.AllowPlaintext {
		return bad("sasl.mechanism", "PLAIN without TLS sends the password in clear: set tls.enable, use SCRAM-SHA-512, or set sasl.allow_plaintext")
	}
	r.cfg = c
	return r, nil
}

func (c TLSConfig) build() (*tls.Config, error) {
	bad := func(field, format string, args ...any) (*tls.Config, error) {
		return nil, configError("tls."+field, format, args...)
	}
	if !c.Enable {
		for _, f := range []struct {
			name string
			set  bool
		}{{"ca_file", c.CAFile != ""}, {"cert_file", c.CertFile != ""}, {"key_file", c.KeyFile != ""},
			{"server_name", c.ServerName != ""}, {"insecure_skip_verify", c.InsecureSkipVerify}} {
			if f.set {
				return bad(f.name, "set while tls.enable is false")
			}
		}
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // documented as for tests
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return bad("ca_file", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return bad("ca_file", "%s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		return bad("key_file", "empty while tls.cert_file is set")
	case c.CertFile == "" && c.KeyFile != "":
		return bad("cert_file", "empty while tls.key_file is set")
	case c.CertFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return bad("cert_file", "loading %s with key %s: %v", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (c SASLConfig) build() (sasl.Mechanism, error) {
	bad := func(field, format string, args ...any) (sasl.Mechanism, error) {
		return nil, configError("sasl."+field, format, args...)
	}
	mech := strings.ToUpper(c.Mechanism)
	if mech == "" {
		if c.Username != "" {
			return bad("mechanism", "empty while sasl.username is set")
		}
		if c.Password != "" {
			return bad("mechanism", "empty while sasl.password is set")
		}
		return nil, nil
	}
	if c.Username == "" {
		return bad("username", "empty: SASL %s needs one", mech)
	}
	if c.Password == "" {
		return bad("password", "empty: SASL %s needs one", mech)
	}
	switch mech {
	case "PLAIN":
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		algo := scram.SHA256
		if mech == "SCRAM-SHA-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, c.Username, c.Password)
		if err != nil {
			// The error is about the username or password (SASLprep): do
			// not repeat either.
			return bad("username", "SASL %s rejects the username or the password (not valid SASLprep)", mech)
		}
		return m, nil
	default:
		return bad("mechanism", "%q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Mechanism)
	}
}

// Validate checks c as New does, without connecting: cnstream validate uses
// it. Errors are permanent and wrap a *sink.ConfigError naming the field as
// cnstream's YAML spells it ("kafka.tls.ca_file"); they never show the
// password.
func (c Config) Validate() error {
	_, err := c.resolve()
	return err
}
