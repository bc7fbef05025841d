package main

import (
	"strings"
	"testing"

	"github.com/cnstream/cnstream/schema"
)

// TestRedactConfig: transform.redact maps to the reader's Redactor (on by
// default, off with enabled: false, user rules with or without the
// built-in ones), and a bad rule is an error naming the rule's field and
// the reason, with its line.
func TestRedactConfig(t *testing.T) {
	const sinks = "sinks: [{name: a, type: stdout}]\n"
	cases := []struct {
		name, yaml string
		noRedact   bool
		argv       []string
		want       []string
	}{
		{"default", sinks, false, []string{"app", "--password=x"}, []string{"app", "--password=[redacted]"}},
		{"disabled", "transform:\n  redact:\n    enabled: false\n" + sinks, true, nil, nil},
		{"user rule", "transform:\n  redact:\n    rules:\n      - {match: '--pin=(\\d+)'}\n" + sinks, false,
			[]string{"app", "--pin=1234", "--password=x"}, []string{"app", "--pin=[redacted]", "--password=[redacted]"}},
		{"no defaults", "transform:\n  redact:\n    defaults: false\n    rules:\n      - {match: '^vault$', on: exe}\n" + sinks, false,
			[]string{"vault", "login", "--password=x"}, []string{"vault", "[redacted]", "[redacted]"}},
		{"no defaults, no rules", "transform:\n  redact:\n    defaults: false\n" + sinks, false,
			[]string{"app", "--password=x"}, []string{"app", "--password=x"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := LoadConfig("c.yaml", []byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			tr := readerConfig(cfg, schema.Host{}).Transform
			if tr.NoRedact != c.noRedact || (tr.Redact == nil) != c.noRedact {
				t.Fatalf("NoRedact %v, Redact %v; want NoRedact %v", tr.NoRedact, tr.Redact, c.noRedact)
			}
			if c.argv == nil {
				return
			}
			got := append([]string{}, c.argv...)
			tr.Redact.Redact(got, "")
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("redacted %q to %q, want %q", c.argv, got, c.want)
			}
		})
	}

	errs := []struct{ name, yaml, want string }{
		{"bad regex", "transform:\n  redact:\n    rules:\n      - match: ok\n      - match: 'a(b'\n" + sinks,
			"c.yaml:5: transform.redact.rules[1].match: missing closing ): `a(b`"},
		{"empty match", "transform:\n  redact:\n    rules:\n      - on: exe\n" + sinks,
			"transform.redact.rules[0].match: empty"},
		{"bad on", "transform:\n  redact:\n    rules:\n      - {match: x, on: env}\n" + sinks,
			"transform.redact.rules[0].on: \"env\": want argv or exe"},
		{"bad replace", "transform:\n  redact:\n    rules:\n      - {match: x, replace: some}\n" + sinks,
			"transform.redact.rules[0].replace: \"some\": want value or whole"},
		{"unknown key", "transform:\n  redact:\n    rule: []\n" + sinks, "c.yaml:3: unknown key \"rule\""},
	}
	for _, c := range errs {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadConfig("c.yaml", []byte(c.yaml))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}
