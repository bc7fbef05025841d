package redact

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuiltin(t *testing.T) {
	tests := []struct {
		name string
		exe  string
		in   []string
		want []string
		n    int
	}{
		// --NAME=X for each built-in name, one or two dashes.
		{"password=", "", []string{"sh", "-c", "exit 0", "--password=hunter2"}, []string{"sh", "-c", "exit 0", "--password=[redacted]"}, 1},
		{"passwd=", "", []string{"app", "--passwd=x"}, []string{"app", "--passwd=[redacted]"}, 1},
		{"pass=", "", []string{"app", "--pass=x"}, []string{"app", "--pass=[redacted]"}, 1},
		{"token=", "", []string{"app", "--token=abc.def"}, []string{"app", "--token=[redacted]"}, 1},
		{"secret=", "", []string{"app", "--secret=s3"}, []string{"app", "--secret=[redacted]"}, 1},
		{"api-key=", "", []string{"app", "--api-key=k"}, []string{"app", "--api-key=[redacted]"}, 1},
		{"apikey=", "", []string{"app", "-apikey=k"}, []string{"app", "-apikey=[redacted]"}, 1},
		{"suffixed flag", "", []string{"app", "--db-password=a b,c"}, []string{"app", "--db-password=[redacted]"}, 1},
		{"upper case flag", "", []string{"app", "--PASSWORD=x"}, []string{"app", "--PASSWORD=[redacted]"}, 1},
		{"java property", "", []string{"java", "-Dspring.datasource.password=pw", "-jar", "a.jar"}, []string{"java", "-Dspring.datasource.password=[redacted]", "-jar", "a.jar"}, 1},
		// --NAME X.
		{"password X", "", []string{"app", "--password", "hunter2", "run"}, []string{"app", "--password", "[redacted]", "run"}, 1},
		{"token X", "", []string{"app", "-token", "abc"}, []string{"app", "-token", "[redacted]"}, 1},
		{"api-key X", "", []string{"app", "--api-key", "k", "--apikey", "k2"}, []string{"app", "--api-key", "[redacted]", "--apikey", "[redacted]"}, 2},
		{"secret X then option", "", []string{"app", "--secret", "-v"}, []string{"app", "--secret", "-v"}, 0},
		{"no-password X", "", []string{"psql", "--no-password", "db"}, []string{"psql", "--no-password", "db"}, 0},
		{"flag last", "", []string{"app", "--password"}, []string{"app", "--password"}, 0},
		// -pX for the database tools only.
		{"mysql -p", "", []string{"mysql", "-uroot", "-psecret", "db"}, []string{"mysql", "-uroot", "-p[redacted]", "db"}, 1},
		{"mysqldump path", "", []string{"/usr/bin/mysqldump", "-pS"}, []string{"/usr/bin/mysqldump", "-p[redacted]"}, 1},
		{"mariadb", "", []string{"mariadb", "-px"}, []string{"mariadb", "-p[redacted]"}, 1},
		{"mysqladmin by exe", "/usr/bin/mysqladmin", []string{"admin", "-px"}, []string{"admin", "-p[redacted]"}, 1},
		{"mysql -pass is -p", "", []string{"mysql", "-pass", "db"}, []string{"mysql", "-p[redacted]", "db"}, 1},
		{"mysql -p X prompts", "", []string{"mysql", "-p", "db"}, []string{"mysql", "-p", "db"}, 0},
		{"mysql -P port", "", []string{"mysql", "-P3306"}, []string{"mysql", "-P3306"}, 0},
		// Assignments.
		{"env", "", []string{"env", "PASSWORD=x", "TOKEN=y", "SECRET=z", "cmd"}, []string{"env", "PASSWORD=[redacted]", "TOKEN=[redacted]", "SECRET=[redacted]", "cmd"}, 3},
		{"env suffixes", "", []string{"env", "DB_PASSWORD=x", "GH_TOKEN=y", "CLIENT_SECRET=z", "API_KEY=k", "AWS_SECRET_ACCESS_KEY=a", "cmd"},
			[]string{"env", "DB_PASSWORD=[redacted]", "GH_TOKEN=[redacted]", "CLIENT_SECRET=[redacted]", "API_KEY=[redacted]", "AWS_SECRET_ACCESS_KEY=[redacted]", "cmd"}, 5},
		{"env lower case", "", []string{"env", "db_password=x"}, []string{"env", "db_password=[redacted]"}, 1},
		{"env value with blank", "", []string{"env", "PASSWORD=a b", "cmd"}, []string{"env", "PASSWORD=[redacted]", "cmd"}, 1},
		{"sh -c script", "", []string{"sh", "-c", "PASSWORD=x TOKEN='a b' cmd; echo ok"}, []string{"sh", "-c", "PASSWORD=[redacted] TOKEN='[redacted]' cmd; echo ok"}, 1},
		{"bash -ec script", "", []string{"bash", "-ec", `export GH_TOKEN="t t"; mysql --password=p -e 1`}, []string{"bash", "-ec", `export GH_TOKEN="[redacted]"; mysql --password=[redacted] -e 1`}, 1},
		{"in a query", "", []string{"curl", "https://h/x?a=1&token=abc&b=2"}, []string{"curl", "https://h/x?a=1&token=[redacted]&b=2"}, 1},
		{"mount options", "", []string{"mount", "-o", "username=u,password=p,uid=1000"}, []string{"mount", "-o", "username=u,password=[redacted],uid=1000"}, 1},
		// URLs.
		{"url", "", []string{"git", "clone", "https://bob:pw@example.com/r.git"}, []string{"git", "clone", "https://bob:[redacted]@example.com/r.git"}, 1},
		{"url no user", "", []string{"redis-cli", "-u", "redis://:pw@h:6379/0"}, []string{"redis-cli", "-u", "redis://:[redacted]@h:6379/0"}, 1},
		{"url in flag", "", []string{"app", "--db=postgres://u:p@ss@db/x?sslmode=require"}, []string{"app", "--db=postgres://u:[redacted]@db/x?sslmode=require"}, 1},
		{"url password with slash", "", []string{"app", "redis://:pa/ss@h"}, []string{"app", "redis://:[redacted]@h"}, 1},
		{"two urls in a script", "", []string{"sh", "-c", "f http://a:1x@h; f ftp://b:2y@i"}, []string{"sh", "-c", "f http://a:[redacted]@h; f ftp://b:[redacted]@i"}, 1},
		// Authorization headers.
		{"bearer", "", []string{"curl", "-H", "Authorization: Bearer abc.def", "https://h"}, []string{"curl", "-H", "Authorization: Bearer [redacted]", "https://h"}, 1},
		{"basic", "", []string{"curl", "-H", "authorization:Basic dTpw"}, []string{"curl", "-H", "authorization:Basic [redacted]"}, 1},
		{"proxy auth in script", "", []string{"sh", "-c", `curl -H "Proxy-Authorization: Basic dTpw" h`}, []string{"sh", "-c", `curl -H "Proxy-Authorization: Basic [redacted]" h`}, 1},
		// No false positives.
		{"ls -p", "", []string{"ls", "-p"}, []string{"ls", "-p"}, 0},
		{"ssh -p", "", []string{"ssh", "-p", "22", "host"}, []string{"ssh", "-p", "22", "host"}, 0},
		{"ssh -p2222", "", []string{"ssh", "-p2222", "host"}, []string{"ssh", "-p2222", "host"}, 0},
		{"grep password", "", []string{"grep", "-e", "password", "file"}, []string{"grep", "-e", "password", "file"}, 0},
		{"git push", "", []string{"git", "push"}, []string{"git", "push"}, 0},
		{"url without password", "", []string{"curl", "https://bob@example.com/x", "http://h:8080/@scope/p", "https://registry.npmjs.org/@babel/core"},
			[]string{"curl", "https://bob@example.com/x", "http://h:8080/@scope/p", "https://registry.npmjs.org/@babel/core"}, 0},
		{"ordinary options", "", []string{"ls", "--color=auto", "--bypass=1", "--password-file=/run/p", "--token-file", "/run/t", "a=b", "12:30"},
			[]string{"ls", "--color=auto", "--bypass=1", "--password-file=/run/p", "--token-file", "/run/t", "a=b", "12:30"}, 0},
		{"already redacted", "", []string{"app", "--password=[redacted]", "--token", "[redacted]"}, []string{"app", "--password=[redacted]", "--token", "[redacted]"}, 0},
		{"empty", "", []string{}, []string{}, 0},
		{"empty elements", "", []string{"", "", "--password", ""}, []string{"", "", "--password", ""}, 0},
	}
	r := Default()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := append([]string{}, tt.in...)
			n := r.Redact(got, tt.exe)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Redact(%q) (-want +got):\n%s", tt.in, diff)
			}
			if n != tt.n {
				t.Errorf("Redact(%q) = %d changed, want %d", tt.in, n, tt.n)
			}
		})
	}
}

