package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// auditFields is what the audit reads of an event: the fast path must
// agree with schema.DecodeJSON on all of it.
func auditFields(e *schema.Event) schema.Event {
	return schema.Event{Version: e.Version, Kind: e.Kind, Time: e.Time.UTC(), MonoNS: e.MonoNS, Host: e.Host, Stream: e.Stream}
}

func sameAudit(t testing.TB, got, want *schema.Event) {
	t.Helper()
	g, w := auditFields(got), auditFields(want)
	if g.Version != w.Version || g.Kind != w.Kind || !g.Time.Equal(w.Time) || g.MonoNS != w.MonoNS {
		t.Fatalf("fast path: %+v, DecodeJSON: %+v", g, w)
	}
	if (g.Host == nil) != (w.Host == nil) || (g.Host != nil && *g.Host != *w.Host) {
		t.Fatalf("fast path host %+v, DecodeJSON %+v", g.Host, w.Host)
	}
	if (g.Stream == nil) != (w.Stream == nil) || (g.Stream != nil && *g.Stream != *w.Stream) {
		t.Fatalf("fast path stream %+v, DecodeJSON %+v", g.Stream, w.Stream)
	}
}

// TestDecodeGolden: every golden event decodes as DecodeJSON
// decodes it; connector events take the fast path, loss records the full
// decoder (the audit needs all of them).
func TestDecodeGolden(t *testing.T) {
	files, err := filepath.Glob("../schema/testdata/events/*.json")
	if err != nil || len(files) < 10 {
		t.Fatalf("golden events: %v (%d)", err, len(files))
	}
	fast := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want, err := schema.DecodeJSON(bytes.TrimSpace(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		// The golden files are indented: write the line as the sink does.
		line := schema.AppendJSON(nil, &want)
		var d Decoder
		got, err := d.JSON(line)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		sameAudit(t, got, &want)
		if want.Kind.IsLoss() {
			if got.ID != want.EventID() || d.fallback != 1 {
				t.Errorf("%s: a %s record must be decoded in full (id %q, full decodes %d)", f, want.Kind, got.ID, d.fallback)
			}
			if want.Gap != nil && *got.Gap != *want.Gap || want.Dropped != nil && *got.Dropped != *want.Dropped {
				t.Errorf("%s: loss record fields differ", f)
			}
		}
		if d.fallback == 0 {
			fast++
		}
	}
	if fast < 5 {
		t.Errorf("only %d golden events took the fast path", fast)
	}
}

// TestDecodeHostKept: the host is kept between records of the same
// host, and replaced when it changes.
func TestDecodeHostKept(t *testing.T) {
	e := schema.Event{Version: 1, Kind: schema.KindFork, Time: time.Unix(1700000000, 5).UTC(),
		Host: &schema.Host{Hostname: "a", MachineID: "m", BootID: "b1"}, Stream: &schema.Stream{Idx: 1, Val: 1, CPU: 1, Seq: 1}, Fork: &schema.ForkEvent{}}
	var d Decoder
	g1, _ := d.JSON(schema.AppendJSON(nil, &e))
	h1 := g1.Host
	e.Stream.Seq = 2
	g2, _ := d.JSON(schema.AppendJSON(nil, &e))
	if g2.Host != h1 || g2.Stream.Seq != 2 {
		t.Fatalf("host not kept (%p, %p) or seq %d", g2.Host, h1, g2.Stream.Seq)
	}
	e.Host = &schema.Host{Hostname: "a", MachineID: "m", BootID: "b2"}
	g3, _ := d.JSON(schema.AppendJSON(nil, &e))
	if g3.Host.BootID != "b2" {
		t.Fatalf("boot %q after a new boot", g3.Host.BootID)
	}
	if d.fallback != 0 {
		t.Fatalf("%d full decodes", d.fallback)
	}
}

// FuzzDecode: on any input, the fast path either agrees with
// DecodeJSON or gives way to it; it never panics.
func FuzzDecode(f *testing.F) {
	e := schema.Event{Version: 1, Kind: schema.KindExit, Time: time.Unix(1700000000, 123456789).UTC(), MonoNS: 9,
		Host: &schema.Host{Hostname: "h", MachineID: "m", BootID: "b"}, Stream: &schema.Stream{Idx: 1, Val: 1, CPU: 3, Epoch: 1, Seq: 4294967295}, Exit: &schema.ExitInfo{PID: 1}}
	f.Add(schema.AppendJSON(nil, &e))
	e.Host = nil
	f.Add(schema.AppendJSON(nil, &e))
	f.Add([]byte(`{"v":1,"id":"x","kind":"fork","time":"2026-01-02T03:04:05Z","mono_ns":0,"host":null,"stream":{"idx":1,"val":1,"cpu":0,"sender":0,"epoch":0,"seq":01,"ack":0}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decoder
		got, err := d.JSON(b)
		want, werr := schema.DecodeJSON(b)
		if d.fallback == 1 {
			return // DecodeJSON's own answer
		}
		if err != nil {
			t.Fatalf("fast path failed without falling back: %v", err)
		}
		if werr != nil {
			// The fast path reads the prefix only: a line whose tail is
			// broken is DecodeJSON's to refuse, the tree's to vouch for.
			return
		}
		sameAudit(t, got, &want)
	})
}

func BenchmarkDecode(b *testing.B) {
	files := []string{"fork", "exec"}
	for _, name := range files {
		raw, err := os.ReadFile("../schema/testdata/events/" + name + ".json")
		if err != nil {
			b.Fatal(err)
		}
		e, err := schema.DecodeJSON(bytes.TrimSpace(raw))
		if err != nil {
			b.Fatal(err)
		}
		line := schema.AppendJSON(nil, &e)
		b.Run(name+"/fast", func(b *testing.B) {
			var d Decoder
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.JSON(line); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/DecodeJSON", func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := schema.DecodeJSON(line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseUTC: the fast time parser agrees with time.Parse on what it
// accepts and leaves the rest to it.
func TestParseUTC(t *testing.T) {
	for _, s := range []string{"2026-12-06T18:28:22Z", "2026-12-06T18:28:22.5Z", "2026-12-06T18:28:22.123456789Z",
		"2024-02-29T00:00:00.000000001Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z"} {
		got, ok := parseUTC([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if !ok || err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, time.Parse %v %v", s, got, ok, want, err)
		}
	}
	for _, s := range []string{"2026-02-30T00:00:00Z", "2026-12-06T18:28:22.Z", "2026-12-06T18:28:22.1234567890Z",
		"2026-12-06T18:28:22+01:00", "2026-12-06 18:28:22Z", "2026-13-06T18:28:22Z", "2026-12-06T24:00:00Z", "2026-12-06T18:28:2xZ"} {
		if got, ok := parseUTC([]byte(s)); ok {
			t.Errorf("%s: accepted as %v", s, got)
		}
	}
}
