package deploy_test

import (
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

type stage struct {
	image, name  string
	instructions []instruction
}

// parseDockerfile reads the instructions of each stage. It knows what this
// repository's Dockerfile uses: comments, continuation lines, FROM ... AS.
func parseDockerfile(b []byte) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				return fmt.Errorf("line %d: FROM %s", start, in.args)
			}
			stages = append(stages, st)
			return nil
		}
		if len(stages) == 0 {
			return fmt.Errorf("line %d: %s before FROM", start, in.cmd)
		}
		st := &stages[len(stages)-1]
		st.instructions = append(st.instructions, in)
		return nil
	}
	for i, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		} else if strings.HasPrefix(t, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(t, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(t)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return stages, flush()
}

// shellWords splits a command line on blanks, honouring single and double
// quotes (enough for the Dockerfile's go build line).
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	in, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		default:
			w.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words, nil
}

// dockerfileBuild is what buildAsDockerfile found and made.
type dockerfileBuild struct {
	stages       []stage
	context      string // the build context .dockerignore leaves, copied
	contextBytes int64
	goBuild      []string // the build stage's go build command, as written
	output       string   // its -o
	binary       string   // the binary built from it, here
}

// buildAsDockerfile copies the build context (the repository less what
// .dockerignore excludes) and runs the build stage's go build command in
// it, writing the binary to dir.
func buildAsDockerfile(dir string) (*dockerfileBuild, error) {
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	d := &dockerfileBuild{context: filepath.Join(dir, "context")}
	if d.stages, err = parseDockerfile(b); err != nil {
		return nil, fmt.Errorf("Dockerfile: %w", err)
	}
	if d.contextBytes, err = copyContext(root, d.context); err != nil {
		return nil, err
	}
	var env []string
	for _, st := range d.stages {
		for _, in := range st.instructions {
			if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
				continue
			}
			words, err := shellWords(in.args)
			if err != nil {
				return nil, fmt.Errorf("Dockerfile:%d: %w", in.line, err)
			}
			for len(words) > 0 && strings.HasPrefix(words[0], "--") { // RUN --mount=...
				words = words[1:]
			}
			for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
				env, words = append(env, words[0]), words[1:]
			}
			d.goBuild = words
		}
	}
	if len(d.goBuild) < 2 || d.goBuild[0] != "go" || d.goBuild[1] != "build" {
		return nil, fmt.Errorf("Dockerfile: no RUN [VAR=value...] go build ... found (got %q)", d.goBuild)
	}
	args := append([]string(nil), d.goBuild[1:]...)
	for i := range args {
		if args[i] == "-o" && i+1 < len(args) {
			d.output = args[i+1]
			d.binary = filepath.Join(dir, "cnstream")
			args[i+1] = d.binary
		}
	}
	if d.binary == "" {
		return nil, fmt.Errorf("Dockerfile: go build without -o: %q", d.goBuild)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = d.context // WORKDIR /src, where COPY . . put the context
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s %q in the build context: %v\n%s", strings.Join(env, " "), d.goBuild, err, out)
	}
	return d, nil
}

// copyContext copies the files of src that .dockerignore does not exclude
// to dst, as docker build sends them, and returns their size.
func copyContext(src, dst string) (int64, error) {
	f, err := os.Open(filepath.Join(src, ".dockerignore"))
	if err != nil {
		return 0, err
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		return 0, fmt.Errorf(".dockerignore: %w", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return 0, fmt.Errorf(".dockerignore: %w", err)
	}
	var total int64
	err = filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		ignored, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		if ignored {
			if e.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		out := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(out, 0o755)
		case e.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, out)
		case e.Type().IsRegular():
			n, err := copyFile(p, out)
			total += n
			return err
		}
		return nil
	})
	return total, err
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	return n, errors.Join(err, out.Close())
}

