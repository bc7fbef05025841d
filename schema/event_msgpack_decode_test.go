package schema

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// checkFastMatchesReflect decodes b with the decoder without reflection and,
// when it does not fall back, checks that it gives what the reflection path
// gives: the same event (times identical, not only equal instants; nil and
// empty slices told apart) and the same error. It reports whether the fast
// decoder took b.
func checkFastMatchesReflect(t *testing.T, b []byte) bool {
	t.Helper()
	var e Event
	if !decodeMsgpackFast(b, &e) {
		return false
	}
	got, gotErr := checkEvent(e)
	want, wantErr := decodeMsgpackReflect(b)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("fast path error %v, reflection path error %v\n% x", gotErr, wantErr, b)
	}
	if diff := cmp.Diff(want, got, eventCmp); diff != "" {
		t.Fatalf("fast path (-reflection +fast):\n%s\n% x", diff, b)
	}
	if got.Time != want.Time {
		t.Fatalf("fast path time %#v, reflection path %#v", got.Time, want.Time)
	}
	if got.Process != nil && want.Process != nil && got.Process.StartTime != want.Process.StartTime {
		t.Fatalf("fast path start time %#v, reflection path %#v", got.Process.StartTime, want.Process.StartTime)
	}
	return true
}

// fastEvents are the golden events and random events of every kind: valid
// ones, ones with strings that are not UTF-8, and wild ones (other
// versions and kinds, extra members, time zones).
func fastEvents() []namedEvent {
	events := goldenEvents()
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 3000 {
		k := Kinds()[i%len(Kinds())]
		switch i % 3 {
		case 0:
			src := &eventSource{r: r, strs: validStrings, data: []byte("\x00\x01payload"), valid: true}
			events = append(events, namedEvent{"valid", genEvent(src, k)})
		case 1:
			src := &eventSource{r: r, strs: trickyStrings, data: bytes.Repeat([]byte{0xc1}, 300)}
			events = append(events, namedEvent{"tricky", genEvent(src, k)})
		case 2:
			src := &eventSource{r: r, strs: append(trickyStrings, string(make([]byte, 70000))), data: []byte{1}}
			e := genEvent(src, k)
			wildEvent(src, &e)
			events = append(events, namedEvent{"wild", e})
		}
	}
	// More strings than the decoder notes to make at once.
	long := goldenEvents()[2]
	if long.e.Kind != KindExec {
		panic("golden event 2 is not the exec event")
	}
	p := *long.e.Process
	for i := range 100 {
		p.Cmdline = append(p.Cmdline, strconv.Itoa(i))
	}
	long.e.Process = &p
	return append(events, namedEvent{"long cmdline", long.e})
}

// TestDecodeMsgpackFast: the decoder without reflection reads everything
// AppendMsgpack writes for an event of a known kind (it falls back only on
// an unknown kind's name) and decodes it as the reflection path does.
func TestDecodeMsgpackFast(t *testing.T) {
	for i, g := range fastEvents() {
		b := AppendMsgpack(nil, &g.e)
		known := g.e.Kind != KindUnknown && int(g.e.Kind) < len(kindNames)
		if took := checkFastMatchesReflect(t, b); took != known {
			t.Fatalf("%d %s: kind %d: fast path took it: %v\n% x", i, g.name, g.e.Kind, took, b)
		}
	}
}

// TestDecodeMsgpackFastGolden: the files of testdata/events take the fast
// path.
func TestDecodeMsgpackFastGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "events", "*.msgpack"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden msgpack files: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !checkFastMatchesReflect(t, b) {
			t.Errorf("%s: fast path fell back", f)
		}
	}
}

