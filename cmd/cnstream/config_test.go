package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/cnstream/cnstream/source"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{"bad policy", "sinks:\n  - name: a\n    type: stdout\n    queue:\n      policy: sometimes\n", "c.yaml:5: sinks[0].queue.policy: \"sometimes\": want block, drop_newest or drop_oldest"},
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
		{"file format", "sinks:\n  - name: a\n    type: file\n    file:\n      format: csv\n", "c.yaml:5: sinks[0].file.format: \"csv\": want jsonl or msgpack"},
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
	c, err := LoadConfig("c.yaml", []byte("source:\n  process_events: false\n  groups: [20]\n  userspace_groups: [20]\nsinks:\n  - {name: k, type: kafka, kafka: {brokers: [127.0.0.1:9092]}}\n  - {name: n, type: nats, nats: {url: nats://127.0.0.1:4222}}\n  - {name: f, type: file, batch: {events: 100}}\n"))
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