// TestDockerfile checks the image without building it: a static binary
// from the build stage, a small context, a runtime stage that copies what
// exists, and a command that runs the configuration it bakes in.
func TestDockerfile(t *testing.T) {
	d := dockerBuild
	if len(d.stages) != 2 {
		t.Fatalf("Dockerfile: %d stages, want 2 (build, runtime)", len(d.stages))
	}
	build, runtime := d.stages[0], d.stages[1]

	// The builder's Go is the go.mod's.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod: no go directive")
	}
	if want := "golang:" + string(m[1]); build.image != want && !strings.HasPrefix(build.image, want+"-") && !strings.HasPrefix(build.image, want+".") {
		t.Errorf("build stage FROM %s, want %s (go.mod says go %s)", build.image, want, m[1])
	}
	if !contains(d.goBuild, "-trimpath") || !strings.Contains(strings.Join(d.goBuild, " "), `-ldflags -s -w`) {
		t.Errorf("go build %q: want -trimpath -ldflags \"-s -w\"", d.goBuild)
	}

	// Static: the runtime image has no C library.
	f, err := elf.Open(d.binary)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s: dynamically linked (PT_INTERP), the %s image has no loader: build with CGO_ENABLED=0", d.binary, runtime.image)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s: needs %v", d.binary, libs)
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s: has a symbol table: want -ldflags \"-s -w\"", d.binary)
	}

	// .dockerignore keeps the context small: no .git, binaries or data.
	if d.contextBytes > 16<<20 {
		t.Errorf("build context %d bytes: more than 16 MiB, check .dockerignore", d.contextBytes)
	}
	for _, p := range []string{".git", "cnstream", "kafka.test", "deploy"} {
		if _, err := os.Stat(filepath.Join(d.context, p)); err == nil {
			t.Errorf("build context has %s: .dockerignore should leave it out", p)
		}
	}

	// The runtime stage: the binary from the build stage's -o, the config
	// from the context, and a command that runs them.
	var entrypoint, command []string
	copied := map[string]string{} // destination: source
	for _, in := range runtime.instructions {
		switch in.cmd {
		case "COPY":
			w := strings.Fields(in.args)
			from := ""
			for len(w) > 0 && strings.HasPrefix(w[0], "--") {
				if s, ok := strings.CutPrefix(w[0], "--from="); ok {
					from = s
				}
				w = w[1:]
			}
			if len(w) != 2 {
				t.Errorf("Dockerfile:%d: COPY %s: want one source and a destination", in.line, in.args)
				continue
			}
			src, dst := w[0], w[1]
			if from == "" {
				if _, err := os.Stat(filepath.Join(d.context, src)); err != nil {
					t.Errorf("Dockerfile:%d: COPY %s: not in the build context: %v", in.line, src, err)
				}
			} else if from != build.name || src != d.output {
				t.Errorf("Dockerfile:%d: COPY --from=%s %s: want --from=%s %s (the go build's -o)", in.line, from, src, build.name, d.output)
			}
			copied[dst] = src
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				t.Errorf("Dockerfile:%d: ENTRYPOINT: want the JSON form: %v", in.line, err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(in.args), &command); err != nil {
				t.Errorf("Dockerfile:%d: CMD: want the JSON form: %v", in.line, err)
			}
		case "USER":
			t.Errorf("Dockerfile:%d: USER %s: the capabilities added to the container are root's (README.md, Containers)", in.line, in.args)
		}
	}
	if len(entrypoint) != 1 || copied[entrypoint[0]] != d.output {
		t.Errorf("ENTRYPOINT %q: want the binary copied from the build stage (%v)", entrypoint, copied)
	}
	var conf string
	for i, a := range command {
		if a == "--config" && i+1 < len(command) {
			conf = command[i+1]
		}
	}
	if len(command) == 0 || command[0] != "run" || conf == "" {
		t.Fatalf("CMD %q: want run --config FILE", command)
	}
	src, ok := copied[conf]
	if !ok {
		t.Fatalf("CMD runs --config %s, which no COPY puts there (%v)", conf, copied)
	}
	validate(t, filepath.Join(d.context, src), nil)
	c := readConfig(t, filepath.Join(d.context, src))
	if host, _ := listenAddr(t, c.Telemetry.Listen, nil); host != "0.0.0.0" && host != "" && host != "::" {
		t.Errorf("%s: telemetry.listen %q: inside a container the default should be every interface", src, c.Telemetry.Listen)
	}
	if path.Base(conf) != "cnstream.yaml" {
		t.Errorf("config at %s: want .../cnstream.yaml", conf)
	}
}
