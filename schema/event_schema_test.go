package schema

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// compileEventSchema compiles event.schema.json with formats (date-time)
// and content (base64) asserted.
func compileEventSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	sch, err := c.Compile("event.schema.json")
	if err != nil {
		t.Fatalf("compile event.schema.json: %v", err)
	}
	return sch
}

func jsonInstance(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return v
}

// TestEventSchemaKinds: the schema's kind enum is Kinds(), and every kind
// has its member property.
func TestEventSchemaKinds(t *testing.T) {
	var s struct {
		Properties map[string]struct {
			Enum []string `json:"enum"`
		} `json:"properties"`
	}
	b := mustReadFile(t, "event.schema.json")
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range Kinds() {
		want = append(want, k.String())
		if _, ok := s.Properties[k.String()]; !ok {
			t.Errorf("no property %q for kind %s", k, k)
		}
	}
	if got := s.Properties["kind"].Enum; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kind enum %v, want %v", got, want)
	}
}

func TestEventSchemaValid(t *testing.T) {
	sch := compileEventSchema(t)
	for _, g := range goldenEvents() {
		if err := sch.Validate(jsonInstance(t, AppendJSON(nil, &g.e))); err != nil {
			t.Errorf("golden %s: %v", g.name, err)
		}
		if err := sch.Validate(jsonInstance(t, bytes.TrimSuffix(mustReadFile(t, goldenPath(g.name, ".json")), []byte("\n")))); err != nil {
			t.Errorf("%s: %v", goldenPath(g.name, ".json"), err)
		}
	}
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 1000 {
		src := &eventSource{r: r, strs: trickyStrings, data: []byte("\x00\xff\x10 payload bytes")}
		e := genEvent(src, Kinds()[r.IntN(len(Kinds()))])
		e.ID = "" // the derived id, whose format the schema checks
		b := AppendJSON(nil, &e)
		if err := sch.Validate(jsonInstance(t, b)); err != nil {
			t.Fatalf("random event %d: %v\n%s", i, err, b)
		}
	}
}

