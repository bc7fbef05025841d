package schema

import (
	"encoding/base64"
	"math/bits"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e as one JSON object, without a trailing newline, and
// returns the extended buffer. It does not allocate beyond growing b.
//
// The output is byte for byte what encoding/json's Marshal writes for e after
// e.ID is set to e.EventID(), e.Time to e.Time.UTC() and a process's
// StartTime to its UTC(): the field names and order of the json tags,
// omitempty and omitzero as encoding/json applies them, "time" and
// "start_time" in RFC 3339 with nanoseconds (trailing zeros dropped) in UTC, []byte in
// standard base64, and strings escaped as encoding/json escapes them (", \
// and control characters; <, > and & as \u003c, \u003e and \u0026; U+2028
// and U+2029; each byte of invalid UTF-8 as \ufffd). Decoding it with
// encoding/json (or DecodeJSON) gives back e with its id and its times in
// UTC, except for strings holding invalid UTF-8 and for empty, non-nil
// Cmdline and Ancestors, which are omitted and come back nil.
//
// A time (or start time) whose year is outside 0000..9999 has no RFC 3339
// form; encoding/json refuses it, AppendJSON writes it as time.Time.AppendFormat with
// time.RFC3339Nano does (a wall clock never gives one).
func AppendJSON(b []byte, e *Event) []byte {
	b = append(b, `{"v":`...)
	b = appendDecimalInt(b, int64(e.Version))
	b = append(b, `,"id":`...)
	if e.ID != "" {
		b = appendJSONString(b, e.ID)
	} else {
		b = appendJSONEventID(b, e)
	}
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, e.Kind.String())
	b = append(b, `,"time":"`...)
	b = appendRFC3339(b, e.Time)
	b = appendJSONUint(b, `","mono_ns":`, e.MonoNS)
	b = append(b, `,"host":`...)
	if h := e.Host; h == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"hostname":`...)
		b = appendJSONString(b, h.Hostname)
		b = append(b, `,"machine_id":`...)
		b = appendJSONString(b, h.MachineID)
		b = append(b, `,"boot_id":`...)
		b = appendJSONString(b, h.BootID)
		b = append(b, '}')
	}
	if s := e.Stream; s != nil {
		b = appendJSONUint(b, `,"stream":{"idx":`, s.Idx)
		b = appendJSONUint(b, `,"val":`, s.Val)
		b = appendJSONUint(b, `,"cpu":`, s.CPU)
		b = appendJSONUint(b, `,"sender":`, s.Sender)
		b = appendJSONUint(b, `,"epoch":`, s.Epoch)
		b = appendJSONUint(b, `,"seq":`, s.Seq)
		b = appendJSONUint(b, `,"ack":`, s.Ack)
		b = append(b, '}')
	}
	if r := e.Record; r != nil {
		b = append(b, `,"record":{"run":`...)
		b = appendJSONString(b, r.Run)
		b = appendJSONUint(b, `,"seq":`, r.Seq)
		b = append(b, '}')
	}
	if f := e.Fork; f != nil {
		b = appendJSONUint(b, `,"fork":{"parent_pid":`, f.ParentPID)
		b = appendJSONUint(b, `,"parent_tgid":`, f.ParentTGID)
		b = appendJSONUint(b, `,"child_pid":`, f.ChildPID)
		b = appendJSONUint(b, `,"child_tgid":`, f.ChildTGID)
		b = append(b, '}')
	}
	if x := e.Exec; x != nil {
		b = appendJSONUint(b, `,"exec":{"pid":`, x.PID)
		b = appendJSONUint(b, `,"tgid":`, x.TGID)
		b = append(b, '}')
	}
	if x := e.Exit; x != nil {
		b = appendJSONUint(b, `,"exit":{"pid":`, x.PID)
		b = appendJSONUint(b, `,"tgid":`, x.TGID)
		b = appendJSONUint(b, `,"parent_pid":`, x.ParentPID)
		b = appendJSONUint(b, `,"parent_tgid":`, x.ParentTGID)
		b = appendJSONUint(b, `,"exit_code":`, x.ExitCode)
		if x.ExitStatus != nil {
			b = appendJSONInt(b, `,"exit_status":`, *x.ExitStatus)
		}
		if x.Signal != nil {
			b = appendJSONInt(b, `,"signal":`, *x.Signal)
		}
		b = append(b, `,"core_dumped":`...)
		b = strconv.AppendBool(b, x.CoreDumped)
		b = appendJSONInt(b, `,"exit_signal":`, x.ExitSignal)
		b = append(b, '}')
	}
	if x := e.UID; x != nil {
		b = appendJSONIDEvent(b, `,"uid":{"pid":`, x)
	}
	if x := e.GID; x != nil {
		b = appendJSONIDEvent(b, `,"gid":{"pid":`, x)
	}
	if x := e.SID; x != nil {
		b = appendJSONUint(b, `,"sid":{"pid":`, x.PID)
		b = appendJSONUint(b, `,"tgid":`, x.TGID)
		b = append(b, '}')
	}
	if x := e.Ptrace; x != nil {
		b = appendJSONUint(b, `,"ptrace":{"pid":`, x.PID)
		b = appendJSONUint(b, `,"tgid":`, x.TGID)
		b = appendJSONUint(b, `,"tracer_pid":`, x.TracerPID)
		b = appendJSONUint(b, `,"tracer_tgid":`, x.TracerTGID)
		b = append(b, '}')
	}
	if x := e.Comm; x != nil {
		b = appendJSONUint(b, `,"comm":{"pid":`, x.PID)
		b = appendJSONUint(b, `,"tgid":`, x.TGID)
		b = append(b, `,"comm":`...)
		b = appendJSONString(b, x.Comm)
		b = append(b, '}')
	}
	if x := e.Coredump; x != nil {
		b = appendJSONUint(b, `,"coredump":{"pid":`, x.PID)
		b = appendJSONUint(b, `,"tgid":`, x.TGID)
		b = appendJSONUint(b, `,"parent_pid":`, x.ParentPID)
		b = appendJSONUint(b, `,"parent_tgid":`, x.ParentTGID)
		b = append(b, '}')
	}
	if x := e.Ack; x != nil {
		b = appendJSONUint(b, `,"ack":{"err":`, x.Err)
		b = append(b, '}')
	}
	if x := e.Raw; x != nil {
		b = appendJSONUint(b, `,"raw":{"group":`, x.Group)
		b = append(b, `,"payload":`...)
		b = appendJSONBytes(b, x.Payload)
		b = append(b, '}')
	}
	if x := e.Gap; x != nil {
		b = appendJSONUint(b, `,"gap":{"expected":`, x.Expected)
		b = appendJSONUint(b, `,"got":`, x.Got)
		b = appendJSONUint(b, `,"missing":`, x.Missing)
		b = appendJSONOptString(b, `,"reason":`, x.Reason)
		b = append(b, '}')
	}
	if x := e.Overrun; x != nil {
		b = appendJSONUint(b, `,"overrun":{"kernel_drops":`, x.KernelDrops)
		b = appendJSONUint(b, `,"enobufs":`, x.ENOBUFS)
		b = append(b, '}')
	}
	if x := e.Malformed; x != nil {
		b = appendJSONUint(b, `,"malformed":{"sender":`, x.Sender)
		b = append(b, `,"error":`...)
		b = appendJSONString(b, x.Error)
		b = append(b, `,"data":`...)
		b = appendJSONBytes(b, x.Data)
		b = append(b, '}')
	}
	if x := e.Forged; x != nil {
		b = appendJSONUint(b, `,"forged":{"count":`, x.Count)
		b = append(b, '}')
	}
	if x := e.Dropped; x != nil {
		b = appendJSONUint(b, `,"dropped":{"count":`, x.Count)
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, x.Reason)
		if x.Sink != "" {
			b = append(b, `,"sink":`...)
			b = appendJSONString(b, x.Sink)
		}
		b = append(b, '}')
	}
	if x := e.Filtered; x != nil {
		b = appendJSONUint(b, `,"filtered":{"count":`, x.Count)
		b = appendJSONUint(b, `,"first":`, x.First)
		b = appendJSONUint(b, `,"last":`, x.Last)
		if len(x.Kinds) > 0 {
			b = append(b, `,"kinds":{`...)
			var buf [24]string
			for i, k := range sortedKeys(buf[:0], x.Kinds) {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, ':')
				b = appendDecimal(b, x.Kinds[k])
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	if x := e.Closed; x != nil {
		b = append(b, `,"stream_closed":{"reason":`...)
		b = appendJSONString(b, x.Reason)
		b = appendJSONUint(b, `,"first":`, x.First)
		b = appendJSONUint(b, `,"last":`, x.Last)
		b = append(b, '}')
	}
	if x := e.Corrupt; x != nil {
		b = append(b, `,"corrupt":{"file":`...)
		b = appendJSONString(b, x.File)
		b = appendJSONInt(b, `,"offset":`, x.Offset)
		b = appendJSONInt(b, `,"bytes":`, x.Bytes)
		b = append(b, `,"reason":`...)
		b = appendJSONString(b, x.Reason)
		b = append(b, '}')
	}
	if p := e.Process; p != nil {
		b = appendJSONProcess(b, p)
	}
	return append(b, '}')
}

// sortedKeys appends the keys of m to buf in the order encoding/json writes
// them (sorted by their bytes).
func sortedKeys(buf []string, m map[string]uint64) []string {
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}

func appendJSONIDEvent(b []byte, prefix string, x *IDEvent) []byte {
	b = appendJSONUint(b, prefix, x.PID)
	b = appendJSONUint(b, `,"tgid":`, x.TGID)
	b = appendJSONUint(b, `,"real":`, x.Real)
	b = appendJSONUint(b, `,"effective":`, x.Effective)
	return append(b, '}')
}

func appendJSONProcess(b []byte, p *Process) []byte {
	b = appendJSONUint(b, `,"process":{"pid":`, p.PID)
	b = appendJSONUint(b, `,"tgid":`, p.TGID)
	if p.PPID != 0 {
		b = appendJSONUint(b, `,"ppid":`, p.PPID)
	}
	b = append(b, `,"source":`...)
	b = appendJSONString(b, p.Source)
	b = appendJSONOptString(b, `,"exec_id":`, p.ExecID)
	b = appendJSONOptString(b, `,"parent_exec_id":`, p.ParentExecID)
	b = appendJSONOptString(b, `,"prev_exec_id":`, p.PrevExecID)
	if !p.StartTime.IsZero() { // omitzero
		b = append(b, `,"start_time":"`...)
		b = appendRFC3339(b, p.StartTime)
		b = append(b, '"')
	}
	if p.StartBootNS != 0 {
		b = appendJSONUint(b, `,"start_boot_ns":`, p.StartBootNS)
	}
	b = appendJSONOptString(b, `,"comm":`, p.Comm)
	b = appendJSONOptString(b, `,"exe":`, p.Exe)
	if len(p.Cmdline) > 0 {
		b = append(b, `,"cmdline":[`...)
		for i, a := range p.Cmdline {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, a)
		}
		b = append(b, ']')
	}
	if p.Redacted != 0 {
		b = appendJSONUint(b, `,"redacted":`, p.Redacted)
	}
	b = appendJSONOptString(b, `,"cwd":`, p.Cwd)
	if p.UID != nil {
		b = appendJSONUint(b, `,"uid":`, *p.UID)
	}
	if p.EUID != nil {
		b = appendJSONUint(b, `,"euid":`, *p.EUID)
	}
	if p.GID != nil {
		b = appendJSONUint(b, `,"gid":`, *p.GID)
	}
	if p.EGID != nil {
		b = appendJSONUint(b, `,"egid":`, *p.EGID)
	}
	b = appendJSONOptString(b, `,"user":`, p.User)
	b = appendJSONOptString(b, `,"group":`, p.Group)
	b = appendJSONOptString(b, `,"cgroup":`, p.Cgroup)
	if c := p.Container; c != nil {
		b = append(b, `,"container":{"id":`...)
		b = appendJSONString(b, c.ID)
		b = append(b, `,"runtime":`...)
		b = appendJSONString(b, c.Runtime)
		b = appendJSONOptString(b, `,"pod_uid":`, c.PodUID)
		b = append(b, '}')
	}
	if l := p.Login; l != nil {
		b = append(b, `,"login":{`...)
		k := `"auid":`
		if l.AUID != nil {
			b = appendJSONUint(b, k, *l.AUID)
			k = `,"session_id":`
		} else {
			k = `"session_id":`
		}
		if l.SessionID != nil {
			b = appendJSONUint(b, k, *l.SessionID)
		}
		b = append(b, '}')
	}
	b = appendJSONOptString(b, `,"cap_eff_hex":`, p.CapEffHex)
	if len(p.CapEff) > 0 {
		b = appendJSONStrings(b, `,"cap_eff":[`, p.CapEff)
	}
	if p.CapFull {
		b = append(b, `,"cap_full":true`...)
	}
	if p.NoNewPrivs != nil {
		b = append(b, `,"no_new_privs":`...)
		b = strconv.AppendBool(b, *p.NoNewPrivs)
	}
	if n := p.NS; n != nil {
		b = append(b, `,"ns":{`...)
		first := true
		for i, v := range n.Inodes() {
			if v == 0 {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '"')
			b = append(b, NamespaceNames[i]...)
			b = appendJSONUint(b, `":`, v)
		}
		if len(n.Differs) > 0 {
			k := `,"differs":[`
			if first {
				k = `"differs":[`
			}
			b = appendJSONStrings(b, k, n.Differs)
		}
		b = append(b, '}')
	}
	if len(p.Ancestors) > 0 {
		b = append(b, `,"ancestors":[`...)
		for i := range p.Ancestors {
			a := &p.Ancestors[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONUint(b, `{"pid":`, a.PID)
			b = appendJSONOptString(b, `,"exec_id":`, a.ExecID)
			b = appendJSONOptString(b, `,"comm":`, a.Comm)
			b = appendJSONOptString(b, `,"exe":`, a.Exe)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendJSONUint appends key (the literal text before the value) and v.
func appendJSONUint[T uint32 | uint64](b []byte, key string, v T) []byte {
	b = append(b, key...)
	return appendDecimal(b, uint64(v))
}

func appendJSONInt[T int | int32 | int64](b []byte, key string, v T) []byte {
	b = append(b, key...)
	return appendDecimalInt(b, int64(v))
}

// appendJSONOptString appends key and s unless s is empty (omitempty).
func appendJSONOptString(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, key...)
	return appendJSONString(b, s)
}

// appendJSONBytes appends v as encoding/json does: null for nil, else a
// string of its standard base64 encoding.
func appendJSONBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendJSONEventID appends the derived id of e as a JSON string. The id is
// built in place after the opening quote; in the rare case that it needs
// escaping (a boot id or run holding quotes, control bytes, <>& or non-ASCII
// bytes), its escaped form is written after it and moved down over it.
func appendJSONEventID(b []byte, e *Event) []byte {
	start := len(b)
	b = append(b, '"')
	b = AppendEventID(b, e)
	// Only the boot id and the run can need escaping: the rest is digits,
	// dots, slashes and letters.
	if (e.Host == nil || jsonSafe(e.Host.BootID)) && (e.Record == nil || jsonSafe(e.Record.Run)) {
		return append(b, '"')
	}
	end := len(b)
	b = appendJSONString(b, b[start+1:end])
	n := copy(b[start:], b[end:])
	return b[:start+n]
}

// jsonSafe reports whether s is written unchanged inside a JSON string.
func jsonSafe(s string) bool {
	return jsonSafePrefix(s, 0) == len(s)
}

// jsonSafePrefix returns the index of the first byte of s from i on that
// is not in jsonSafeSet, or len(s). It tests eight bytes at a time.
func jsonSafePrefix[S string | []byte](s S, i int) int {
	for ; i+8 <= len(s); i += 8 {
		if jsonUnsafe8(load64(s, i)) {
			break
		}
	}
	for ; i < len(s); i++ {
		if !jsonSafeSet[s[i]] {
			return i
		}
	}
	return i
}

// load64 returns the 8 bytes of s from i on, little endian.
func load64[S string | []byte](s S, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// jsonUnsafe8 reports whether any of the 8 bytes packed in x is outside
// jsonSafeSet: below 0x20, from 0x80 on, or one of " \ < > &. It uses the
// word tricks of "Bit Twiddling Hacks": (v-lsb)&^v&msb is non-zero exactly
// when some byte of v is zero, (x-n*lsb)&^x&msb exactly when some byte of x
// is below n (n <= 0x80).
func jsonUnsafe8(x uint64) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	lg := (x | 0x02*lsb) ^ ('>' * lsb) // a zero byte where x has < (0x3c) or > (0x3e)
	qa := (x | 0x04*lsb) ^ ('&' * lsb) // a zero byte where x has " (0x22) or & (0x26)
	bs := x ^ ('\\' * lsb)             // a zero byte where x has \
	ctl := (x - 0x20*lsb) &^ x
	return (ctl|x|(lg-lsb)&^lg|(qa-lsb)&^qa|(bs-lsb)&^bs)&msb != 0
}

// appendJSONString appends s as a JSON string, escaped exactly as
// encoding/json escapes strings (with HTML escaping, its default).
func appendJSONString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = jsonSafePrefix(s, i); i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other control characters, <, > and &
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// Convert at most a rune's bytes, so that a []byte converts on the
		// stack (as encoding/json does).
		r, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// jsonSafeSet holds the bytes written unescaped inside a JSON string: ASCII
// from the space on, except ", \, <, > and &. Bytes from 0x80 on are false
// here and checked as UTF-8.
var jsonSafeSet = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// appendDecimal appends v in decimal, as strconv.AppendUint(b, v, 10) does,
// writing the digits in place.
func appendDecimal(b []byte, v uint64) []byte {
	if v < 100 {
		if v < 10 {
			return append(b, byte('0'+v))
		}
		return append(b, twoDigits[2*v], twoDigits[2*v+1])
	}
	n := decimalLen(v)
	if cap(b)-len(b) < n {
		b = slices.Grow(b, n)
	}
	b = b[:len(b)+n]
	d := b[len(b)-n:]
	i := n
	for v >= 100 {
		q := v / 100
		r := (v - q*100) * 2
		v = q
		i -= 2
		d[i], d[i+1] = twoDigits[r], twoDigits[r+1]
	}
	if v >= 10 {
		d[0], d[1] = twoDigits[2*v], twoDigits[2*v+1]
	} else {
		d[0] = byte('0' + v)
	}
	return b
}

func appendDecimalInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendDecimal(append(b, '-'), -uint64(v))
	}
	return appendDecimal(b, uint64(v))
}

// decimalLen returns the number of decimal digits of v.
func decimalLen(v uint64) int {
	n := (bits.Len64(v) * 1233) >> 12 // log10(2) ~ 1233/4096
	if n < len(pow10) && v >= pow10[n] {
		n++
	}
	if n == 0 {
		return 1
	}
	return n
}

var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

const twoDigits = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" +
	"30313233343536373839" + "40414243444546474849" + "50515253545556575859" +
	"60616263646566676869" + "70717273747576777879" + "80818283848586878889" +
	"90919293949596979899"

// appendRFC3339 appends t in UTC as time.Time.MarshalJSON writes it (without
// the quotes): RFC 3339 with the nanoseconds' trailing zeros dropped, "Z".
// Years outside 0000..9999 are written by time.Time.AppendFormat.
func appendRFC3339(b []byte, t time.Time) []byte {
	const minSec, maxSec = -62167219200, 253402300799 // 0000-01-01T00:00:00Z, 9999-12-31T23:59:59Z
	sec := t.Unix()
	if sec < minSec || sec > maxSec {
		return t.UTC().AppendFormat(b, time.RFC3339Nano)
	}
	u := uint64(sec - minSec)
	days, sod := uint32(u/86400), uint32(u%86400) // since 0000-01-01; second of the day

	// The civil date by H. Hinnant's algorithm, counting days from
	// -0400-03-01 (60 days before 0000-01-01, less one 400-year era) so
	// that all is unsigned.
	const eraDays = 146097
	z := days + eraDays - 60
	era := z / eraDays
	doe := z - era*eraDays                                 // day of era, 0..146096
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of era, 0..399
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of the year from March 1, 0..365
	mp := (5*doy + 2) / 153                                // month from March, 0..11
	d := doy - (153*mp+2)/5 + 1
	y, m := yoe+era*400-400, mp+3
	if mp >= 10 {
		y, m = y+1, mp-9
	}

	yh, yl := 2*(y/100), 2*(y%100)
	h, mi, s := 2*(sod/3600), 2*(sod/60%60), 2*(sod%60)
	b = append(b, twoDigits[yh], twoDigits[yh+1], twoDigits[yl], twoDigits[yl+1], '-',
		twoDigits[2*m], twoDigits[2*m+1], '-', twoDigits[2*d], twoDigits[2*d+1], 'T',
		twoDigits[h], twoDigits[h+1], ':', twoDigits[mi], twoDigits[mi+1], ':', twoDigits[s], twoDigits[s+1])
	if ns := uint32(t.Nanosecond()); ns != 0 {
		hi, lo := ns/1e8, ns%1e8 // 1 and 8 digits
		p1, p2, p3, p4 := 2*(lo/1e6), 2*(lo/1e4%100), 2*(lo/100%100), 2*(lo%100)
		b = append(b, '.', byte('0'+hi), twoDigits[p1], twoDigits[p1+1], twoDigits[p2], twoDigits[p2+1],
			twoDigits[p3], twoDigits[p3+1], twoDigits[p4], twoDigits[p4+1])
		for b[len(b)-1] == '0' { // drop trailing zeros; ns != 0 leaves a digit
			b = b[:len(b)-1]
		}
	}
	return append(b, 'Z')
}

// appendJSONStrings appends key (ending in '[') and the strings of v, then
// the closing ']'.
func appendJSONStrings(b []byte, key string, v []string) []byte {
	b = append(b, key...)
	for i, a := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, a)
	}
	return append(b, ']')
}
