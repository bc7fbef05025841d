package deploy_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"
)

// root is the repository root, seen from this package's directory.
const root = ".."

// cnstreamBin is the binary TestMain built the way the Dockerfile does, from
// the build context that .dockerignore leaves (TestDockerfile checks it).
var (
	cnstreamBin string
	dockerBuild *dockerfileBuild
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cnstream-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy test:", err)
		os.Exit(1)
	}
	dockerBuild, err = buildAsDockerfile(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy test: building cnstream as the Dockerfile does:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	cnstreamBin = dockerBuild.binary
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// validate runs `cnstream validate file` with only the given environment
// (and PATH), as the service would see it, and fails t unless it says ok.
func validate(t *testing.T, file string, env map[string]string) {
	t.Helper()
	cmd := exec.Command(cnstreamBin, "validate", file)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(": ok: ")) {
		t.Errorf("cnstream validate %s (environment %v): %v\n%s", file, env, err, out)
	}
}

// validateText writes a configuration to a temporary file and validates it.
func validateText(t *testing.T, name, text string, env map[string]string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	validate(t, f, env)
}

// config is the part of cnstream's configuration these tests look at.
type config struct {
	Sinks []struct {
		Name  string `yaml:"name"`
		Type  string `yaml:"type"`
		Kafka *struct {
			Brokers []string `yaml:"brokers"`
			Topic   string   `yaml:"topic"`
		} `yaml:"kafka"`
		NATS *struct {
			URL string `yaml:"url"`
		} `yaml:"nats"`
		File *struct {
			Dir string `yaml:"dir"`
		} `yaml:"file"`
	} `yaml:"sinks"`
	Telemetry struct {
		Listen string `yaml:"listen"`
	} `yaml:"telemetry"`
}

func parseConfig(t *testing.T, name string, b []byte) config {
	t.Helper()
	var c config
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return c
}

func readConfig(t *testing.T, file string) config {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return parseConfig(t, file, b)
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}`)

// expand resolves ${VAR}, ${VAR:-default} and ${VAR:?message} as cnstream's
// configuration loader does (an unset or empty VAR takes the default).
func expand(s string, env map[string]string) string {
	return envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v := env[m[1]]; v != "" {
			return v
		}
		if m[2] == "-" {
			return m[3]
		}
		return ""
	})
}

// listenAddr splits a telemetry.listen value after expanding it.
func listenAddr(t *testing.T, listen string, env map[string]string) (host, port string) {
	t.Helper()
	v := expand(listen, env)
	if v == "" {
		v = "127.0.0.1:9464" // cnstream's default (cmd/cnstream/default.yaml)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("telemetry.listen %q (%q): %v", listen, v, err)
	}
	return host, port
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// syncBuffer collects a child's output; it may be read while the child
// writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
