package natssink

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// pubAck is a JetStream publish acknowledgement, as the server sends it
// to a publish's reply subject: {"stream":"S","seq":N} (with
// "duplicate":true when the stream had stored the message's Nats-Msg-Id
// already, "domain" with a JetStream domain), or
// {"error":{"code":..,"err_code":..,"description":..}}. Other members
// (the server adds some for batches and counters) are ignored.
type pubAck struct {
	Stream    string    `json:"stream"`
	Seq       uint64    `json:"seq"`
	Duplicate bool      `json:"duplicate"`
	Domain    string    `json:"domain"`
	Error     *ackError `json:"error"`
}

type ackError struct {
	Code        int    `json:"code"`
	ErrCode     uint16 `json:"err_code"`
	Description string `json:"description"`
}

// errInvalidAck is wrapped by the error of a reply that is no PubAck.
var errInvalidAck = errors.New("invalid JetStream publish acknowledgement")

// result is what a PubAck says of its message: nil when the stream stored
// it (or had stored it: dup), the server's *jetstream.APIError, or an
// error wrapping errInvalidAck.
func (a *pubAck) result() (dup bool, err error) {
	if a.Error != nil {
		return false, &jetstream.APIError{Code: a.Error.Code, ErrorCode: jetstream.ErrorCode(a.Error.ErrCode), Description: a.Error.Description}
	}
	if a.Stream == "" {
		return false, fmt.Errorf("%w: no stream named", errInvalidAck)
	}
	return a.Duplicate, nil
}

// parsePubAck decodes data into a (every field is set: a is reset
// first). It reads the form the server writes without reflection, and
// hands anything else (escapes, non-ASCII bytes, nulls, nested or
// fractional values, keys that differ from the fields' names only by
// case) to encoding/json, so that it agrees with json.Unmarshal into a
// pubAck on every input: same result, or an error when json.Unmarshal
// fails. It never panics. last is a stream name to reuse rather than
// allocate when the ack names the same stream (the common case).
func parsePubAck(data []byte, a *pubAck, last string) error {
	*a = pubAck{}
	if fastPubAck(data, a, last) {
		return nil
	}
	*a = pubAck{}
	if err := json.Unmarshal(data, a); err != nil {
		return fmt.Errorf("%w: %v", errInvalidAck, err)
	}
	return nil
}

// ackParser reads the fast form; ok false means "not the fast form": the
// caller falls back to encoding/json.
type ackParser struct {
	b []byte
	i int
}

func (p *ackParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// eat consumes c after optional whitespace.
func (p *ackParser) eat(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string with no escape, no control character and no byte
// above 0x7f (those go to encoding/json) and returns its bytes.
func (p *ackParser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// uint reads a non-negative integer in JSON's form (no leading zero, no
// fraction or exponent) no larger than limit.
func (p *ackParser) uint(limit uint64) (uint64, bool) {
	p.ws()
	start := p.i
	var n uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		d := uint64(p.b[p.i] - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
		p.i++
	}
	if p.i == start || (p.b[start] == '0' && p.i-start > 1) {
		return 0, false
	}
	// A fraction or an exponent: not the fast form.
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	return n, true
}

// lit reads true or false.
func (p *ackParser) boolean() (bool, bool) {
	p.ws()
	rest := p.b[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, true
	}
	return false, false
}

// skip reads a value of a member the parser does not keep: a fast-form
// string, a non-negative integer, true or false.
func (p *ackParser) skip() bool {
	p.ws()
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		_, ok := p.str()
		return ok
	case c >= '0' && c <= '9':
		_, ok := p.uint(^uint64(0))
		return ok
	default:
		_, ok := p.boolean()
		return ok
	}
}

// plainKey reports whether an unknown key can be ignored: encoding/json
// matches keys to fields without regard to case, so a key equal to a
// field's name but for case is not the fast form.
func plainKey(k []byte, names ...string) bool {
	for _, n := range names {
		if len(k) != len(n) {
			continue
		}
		same := true
		for i := range k {
			c := k[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != n[i] {
				same = false
				break
			}
		}
		if same {
			return false
		}
	}
	return true
}

// object reads the members of an object, calling member for each key
// (the parser then at its value); member returns false when it cannot.
func (p *ackParser) object(member func(k []byte) bool) bool {
	if !p.eat('{') {
		return false
	}
	if p.eat('}') {
		return true
	}
	for {
		k, ok := p.str()
		if !ok || !p.eat(':') || !member(k) {
			return false
		}
		if p.eat('}') {
			return true
		}
		if !p.eat(',') {
			return false
		}
	}
}

func fastPubAck(data []byte, a *pubAck, last string) bool {
	p := ackParser{b: data}
	ok := p.object(func(k []byte) bool {
		switch string(k) {
		case "stream":
			s, ok := p.str()
			if !ok {
				return false
			}
			if string(s) == last {
				a.Stream = last
			} else {
				a.Stream = string(s)
			}
			return true
		case "seq":
			n, ok := p.uint(^uint64(0))
			a.Seq = n
			return ok
		case "duplicate":
			v, ok := p.boolean()
			a.Duplicate = v
			return ok
		case "domain":
			s, ok := p.str()
			a.Domain = string(s)
			return ok
		case "error":
			if a.Error == nil {
				// encoding/json decodes a repeated member into the
				// struct the first one made.
				a.Error = &ackError{}
			}
			e := a.Error
			return p.object(func(k []byte) bool {
				switch string(k) {
				case "code":
					n, ok := p.uint(1<<31 - 1)
					e.Code = int(n)
					return ok
				case "err_code":
					n, ok := p.uint(1<<16 - 1)
					e.ErrCode = uint16(n)
					return ok
				case "description":
					s, ok := p.str()
					e.Description = string(s)
					return ok
				}
				return plainKey(k, "code", "err_code", "description") && p.skip()
			})
		}
		return plainKey(k, "stream", "seq", "duplicate", "domain", "error") && p.skip()
	})
	p.ws()
	return ok && p.i == len(p.b)
}
