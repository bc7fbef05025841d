package enrich

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cnstream/cnstream/schema"
)

func TestParseStatus(t *testing.T) {
	sleep, err := os.ReadFile("testdata/status-sleep.txt")
	if err != nil {
		t.Fatal(err)
	}
	kthreadd, err := os.ReadFile("testdata/status-kthreadd.txt")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in string
		want     status
	}{
		{"real: sleep (captured on Linux 6.18)", string(sleep), status{
			name: "sleep", haveName: true, tgid: statusField(t, sleep, "Tgid"), haveTgid: true,
			ppid: statusField(t, sleep, "PPid"), havePPid: true, haveUID: true, haveGID: true,
			capEff: 0x000001fffeffffff, haveCapEff: true, haveNNP: true}},
		{"real: kthreadd", string(kthreadd), status{name: "kthreadd", haveName: true, tgid: 2, haveTgid: true,
			havePPid: true, haveUID: true, haveGID: true, kthread: true, capEff: 1<<41 - 1, haveCapEff: true, haveNNP: true}},
		{"caps and no_new_privs", "CapEff:\t0000000000000400\nNoNewPrivs:\t1\n", status{capEff: 1 << 10, haveCapEff: true, nnp: true, haveNNP: true}},
		{"bad caps", "CapEff:\tzz\nNoNewPrivs:\t\n", status{}},
		{"caps beyond 64 bits", "CapEff:\t10000000000000000\n", status{}},
		{"ids", "Uid:\t1000\t0\t0\t0\nGid:\t100\t101\t102\t103\n", status{uid: 1000, euid: 0, haveUID: true, gid: 100, egid: 101, haveGID: true}},
		{"escaped name", "Name:\ta\\nb\\\\c\n", status{name: "a\nb\\c", haveName: true}},
		{"name with tab and spaces", "Name:\tkworker/0:1 x\ty\n", status{name: "kworker/0:1 x\ty", haveName: true}},
		{"name with colon", "Name:\ta:b\n", status{name: "a:b", haveName: true}},
		{"empty name", "Name:\t\n", status{haveName: true}},
		{"bad numbers", "Tgid:\tx\nPPid:\t-1\nUid:\t1\nGid:\t4294967296\t0\n", status{}},
		{"max uid", "Uid:\t4294967295\t4294967295\t0\t0\n", status{uid: 1<<32 - 1, euid: 1<<32 - 1, haveUID: true}},
		{"no newline at end", "PPid:\t7", status{ppid: 7, havePPid: true}},
		{"garbage", "\x00\xff\n:::\n\n", status{}},
		{"empty", "", status{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseStatus([]byte(tt.in))
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(status{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// statusField reads a numeric field of a captured status file the plain
// way, to check parseStatus against.
func statusField(t *testing.T, b []byte, key string) uint32 {
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":\t"); ok {
			n, ok := parseU32([]byte(v))
			if !ok {
				t.Fatalf("%s: %q", key, v)
			}
			return n
		}
	}
	t.Fatalf("no %s line", key)
	return 0
}

func TestUnescapeName(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:      "plain",
		`a\nb`:       "a\nb",
		`a\\b`:       `a\b`,
		`a\\nb`:      `a\nb`,
		`\t\r\v\f`:   "\t\r\v\f",
		`\a\e\"`:     "\a\x1b\"",
		`\101\060`:   "A0",
		`\19`:        `\19`,
		`end\`:       `end\`,
		`\q`:         `\q`,
		`\777`:       "\xff",
		"raw\ttab\\": "raw\ttab\\",
	} {
		if got := unescapeName([]byte(in)); got != want {
			t.Errorf("unescapeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		truncated bool
		want      []string
	}{
		{"args", "/bin/sleep\x0030\x00", false, []string{"/bin/sleep", "30"}},
		{"one", "init\x00", false, []string{"init"}},
		{"empty arg kept", "a\x00\x00b\x00", false, []string{"a", "", "b"}},
		{"empty last arg kept", "rm\x00\x00", false, []string{"rm", ""}},
		{"setproctitle without NUL", "nginx: worker process", false, []string{"nginx: worker process"}},
		{"setproctitle padded", "postgres: writer\x00\x00\x00", false, []string{"postgres: writer", "", ""}},
		{"truncated drops the cut arg", "a\x00bb\x00cc", true, []string{"a", "bb"}},
		{"truncated at an arg boundary", "a\x00bb\x00", true, []string{"a", "bb"}},
		{"truncated inside the first arg", "aaaa", true, nil},
		{"spaces and unicode", "echo\x00héllo wörld\x00", false, []string{"echo", "héllo wörld"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, parseCmdline([]byte(tt.in), tt.truncated), cmpEmpty); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// cmpEmpty treats nil and empty slices alike.
var cmpEmpty = cmp.FilterValues(func(a, b []string) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

func TestProcReaderFake(t *testing.T) {
	const docker = "0::/system.slice/docker-" + id1 + ".scope\n"
	root := fakeRoot(t,
		fakeProc{pid: 100, ppid: 1, name: "sleep", uid: 1000, gid: 100, diffIDs: true, args: []string{"/bin/sleep", "30"},
			exe: "/usr/bin/sleep", cwd: "/home/u", cgroup: docker},
		// a zombie: status and cgroup, empty cmdline, no exe or cwd
		fakeProc{pid: 101, ppid: 100, name: "defunct"},
		// a kernel thread: no cmdline and no exe, but alive
		fakeProc{pid: 102, ppid: 2, name: "kworker/0:1", kthread: true, cwd: "/"},
		// exited between status and cmdline
		fakeProc{pid: 103, ppid: 1, name: "quick", args: []string{"x"}, omit: []string{"cmdline", "cgroup"}},
		// exited between cmdline and cgroup: exe is a dangling link
		fakeProc{pid: 104, ppid: 1, name: "late", args: []string{"y", "z"}, exe: "/gone/binary (deleted)", omit: []string{"cgroup"}},
		// status is garbage
		fakeProc{pid: 105, rawStatus: "\x00\x01\x02", args: []string{"odd"}},
		// pid reused by another thread group
		fakeProc{pid: 106, tgid: 999, ppid: 1, name: "other", args: []string{"other"}},
		// exe read but cmdline empty
		fakeProc{pid: 107, ppid: 1, name: "noargs", exe: "/bin/noargs"},
	)
	tests := []struct {
		name      string
		pid, tgid uint32
		want      procRead
		usable    bool
	}{
		{"complete", 100, 100, procRead{
			haveStatus: true, status: status{name: "sleep", haveName: true, tgid: 100, haveTgid: true, ppid: 1, havePPid: true,
				uid: 1000, euid: 1001, haveUID: true, gid: 100, egid: 101, haveGID: true},
			haveCmdline: true, cmdline: []string{"/bin/sleep", "30"}, haveExe: true, exe: "/usr/bin/sleep", haveCwd: true, cwd: "/home/u",
			haveCgroup: true, cgroup: "/system.slice/docker-" + id1 + ".scope", container: &schema.Container{ID: id1, Runtime: "docker"}}, true},
		{"zombie", 101, 101, procRead{
			haveStatus: true, status: status{name: "defunct", haveName: true, tgid: 101, haveTgid: true, ppid: 100, havePPid: true, haveUID: true, haveGID: true},
			haveCgroup: true, cgroup: "/"}, false},
		{"kernel thread", 102, 102, procRead{
			haveStatus: true, status: status{name: "kworker/0:1", haveName: true, tgid: 102, haveTgid: true, ppid: 2, havePPid: true, haveUID: true, haveGID: true, kthread: true},
			haveCwd: true, cwd: "/", haveCgroup: true, cgroup: "/"}, true},
		{"gone after status", 103, 103, procRead{gone: true,
			haveStatus: true, status: status{name: "quick", haveName: true, tgid: 103, haveTgid: true, ppid: 1, havePPid: true, haveUID: true, haveGID: true}}, false},
		{"gone before cgroup", 104, 104, procRead{gone: true,
			haveStatus: true, status: status{name: "late", haveName: true, tgid: 104, haveTgid: true, ppid: 1, havePPid: true, haveUID: true, haveGID: true},
			haveExe: true, exe: "/gone/binary (deleted)"}, true}, // cmdline is read last
		{"garbage status", 105, 105, procRead{haveStatus: true, haveCmdline: true, cmdline: []string{"odd"}, haveCgroup: true, cgroup: "/"}, true},
		{"pid of another thread group", 106, 106, procRead{gone: true}, false},
		{"any thread group", 106, 0, procRead{
			haveStatus: true, status: status{name: "other", haveName: true, tgid: 999, haveTgid: true, ppid: 1, havePPid: true, haveUID: true, haveGID: true},
			haveCmdline: true, cmdline: []string{"other"}, haveCgroup: true, cgroup: "/"}, true},
		{"exe without cmdline", 107, 107, procRead{
			haveStatus: true, status: status{name: "noargs", haveName: true, tgid: 107, haveTgid: true, ppid: 1, havePPid: true, haveUID: true, haveGID: true},
			haveExe: true, exe: "/bin/noargs", haveCgroup: true, cgroup: "/"}, true},
		{"no such process", 4000, 4000, procRead{gone: true}, false},
	}
	r := &procReader{root: root, maxCmdline: DefaultMaxCmdline}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := r.read(tt.pid, tt.tgid, startCheck{}, nil)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(procRead{}, status{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got.usable() != tt.usable {
				t.Errorf("usable = %v, want %v", got.usable(), tt.usable)
			}
		})
	}
}

func TestProcReaderCmdlineLimit(t *testing.T) {
	long := strings.Repeat("x", 100)
	root := fakeRoot(t, fakeProc{pid: 10, args: []string{"a", long, "b"}})
	for _, tt := range []struct {
		max  int
		want []string
	}{
		{1000, []string{"a", long, "b"}},
		{2 + 101 + 2, []string{"a", long, "b"}}, // exactly the file's size
		{2 + 101 + 1, []string{"a", long}},      // "b" cut
		{50, []string{"a"}},
		{1, nil}, // "a" without its NUL: cut
	} {
		r := &procReader{root: root, maxCmdline: tt.max}
		got := r.read(10, 10, startCheck{}, nil)
		if diff := cmp.Diff(tt.want, got.cmdline, cmpEmpty); diff != "" {
			t.Errorf("max %d (-want +got):\n%s", tt.max, diff)
		}
		if got.haveCmdline != (len(tt.want) > 0) {
			t.Errorf("max %d: haveCmdline = %v", tt.max, got.haveCmdline)
		}
	}
}

func TestProcReaderBigStatus(t *testing.T) {
	// A status larger than the initial buffer: the buffer grows.
	big := "Name:\tbig\n" + strings.Repeat("Pad:\t"+strings.Repeat("0", 100)+"\n", 100) + "PPid:\t42\n"
	root := fakeRoot(t, fakeProc{pid: 10, rawStatus: big, args: []string{"a"}})
	r := &procReader{root: root, maxCmdline: DefaultMaxCmdline}
	got := r.read(10, 10, startCheck{}, nil)
	if got.status.ppid != 42 || got.status.name != "big" {
		t.Errorf("status = %+v", got.status)
	}
}