// TestDecodeMsgpackFastForms: inputs AppendMsgpack does not write, but
// another writer might: the fast path takes those whose meaning it knows
// and decodes them as the reflection path does, and falls back on the rest.
func TestDecodeMsgpackFastForms(t *testing.T) {
	// A minimal fork event, built from its entries.
	type kv struct {
		k string
		v []byte
	}
	fork := []byte{0x84,
		0xaa, 'p', 'a', 'r', 'e', 'n', 't', '_', 'p', 'i', 'd', 0x01,
		0xab, 'p', 'a', 'r', 'e', 'n', 't', '_', 't', 'g', 'i', 'd', 0x02,
		0xa9, 'c', 'h', 'i', 'l', 'd', '_', 'p', 'i', 'd', 0x03,
		0xaa, 'c', 'h', 'i', 'l', 'd', '_', 't', 'g', 'i', 'd', 0x04}
	base := []kv{
		{"v", []byte{0x01}},
		{"kind", mpStr(nil, "fork")},
		{"time", mpTime(nil, time.Unix(1_700_000_000, 5))},
		{"host", []byte{0xc0}},
		{"fork", fork},
	}
	build := func(kvs []kv) []byte {
		b := mpMap(nil, len(kvs))
		for _, e := range kvs {
			b = append(mpStr(b, e.k), e.v...)
		}
		return b
	}
	with := func(k string, v []byte) []byte {
		kvs := append([]kv(nil), base...)
		for i := range kvs {
			if kvs[i].k == k {
				kvs[i].v = v
				return build(kvs)
			}
		}
		return build(append(kvs, kv{k, v}))
	}
	process := func(entries ...[]byte) []byte {
		b := mpMap(nil, len(entries)/2)
		for _, e := range entries {
			b = append(b, e...)
		}
		return b
	}
	key := func(k string) []byte { return mpStr(nil, k) }
	reversed := append([]kv(nil), base...)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}

	for _, tt := range []struct {
		name string
		b    []byte
		fast bool // the fast path takes it
	}{
		{"base", build(base), true},
		{"keys reversed", build(reversed), true},
		{"map 16", append([]byte{0xde, 0, 5}, build(base)[1:]...), true},
		{"v as uint 64", with("v", []byte{0xcf, 0, 0, 0, 0, 0, 0, 0, 1}), true},
		{"v as int 8", with("v", []byte{0xd0, 1}), true},
		{"v negative", with("v", []byte{0xff}), true},
		{"v 2", with("v", []byte{0x02}), true},
		{"v huge", with("v", []byte{0xcf, 0xff, 0, 0, 0, 0, 0, 0, 1}), false},
		{"v float", with("v", []byte{0xca, 0x3f, 0x80, 0, 0}), false},
		{"v nil", with("v", []byte{0xc0}), false},
		{"v str", with("v", mpStr(nil, "1")), false},
		{"kind str 8", with("kind", []byte{0xd9, 4, 'f', 'o', 'r', 'k'}), true},
		{"kind unknown name", with("kind", mpStr(nil, "spawn")), false},
		{"kind named unknown", with("kind", mpStr(nil, "unknown")), false},
		{"kind bin", with("kind", []byte{0xc4, 4, 'f', 'o', 'r', 'k'}), false},
		{"kind number", with("kind", []byte{0x01}), false},
		{"kind of another member", with("kind", mpStr(nil, "exec")), true},
		{"no kind", build(base[:1]), true},
		{"time 96", with("time", mpTime(nil, time.Unix(-5, 7))), true},
		{"time 32", with("time", mpTime(nil, time.Unix(7, 0))), true},
		{"time 64 nsec over 1e9", with("time", []byte{0xd7, 0xff, 0xff, 0xff, 0xff, 0xfc, 0, 0, 0, 1}), true},
		{"time ext 8 of 4", with("time", []byte{0xc7, 4, 0xff, 0, 0, 0, 1}), false},
		{"time other ext", with("time", []byte{0xd6, 0x0d, 0, 0, 0, 1}), false},
		{"time str", with("time", mpStr(nil, "2026-03-14T09:26:53Z")), false},
		{"time nil", with("time", []byte{0xc0}), false},
		{"host", with("host", []byte{0x81, 0xa8, 'h', 'o', 's', 't', 'n', 'a', 'm', 'e', 0xa1, 'h'}), true},
		{"host empty", with("host", []byte{0x80}), true},
		{"host unknown field", with("host", []byte{0x81, 0xa1, 'x', 0x01}), false},
		{"host array", with("host", []byte{0x91, 0xa1, 'h'}), false},
		{"fork nil", with("fork", []byte{0xc0}), false},
		{"fork negative pid", with("fork", []byte{0x81, 0xa9, 'c', 'h', 'i', 'l', 'd', '_', 'p', 'i', 'd', 0xff}), false},
		{"fork pid over 32 bits", with("fork", append([]byte{0x81, 0xa9, 'c', 'h', 'i', 'l', 'd', '_', 'p', 'i', 'd'}, mpUint(nil, 1<<32)...)), false},
		{"fork pid uint 64", with("fork", append([]byte{0x81, 0xa9, 'c', 'h', 'i', 'l', 'd', '_', 'p', 'i', 'd'}, 0xcf, 0, 0, 0, 0, 0, 0, 0, 9)), true},
		{"fork repeated field", with("fork", []byte{0x82, 0xa9, 'c', 'h', 'i', 'l', 'd', '_', 'p', 'i', 'd', 0x01, 0xa9, 'c', 'h', 'i', 'l', 'd', '_', 'p', 'i', 'd', 0x02}), false},
		{"repeated member", build(append(append([]kv(nil), base...), kv{"fork", []byte{0x80}})), false},
		{"unknown field", with("future", []byte{0x92, 0x01, 0xc0}), false},
		{"id nil", with("id", []byte{0xc0}), false},
		{"id", with("id", mpStr(nil, "x/y")), true},
		{"raw payload str", with("raw", []byte{0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xa1, 'x'}), false},
		{"raw payload bin 16", with("raw", []byte{0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xc5, 0, 1, 'x'}), true},
		{"raw payload empty", with("raw", []byte{0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xc4, 0}), true},
		{"raw payload nil", with("raw", []byte{0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xc0}), true},
		{"exit status nil", with("exit", []byte{0x81, 0xab, 'e', 'x', 'i', 't', '_', 's', 't', 'a', 't', 'u', 's', 0xc0}), false},
		{"exit signal int 16", with("exit", []byte{0x81, 0xab, 'e', 'x', 'i', 't', '_', 's', 'i', 'g', 'n', 'a', 'l', 0xd1, 0x80, 0}), true},
		{"exit signal over 32 bits", with("exit", []byte{0x81, 0xab, 'e', 'x', 'i', 't', '_', 's', 'i', 'g', 'n', 'a', 'l', 0xd3, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0}), false},
		{"core_dumped nil", with("exit", []byte{0x81, 0xab, 'c', 'o', 'r', 'e', '_', 'd', 'u', 'm', 'p', 'e', 'd', 0xc0}), false},
		{"filtered kinds empty", with("filtered", []byte{0x81, 0xa5, 'k', 'i', 'n', 'd', 's', 0x80}), true},
		{"filtered kinds repeated", with("filtered", []byte{0x81, 0xa5, 'k', 'i', 'n', 'd', 's', 0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02}), true},
		{"process cmdline empty", with("process", process(key("cmdline"), []byte{0x90})), true},
		{"process cmdline nil", with("process", process(key("cmdline"), []byte{0xc0})), false},
		{"process cmdline array 16", with("process", process(key("cmdline"), []byte{0xdc, 0, 1, 0xa1, 'x'})), true},
		{"process cmdline of numbers", with("process", process(key("cmdline"), []byte{0x91, 0x01})), false},
		{"process ancestors empty", with("process", process(key("ancestors"), []byte{0x90})), true},
		{"process ancestor empty", with("process", process(key("ancestors"), []byte{0x91, 0x80})), true},
		{"process ancestor nil", with("process", process(key("ancestors"), []byte{0x91, 0xc0})), false},
		{"process ancestors map", with("process", process(key("ancestors"), []byte{0x80})), false},
		{"process uid nil", with("process", process(key("uid"), []byte{0xc0})), false},
		{"process ids", with("process", process(key("egid"), []byte{0x05}, key("uid"), []byte{0x06})), true},
		{"process container empty", with("process", process(key("container"), []byte{0x80})), true},
		{"trailing byte", append(build(base), 0xc0), false},
		{"truncated", build(base)[:20], false},
		{"array", []byte{0x91, 0x01}, false},
		{"empty", nil, false},
		{"empty map", []byte{0x80}, true},
		{"huge map", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01}, false},
		{"huge array", with("process", process(key("ancestors"), []byte{0xdd, 0xff, 0xff, 0xff, 0xff})), false},
		{"huge str", with("id", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'x'}), false},
		{"huge bin", with("raw", []byte{0x81, 0xa7, 'p', 'a', 'y', 'l', 'o', 'a', 'd', 0xc6, 0xff, 0xff, 0xff, 0xff}), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFastMatchesReflect(t, tt.b); got != tt.fast {
				t.Errorf("fast path took it: %v, want %v\n% x", got, tt.fast, tt.b)
			}
			// Whichever path decodes it, DecodeMsgpack gives what the
			// reflection path gives.
			got, gotErr := DecodeMsgpack(tt.b)
			want, wantErr := decodeMsgpackReflect(tt.b)
			if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
				t.Errorf("DecodeMsgpack error %v, reflection path %v", gotErr, wantErr)
			}
			if diff := cmp.Diff(want, got, eventCmp); diff != "" {
				t.Errorf("DecodeMsgpack (-reflection +DecodeMsgpack):\n%s", diff)
			}
		})
	}
}

