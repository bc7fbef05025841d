package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/source"
)

func TestExamplesValidate(t *testing.T) {
	// kafka-secure.yaml requires ${KAFKA_PASSWORD:?}; with it set,
	// kafka.yaml needs a mechanism and a user too.
	t.Setenv("KAFKA_PASSWORD", "example-only")
	t.Setenv("KAFKA_USERNAME", "cnstream")
	t.Setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples found: %v", err)
	}
	for _, f := range append(files, "default.yaml") {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"validate", f}, &out, &errb); code != 0 {
			t.Errorf("validate %s: exit %d: %s", f, code, errb.String())
		}
		if !strings.Contains(out.String(), "ok") {
			t.Errorf("validate %s: %q", f, out.String())
		}
	}
	if _, err := LoadConfig("default", defaultConfig); err != nil {
		t.Errorf("embedded default: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("CNSTREAM_TEST_DIR", "/tmp/x")
	cases := []struct {
		name, yaml string
		want       string // substring of the error: file:line: field: reason
	}{
		{"unknown key", "sinks:\n  - name: a\n    type: file\n    colour: red\n", "c.yaml:4: unknown key \"colour\""},
		{"unknown top key", "sink: []\n", "c.yaml:1: unknown key \"sink\""},
		{"archive without key", "sinks:\n  - name: a\n    type: file\n    file:\n      archive: true\n", "c.yaml:4: sinks[0].file.archive_key: required with the archive on"},
		{"archive origin", "sinks:\n  - name: a\n    type: file\n    file:\n      archive: true\n      archive_key: /k\n      archive_origin: \" x\"\n", "sinks[0].file.archive_origin"},
		{"bad policy", "sinks:\n  - name: a\n    type: stdout\n    queue:\n      policy: sometimes\n", "c.yaml:5: sinks[0].queue.policy: \"sometimes\": want block, drop_newest, drop_oldest or spool"},
		{"spool policy without dir", "sinks:\n  - name: a\n    type: file\n    queue:\n      policy: spool\n", "c.yaml:5: sinks[0].queue.policy: spool needs spool.dir"},
		{"spool when_full", "spool:\n  dir: /tmp/s\n  when_full: wait\nsinks: [{name: a, type: file}]\n", "c.yaml:3: spool.when_full: \"wait\": want block or drop_oldest"},
		{"spool fsync", "spool:\n  dir: /tmp/s\n  fsync: sometimes\nsinks: [{name: a, type: file}]\n", "c.yaml:3: spool.fsync: \"sometimes\": want interval, always or never"},
		{"spool max_size small", "spool:\n  dir: /tmp/s\n  max_size: 64KiB\nsinks: [{name: a, type: file}]\n", "c.yaml:3: spool.max_size: 65536: want at least 1MiB"},
		{"spool max_size negative", "spool:\n  dir: /tmp/s\n  max_size: -1\nsinks: [{name: a, type: file}]\n", "c.yaml:3: spool.max_size: -1: want at least 1MiB"},
		{"spool max_size not a size", "spool:\n  max_size: big\nsinks: [{name: a, type: file}]\n", "c.yaml:2: \"big\" is not a size"},
		{"spool fsync_interval", "spool:\n  dir: /tmp/s\n  fsync_interval: -1s\nsinks: [{name: a, type: file}]\n", "c.yaml:3: spool.fsync_interval: must not be negative"},
		{"spool unknown key", "spool:\n  directory: /tmp/s\nsinks: [{name: a, type: file}]\n", "c.yaml:2: unknown key \"directory\""},
		{"no sinks", "source:\n  batch: 8\n", "sinks: no sink"},
		{"missing name", "sinks:\n  - type: stdout\n", "c.yaml:2: sinks[0].name: required"},
		{"duplicate name", "sinks:\n  - {name: a, type: stdout}\n  - {name: a, type: stdout}\n", "c.yaml:3: sinks[1].name: \"a\" is used by another sink"},
		{"unknown type", "sinks:\n  - name: a\n    type: kafkaa\n", "c.yaml:3: sinks[0].type: \"kafkaa\": unknown sink type"},
		{"bad size", "source:\n  read_buffer: lots\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: \"lots\" is not a size"},
		{"bad duration", "pipeline:\n  drain_timeout: soon\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: \"soon\" is not a duration"},
		{"bad kind", "transform:\n  filter:\n    kinds: [fork, spawn]\nsinks: [{name: a, type: stdout}]\n", "transform.filter.kinds: \"spawn\": unknown kind"},
		{"bad kernel filter", "source:\n  kernel_filter: [spawn]\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: source.kernel_filter"},
		{"bad group", "source:\n  groups: [20, 27]\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: source.groups[1]: 27: connector groups are 1..26"},
		{"userspace group not heard", "source:\n  groups: [20]\n  userspace_groups: [21]\nsinks: [{name: a, type: stdout}]\n", "c.yaml:3: source.userspace_groups[0]: 21 is not a group the source hears"},
		{"hears nothing", "source:\n  process_events: false\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: source.process_events: false with no source.groups"},
		{"kernel filter without proc", "source:\n  process_events: false\n  groups: [20]\n  kernel_filter: [exec]\nsinks: [{name: a, type: stdout}]\n", "source.kernel_filter: set while source.process_events is false"},
		{"datagram size", "source:\n  datagram_size: 10\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: source.datagram_size: 10"},
		{"batch over queue by type default", "sinks:\n  - name: k\n    type: kafka\n    queue:\n      events: 1000\n    kafka:\n      brokers: [127.0.0.1:9092]\n", "sinks[0].batch.events: 8192 is larger than queue.events 1000"},
		{"file encoding", "sinks:\n  - name: a\n    type: file\n    file:\n      encoding: jsonl\n", "c.yaml:5: sinks[0].file.encoding: \"jsonl\": want json (files are JSON lines) or msgpack"},
		{"file encoding csv", "sinks:\n  - name: a\n    type: file\n    file:\n      encoding: csv\n", "c.yaml:5: sinks[0].file.encoding: \"csv\": want json (JSON lines) or msgpack"},
		{"file prefix dotdot", "sinks:\n  - name: a\n    type: file\n    file:\n      dir: /tmp\n      prefix: \"..\"\n", "c.yaml:6: sinks[0].file.prefix: \"..\" is not a file name"},
		{"file prefix slash", "sinks:\n  - name: a\n    type: file\n    file: {prefix: a/b}\n", "c.yaml:4: sinks[0].file.prefix: \"a/b\" is not a file name"},
		{"kafka brokers required", "sinks:\n  - name: k\n    type: kafka\n", "c.yaml:2: sinks[0].kafka.brokers: required: the bootstrap brokers, host:port"},
		{"kafka client", "sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      client: sarama\n", "c.yaml:6: sinks[0].kafka.client: \"sarama\": want kafka-go or franz-go"},
		{"kafka compression level", "sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      compression_level: 30\n", "sinks[0].kafka.compression_level: 30: want 1..22 for zstd, 1..9 for gzip"},
		{"kafka compression level kafka-go", "sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      client: kafka-go\n      compression_level: 1\n", "sinks[0].kafka.compression_level: 1: only with client franz-go"},
		{"kafka field", "sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      tls:\n        ca_file: /x\n", "c.yaml:7: sinks[0].kafka.tls.ca_file: set while tls.enable is false"},
		{"nats url required", "sinks:\n  - name: n\n    type: nats\n    nats: {subject: x}\n", "c.yaml:4: sinks[0].nats.url: required: the server URL, nats://host:port"},
		{"nats field", "sinks:\n  - name: n\n    type: nats\n    nats:\n      url: nats://127.0.0.1:4222\n      timeout: -1s\n", "c.yaml:6: sinks[0].nats.timeout: -1s: must not be negative"},
		{"section of another type", "sinks:\n  - name: n\n    type: stdout\n    nats: {url: nats://127.0.0.1:4222}\n", "c.yaml:4: sinks[0].nats: only for sinks of type nats (this sink is stdout)"},
		{"unset env", "sinks:\n  - name: ${CNSTREAM_TEST_UNSET}\n    type: stdout\n", "c.yaml:2: ${CNSTREAM_TEST_UNSET} is not set"},
		{"required env", "sinks:\n  - name: ${CNSTREAM_TEST_UNSET:?set the sink name}\n    type: stdout\n", "c.yaml:2: ${CNSTREAM_TEST_UNSET}: set the sink name"},
		{"yaml syntax", "sinks:\n  - name: [\n", "c.yaml:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig("c.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
		})
	}
}