func TestUserRules(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		exe  string
		in   []string
		want []string
		n    int
	}{
		{"value with group", Config{Rules: []Rule{{Match: `^--key-material=(.+)$`}}}, "",
			[]string{"app", "--key-material=abc"}, []string{"app", "--key-material=[redacted]"}, 1},
		{"value without group", Config{Rules: []Rule{{Match: `ghp_[A-Za-z0-9]+`}}}, "",
			[]string{"app", "x ghp_abc123 y ghp_Z"}, []string{"app", "x [redacted] y [redacted]"}, 1},
		{"whole", Config{Rules: []Rule{{Match: `^sk-`, Replace: "whole"}}}, "",
			[]string{"app", "sk-123", "other"}, []string{"app", "[redacted]", "other"}, 1},
		{"empty match ignored", Config{Rules: []Rule{{Match: `x*`}}}, "",
			[]string{"app", "abc"}, []string{"app", "abc"}, 0},
		{"exe by path", Config{Rules: []Rule{{Match: `^/opt/vault/bin/`, On: "exe"}}}, "/opt/vault/bin/vault",
			[]string{"vault", "login", "s.abc", ""}, []string{"vault", "[redacted]", "[redacted]", ""}, 2},
		{"exe by argv0", Config{Rules: []Rule{{Match: `^htpasswd$`, On: "exe"}}}, "",
			[]string{"/usr/bin/htpasswd", "-b", "f", "u", "p"}, []string{"/usr/bin/htpasswd", "[redacted]", "[redacted]", "[redacted]", "[redacted]"}, 4},
		{"exe no match", Config{Rules: []Rule{{Match: `^htpasswd$`, On: "exe"}}}, "/bin/ls",
			[]string{"ls", "-l"}, []string{"ls", "-l"}, 0},
		{"no defaults", Config{NoDefaults: true, Rules: []Rule{{Match: `^--pin=(\d+)`}}}, "",
			[]string{"app", "--password=x", "--pin=1234"}, []string{"app", "--password=x", "--pin=[redacted]"}, 1},
		{"defaults and user rule on one element", Config{Rules: []Rule{{Match: `pin=(\d+)`}}}, "",
			[]string{"app", "--password=x", "pin=12 TOKEN=t"}, []string{"app", "--password=[redacted]", "pin=[redacted] TOKEN=[redacted]"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := append([]string{}, tt.in...)
			n := r.Redact(got, tt.exe)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Redact(%q) (-want +got):\n%s", tt.in, diff)
			}
			if n != tt.n {
				t.Errorf("Redact(%q) = %d changed, want %d", tt.in, n, tt.n)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		rules []Rule
		want  string
	}{
		{[]Rule{{Match: "ok"}, {Match: "a(b"}}, "redact: rules[1].match: missing closing ): `a(b`"},
		{[]Rule{{Match: ""}}, "redact: rules[0].match: empty"},
		{[]Rule{{Match: "x", On: "env"}}, `redact: rules[0].on: "env": want argv or exe`},
		{[]Rule{{Match: "x", Replace: "part"}}, `redact: rules[0].replace: "part": want value or whole`},
		{[]Rule{{Match: "x", On: "exe", Replace: "value"}}, `redact: rules[0].replace: "value": an exe rule replaces whole arguments (omit replace, or whole)`},
	}
	for _, tt := range tests {
		_, err := New(Config{Rules: tt.rules})
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%+v) = %v, want %s", tt.rules, err, tt.want)
		}
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("New(%+v): %T is not a *RuleError", tt.rules, err)
		}
	}
}

