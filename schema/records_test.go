package schema

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRecordsLossShapes: the records the spool makes (corrupt, and gaps
// with a reason) are numbered, carry the host and no stream (corrupt) or
// the given stream (gap), and come back from both encodings unchanged and
// valid against event.schema.json.
func TestRecordsLossShapes(t *testing.T) {
	sch := compileEventSchema(t)
	recs := NewRecords("run1", *goldenHost)
	st := Stream{Idx: ProcID.Idx, Val: ProcID.Val, CPU: 2, Epoch: 4, Seq: 99, Ack: 7}
	for _, tt := range []struct {
		name string
		e    Event
		want Event // without Time (taken from e)
	}{
		{
			name: "corrupt",
			e:    recs.Corrupt("/spool/1.seg", 512, 64, "torn tail"),
			want: Event{Version: 1, Kind: KindCorrupt, Host: goldenHost, Record: &Record{Run: "run1", Seq: 1},
				Corrupt: &CorruptInfo{File: "/spool/1.seg", Offset: 512, Bytes: 64, Reason: "torn tail"}},
		},
		{
			name: "gap restart",
			e:    recs.Gap(st, 11, 16, 5, GapRestart),
			want: Event{Version: 1, Kind: KindGap, Host: goldenHost, Record: &Record{Run: "run1", Seq: 2},
				Stream: &Stream{Idx: 1, Val: 1, CPU: 2, Epoch: 4, Seq: 16},
				Gap:    &GapInfo{Expected: 11, Got: 16, Missing: 5, Reason: "restart"}},
		},
		{
			name: "gap spool_corrupt",
			e:    recs.Gap(st, 100, 140, 40, GapSpoolCorrupt),
			want: Event{Version: 1, Kind: KindGap, Host: goldenHost, Record: &Record{Run: "run1", Seq: 3},
				Stream: &Stream{Idx: 1, Val: 1, CPU: 2, Epoch: 4, Seq: 140},
				Gap:    &GapInfo{Expected: 100, Got: 140, Missing: 40, Reason: "spool_corrupt"}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.want.Time = tt.e.Time
			if diff := cmp.Diff(tt.want, tt.e, eventCmp); diff != "" {
				t.Fatalf("record (-want +got):\n%s", diff)
			}
			if !tt.e.Kind.IsLoss() {
				t.Errorf("%s: IsLoss false", tt.e.Kind)
			}
			want := tt.e
			want.ID = want.EventID()
			want.Time = want.Time.UTC()
			js := AppendJSON(nil, &tt.e)
			if err := sch.Validate(jsonInstance(t, js)); err != nil {
				t.Errorf("schema: %v\n%s", err, js)
			}
			checkJSONStd(t, &tt.e)
			got, err := DecodeJSON(js)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, eventCmp); diff != "" {
				t.Errorf("DecodeJSON (-want +got):\n%s", diff)
			}
			got, err = DecodeMsgpack(AppendMsgpack(nil, &tt.e))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, eventCmp); diff != "" {
				t.Errorf("DecodeMsgpack (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKindCorrupt: corrupt comes after stream_closed, keeps the numbers of
// the kinds before it, and is a loss record.
func TestKindCorrupt(t *testing.T) {
	if KindClosed != 18 || KindCorrupt != 19 {
		t.Errorf("KindClosed %d KindCorrupt %d, want 18 and 19", KindClosed, KindCorrupt)
	}
	if k, ok := ParseKind("corrupt"); !ok || k != KindCorrupt || k.String() != "corrupt" {
		t.Errorf("ParseKind(corrupt) = %v %v", k, ok)
	}
	var loss []string
	for _, k := range Kinds() {
		if k.IsLoss() {
			loss = append(loss, k.String())
		}
	}
	want := []string{"gap", "overrun", "malformed", "forged", "dropped", "filtered", "stream_closed", "corrupt"}
	if diff := cmp.Diff(want, loss); diff != "" {
		t.Errorf("IsLoss kinds (-want +got):\n%s", diff)
	}
}