func TestSourceAndBatchDefaults(t *testing.T) {
	c, err := LoadConfig("c.yaml", []byte("source:\n  process_events: false\n  groups: [20]\n  userspace_groups: [20]\nsinks:\n  - {name: k, type: kafka, kafka: {brokers: [127.0.0.1:9092], client: franz-go}}\n  - {name: n, type: nats, nats: {url: nats://127.0.0.1:4222}}\n  - {name: f, type: file, batch: {events: 100}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.processEvents() || c.Source.datagramSize() != source.DefaultDatagramBytes {
		t.Errorf("source %+v: want no process events and datagrams of %d bytes", c.Source, source.DefaultDatagramBytes)
	}
	for i, want := range []struct {
		events int
		bytes  int64
	}{{8192, 8 << 20}, {4096, 4 << 20}, {100, 0}} {
		if e, b := c.Sinks[i].batchDefaults(); e != want.events || b != want.bytes {
			t.Errorf("sink %s: batch %d events, %d bytes; want %d, %d", c.Sinks[i].Name, e, b, want.events, want.bytes)
		}
	}
	if got := c.Sinks[0].Kafka.sinkConfig().Client; got != "franz-go" {
		t.Errorf("kafka client: %q, want franz-go", got)
	}
	d, err := LoadConfig("d.yaml", []byte("sinks: [{name: a, type: stdout}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Source.processEvents() || d.Source.datagramSize() != 512 {
		t.Errorf("default source %+v: want process events in 512-byte datagrams", d.Source)
	}
}

func TestConfigEnvAndDefaults(t *testing.T) {
	t.Setenv("CNSTREAM_TEST_DIR", "/srv/events")
	c, err := LoadConfig("c.yaml", []byte("sinks:\n  - name: ${CNSTREAM_TEST_NAME:-archive}\n    type: file\n    file:\n      dir: ${CNSTREAM_TEST_DIR}\n      max_size: 2MiB\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sinks[0]
	if s.Name != "archive" || s.File.Dir != "/srv/events" || s.File.MaxSize != 2<<20 {
		t.Errorf("sink %+v file %+v: want name from the default, dir from the environment, 2 MiB", s, s.File)
	}
}

func TestValidateReportsFileAndExit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("sinks:\n  - name: a\n    type: stdout\n    batch:\n      events: -3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"validate", p}, &out, &errb); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), p+":") || !strings.Contains(errb.String(), "sinks[0].queue") {
		t.Errorf("stderr %q: want the file, line and field", errb.String())
	}
}

// TestEnvExpandedInValues: ${VAR} is expanded inside parsed values, so a
// value from the environment is never read as YAML (a comment, a tag, an
// alias, a flow collection), a key is never expanded, and an unquoted
// value takes the type it would have had if written there.
func TestEnvExpandedInValues(t *testing.T) {
	for _, v := range []string{"s3cr3t #x", "!x", "*hunter2", "&a b", "[x, y]", "{a: b}", "'q'", `"q"`, "x: y", "- z", "${NESTED}", "~", "null", "true", "012"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv("CNSTREAM_TEST_PW", v)
			for _, text := range []string{
				"sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      sasl:\n        mechanism: SCRAM-SHA-512\n        username: u\n        password: ${CNSTREAM_TEST_PW}\n",
				"sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      sasl: {mechanism: SCRAM-SHA-512, username: u, password: ${CNSTREAM_TEST_PW}}\n",
				"sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      sasl: {mechanism: SCRAM-SHA-512, username: u, password: \"${CNSTREAM_TEST_PW}\"}\n",
			} {
				c, err := LoadConfig("c.yaml", []byte(text))
				if err != nil {
					t.Fatalf("%s: %v", text, err)
				}
				if got := c.Sinks[0].Kafka.SASL.Password; got != v {
					t.Errorf("password %q, want %q from:\n%s", got, v, text)
				}
			}
		})
	}

	t.Setenv("CNSTREAM_TEST_BATCH", "32")
	t.Setenv("CNSTREAM_TEST_BOOL", "true")
	t.Setenv("CNSTREAM_TEST_SIZE", "2MiB")
	t.Setenv("CNSTREAM_TEST_BROKERS", "b1:9092, b2:9092")
	t.Setenv("CNSTREAM_TEST_KEY", "name")
	c, err := LoadConfig("c.yaml", []byte(`# a comment with ${CNSTREAM_TEST_UNSET} is not expanded
source:
  batch: ${CNSTREAM_TEST_BATCH}
  no_enobufs: ${CNSTREAM_TEST_BOOL}
  read_buffer: ${CNSTREAM_TEST_SIZE}
sinks:
  - name: k
    type: kafka
    kafka: {brokers: [${CNSTREAM_TEST_BROKERS}, b3:9092], topic: t-${CNSTREAM_TEST_BATCH}}
  - name: k2
    type: kafka
    kafka:
      brokers: ${CNSTREAM_TEST_BROKERS}
      sasl: {mechanism: "${CNSTREAM_TEST_UNSET:-}"}
  - name: n
    type: nats
    nats: {url: [nats://a:4222, nats://b:4222]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.Batch != 32 || !c.Source.NoENOBUFS || c.Source.ReadBuffer != 2<<20 || c.Sinks[0].Kafka.Topic != "t-32" {
		t.Errorf("source %+v, topic %q: want batch 32, no_enobufs, 2MiB, t-32", c.Source, c.Sinks[0].Kafka.Topic)
	}
	if diff := cmp.Diff([]string{"b1:9092", "b2:9092", "b3:9092"}, []string(c.Sinks[0].Kafka.Brokers)); diff != "" {
		t.Errorf("brokers of a list item (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b1:9092", "b2:9092"}, []string(c.Sinks[1].Kafka.Brokers)); diff != "" {
		t.Errorf("brokers of a string (-want +got):\n%s", diff)
	}
	if got := c.Sinks[2].NATS.sinkConfig().URL; got != "nats://a:4222,nats://b:4222" {
		t.Errorf("nats url %q", got)
	}

	// A quoted reference stays a string; a key is never expanded.
	for text, want := range map[string]string{
		"source:\n  batch: \"${CNSTREAM_TEST_BATCH}\"\nsinks: [{name: a, type: stdout}]\n": "c.yaml:2: cannot unmarshal !!str `${CNSTREAM_TEST_BATCH}` into int",
		"source:\n  ${CNSTREAM_TEST_KEY}: 3\nsinks: [{name: a, type: stdout}]\n":           `c.yaml:2: unknown key "${CNSTREAM_TEST_KEY}"`,
	} {
		if _, err := LoadConfig("c.yaml", []byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", text, err, want)
		}
	}
}

// TestConfigErrorsHideSecrets: an error about a value from the
// environment shows it as written (${VAR}), never what it expanded to, and
// a secret is never shown even when written in the file.
func TestConfigErrorsHideSecrets(t *testing.T) {
	const secret = "S3cr3t-7f3a9c-do-not-print"
	t.Setenv("CNSTREAM_TEST_SECRET", secret)
	cases := []struct{ name, yaml, want string }{
		{"int", "source:\n  batch: ${CNSTREAM_TEST_SECRET}\nsinks: [{name: a, type: stdout}]\n", "c.yaml:2: cannot unmarshal !!str `${CNSTREAM_TEST_SECRET}` into int"},
		{"size", "source:\n  read_buffer: ${CNSTREAM_TEST_SECRET}\nsinks: [{name: a, type: stdout}]\n", `c.yaml:2: "${CNSTREAM_TEST_SECRET}" is not a size`},
		{"duration", "pipeline:\n  drain_timeout: x${CNSTREAM_TEST_SECRET}\nsinks: [{name: a, type: stdout}]\n", `c.yaml:2: "x${CNSTREAM_TEST_SECRET}" is not a duration`},
		{"policy", "sinks:\n  - name: a\n    type: stdout\n    queue: {policy: \"${CNSTREAM_TEST_SECRET}\"}\n", `c.yaml:4: sinks[0].queue.policy: "${CNSTREAM_TEST_SECRET}"`},
		{"required", "sinks:\n  - name: ${CNSTREAM_TEST_UNSET:?set it, not " + secret[:3] + "}\n    type: stdout\n", "c.yaml:2: ${CNSTREAM_TEST_UNSET}: set it"},
		{"password in a bad section", "sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      sasl: {mechanism: " + secret + ", username: u, password: " + secret + "}\n", "sinks[0].kafka"},
		{"otlp endpoint", "sinks: [{name: a, type: stdout}]\ntelemetry:\n  otlp:\n    endpoint: ftp://user:${CNSTREAM_TEST_SECRET}@collector:4318\n", `telemetry.otlp.endpoint: "ftp://user:xxxxx@collector:4318"`},
		{"otlp endpoint token", "sinks: [{name: a, type: stdout}]\ntelemetry:\n  otlp:\n    endpoint: ftp://${CNSTREAM_TEST_SECRET}@collector:4318\n", `telemetry.otlp.endpoint: "ftp://xxxxx@collector:4318"`},
		{"yaml syntax", "sinks:\n  - name: [${CNSTREAM_TEST_SECRET}\n", "c.yaml:"},
		{"anchor in the value", "sinks:\n  - name: a\n    type: stdout\n    batch: {events: ${CNSTREAM_TEST_SECRET}}\n", "c.yaml:4: cannot unmarshal !!str `${CNSTREAM_TEST_SECRET}` into int"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig("c.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error for:\n%s", tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:7]) {
				t.Errorf("error %q shows the secret", err)
			}
		})
	}
}

// TestConfigWarnings: what weakens security is valid, and said.
func TestConfigWarnings(t *testing.T) {
	c, err := LoadConfig("c.yaml", []byte(`sinks:
  - name: k
    type: kafka
    kafka:
      brokers: [127.0.0.1:9092]
      tls: {enable: true, insecure_skip_verify: true}
  - name: p
    type: kafka
    kafka:
      brokers: [127.0.0.1:9092]
      sasl: {mechanism: PLAIN, username: u, password: p, allow_plaintext: true}
  - name: n
    type: nats
    nats: {url: nats://127.0.0.1:4222, tls: {insecure_skip_verify: true}}
  - name: f
    type: file
    file: {archive_key: /etc/cnstream/archive.key}
`))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.warnings(), "\n")
	for _, want := range []string{"sinks[0].kafka.tls.insecure_skip_verify is true", "sinks[1].kafka.sasl.allow_plaintext is true", "sinks[2].nats.tls.insecure_skip_verify is true",
		"sinks[3].file.archive_key or archive_origin is set but archive is false: the files are not signed"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings %q: want %q", w, want)
		}
	}
	_, err = LoadConfig("c.yaml", []byte("sinks:\n  - name: p\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      sasl: {mechanism: PLAIN, username: u, password: p}\n"))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:6: sinks[0].kafka.sasl.mechanism: PLAIN without TLS") {
		t.Errorf("PLAIN without TLS: %v, want it refused", err)
	}
}

// TestConfigRenamedKeys: the keys renamed for one vocabulary across sinks
// are refused with an error that names the new key, at the old key's line.
func TestConfigRenamedKeys(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"file format", "sinks:\n  - name: a\n    type: file\n    file:\n      format: jsonl\n",
			"c.yaml:5: sinks[0].file.format: renamed: use encoding (json | msgpack)"},
		{"kafka write_timeout", "sinks:\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      write_timeout: 5s\n",
			"c.yaml:6: sinks[0].kafka.write_timeout: renamed: use timeout"},
		{"kafka tls_config", "sinks:\n  - {name: s, type: stdout}\n  - name: k\n    type: kafka\n    kafka:\n      brokers: [127.0.0.1:9092]\n      tls_config: {enable: true}\n",
			"c.yaml:7: sinks[1].kafka.tls_config: renamed: use tls"},
		{"nats user", "sinks:\n  - name: n\n    type: nats\n    nats: {url: nats://127.0.0.1:4222, user: u, password: p}\n",
			"c.yaml:4: sinks[0].nats.user: renamed: use username"},
		{"nats tls_config", "sinks:\n  - name: n\n    type: nats\n    nats:\n      url: nats://127.0.0.1:4222\n      tls_config: {ca_file: /x}\n",
			"c.yaml:6: sinks[0].nats.tls_config: renamed: use tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig("c.yaml", []byte(tc.yaml))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v\nwant %q", err, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *ConfigError", err)
			}
		})
	}
	// The new spellings are accepted, and reach the library Configs.
	c, err := LoadConfig("c.yaml", []byte(`sinks:
  - {name: f, type: file, file: {encoding: msgpack}}
  - {name: k, type: kafka, kafka: {brokers: [127.0.0.1:9092], timeout: 3s, tls: {enable: true}}}
  - {name: n, type: nats, nats: {url: nats://127.0.0.1:4222, username: u, password: p, timeout: 2s, tls: {enable: true}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Sinks[0].File.config(); f.Format != "msgpack" {
		t.Errorf("file format %q, want msgpack", f.Format)
	}
	if k := c.Sinks[1].Kafka.sinkConfig(); k.WriteTimeout != 3*time.Second || !k.TLS.Enable {
		t.Errorf("kafka %v: want a 3s timeout and TLS", k)
	}
	if n := c.Sinks[2].NATS.sinkConfig(); n.User != "u" || n.Timeout != 2*time.Second || !n.TLS.Enable {
		t.Errorf("nats %+v: want user u, a 2s timeout and TLS", n)
	}
}

// TestSpoolConfig: the spool section maps to spool.Config with its
// defaults, and with spool.dir the file, kafka and nats sinks default to
// policy spool while stdout and an explicit policy keep theirs.
func TestSpoolConfig(t *testing.T) {
	t.Setenv("CNSTREAM_TEST_SPOOL", "/var/lib/cnstream/spool")
	c, err := LoadConfig("c.yaml", []byte(`spool:
  dir: ${CNSTREAM_TEST_SPOOL}
  max_size: 2GiB
  when_full: drop_oldest
  fsync: always
  fsync_interval: 250ms
sinks:
  - {name: f, type: file}
  - {name: k, type: kafka, kafka: {brokers: [127.0.0.1:9092]}}
  - {name: n, type: nats, nats: {url: nats://127.0.0.1:4222}}
  - {name: o, type: stdout}
  - {name: m, type: file, queue: {policy: drop_newest}}
  - {name: s, type: stdout, queue: {policy: spool}}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Spool.spoolConfig()
	want := spool.Config{Dir: "/var/lib/cnstream/spool", MaxSize: 2 << 30, WhenFull: spool.DropOldest, Fsync: spool.FsyncAlways, FsyncInterval: 250 * time.Millisecond}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(spool.Config{}, "Records", "Logger")); diff != "" {
		t.Errorf("spool config (-want +got):\n%s", diff)
	}
	var policies []string
	for _, s := range c.Sinks {
		policies = append(policies, s.Name+":"+c.policy(s))
	}
	if diff := cmp.Diff([]string{"f:spool", "k:spool", "n:spool", "o:block", "m:drop_newest", "s:spool"}, policies); diff != "" {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"f", "k", "n", "s"}, c.spooledSinks()); diff != "" {
		t.Errorf("spooled sinks (-want +got):\n%s", diff)
	}

	// Without spool.dir: no spool, every default policy is block.
	c, err = LoadConfig("c.yaml", []byte("sinks:\n  - {name: f, type: file}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p := c.policy(c.Sinks[0]); p != "block" || c.Spool.Dir != "" || len(c.spooledSinks()) != 0 {
		t.Errorf("without spool.dir: policy %q, dir %q, spooled %v: want block, none", p, c.Spool.Dir, c.spooledSinks())
	}
	d := c.Spool.spoolConfig()
	if d.MaxSize != 0 || d.WhenFull != spool.Block || d.Fsync != spool.FsyncInterval || d.FsyncInterval != 0 {
		t.Errorf("default spool config %+v: want the library's defaults (zero values, block, interval)", d)
	}

	// A spool no sink uses is a warning.
	c, err = LoadConfig("c.yaml", []byte("spool: {dir: /tmp/s}\nsinks:\n  - {name: o, type: stdout}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.warnings(), "\n"); !strings.Contains(w, "spool.dir is set but no sink has queue.policy spool") {
		t.Errorf("warnings %q: want the unused spool named", w)
	}
}

// TestPrintDefaultSpool: the embedded default runs with a spool under
// ./cnstream-data/ and says so.
func TestPrintDefaultSpool(t *testing.T) {
	var out, errb bytes.Buffer
	if err := runCmd(context.Background(), []string{"--print-default"}, &out, &errb); err != nil {
		t.Fatalf("run --print-default: %v: %s", err, errb.String())
	}
	if !regexp.MustCompile(`\nspool:.*\n  dir: \./cnstream-data/spool `).MatchString(out.String()) {
		t.Errorf("--print-default:\n%s\nwant spool.dir: ./cnstream-data/spool", out.String())
	}
	c, err := LoadConfig("(embedded default)", defaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spool.Dir != "./cnstream-data/spool" || c.policy(c.Sinks[0]) != "spool" {
		t.Errorf("embedded default: spool.dir %q, sink policy %q: want ./cnstream-data/spool and spool", c.Spool.Dir, c.policy(c.Sinks[0]))
	}
}

// TestNATSEventsPerMessage: nats.events_per_message reaches sink/nats's
// Config as written (0 when absent: one event per message), 0..65535 are
// valid, and a value outside that range is an error naming the file, the
// line and sinks[i].nats.events_per_message.
func TestNATSEventsPerMessage(t *testing.T) {
	yaml := func(v string) string {
		s := "sinks:\n  - {name: o, type: stdout}\n  - name: n\n    type: nats\n    nats:\n      url: nats://127.0.0.1:4222\n      jetstream: true\n"
		if v != "" {
			s += "      events_per_message: " + v + "\n"
		}
		return s
	}
	for _, tc := range []struct {
		value string
		want  int
	}{{"", 0}, {"0", 0}, {"1", 1}, {"16", 16}, {"65535", 65535}} {
		c, err := LoadConfig("c.yaml", []byte(yaml(tc.value)))
		if err != nil {
			t.Fatalf("events_per_message %q: %v", tc.value, err)
		}
		if got := c.Sinks[1].NATS.sinkConfig().EventsPerMessage; got != tc.want {
			t.Errorf("events_per_message %q: sink/nats Config.EventsPerMessage %d, want %d", tc.value, got, tc.want)
		}
	}
	for _, tc := range []struct{ value, want string }{
		{"-1", "c.yaml:8: sinks[1].nats.events_per_message: -1: want 0 to 65535"},
		{"65536", "c.yaml:8: sinks[1].nats.events_per_message: 65536: want 0 to 65535"},
		{"many", "c.yaml:8: "}, // not a number: the loader's type error names the line
	} {
		_, err := LoadConfig("c.yaml", []byte(yaml(tc.value)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("events_per_message %s: error %v, want it to contain %q", tc.value, err, tc.want)
		}
		var ce *ConfigError
		if err != nil && !errors.As(err, &ce) {
			t.Errorf("events_per_message %s: error %T is not a *ConfigError", tc.value, err)
		}
	}
}
