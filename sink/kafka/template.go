package kafka

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// field is what a placeholder expands to.
type field uint8

const (
	fieldText field = iota // literal text
	fieldKind
	fieldHost
	fieldMachineID
	fieldBootID
	fieldStream
)

var placeholders = map[string]field{
	"kind":       fieldKind,
	"host":       fieldHost,
	"machine_id": fieldMachineID,
	"boot_id":    fieldBootID,
	"stream":     fieldStream,
}

type segment struct {
	f    field
	text string // for fieldText
}

// template is a parsed Topic or Key template.
type template struct {
	segs  []segment
	topic bool // expansions are made safe for a topic name
	// static is the expansion when the template has no placeholder.
	static string
}

// parseTemplate parses s; for a topic, its literal text must be valid in a
// topic name.
func parseTemplate(s string, topic bool) (template, error) {
	t := template{topic: topic}
	rest := s
	dynamic := false
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			t.segs = append(t.segs, segment{text: rest})
			break
		}
		if rest[i] == '}' {
			return t, fmt.Errorf("%q: '}' without '{'", s)
		}
		if i > 0 {
			t.segs = append(t.segs, segment{text: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return t, fmt.Errorf("%q: '{' without '}'", s)
		}
		name := rest[i+1 : i+j]
		f, ok := placeholders[name]
		if !ok {
			return t, fmt.Errorf("%q: unknown placeholder {%s} (want {kind}, {host}, {machine_id}, {boot_id} or {stream})", s, name)
		}
		t.segs = append(t.segs, segment{f: f})
		dynamic = true
		rest = rest[i+j+1:]
	}
	if topic {
		for _, sg := range t.segs {
			if sg.f != fieldText {
				continue
			}
			for k := 0; k < len(sg.text); k++ {
				if !topicChar(sg.text[k]) {
					return t, fmt.Errorf("%q: %q cannot be in a topic name (only ASCII letters, digits, '.', '_' and '-')", s, sg.text[k])
				}
			}
		}
		if !dynamic && (s == "." || s == "..") {
			return t, fmt.Errorf("%q is not a valid topic name", s)
		}
		if !dynamic && len(s) > maxTopicLen {
			return t, fmt.Errorf("%d characters, more than the %d a topic name may have", len(s), maxTopicLen)
		}
	}
	if !dynamic {
		t.static = s
	}
	return t, nil
}

// appendTo appends t expanded for e to b.
func (t *template) appendTo(b []byte, e *schema.Event) []byte {
	for _, sg := range t.segs {
		var v string
		switch sg.f {
		case fieldText:
			b = append(b, sg.text...)
			continue
		case fieldKind:
			v = e.Kind.String()
		case fieldHost:
			if e.Host != nil {
				v = e.Host.Hostname
			}
		case fieldMachineID:
			if e.Host != nil {
				v = e.Host.MachineID
			}
		case fieldBootID:
			if e.Host != nil {
				v = e.Host.BootID
			}
		case fieldStream:
			b = appendStream(b, e) // digits, '.', '-', 'c', 's', 'r': valid in a topic name
			continue
		}
		if !t.topic {
			b = append(b, v...)
			continue
		}
		for k := 0; k < len(v); k++ {
			c := v[k]
			if !topicChar(c) {
				c = '_'
			}
			b = append(b, c)
		}
	}
	return b
}

func topicChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// appendStream appends the event's sequence stream as its id names it:
// <idx>.<val>-c<cpu> for process events (per CPU), <idx>.<val>-s<sender>
// for other connector messages, "r" for the pipeline's records without a
// stream (dropped, overrun, malformed, forged, corrupt); gap, filtered and
// stream_closed records name their stream and go with its events. A key
// of {host}-{stream} spreads a host's events over partitions with each
// stream's order kept.
func appendStream(b []byte, e *schema.Event) []byte {
	s := e.Stream
	if s == nil {
		return append(b, 'r')
	}
	b = strconv.AppendUint(b, uint64(s.Idx), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(s.Val), 10)
	if s.Idx == schema.ProcID.Idx && s.Val == schema.ProcID.Val && s.Sender == 0 {
		b = append(b, "-c"...)
		return strconv.AppendUint(b, uint64(s.CPU), 10)
	}
	b = append(b, "-s"...)
	return strconv.AppendUint(b, uint64(s.Sender), 10)
}
