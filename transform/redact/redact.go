package redact

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Mark replaces each secret.
const Mark = "[redacted]"

// Rule is a user rule: a regular expression matched against each argv
// element or against the executable. See the package documentation.
type Rule struct {
	// Match is the regular expression (RE2 syntax, unanchored).
	Match string
	// On is what Match is matched against: "argv" (default: each element)
	// or "exe" (the executable's path or base name, or argv[0]'s base
	// name: a match redacts every argument after argv[0]).
	On string
	// Replace says what of a matching element is replaced, for argv rules:
	// "value" (default: the first capture group's text when the regex has
	// one, else the match) or "whole" (the element). Exe rules replace
	// whole arguments; "value" is not allowed with them.
	Replace string
}

// Config says which rules a Redactor applies. Its zero value applies the
// built-in rules only.
type Config struct {
	// NoDefaults leaves out the built-in rules. Default false.
	NoDefaults bool
	// Rules are applied after the built-in rules, in order. Default none.
	Rules []Rule
}

// RuleError reports a rule New rejects: Config.Rules[Index], its field
// Field ("match", "on" or "replace").
type RuleError struct {
	Index int
	Field string
	Err   error
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("redact: rules[%d].%s: %v", e.Index, e.Field, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Redactor applies a Config's rules. See the package documentation.
type Redactor struct {
	defaults bool
	argv     []argvRule
	exe      []*regexp.Regexp
}

type argvRule struct {
	re    *regexp.Regexp
	whole bool
	group bool // the regex has a capture group: its first is the secret
}

// New compiles cfg's rules. A rule that does not compile, or names an
// unknown On or Replace, is a *RuleError.
func New(cfg Config) (*Redactor, error) {
	r := &Redactor{defaults: !cfg.NoDefaults}
	for i, u := range cfg.Rules {
		if u.Match == "" {
			return nil, &RuleError{i, "match", errors.New("empty")}
		}
		re, err := regexp.Compile(u.Match)
		if err != nil {
			// regexp's errors start with "error parsing regexp: ".
			msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
			return nil, &RuleError{i, "match", errors.New(msg)}
		}
		switch u.On {
		case "", "argv":
		case "exe":
			if u.Replace != "" && u.Replace != "whole" {
				return nil, &RuleError{i, "replace", fmt.Errorf("%q: an exe rule replaces whole arguments (omit replace, or whole)", u.Replace)}
			}
			r.exe = append(r.exe, re)
			continue
		default:
			return nil, &RuleError{i, "on", fmt.Errorf("%q: want argv or exe", u.On)}
		}
		switch u.Replace {
		case "", "value", "whole":
		default:
			return nil, &RuleError{i, "replace", fmt.Errorf("%q: want value or whole", u.Replace)}
		}
		r.argv = append(r.argv, argvRule{re: re, whole: u.Replace == "whole", group: re.NumSubexp() > 0})
	}
	return r, nil
}

// Default returns a Redactor with the built-in rules only.
func Default() *Redactor { return &Redactor{defaults: true} }

// Redact replaces the secrets in argv's elements, in place, and returns
// how many elements it changed. exe is the executable's path ("" when not
// known); it selects the -p rule and exe rules. A nil Redactor redacts
// nothing.
func (r *Redactor) Redact(argv []string, exe string) int {
	if r == nil || len(argv) == 0 {
		return 0
	}
	n := 0
	if len(r.exe) > 0 && r.exeMatches(argv[0], exe) {
		for i := 1; i < len(argv); i++ {
			if argv[i] != "" && argv[i] != Mark {
				argv[i] = Mark
				n++
			}
		}
		argv = argv[:1]
	}
	tool := r.defaults && (passwordTool(base(argv[0])) || passwordTool(base(exe)))
	script := false // the element follows a shell's -c
	for i := 0; i < len(argv); i++ {
		orig := argv[i]
		s := orig
		if r.defaults {
			s = builtin(s, tool, script)
		}
		for j := range r.argv {
			s = r.argv[j].apply(s)
		}
		if s != orig {
			argv[i] = s
			n++
		}
		script = shellC(orig)
		// (For the database tools, -pass is -p with password "ass".)
		if r.defaults && i+1 < len(argv) && secretFlag(orig) && !(tool && orig[1] == 'p') {
			if v := argv[i+1]; v != "" && v[0] != '-' {
				if v != Mark {
					argv[i+1] = Mark
					n++
				}
				i++
				script = false
			}
		}
	}
	return n
}

func (r *Redactor) exeMatches(argv0, exe string) bool {
	for _, re := range r.exe {
		if exe != "" && (re.MatchString(exe) || re.MatchString(base(exe))) || re.MatchString(base(argv0)) {
			return true
		}
	}
	return false
}

// apply replaces what rule u redacts in s.
func (u *argvRule) apply(s string) string {
	if s == Mark {
		return s
	}
	if u.whole {
		if u.re.MatchString(s) {
			return Mark
		}
		return s
	}
	locs := u.re.FindAllStringSubmatchIndex(s, -1)
	if locs == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, loc := range locs {
		st, en := loc[0], loc[1]
		if u.group {
			st, en = loc[2], loc[3]
		}
		if st < 0 || st == en || st < last || s[st:en] == Mark {
			continue
		}
		if b.Len() == 0 && last == 0 {
			b.Grow(len(s) + len(Mark))
		}
		b.WriteString(s[last:st])
		b.WriteString(Mark)
		last = en
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// base is the last element of a slash-separated path.
func base(p string) string {
	return p[strings.LastIndexByte(p, '/')+1:]
}

// passwordTool reports the programs whose -pX gives a password.
func passwordTool(name string) bool {
	switch name {
	case "mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mysqlshow", "mysqlpump",
		"mariadb", "mariadb-dump", "mariadb-admin":
		return true
	}
	return false
}

// shellC reports a shell's -c option (-c, -ec, -lc, -xec ...): the next
// element is a script.
func shellC(s string) bool {
	if len(s) < 2 || len(s) > 6 || s[0] != '-' {
		return false
	}
	c := false
	for i := 1; i < len(s); i++ {
		switch ch := s[i]; {
		case ch == 'c':
			c = true
		case 'a' <= ch && ch <= 'z':
		default:
			return false
		}
	}
	return c
}

// candidates are the bytes without which the built-in rules find nothing
// (besides a leading '-', checked apart).
var candidates = [256]bool{'=': true, ':': true, '@': true}

func builtin(s string, tool, script bool) string {
	if s == "" {
		return s
	}
	cand := s[0] == '-'
	if !cand {
		for i := 0; i < len(s); i++ {
			if candidates[s[i]] {
				cand = true
				break
			}
		}
		if !cand {
			return s
		}
	}
	if tool && len(s) > 2 && s[0] == '-' && s[1] == 'p' && s[2:] != Mark {
		s = "-p" + Mark
	}
	s = assignments(s, script)
	s = urls(s)
	return authorization(s)
}

// splice returns s with s[st:en] replaced by Mark.
func splice(s string, st, en int) string {
	return s[:st] + Mark + s[en:]
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// foldIs reports whether name equals want (upper case, '_' for '-'),
// ignoring case and taking '-' for '_'.
func foldIs(name, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' {
			c = '_'
		} else if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

var (
	secretNames    = []string{"PASSWORD", "PASSWD", "PASS", "TOKEN", "SECRET", "API_KEY", "APIKEY"}
	secretSuffixes = []string{"PASSWORD", "PASSWD", "TOKEN", "SECRET", "API_KEY", "APIKEY", "ACCESS_KEY"}
)

// secretName reports whether an option or variable name (without leading
// dashes) names a secret.
func secretName(name string) bool {
	for _, w := range secretNames {
		if foldIs(name, w) {
			return true
		}
	}
	for _, w := range secretSuffixes {
		if k := len(name) - len(w); k > 0 && (name[k-1] == '_' || name[k-1] == '-') && foldIs(name[k:], w) {
			return true
		}
	}
	return false
}

// secretFlag reports an option that takes a secret as the next element:
// -NAME or --NAME, NAME a secret name other than no-...
func secretFlag(s string) bool {
	if len(s) < 2 || s[0] != '-' {
		return false
	}
	name := s[1:]
	if name[0] == '-' {
		name = name[1:]
	}
	if name == "" || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return false
		}
	}
	if len(name) > 3 && foldIs(name[:3], "NO_") {
		return false
	}
	return secretName(name)
}

// assignments redacts the values of NAME=VALUE where NAME names a secret.
func assignments(s string, script bool) string {
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '=')
		if j < 0 {
			break
		}
		eq := i + j
		i = eq + 1
		st := eq
		for st > 0 && nameChar(s[st-1]) {
			st--
		}
		name := strings.TrimLeft(s[st:eq], "-")
		if name == "" || !secretName(name) {
			continue
		}
		vs, ve := eq+1, len(s)
		if st != 0 || script {
			vs, ve = valueSpan(s, vs)
		}
		if ve > vs && s[vs:ve] != Mark {
			s = splice(s, vs, ve)
			ve = vs + len(Mark)
		}
		i = ve
	}
	return s
}

// valueSpan is where a value that starts at vs within a longer string
// ends: at its closing quote when it starts with one, else at a blank or
// shell or list delimiter.
func valueSpan(s string, vs int) (int, int) {
	if vs < len(s) && (s[vs] == '"' || s[vs] == '\'') {
		q := s[vs]
		vs++
		if e := strings.IndexByte(s[vs:], q); e >= 0 {
			return vs, vs + e
		}
		return vs, len(s)
	}
	for e := vs; e < len(s); e++ {
		switch s[e] {
		case ' ', '\t', '\n', '\r', '\v', '\f', ';', '&', '|', ',', ')', '`', '"', '\'':
			return vs, e
		}
	}
	return vs, len(s)
}

// urls redacts the password of scheme://user:password@host.
func urls(s string) string {
	for i := 0; i < len(s); {
		j := strings.Index(s[i:], "://")
		if j < 0 {
			break
		}
		ui := i + j + 3
		i = ui
		end := ui
		for end < len(s) && !blankOrQuote(s[end]) {
			end++
		}
		tok := s[ui:end]
		// The userinfo ends at the last '@' before the host's end (the
		// first '/', '?' or '#' after the first '@').
		first := strings.IndexByte(tok, '@')
		if first < 0 {
			continue
		}
		hostEnd := len(tok)
		if k := strings.IndexAny(tok[first:], "/?#"); k >= 0 {
			hostEnd = first + k
		}
		at := strings.LastIndexByte(tok[:hostEnd], '@')
		if slash := strings.IndexAny(tok[:at], "/?#"); slash >= 0 {
			// A password holding '/', unless that '/' ends a host:port
			// (an '@' in the path).
			colon := strings.IndexByte(tok[:slash], ':')
			if colon < 0 || allDigits(tok[colon+1:slash]) {
				continue
			}
		}
		colon := strings.IndexByte(tok[:at], ':')
		if colon < 0 {
			continue
		}
		if strings.ContainsAny(tok[:colon], "/?#") {
			continue
		}
		vs, ve := ui+colon+1, ui+at
		if ve > vs && s[vs:ve] != Mark {
			s = splice(s, vs, ve)
			ve = vs + len(Mark)
		}
		i = ve
	}
	return s
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func blankOrQuote(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f', '"', '\'', '`':
		return true
	}
	return false
}

// hspace reports blanks other than a newline.
func hspace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

const authName = "AUTHORIZATION"

// authorization redacts the credentials of Authorization: headers.
func authorization(s string) string {
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], ':')
		if j < 0 {
			break
		}
		colon := i + j
		i = colon + 1
		if colon < len(authName) || !foldIs(s[colon-len(authName):colon], authName) {
			continue
		}
		p := colon + 1
		for p < len(s) && hspace(s[p]) {
			p++
		}
		// The scheme word, then the credentials; a lone word is the
		// credential itself.
		w := p
		for w < len(s) && !hspace(s[w]) && s[w] != '\n' && s[w] != '"' && s[w] != '\'' {
			w++
		}
		vs := w
		for vs < len(s) && hspace(s[vs]) {
			vs++
		}
		if vs == len(s) || s[vs] == '"' || s[vs] == '\'' || s[vs] == '\n' {
			vs = p
		}
		ve := vs
		for ve < len(s) && s[ve] != '"' && s[ve] != '\'' && s[ve] != '\n' {
			ve++
		}
		if ve > vs && s[vs:ve] != Mark {
			s = splice(s, vs, ve)
			ve = vs + len(Mark)
		}
		i = ve
	}
	return s
}