func TestNilRedactor(t *testing.T) {
	var r *Redactor
	argv := []string{"app", "--password=x"}
	if n := r.Redact(argv, ""); n != 0 || argv[1] != "--password=x" {
		t.Errorf("nil Redactor changed %d: %q", n, argv)
	}
}

// FuzzRedact: Redact never panics, keeps the number of elements, changes
// exactly the elements it counts and marks each, grows an element by at
// most one Mark per anchor ('=', ':', '@', or the element itself), and is
// idempotent: a second pass changes nothing.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"--password=hunter2", "PASSWORD=x TOKEN='a b' cmd", "https://u:p@h/x", "redis://:pa/ss@h",
		"Authorization: Bearer x", "-psecret", "--token", "a=b", "x=TOKEN=y", `GH_TOKEN="t`, "http://h:80/@x",
		"u:p@ss@h://a:b@c", "authorization:", "-c",
	} {
		f.Add("mysql", s, "--password", s)
		f.Add("sh", "-c", s, "")
	}
	user, err := New(Config{Rules: []Rule{{Match: `--key=(\S+)`}, {Match: `^sk-`, Replace: "whole"}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		for _, r := range []*Redactor{Default(), user} {
			in := []string{a, b, c, d}
			out := append([]string{}, in...)
			n := r.Redact(out, "/usr/bin/"+a)
			if len(out) != len(in) {
				t.Fatalf("%d elements in, %d out", len(in), len(out))
			}
			changed := 0
			for i := range in {
				if out[i] == in[i] {
					continue
				}
				changed++
				if !strings.Contains(out[i], Mark) {
					t.Errorf("element %q became %q, without %s", in[i], out[i], Mark)
				}
				anchors := 1 + strings.Count(in[i], "=") + strings.Count(in[i], ":") + strings.Count(in[i], "@") + strings.Count(in[i], "--key=")
				if len(out[i]) > len(in[i])+anchors*len(Mark) {
					t.Errorf("element %q became %q: longer than needed", in[i], out[i])
				}
			}
			if changed != n {
				t.Errorf("Redact(%q) = %d, but %d elements changed: %q", in, n, changed, out)
			}
			again := append([]string{}, out...)
			if n2 := r.Redact(again, "/usr/bin/"+a); n2 != 0 || !slicesEqual(again, out) {
				t.Errorf("not idempotent: %q -> %q -> %q (%d)", in, out, again, n2)
			}
		}
	})
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Typical argv: most hold no candidate at all; some options with '='.
var benchArgv = [][]string{
	{"/usr/bin/ls", "-la", "--color=auto", "/var/log"},
	{"git", "commit", "-m", "fix the build on arm64"},
	{"/usr/lib/jvm/java-17/bin/java", "-Xmx2g", "-Dfile.encoding=UTF-8", "-cp", "/opt/app/lib/a.jar:/opt/app/lib/b.jar", "com.example.Main"},
	{"sh", "-c", "cd /srv/app && ./run.sh --mode=prod >> /var/log/app.log 2>&1"},
	{"curl", "-sS", "-o", "/tmp/x", "https://example.com/download?id=42"},
	{"python3", "-m", "pip", "install", "requests"},
}

func BenchmarkRedact(b *testing.B) {
	run := func(b *testing.B, r *Redactor, argvs [][]string) {
		b.ReportAllocs()
		buf := make([]string, 0, 16)
		for b.Loop() {
			for _, a := range argvs {
				buf = append(buf[:0], a...)
				r.Redact(buf, "")
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(argvs)), "ns/argv")
	}
	b.Run("typical", func(b *testing.B) { run(b, Default(), benchArgv) })
	b.Run("secret", func(b *testing.B) {
		run(b, Default(), [][]string{{"mysql", "-uroot", "-psecret", "--host=db"}, {"env", "DB_PASSWORD=x", "app"}})
	})
	user, err := New(Config{Rules: []Rule{{Match: `--key=(\S+)`}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("typical+user-rule", func(b *testing.B) { run(b, user, benchArgv) })
}
