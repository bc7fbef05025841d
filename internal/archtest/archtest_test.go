package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A layer says what the packages matching pkg may import from the module.
// Patterns are relative to the module path: "x" is package x only, "x/..."
// is x and every package below it, "*" (in may only) is any package but
// cmd/.... A package may always import the packages below itself (each of
// them is checked against its own rule).
type layer struct {
	pkg  string
	may  []string
	what string // the rule in words, for the failure message
}

// layers is the data flow of DESIGN.md. The first layer whose pkg matches a
// package is its rule, so "sink" comes before "sink/...".
var layers = []layer{
	{"schema/...", []string{"schema/..."}, "schema imports nothing of the project"},
	{"source/...", []string{"schema/...", "source/..."}, "source imports schema only"},
	{"transform/...", []string{"schema/...", "source/...", "transform/..."}, "transform imports schema, source and transform/..."},
	{"sink", []string{"schema/..."}, "sink (the interface) imports schema only"},
	{"sink/...", []string{"schema/...", "sink", "archive/..."}, "a sink backend imports schema, sink, archive (the file sink's archive mode) and its own subpackages (not another backend, pipeline, transform, source, cmd)"},
	{"pipeline/spool", []string{"schema/..."}, "pipeline/spool (the disk spool) imports schema only"},
	{"pipeline/...", []string{"schema/...", "source/...", "transform/...", "sink", "pipeline/..."}, "pipeline imports schema, source, transform, sink (the interface, not a backend) and pipeline/..."},
	{"assemble/...", []string{"schema/...", "source/...", "transform/...", "pipeline/..."}, "assemble (the reader half's composition root) imports schema, source, transform and pipeline"},
	{"archive/...", []string{"schema/..."}, "archive (hashing, checkpoints, verification) imports schema only"},
	{"audit/...", []string{"schema/..."}, "audit (completeness of an event stream) imports schema only"},
	{"fleet/...", []string{"schema/...", "sink", "sink/...", "archive/...", "audit/..."}, "fleet (the fleet archiver) imports schema, sink and its backends, archive and audit"},
	{"telemetry/...", []string{"sink", "telemetry/..."}, "telemetry imports sink (the interface) and telemetry/... only"},
	{"cmd/...", []string{"*"}, "cmd imports any library package"},
	{"testenv/...", []string{"*"}, "testenv imports any library package"},
	{"deploy", nil, "deploy has no code"},
	{"internal/archtest", nil, "archtest has no code"},
}

// external says which packages outside the module may import a package
// (module-relative patterns as in layers).
var external = map[string][]string{
	"golang.org/x/sys/unix": {"source/...", "testenv/..."},
}

// match reports whether the module-relative package p matches pattern.
func match(pattern, p string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pattern
}

// check returns one line per import that breaks a rule, and per package of
// the module that no layer names. imports maps an import path to its
// non-test imports.
func check(module string, imports map[string][]string) []string {
	var bad []string
	rel := func(p string) (string, bool) {
		if p == module {
			return ".", true
		}
		r, ok := strings.CutPrefix(p, module+"/")
		return r, ok
	}
	for _, path := range slices.Sorted(maps.Keys(imports)) {
		p, ok := rel(path)
		if !ok {
			continue
		}
		i := slices.IndexFunc(layers, func(l layer) bool { return match(l.pkg, p) })
		if i < 0 {
			bad = append(bad, fmt.Sprintf("%s: in no layer of the data flow: add a line for it to the table in internal/archtest", p))
			continue
		}
		l := layers[i]
		for _, imp := range imports[path] {
			if who, ok := external[imp]; ok {
				if !slices.ContainsFunc(who, func(w string) bool { return match(w, p) }) {
					bad = append(bad, fmt.Sprintf("%s imports %s: only %s may", p, imp, strings.Join(who, ", ")))
				}
				continue
			}
			q, ok := rel(imp)
			if !ok || strings.HasPrefix(q, p+"/") {
				continue
			}
			allowed := slices.ContainsFunc(l.may, func(m string) bool {
				if m == "*" {
					return !match("cmd/...", q)
				}
				return match(m, q)
			})
			if !allowed {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s (layer %s)", p, q, l.what, l.pkg))
			}
		}
	}
	return bad
}

// goList returns the module path and, for every package of the module built
// for goos, its non-test imports.
func goList(t *testing.T, goos string) (string, map[string][]string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Path}}\t{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", exitErr(err))
	}
	module, dir, ok := strings.Cut(strings.TrimSpace(string(out)), "\t")
	if !ok {
		t.Fatalf("go list -m: unexpected output %q", out)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Error", "./...")
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), "GOOS="+goos)
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("GOOS=%s go list ./...: %v", goos, exitErr(err))
	}
	imports := map[string][]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Error      *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("GOOS=%s go list ./...: %v", goos, err)
		}
		if p.Error != nil {
			// An unloadable package would hide its imports.
			t.Errorf("GOOS=%s go list: %s: %s", goos, p.ImportPath, p.Error.Err)
		}
		imports[p.ImportPath] = p.Imports
	}
	if len(imports) == 0 {
		t.Fatalf("GOOS=%s go list ./... found no package in %s", goos, dir)
	}
	return module, imports
}

func exitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
	}
	return err
}

// TestNoUpwardImports checks every package of the module, as built for
// Linux and for darwin, against the layers of the data flow.
func TestNoUpwardImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to list the packages: %v", err)
	}
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			module, imports := goList(t, goos)
			for _, line := range check(module, imports) {
				t.Error(line)
			}
		})
	}
}

// TestCheck shows that check catches an import above the importer in the
// data flow, on import graphs made up for the test.
func TestCheck(t *testing.T) {
	const m = "example.com/m"
	tests := []struct {
		name    string
		imports map[string][]string
		want    []string
	}{
		{"today's shape", map[string][]string{
			m + "/schema":           nil,
			m + "/source":           {m + "/schema", "golang.org/x/sys/unix", "fmt"},
			m + "/transform":        {m + "/schema", m + "/source"},
			m + "/transform/enrich": {m + "/schema", m + "/source", m + "/transform"},
			m + "/sink":             {m + "/schema"},
			m + "/sink/kafka":       {m + "/schema", m + "/sink", m + "/sink/kafka/internal/hdr"},
			m + "/pipeline":         {m + "/schema", m + "/source", m + "/transform/enrich", m + "/sink", m + "/pipeline/spool"},
			m + "/pipeline/spool":   {m + "/schema"},
			m + "/cmd/cnstream":     {m + "/pipeline", m + "/sink/kafka", m + "/testenv/need"},
			m + "/testenv/cmd/x":    {m + "/source", m + "/testenv/need"},
			"other.org/dep":         {"golang.org/x/sys/unix"},
		}, nil},
		{"upward", map[string][]string{
			m + "/schema/internal/capture": {m + "/schema", m + "/source"},
			m + "/source":                  {m + "/schema", m + "/transform"},
			m + "/transform":               {m + "/pipeline", m + "/testenv/need"},
			m + "/sink":                    {m + "/source"},
			m + "/sink/file":               {m + "/pipeline", m + "/sink/kafka", m + "/cmd/cnstream"},
			m + "/pipeline":                {m + "/sink/nats", m + "/sink/sinktest", m + "/cmd/cnstream", "golang.org/x/sys/unix"},
			m + "/testenv/need":            {m + "/cmd/cnstream"},
		}, []string{
			"pipeline imports sink/nats: pipeline imports schema, source, transform, sink (the interface, not a backend) and pipeline/... (layer pipeline/...)",
			"pipeline imports sink/sinktest: pipeline imports schema, source, transform, sink (the interface, not a backend) and pipeline/... (layer pipeline/...)",
			"pipeline imports cmd/cnstream: pipeline imports schema, source, transform, sink (the interface, not a backend) and pipeline/... (layer pipeline/...)",
			"pipeline imports golang.org/x/sys/unix: only source/..., testenv/... may",
			"schema/internal/capture imports source: schema imports nothing of the project (layer schema/...)",
			"sink imports source: sink (the interface) imports schema only (layer sink)",
			"sink/file imports pipeline: a sink backend imports schema, sink, archive (the file sink's archive mode) and its own subpackages (not another backend, pipeline, transform, source, cmd) (layer sink/...)",
			"sink/file imports sink/kafka: a sink backend imports schema, sink, archive (the file sink's archive mode) and its own subpackages (not another backend, pipeline, transform, source, cmd) (layer sink/...)",
			"sink/file imports cmd/cnstream: a sink backend imports schema, sink, archive (the file sink's archive mode) and its own subpackages (not another backend, pipeline, transform, source, cmd) (layer sink/...)",
			"source imports transform: source imports schema only (layer source/...)",
			"testenv/need imports cmd/cnstream: testenv imports any library package (layer testenv/...)",
			"transform imports pipeline: transform imports schema, source and transform/... (layer transform/...)",
			"transform imports testenv/need: transform imports schema, source and transform/... (layer transform/...)",
		}},
		{"unlisted", map[string][]string{
			m + "/unlisted": nil,
		}, []string{
			"unlisted: in no layer of the data flow: add a line for it to the table in internal/archtest",
		}},
		{"archive upward", map[string][]string{
			m + "/archive": {m + "/schema", m + "/sink"},
		}, []string{
			"archive imports sink: archive (hashing, checkpoints, verification) imports schema only (layer archive/...)",
		}},
		{"spool upward", map[string][]string{
			m + "/pipeline/spool": {m + "/schema", m + "/pipeline", m + "/sink"},
		}, []string{
			"pipeline/spool imports pipeline: pipeline/spool (the disk spool) imports schema only (layer pipeline/spool)",
			"pipeline/spool imports sink: pipeline/spool (the disk spool) imports schema only (layer pipeline/spool)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(m, tt.imports)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("check (-want +got):\n%s", diff)
			}
		})
	}
}
