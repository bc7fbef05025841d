package kafka_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/sink/kafka"
)

// TestValidate: Validate needs no broker; its errors are permanent
// *sink.ConfigErrors naming the field as cnstream's YAML spells it, and
// never show the password.
func TestValidate(t *testing.T) {
	b := []string{"127.0.0.1:9092"}
	const pw = "hunter2-secret"
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  kafka.Config
		want *sink.ConfigError // nil: valid
	}{
		{"brokers only", kafka.Config{Brokers: b}, nil},
		{"comma list", kafka.Config{Brokers: []string{"b1:9092, b2:9092"}}, nil},
		{"all set", kafka.Config{Brokers: b, Topic: "cn.{kind}", Key: "{boot_id}", RequiredAcks: "one", Compression: "lz4", Encoding: "json",
			MaxRequestBytes: 1 << 20, WriteTimeout: 1, MetadataTTL: 1, SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-256", Username: "u", Password: pw}}, nil},
		{"franz-go", kafka.Config{Brokers: b, Client: "franz-go"}, nil},
		{"client", kafka.Config{Brokers: b, Client: "sarama"}, &sink.ConfigError{Field: "kafka.client", Msg: `"sarama": want kafka-go or franz-go`}},
		{"plain allowed", kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u", Password: pw, AllowPlaintext: true}}, nil},
		{"no brokers", kafka.Config{}, &sink.ConfigError{Field: "kafka.brokers", Msg: "required: the bootstrap brokers, host:port"}},
		{"empty broker", kafka.Config{Brokers: []string{"b1:9092,,b2:9092"}}, &sink.ConfigError{Field: "kafka.brokers", Msg: `element 0: "b1:9092,,b2:9092" is not a host:port (or a comma-separated list of them)`}},
		{"topic", kafka.Config{Brokers: b, Topic: "x.{nope}"}, &sink.ConfigError{Field: "kafka.topic"}},
		{"key", kafka.Config{Brokers: b, Key: "{pid}"}, &sink.ConfigError{Field: "kafka.key"}},
		{"required acks", kafka.Config{Brokers: b, RequiredAcks: "two"}, &sink.ConfigError{Field: "kafka.required_acks", Msg: `"two": want all, one or none`}},
		{"compression", kafka.Config{Brokers: b, Compression: "brotli"}, &sink.ConfigError{Field: "kafka.compression", Msg: `"brotli": want zstd, lz4, snappy, gzip or none`}},
		{"encoding", kafka.Config{Brokers: b, Encoding: "jsonl"}, &sink.ConfigError{Field: "kafka.encoding", Msg: `"jsonl": want msgpack or json`}},
		{"max request bytes", kafka.Config{Brokers: b, MaxRequestBytes: 100}, &sink.ConfigError{Field: "kafka.max_request_bytes", Msg: "100: want 1024..67108864 bytes (0: 1000000)"}},
		{"compression level range", kafka.Config{Brokers: b, CompressionLevel: 23}, &sink.ConfigError{Field: "kafka.compression_level", Msg: "23: want 1..22 for zstd, 1..9 for gzip (0: the codec's default)"}},
		{"compression level gzip", kafka.Config{Brokers: b, Compression: "gzip", CompressionLevel: 10}, &sink.ConfigError{Field: "kafka.compression_level", Msg: "10: want 1..22 for zstd, 1..9 for gzip (0: the codec's default)"}},
		{"compression level lz4", kafka.Config{Brokers: b, Compression: "lz4", CompressionLevel: 1}, &sink.ConfigError{Field: "kafka.compression_level", Msg: "1: only zstd and gzip take a level, not lz4"}},
		{"compression level negative", kafka.Config{Brokers: b, CompressionLevel: -1}, &sink.ConfigError{Field: "kafka.compression_level", Msg: "-1: must not be negative (0: the codec's default)"}},
		{"compression level kafka-go", kafka.Config{Brokers: b, Client: "kafka-go", CompressionLevel: 1}, &sink.ConfigError{Field: "kafka.compression_level", Msg: "1: only with client franz-go (kafka-go's codecs have one level for the program: zstd 3)"}},
		{"timeout", kafka.Config{Brokers: b, WriteTimeout: -1}, &sink.ConfigError{Field: "kafka.timeout", Msg: "-1ns: must not be negative"}},
		{"metadata ttl", kafka.Config{Brokers: b, MetadataTTL: -1}, &sink.ConfigError{Field: "kafka.metadata_ttl", Msg: "-1ns: must not be negative"}},
		{"tls off", kafka.Config{Brokers: b, TLS: kafka.TLSConfig{ServerName: "k"}}, &sink.ConfigError{Field: "kafka.tls.server_name", Msg: "set while tls.enable is false"}},
		{"tls ca not pem", kafka.Config{Brokers: b, TLS: kafka.TLSConfig{Enable: true, CAFile: notPEM}}, &sink.ConfigError{Field: "kafka.tls.ca_file", Msg: notPEM + " holds no PEM certificate"}},
		{"tls cert without key", kafka.Config{Brokers: b, TLS: kafka.TLSConfig{Enable: true, CertFile: "/x.pem"}}, &sink.ConfigError{Field: "kafka.tls.key_file", Msg: "empty while tls.cert_file is set"}},
		{"tls key without cert", kafka.Config{Brokers: b, TLS: kafka.TLSConfig{Enable: true, KeyFile: "/x.pem"}}, &sink.ConfigError{Field: "kafka.tls.cert_file", Msg: "empty while tls.key_file is set"}},
		{"plain without tls", kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "PLAIN", Username: "u", Password: pw}},
			&sink.ConfigError{Field: "kafka.sasl.mechanism", Msg: "PLAIN without TLS sends the password in clear: set tls.enable, use SCRAM-SHA-512, or set sasl.allow_plaintext"}},
		{"mechanism", kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: pw}}, &sink.ConfigError{Field: "kafka.sasl.mechanism", Msg: `"GSSAPI": want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`}},
		{"password without mechanism", kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Password: pw}}, &sink.ConfigError{Field: "kafka.sasl.mechanism", Msg: "empty while sasl.password is set"}},
		{"no username", kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Password: pw}}, &sink.ConfigError{Field: "kafka.sasl.username", Msg: "empty: SASL SCRAM-SHA-512 needs one"}},
		{"no password", kafka.Config{Brokers: b, SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"}}, &sink.ConfigError{Field: "kafka.sasl.password", Msg: "empty: SASL SCRAM-SHA-512 needs one"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			var got *sink.ConfigError
			if err != nil {
				if !errors.As(err, &got) || !sink.IsPermanent(err) {
					t.Fatalf("Validate() = %v (%T), want a permanent *sink.ConfigError", err, err)
				}
				if strings.Contains(err.Error(), pw) {
					t.Errorf("Validate() = %v: shows the password", err)
				}
			}
			if tc.want != nil && tc.want.Msg == "" && got != nil {
				got = &sink.ConfigError{Field: got.Field} // the template's own message
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Validate() (-want +got):\n%s", d)
			}
		})
	}
}
