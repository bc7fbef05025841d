package enrich

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

func TestCapNames(t *testing.T) {
	tests := []struct {
		mask uint64
		want []string
	}{
		{0, nil},
		{1, []string{"CAP_CHOWN"}},
		{1<<10 | 1<<25, []string{"CAP_NET_BIND_SERVICE", "CAP_SYS_TIME"}},
		{1 << 40, []string{"CAP_CHECKPOINT_RESTORE"}},
		{1<<41 | 1<<63, []string{"CAP_41", "CAP_63"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, CapNames(tt.mask)); diff != "" {
			t.Errorf("%#x (-want +got):\n%s", tt.mask, diff)
		}
	}
}

func TestNewCredInfo(t *testing.T) {
	tests := []struct {
		name    string
		r       procRead
		capLast int
		want    *credInfo
	}{
		{"nothing read", procRead{}, 40, nil},
		{"full set of a 41-capability kernel", procRead{status: status{capEff: 1<<41 - 1, haveCapEff: true}}, 40,
			&credInfo{haveCap: true, capSet: &capSet{hex: "000001ffffffffff", full: true}}},
		{"a newer kernel's full set is full too", procRead{status: status{capEff: 1<<43 - 1, haveCapEff: true}}, 42,
			&credInfo{haveCap: true, capSet: &capSet{hex: "000007ffffffffff", full: true}}},
		{"one missing of 41", procRead{status: status{capEff: 1<<41 - 1 - 1<<24, haveCapEff: true}}, 40,
			&credInfo{haveCap: true, capSet: &capSet{hex: "000001fffeffffff", names: CapNames(1<<41 - 1 - 1<<24)}}},
		{"empty", procRead{status: status{haveCapEff: true, haveNNP: true, nnp: true}}, 40,
			&credInfo{haveCap: true, capSet: &capSet{hex: "0000000000000000"}, haveNNP: true, nnp: true}},
		{"login", procRead{haveLogin: true, auid: 1000, sessID: schema.AUIDUnset}, 40,
			&credInfo{haveLogin: true, auid: 1000, sessID: schema.AUIDUnset}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, newCredInfo(&tt.r, tt.capLast, nil), cmp.AllowUnexported(credInfo{}, capSet{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	c := newCredInfo(&procRead{status: status{capEff: 1, haveCapEff: true}}, 40, nil).withoutCaps()
	if c != nil {
		t.Errorf("withoutCaps of caps only: %+v, want nil", c)
	}
}

func TestParseNSLink(t *testing.T) {
	for in, want := range map[string]uint64{
		"net:[4026531840]": 4026531840, "pid:[1]": 1,
		"net:[0]": 0, "net:4026531840": 0, "net:[x]": 0, "": 0, "net:[18446744073709551616]": 0,
	} {
		if got, ok := parseNSLink(in); got != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", in, got, ok, want)
		}
	}
}

func TestNewNSInfo(t *testing.T) {
	host := [7]uint64{11, 12, 13, 14, 15, 16, 17}
	ns := [7]uint64{11, 22, 23, 0, 15, 16, 17}
	want := &schema.Namespaces{PID: 11, Mnt: 22, Net: 23, UTS: 15, IPC: 16, Cgroup: 17, Differs: []string{"mnt", "net"}}
	if diff := cmp.Diff(want, newNSInfo(&ns, &host)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Host unknown: no differs.
	want.Differs = nil
	if diff := cmp.Diff(want, newNSInfo(&ns, &[7]uint64{})); diff != "" {
		t.Errorf("unknown host (-want +got):\n%s", diff)
	}
	if n := newNSInfo(&[7]uint64{}, &host); n != nil {
		t.Errorf("nothing read: %+v", n)
	}
}

// TestCapSetCache: a set already described is shared, not made again; the
// cache stops growing at maxCapCache sets but still describes new ones.
func TestCapSetCache(t *testing.T) {
	cache := make(capCache)
	a, b := capSetOf(1<<10, 40, cache), capSetOf(1<<10, 40, cache)
	if a != b {
		t.Error("the same set described twice")
	}
	for i := range uint64(2 * maxCapCache) {
		if s := capSetOf(i<<1, 40, cache); s.hex != capHex(i<<1) {
			t.Fatalf("%#x: %q", i<<1, s.hex)
		}
	}
	if len(cache) != maxCapCache {
		t.Errorf("cache holds %d sets, want at most %d", len(cache), maxCapCache)
	}
}
