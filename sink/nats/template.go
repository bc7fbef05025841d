package natssink

import (
	"fmt"
	"strings"

	"github.com/cnstream/cnstream/schema"
)

// placeholder is a value a subject template takes from an event.
type placeholder uint8

const (
	literal placeholder = iota
	phHost
	phKind
	phBootID
)

var placeholders = map[string]placeholder{"{host}": phHost, "{kind}": phKind, "{boot_id}": phBootID}

// template is a parsed Config.Subject.
type template struct {
	text  string
	parts []part
}

type part struct {
	ph  placeholder
	lit string // for literal
}

// parseTemplate parses a subject template: tokens separated by '.', none
// empty, no whitespace and no wildcard ('*', '>'), placeholders among
// {host}, {kind} and {boot_id}.
func parseTemplate(s string) (*template, error) {
	t := &template{text: s}
	rest := s
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("%q: '}' without '{'", s)
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%q: '{' without '}'", s)
		}
		name := rest[i : i+j+1]
		ph, ok := placeholders[name]
		if !ok {
			return nil, fmt.Errorf("%q: unknown placeholder %s (want {host}, {kind} or {boot_id})", s, name)
		}
		t.parts = append(t.parts, part{ph: ph})
		rest = rest[i+j+1:]
	}
	for _, p := range t.parts {
		if p.ph == literal && strings.ContainsAny(p.lit, "*> \t\r\n") {
			return nil, fmt.Errorf("%q: wildcards and whitespace are not allowed in a subject", s)
		}
	}
	// Every placeholder renders as a non-empty token part, so checking a
	// sample rendering finds empty tokens.
	sample := string(t.appendSubject(nil, "h", schema.KindFork, "b"))
	for _, tok := range strings.Split(sample, ".") {
		if tok == "" {
			return nil, fmt.Errorf("%q: empty token (a leading, trailing or doubled '.')", s)
		}
	}
	return t, nil
}

// appendSubject appends the subject of an event of host, kind and boot id.
func (t *template) appendSubject(b []byte, host string, kind schema.Kind, bootID string) []byte {
	for _, p := range t.parts {
		switch p.ph {
		case literal:
			b = append(b, p.lit...)
		case phHost:
			b = appendToken(b, host)
		case phKind:
			b = append(b, kind.String()...)
		case phBootID:
			b = appendToken(b, bootID)
		}
	}
	return b
}

// appendToken appends s as (part of) one subject token: '.', whitespace and
// wildcards become '_'; an empty s is "unknown".
func appendToken(b []byte, s string) []byte {
	if s == "" {
		return append(b, "unknown"...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '.', ' ', '\t', '\r', '\n', '\v', '\f', '*', '>':
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// wildcard returns the subjects filter that covers every subject the
// template renders: the literal tokens before the first token with a
// placeholder, then ">" ("cnstream.{host}.{kind}" gives "cnstream.>"); when
// the first token has a placeholder, each such token becomes "*"
// ("{host}.events" gives "*.events"); without placeholders, the subject.
func (t *template) wildcard() string {
	tokens := strings.Split(t.mark(), ".")
	var out []string
	for i, tok := range tokens {
		if strings.ContainsRune(tok, 0) {
			if i > 0 {
				return strings.Join(append(out, ">"), ".")
			}
			break
		}
		out = append(out, tok)
	}
	if len(out) == len(tokens) {
		return t.text
	}
	for i, tok := range tokens {
		if strings.ContainsRune(tok, 0) {
			tokens[i] = "*"
		}
	}
	return strings.Join(tokens, ".")
}

// mark renders the template with NUL for each placeholder.
func (t *template) mark() string {
	var b []byte
	for _, p := range t.parts {
		if p.ph == literal {
			b = append(b, p.lit...)
		} else {
			b = append(b, 0)
		}
	}
	return string(b)
}

// subjectCache maps (host, kind, boot id) to its rendered subject, so that
// a batch allocates each subject once.
type subjectKey struct {
	host, bootID string
	kind         schema.Kind
}

const maxCachedSubjects = 4096

func (s *Sink) subjectOf(e *schema.Event) string {
	var k subjectKey
	if e.Host != nil {
		k.host, k.bootID = e.Host.Hostname, e.Host.BootID
	}
	k.kind = e.Kind
	if subj, ok := s.subjects[k]; ok {
		return subj
	}
	if len(s.subjects) >= maxCachedSubjects {
		clear(s.subjects)
	}
	subj := string(s.cfg.subject.appendSubject(nil, k.host, k.kind, k.bootID))
	s.subjects[k] = subj
	return subj
}