// heldAllocs counts the allocations an event's values need: a pointer, a
// slice, each; the four ids of a process share one; and it counts the
// strings of at least one byte in *strs.
func heldAllocs(v reflect.Value, strs *int) int {
	switch v.Kind() {
	case reflect.String:
		if v.Len() > 0 {
			*strs++
		}
	case reflect.Pointer:
		if !v.IsNil() {
			return 1 + heldAllocs(v.Elem(), strs)
		}
	case reflect.Slice:
		if v.IsNil() {
			return 0
		}
		n := 1
		for i := range v.Len() {
			n += heldAllocs(v.Index(i), strs)
		}
		return n
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return 0
		}
		n := 0
		for i := range v.NumField() {
			n += heldAllocs(v.Field(i), strs)
		}
		if p, ok := v.Interface().(Process); ok {
			ids := 0
			for _, id := range []*uint32{p.UID, p.EUID, p.GID, p.EGID} {
				if id != nil {
					ids++
				}
			}
			if ids > 0 {
				n -= ids - 1
			}
		}
		return n
	}
	return 0
}

// TestDecodeMsgpackAllocs: DecodeMsgpack allocates only what the event
// holds, for the events the benchmark decodes: its structs and slices, and
// one string whose pieces its strings are.
func TestDecodeMsgpackAllocs(t *testing.T) {
	for _, g := range goldenEvents() {
		if g.name != "fork" && g.name != "exec" && g.name != "exec-exec-ids" {
			continue
		}
		g.e.ID = ""
		b := AppendMsgpack(nil, &g.e)
		want, err := DecodeMsgpack(b)
		if err != nil {
			t.Fatal(err)
		}
		n := testing.AllocsPerRun(100, func() {
			if _, err := DecodeMsgpack(b); err != nil {
				t.Fatal(err)
			}
		})
		strs := 0
		held := heldAllocs(reflect.ValueOf(want), &strs)
		if strs > 0 {
			held++
		}
		if n != float64(held) {
			t.Errorf("%s: %v allocations, want %d: one per struct and slice, one for the %d strings", g.name, n, held, strs)
		}
	}
}