// TestEventSchemaInvalid: changes to valid events that the schema rejects,
// and additions it accepts.
func TestEventSchemaInvalid(t *testing.T) {
	sch := compileEventSchema(t)
	golden := map[string][]byte{}
	for _, g := range goldenEvents() {
		golden[g.name] = AppendJSON(nil, &g.e)
	}
	for _, tt := range []struct {
		name   string
		event  string                 // golden event to change
		change func(m map[string]any) // on the decoded JSON object
		valid  bool
	}{
		{name: "missing kind member", event: "exec", change: func(m map[string]any) { delete(m, "exec") }},
		{name: "wrong kind name", event: "exec", change: func(m map[string]any) { m["kind"] = "spawn" }},
		{name: "kind unknown", event: "exec", change: func(m map[string]any) { m["kind"] = "unknown" }},
		{name: "negative pid", event: "fork", change: func(m map[string]any) { jsonObj(m, "fork")["child_pid"] = -1 }},
		{name: "pid above uint32", event: "exec", change: func(m map[string]any) { jsonObj(m, "exec")["pid"] = 1 << 32 }},
		{name: "pid not integer", event: "exec", change: func(m map[string]any) { jsonObj(m, "exec")["pid"] = 1.5 }},
		{name: "v missing", event: "fork", change: func(m map[string]any) { delete(m, "v") }},
		{name: "v 2", event: "fork", change: func(m map[string]any) { m["v"] = 2 }},
		{name: "id missing", event: "fork", change: func(m map[string]any) { delete(m, "id") }},
		{name: "id format", event: "fork", change: func(m map[string]any) { m["id"] = "fork-1" }},
		{name: "time missing", event: "fork", change: func(m map[string]any) { delete(m, "time") }},
		{name: "time not UTC", event: "fork", change: func(m map[string]any) { m["time"] = "2026-03-14T10:26:53+01:00" }},
		{name: "time not a date", event: "fork", change: func(m map[string]any) { m["time"] = "2026-02-30T10:26:53Z" }},
		{name: "host missing", event: "fork", change: func(m map[string]any) { delete(m, "host") }},
		{name: "host null", event: "fork", change: func(m map[string]any) { m["host"] = nil }},
		{name: "boot id missing", event: "fork", change: func(m map[string]any) { delete(jsonObj(m, "host"), "boot_id") }},
		{name: "two members", event: "exec", change: func(m map[string]any) { m["fork"] = jsonObj(jsonMap(t, golden["fork"]), "fork") }},
		{name: "stream missing", event: "exec", change: func(m map[string]any) { delete(m, "stream") }},
		{name: "record missing", event: "overrun", change: func(m map[string]any) { delete(m, "record") }},
		{name: "gap without stream", event: "gap", change: func(m map[string]any) { delete(m, "stream") }},
		{name: "filtered without stream", event: "filtered", change: func(m map[string]any) { delete(m, "stream") }},
		{name: "filtered count missing", event: "filtered", change: func(m map[string]any) { delete(jsonObj(m, "filtered"), "count") }},
		{name: "filtered kind count negative", event: "filtered", change: func(m map[string]any) { jsonObj(jsonObj(m, "filtered"), "kinds")["exec"] = -1 }},
		{name: "stream_closed without record", event: "stream_closed", change: func(m map[string]any) { delete(m, "record") }},
		{name: "stream_closed reason missing", event: "stream_closed", change: func(m map[string]any) { delete(jsonObj(m, "stream_closed"), "reason") }},
		{name: "gap reason not a string", event: "gap-restart", change: func(m map[string]any) { jsonObj(m, "gap")["reason"] = 1 }},
		{name: "corrupt without record", event: "corrupt", change: func(m map[string]any) { delete(m, "record") }},
		{name: "corrupt member missing", event: "corrupt", change: func(m map[string]any) { delete(m, "corrupt") }},
		{name: "corrupt file missing", event: "corrupt", change: func(m map[string]any) { delete(jsonObj(m, "corrupt"), "file") }},
		{name: "corrupt offset negative", event: "corrupt", change: func(m map[string]any) { jsonObj(m, "corrupt")["offset"] = -1 }},
		{name: "corrupt bytes above int64", event: "corrupt", change: func(m map[string]any) { jsonObj(m, "corrupt")["bytes"] = json.Number("9223372036854775808") }},
		{name: "corrupt member on a gap", event: "gap", change: func(m map[string]any) { m["corrupt"] = jsonObj(jsonMap(t, golden["corrupt"]), "corrupt") }},
		{name: "stream field missing", event: "fork", change: func(m map[string]any) { delete(jsonObj(m, "stream"), "epoch") }},
		{name: "exit status and signal", event: "exit", change: func(m map[string]any) { jsonObj(m, "exit")["signal"] = 9 }},
		{name: "exit status above 255", event: "exit", change: func(m map[string]any) { jsonObj(m, "exit")["exit_status"] = 256 }},
		{name: "exit signal below int32", event: "exit", change: func(m map[string]any) { jsonObj(m, "exit")["exit_signal"] = -1<<31 - 1 }},
		{name: "process source", event: "exec", change: func(m map[string]any) { jsonObj(m, "process")["source"] = "guess" }},
		{name: "process uid negative", event: "exec", change: func(m map[string]any) { jsonObj(m, "process")["uid"] = -1 }},
		{name: "ancestor without pid", event: "exec", change: func(m map[string]any) {
			delete(jsonObj(m, "process")["ancestors"].([]any)[0].(map[string]any), "pid")
		}},
		{name: "exec_id short", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["exec_id"] = "q3Jb0hV7Zc1mTn2kP9xY4" }},
		{name: "exec_id standard base64", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["exec_id"] = "q3Jb0hV7Zc1mTn2kP9xY+w" }},
		{name: "parent_exec_id number", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["parent_exec_id"] = 7 }},
		{name: "prev_exec_id padded", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["prev_exec_id"] = "Vd8sR1aYp0cKx6JtWn3FgQ==" }},
		{name: "start_time not UTC", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["start_time"] = "2026-03-14T10:26:53.605+01:00" }},
		{name: "start_time not a date", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["start_time"] = "2026-02-30T10:26:53Z" }},
		{name: "start_time number", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["start_time"] = 1773480413 }},
		{name: "start_boot_ns negative", event: "exec-exec-ids", change: func(m map[string]any) { jsonObj(m, "process")["start_boot_ns"] = -1 }},
		{name: "ancestor exec_id long", event: "fork-exec-ids", change: func(m map[string]any) {
			jsonObj(m, "process")["ancestors"].([]any)[1].(map[string]any)["exec_id"] = "T0mW5eXk2LqB9uZr7NcJ3gA"
		}},
		{name: "container without runtime", event: "exec", change: func(m map[string]any) { delete(jsonObj(jsonObj(m, "process"), "container"), "runtime") }},
		{name: "payload not base64", event: "raw", change: func(m map[string]any) { jsonObj(m, "raw")["payload"] = "not base64!" }},
		{name: "missing over uint64", event: "gap", change: func(m map[string]any) { jsonObj(m, "gap")["missing"] = json.Number("18446744073709551616") }},

		// The compatibility rule: fields added later are allowed anywhere.
		{name: "unknown field", event: "exec", valid: true, change: func(m map[string]any) { m["cgroup_v3"] = map[string]any{"x": 1} }},
		{name: "unknown member field", event: "exec", valid: true, change: func(m map[string]any) { jsonObj(m, "exec")["start_ns"] = 12 }},
		{name: "exec ids absent", event: "exec-exec-ids", valid: true, change: func(m map[string]any) {
			for _, k := range identityKeys {
				delete(jsonObj(m, "process"), k)
			}
		}},
		{name: "unknown process field", event: "exec", valid: true, change: func(m map[string]any) { jsonObj(m, "process")["caps"] = "x" }},
		{name: "payload null", event: "raw", valid: true, change: func(m map[string]any) { jsonObj(m, "raw")["payload"] = nil }},
		{name: "gap reason other", event: "gap", valid: true, change: func(m map[string]any) { jsonObj(m, "gap")["reason"] = "spool_corrupt" }},
		{name: "uint64 max", event: "gap", valid: true, change: func(m map[string]any) { jsonObj(m, "gap")["missing"] = json.Number("18446744073709551615") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, ok := golden[tt.event]
			if !ok {
				t.Fatalf("no golden event %q", tt.event)
			}
			if err := sch.Validate(jsonInstance(t, b)); err != nil {
				t.Fatalf("unchanged event %s is invalid: %v", tt.event, err)
			}
			m := jsonMap(t, b)
			tt.change(m)
			changed, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			err = sch.Validate(jsonInstance(t, changed))
			switch {
			case tt.valid && err != nil:
				t.Errorf("rejected: %v\n%s", err, changed)
			case !tt.valid && err == nil:
				t.Errorf("accepted:\n%s", changed)
			}
		})
	}
}

func jsonMap(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// jsonObj returns the object m[key].
func jsonObj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }
