package schema

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vmihailenco/msgpack/v5"
)

// Fuzz tests of the event encodings. The encoders are fuzzed with events
// built from the fuzzer's strings, bytes and a seed for the numbers and
// shape; the decoders with bytes, seeded from testdata/events.

// fuzzEvent builds an event from fuzz inputs: valid (genEvent) unless wild,
// then changed by wildEvent.
func fuzzEvent(kind uint8, seed uint64, s1, s2 string, data []byte, wild bool) Event {
	src := &eventSource{r: rand.New(rand.NewPCG(seed, uint64(kind))), strs: []string{s1, s2, s1 + s2, ""}, data: data}
	e := genEvent(src, Kinds()[int(kind)%len(Kinds())])
	if wild {
		wildEvent(src, &e)
	}
	return e
}

func addEventSeeds(f *testing.F) {
	for i, s := range trickyStrings {
		f.Add(uint8(i), uint64(i), s, trickyStrings[(i+1)%len(trickyStrings)], []byte(s), i%2 == 0)
	}
	f.Add(uint8(2), uint64(0), "", "", []byte(nil), true)
}

// FuzzAppendJSON: AppendJSON writes what encoding/json writes, for any
// event; valid JSON always; and DecodeJSON gives back what encoding/json
// decodes from it.
func FuzzAppendJSON(f *testing.F) {
	addEventSeeds(f)
	f.Fuzz(func(t *testing.T, kind uint8, seed uint64, s1, s2 string, data []byte, wild bool) {
		e := fuzzEvent(kind, seed, s1, s2, data, wild)
		checkJSONStd(t, &e)
		b := AppendJSON(nil, &e)
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		if wild {
			return
		}
		// A valid event decodes to what encoding/json decodes from
		// json.Marshal (the same but for invalid UTF-8, which becomes
		// U+FFFD).
		std, err := marshalStd(&e)
		if err != nil {
			t.Fatal(err)
		}
		var want Event
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeJSON(b)
		if err != nil {
			t.Fatalf("DecodeJSON: %v\n%s", err, b)
		}
		if diff := cmp.Diff(want, got, eventCmp); diff != "" {
			t.Fatalf("DecodeJSON(AppendJSON(e)) (-want +got):\n%s", diff)
		}
	})
}

// normalized is e as it comes back from a decoder: id derived, empty
// slices that are omitted as nil.
func normalized(e Event) Event {
	e.ID = e.EventID()
	if p := e.Process; p != nil {
		c := *p
		if len(c.Cmdline) == 0 {
			c.Cmdline = nil
		}
		if len(c.Ancestors) == 0 {
			c.Ancestors = nil
		}
		e.Process = &c
	}
	return e
}

// FuzzAppendMsgpack: AppendMsgpack always writes one well-formed value that
// vmihailenco/msgpack decodes; for events of version 1 with a kind and its
// member, DecodeMsgpack gives back the event exactly (strings and bytes as
// they were, times by instant), whatever else is set.
func FuzzAppendMsgpack(f *testing.F) {
	addEventSeeds(f)
	f.Fuzz(func(t *testing.T, kind uint8, seed uint64, s1, s2 string, data []byte, wild bool) {
		e := fuzzEvent(kind, seed, s1, s2, data, wild)
		if wild && seed&1 == 0 {
			// Any time at all, in any zone: the timestamp extension
			// takes 64-bit seconds.
			r := rand.New(rand.NewPCG(seed, 1))
			e.Time = time.Unix(r.Int64()>>1, r.Int64N(1e9)).In(time.FixedZone("z", r.IntN(86400)))
			if e.Process != nil {
				e.Process.StartTime = time.Unix(r.Int64()>>1, r.Int64N(1e9)).In(time.FixedZone("z", r.IntN(86400)))
			}
		}
		prefix := []byte{0xc0}
		b := AppendMsgpack(bytes.Clone(prefix), &e)
		if !bytes.HasPrefix(b, prefix) {
			t.Fatalf("AppendMsgpack overwrote the buffer")
		}
		b = b[len(prefix):]
		if err := checkMsgpack(b, maxMsgpackDepth); err != nil {
			t.Fatalf("%v\n% x", err, b)
		}
		var generic any
		if err := msgpack.Unmarshal(b, &generic); err != nil {
			t.Fatalf("msgpack.Unmarshal into any: %v", err)
		}
		if e.Version != EventVersion || !e.hasMember() {
			if _, err := DecodeMsgpack(b); err == nil {
				t.Fatalf("DecodeMsgpack accepted version %d kind %d with member %v", e.Version, e.Kind, e.hasMember())
			}
			return
		}
		got, err := DecodeMsgpack(b)
		if err != nil {
			t.Fatalf("DecodeMsgpack: %v\n% x", err, b)
		}
		if diff := cmp.Diff(normalized(e), got, eventCmp); diff != "" {
			t.Fatalf("DecodeMsgpack(AppendMsgpack(e)) (-want +got):\n%s", diff)
		}
	})
}

func addGoldenSeeds(f *testing.F, ext string) {
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*"+ext))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden %s files: %v", ext, err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.TrimSuffix(b, []byte("\n")))
	}
}

// equateDecoded compares decoded events: times by instant, and empty
// slices equal to nil (a decoder keeps "cmdline":[] as an empty slice,
// which the encoders omit).
var equateDecoded = cmp.Options{eventCmp, cmpopts.EquateEmpty()}

// FuzzDecodeJSON: no input panics; what decodes re-encodes to what
// encoding/json writes, and that decodes to the same event.
func FuzzDecodeJSON(f *testing.F) {
	addGoldenSeeds(f, ".json")
	f.Add([]byte(`{"v":1,"kind":"exit","exit":{"exit_status":null},"time":"9999-12-31T23:00:00-01:00","host":null}`))
	f.Add([]byte(`{"v":2,"kind":"spawn"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeJSON(b)
		if err != nil {
			return
		}
		checkJSONStd(t, &e)
		if !rfc3339Year(e.Time) || e.Process != nil && !rfc3339Year(e.Process.StartTime) { // an offset moved it out of RFC 3339's range
			return
		}
		again, err := DecodeJSON(AppendJSON(nil, &e))
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v", err)
		}
		if diff := cmp.Diff(normalized(e), again, equateDecoded); diff != "" {
			t.Fatalf("(-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeMsgpack: no input panics; what decodes re-encodes to bytes that
// decode to the same event, and to the same bytes again.
func FuzzDecodeMsgpack(f *testing.F) {
	addGoldenSeeds(f, ".msgpack")
	f.Add([]byte{0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 's', 'i', 'd', 0xa3, 's', 'i', 'd', 0x80})
	f.Add(bytes.Repeat([]byte{0x81, 0xa1, 'x'}, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeMsgpack(b)
		if err != nil {
			return
		}
		enc := AppendMsgpack(nil, &e)
		again, err := DecodeMsgpack(enc)
		if err != nil {
			t.Fatalf("re-encoded event does not decode: %v\n% x", err, enc)
		}
		if diff := cmp.Diff(normalized(e), again, equateDecoded); diff != "" {
			t.Fatalf("(-first +second):\n%s", diff)
		}
		if enc2 := AppendMsgpack(nil, &again); !bytes.Equal(enc, enc2) {
			t.Fatalf("encodings differ:\n% x\n% x", enc, enc2)
		}
	})
}