// FuzzDecodeMsgpackFast: for any input, the decoder without reflection
// falls back or gives the event and the error the reflection path gives;
// and it takes everything AppendMsgpack writes for an event of a known
// kind.
func FuzzDecodeMsgpackFast(f *testing.F) {
	addGoldenSeeds(f, ".msgpack")
	f.Add([]byte{0x83, 0xa1, 'v', 0x01, 0xa4, 'k', 'i', 'n', 'd', 0xa3, 's', 'i', 'd', 0xa3, 's', 'i', 'd', 0x80})
	f.Add(bytes.Repeat([]byte{0x81, 0xa1, 'x'}, 100))
	for i, g := range fastEvents() {
		if i%50 == 0 {
			f.Add(AppendMsgpack(nil, &g.e))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastMatchesReflect(t, b)
		e, err := decodeMsgpackReflect(b)
		if err != nil {
			return
		}
		enc := AppendMsgpack(nil, &e)
		if !checkFastMatchesReflect(t, enc) {
			t.Fatalf("fast path fell back on AppendMsgpack's encoding\n% x", enc)
		}
	})
}

// TestDecodeMsgpackNil: nil for "time" made vmihailenco/msgpack panic (it
// calls reflect.Value.IsNil on the time.Time it decodes by its
// unmarshaler); DecodeMsgpack returns an error instead.
func TestDecodeMsgpackNil(t *testing.T) {
	b := append(mpStr([]byte{0x82, 0xa1, 'v', 0x01}, "time"), mpNil)
	_, err := DecodeMsgpack(b)
	if err == nil || !strings.HasPrefix(err.Error(), "schema: msgpack event: ") {
		t.Fatalf("error %v, want a schema: msgpack event error", err)
	}
	t.Log(err)
}
