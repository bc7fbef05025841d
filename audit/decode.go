package audit

import (
	"bytes"
	"errors"
	"time"

	"github.com/cnstream/cnstream/schema"
)

// Decoder decodes what a Tally reads of an archived record (kind, time,
// host, stream; all of a loss or accounting record), at the rate a
// verifier needs (a million records a second and more on one core).
//
// The zero Decoder is ready; it is not safe for concurrent use.
//
// A JSON line written by schema.AppendJSON starts with its fields in a
// fixed order: v, id, kind, time, mono_ns, host, stream. The fast path
// reads that prefix as bytes, without allocating (the host is kept from
// the previous record when its bytes are the same), and leaves the rest of
// the line unread: a connector event's audit needs nothing of it. Anything
// else (another order, an escaped string, a loss or accounting record, a
// line without a stream) goes to schema.DecodeJSON, which reads and checks
// all of it. The audit's decoding does not vouch for the bytes: the file's
// signed tree does.
type Decoder struct {
	ev       schema.Event
	stream   schema.Stream
	host     *schema.Host
	hostRaw  []byte
	fallback uint64 // records decoded in full
	full     bool   // ev holds a full decode (more than the fast path sets)
}

// Full returns how many JSON records went to schema.DecodeJSON: loss and
// accounting records, and lines of another layout.
func (d *Decoder) Full() uint64 { return d.fallback }

var errNoFastPath = errors.New("not the fast path's layout")

// JSON returns the event of one JSON line (without its newline). The
// event is valid until the next call.
func (d *Decoder) JSON(rec []byte) (*schema.Event, error) {
	if err := d.fast(rec); err == nil {
		return &d.ev, nil
	}
	d.fallback++
	e, err := schema.DecodeJSON(rec)
	if err != nil {
		return nil, err
	}
	d.ev, d.full = e, true
	return &d.ev, nil
}

// Msgpack returns the event of one msgpack record (schema.DecodeMsgpack).
// The event is valid until the next call.
func (d *Decoder) Msgpack(rec []byte) (*schema.Event, error) {
	e, err := schema.DecodeMsgpack(rec)
	if err != nil {
		return nil, err
	}
	d.ev, d.full = e, true
	return &d.ev, nil
}

// scanner reads the fixed prefix of a JSON line.
type scanner struct {
	b   []byte
	bad bool
}

func (s *scanner) lit(l string) {
	// Compared as strings: no copy of the literal.
	if s.bad || len(s.b) < len(l) || string(s.b[:len(l)]) != l {
		s.bad = true
		return
	}
	s.b = s.b[len(l):]
}

// str reads a string's body up to its closing quote (the opening one is
// part of the literal before it); an escape leaves the fast path.
func (s *scanner) str() []byte {
	if s.bad {
		return nil
	}
	i := bytes.IndexByte(s.b, '"')
	if i < 0 || bytes.IndexByte(s.b[:i], '\\') >= 0 {
		s.bad = true
		return nil
	}
	v := s.b[:i]
	s.b = s.b[i+1:]
	return v
}

// uint reads a decimal without leading zeros that fits in bits; the fast
// path takes up to 19 digits (a uint64 of 20 goes to the full decoder).
func (s *scanner) uint(bits uint) uint64 {
	if s.bad {
		return 0
	}
	var v uint64
	i := 0
	for ; i < len(s.b); i++ {
		c := s.b[i] - '0'
		if c > 9 {
			break
		}
		v = v*10 + uint64(c)
	}
	if i == 0 || i > 19 || (i > 1 && s.b[0] == '0') || (bits < 64 && v>>bits != 0) {
		s.bad = true
		return 0
	}
	s.b = s.b[i:]
	return v
}

func (d *Decoder) fast(rec []byte) error {
	s := scanner{b: rec}
	s.lit(`{"v":`)
	v := s.uint(31)
	s.lit(`,"id":"`)
	s.str()
	s.lit(`,"kind":"`)
	kind := s.str()
	s.lit(`,"time":"`)
	ts := s.str()
	s.lit(`,"mono_ns":`)
	mono := s.uint(64)
	s.lit(`,"host":`)
	if s.bad {
		return errNoFastPath
	}
	k, ok := schema.ParseKind(string(kind))
	if !ok || k.IsLoss() {
		return errNoFastPath
	}
	t, ok := parseUTC(ts)
	if !ok {
		return errNoFastPath
	}
	var host *schema.Host
	if bytes.HasPrefix(s.b, []byte("null")) {
		s.b = s.b[4:]
	} else {
		start := s.b
		s.lit(`{"hostname":"`)
		hn := s.str()
		s.lit(`,"machine_id":"`)
		mid := s.str()
		s.lit(`,"boot_id":"`)
		boot := s.str()
		s.lit(`}`)
		if s.bad {
			return errNoFastPath
		}
		raw := start[:len(start)-len(s.b)]
		if d.host == nil || !bytes.Equal(raw, d.hostRaw) {
			d.host = &schema.Host{Hostname: string(hn), MachineID: string(mid), BootID: string(boot)}
			d.hostRaw = append(d.hostRaw[:0], raw...)
		}
		host = d.host
	}
	s.lit(`,"stream":{"idx":`)
	st := &d.stream
	st.Idx = uint32(s.uint(32))
	s.lit(`,"val":`)
	st.Val = uint32(s.uint(32))
	s.lit(`,"cpu":`)
	st.CPU = uint32(s.uint(32))
	s.lit(`,"sender":`)
	st.Sender = uint32(s.uint(32))
	s.lit(`,"epoch":`)
	st.Epoch = uint32(s.uint(32))
	s.lit(`,"seq":`)
	st.Seq = uint32(s.uint(32))
	s.lit(`,"ack":`)
	st.Ack = uint32(s.uint(32))
	s.lit(`}`)
	if s.bad {
		return errNoFastPath
	}
	if d.full {
		// The last event came from a full decode: clear its members.
		d.ev, d.full = schema.Event{}, false
	}
	d.ev.Version, d.ev.Kind, d.ev.Time, d.ev.MonoNS, d.ev.Host, d.ev.Stream = int(v), k, t, mono, host, st
	return nil
}

// parseUTC reads the time as schema.AppendJSON writes it for a wall
// clock: "2006-01-02T15:04:05Z" with 1 to 9 digits of fraction before the
// Z (trailing zeros dropped). Anything else is not the fast path's.
func parseUTC(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 ||
		month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	} else if len(b) != 20 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // February 30th and the like: time.Parse refuses them
		return time.Time{}, false
	}
	return t, true
}
