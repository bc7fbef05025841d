package schema

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"
)

// identityKeys are the keys of a process's identity fields, in the order
// of the json tags.
var identityKeys = []string{"exec_id", "parent_exec_id", "prev_exec_id", "start_time", "start_boot_ns"}

// orderedKeys returns the keys of the map b holds (JSON or MessagePack) in
// the order they are written.
func orderedKeys(t *testing.T, b []byte, isJSON bool) []string {
	t.Helper()
	var keys []string
	if isJSON {
		d := json.NewDecoder(bytes.NewReader(b))
		if _, err := d.Token(); err != nil {
			t.Fatal(err)
		}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k.(string))
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		return keys
	}
	d := msgpack.NewDecoder(bytes.NewReader(b))
	n, err := d.DecodeMapLen()
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		k, err := d.DecodeString()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		if err := d.Skip(); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// processKeys returns the keys of the "process" map of the encoded event
// enc, and those of its first ancestor, in the order they are written.
func processKeys(t *testing.T, enc []byte, isJSON bool) (process, ancestor []string) {
	t.Helper()
	var proc []byte
	var ancestors [][]byte
	if isJSON {
		var m struct {
			Process json.RawMessage `json:"process"`
		}
		var q struct {
			Ancestors []json.RawMessage `json:"ancestors"`
		}
		if err := json.Unmarshal(enc, &m); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(m.Process, &q); err != nil {
			t.Fatal(err)
		}
		proc = m.Process
		for _, a := range q.Ancestors {
			ancestors = append(ancestors, a)
		}
	} else {
		var m struct {
			Process msgpack.RawMessage `msgpack:"process"`
		}
		var q struct {
			Ancestors []msgpack.RawMessage `msgpack:"ancestors"`
		}
		if err := msgpack.Unmarshal(enc, &m); err != nil {
			t.Fatal(err)
		}
		if err := msgpack.Unmarshal(m.Process, &q); err != nil {
			t.Fatal(err)
		}
		proc = m.Process
		for _, a := range q.Ancestors {
			ancestors = append(ancestors, a)
		}
	}
	process = orderedKeys(t, proc, isJSON)
	if len(ancestors) > 0 {
		ancestor = orderedKeys(t, ancestors[0], isJSON)
	}
	return process, ancestor
}

// TestProcessIdentityKeys: both encoders write exec_id, parent_exec_id,
// prev_exec_id, start_time and start_boot_ns right after source, in that
// order, and an ancestor's exec_id between pid and comm; and omit each
// when it is empty or zero, a zero start time in another zone included.
func TestProcessIdentityKeys(t *testing.T) {
	full := Event{Version: EventVersion, Kind: KindExec, Time: goldenTime(1), Host: goldenHost, Stream: goldenStream(1),
		Exec: &ExecEvent{PID: 7, TGID: 7},
		Process: &Process{PID: 7, TGID: 7, PPID: 1, Source: "proc",
			ExecID: "q3Jb0hV7Zc1mTn2kP9xY4w", ParentExecID: "Hk2cQ8vNw1fXoR4tLm7ZbA", PrevExecID: "Vd8sR1aYp0cKx6JtWn3FgQ",
			StartTime:   goldenTime(5).In(time.FixedZone("CET", 3600)),
			StartBootNS: 73116000900001, Comm: "curl",
			Ancestors: []Ancestor{{PID: 1, ExecID: "bF6yD1oP8sVa4HnQ0wKi5A", Comm: "systemd"}}}}
	empty := full
	p := *full.Process
	p.ExecID, p.ParentExecID, p.PrevExecID = "", "", ""
	p.StartTime, p.StartBootNS = time.Time{}.In(time.FixedZone("CET", 3600)), 0
	p.Ancestors = []Ancestor{{PID: 1, Comm: "systemd"}}
	empty.Process = &p

	wantFull := slices.Concat([]string{"pid", "tgid", "ppid", "source"}, identityKeys, []string{"comm", "ancestors"})
	wantEmpty := []string{"pid", "tgid", "ppid", "source", "comm", "ancestors"}
	for _, tt := range []struct {
		name          string
		e             *Event
		want, wantAnc []string
	}{
		{"set", &full, wantFull, []string{"pid", "exec_id", "comm"}},
		{"empty", &empty, wantEmpty, []string{"pid", "comm"}},
	} {
		for _, enc := range []struct {
			name   string
			b      []byte
			isJSON bool
		}{{"json", AppendJSON(nil, tt.e), true}, {"msgpack", AppendMsgpack(nil, tt.e), false}} {
			got, gotAnc := processKeys(t, enc.b, enc.isJSON)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("%s %s: process keys (-want +got):\n%s", tt.name, enc.name, diff)
			}
			if diff := cmp.Diff(tt.wantAnc, gotAnc); diff != "" {
				t.Errorf("%s %s: ancestor keys (-want +got):\n%s", tt.name, enc.name, diff)
			}
		}
		checkJSONStd(t, tt.e)
	}
}

// TestDecodeStartTimeUTC: both decoders return a process's start time in
// UTC, the instant it was written, whatever zone it was written from
// (JSON with an offset, MessagePack's timestamp, which has no zone).
func TestDecodeStartTimeUTC(t *testing.T) {
	var g Event
	for _, ne := range goldenEvents() {
		if ne.name == "exec-exec-ids" {
			g = ne.e
		}
	}
	if g.Process == nil || g.Process.StartTime.IsZero() {
		t.Fatal("no golden exec-exec-ids with a start time")
	}
	want := g.Process.StartTime
	zoned := g
	p := *g.Process
	p.StartTime = want.In(time.FixedZone("x", -7*3600))
	zoned.Process = &p

	m := jsonMap(t, AppendJSON(nil, &g))
	jsonObj(m, "process")["start_time"] = "2026-03-14T02:26:53.605-07:00"
	offset, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		decode func() (Event, error)
	}{
		{"json", func() (Event, error) { return DecodeJSON(AppendJSON(nil, &zoned)) }},
		{"json offset", func() (Event, error) { return DecodeJSON(offset) }},
		{"msgpack", func() (Event, error) { return DecodeMsgpack(AppendMsgpack(nil, &zoned)) }},
		{"msgpack reflection", func() (Event, error) { return decodeMsgpackReflect(AppendMsgpack(nil, &zoned)) }},
	} {
		e, err := tt.decode()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := e.Process.StartTime
		if got.Location() != time.UTC || !got.Equal(want) {
			t.Errorf("%s: start time %v (%v), want %v in UTC", tt.name, got, got.Location(), want)
		}
	}
}

// TestSizeEstimateExecIDs: the estimate grows by at least the bytes of the
// exec ids a process carries.
func TestSizeEstimateExecIDs(t *testing.T) {
	var with Event
	for _, ne := range goldenEvents() {
		if ne.name == "fork-exec-ids" {
			with = ne.e
		}
	}
	if with.Process == nil {
		t.Fatal("no golden fork-exec-ids")
	}
	without := with
	p := *with.Process
	p.ExecID, p.ParentExecID, p.PrevExecID = "", "", ""
	p.Ancestors = slices.Clone(p.Ancestors)
	ids := len(with.Process.ExecID) + len(with.Process.ParentExecID) + len(with.Process.PrevExecID)
	for i := range p.Ancestors {
		ids += len(p.Ancestors[i].ExecID)
		p.Ancestors[i].ExecID = ""
	}
	without.Process = &p
	if got, base := with.SizeEstimate(), without.SizeEstimate(); got < base+int64(ids) {
		t.Errorf("estimate with exec ids %d, without %d: grew by less than their %d bytes", got, base, ids)
	}
}
