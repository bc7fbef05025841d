// Package brokers gives tests real message brokers: an Apache Kafka broker and a NATS
// server with JetStream, both on 127.0.0.1.
//
// Kafka(t) and NATS(t) return the address of a broker for the test. When the
// environment names one (CNSTREAM_KAFKA=host:port[,host:port...],
// CNSTREAM_NATS=nats://host:port), that one is used and never stopped: this is how
// .ci/run shares one broker of each kind across every package. Otherwise the broker is
// started with the repository's scripts (testenv/kafka/start, testenv/nats/start, which
// download or build it on first use into ~/.cache/cnstream) on free ports in a
// temporary directory, and stopped when the last test using it ends; a package whose
// TestMain calls Run keeps it for all its tests instead:
//
//	func TestMain(m *testing.M) { os.Exit(brokers.Run(m)) }
//
// A broker that cannot be had fails the test (it does not skip it), with the reason
// and the script's output. A broker started here also stops by itself once the test
// process is gone (the scripts' --watch-pid), so a killed test run leaves nothing behind.
package brokers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cnstream/cnstream/testenv/need"
)

// Environment variables naming brokers to use instead of starting them.
const (
	KafkaEnv = "CNSTREAM_KAFKA" // bootstrap list, host:port[,host:port...]
	NATSEnv  = "CNSTREAM_NATS"  // server URL, nats://host:port
)

// startTimeout bounds a script start, including a first download of Kafka (seconds
// when Maven Central is reachable) or a first build of nats-server (20-35 s).
const startTimeout = 5 * time.Minute

// server is one kind of broker, started at most once at a time per test process.
type server struct {
	kind    string // "kafka" or "nats": the folder of its scripts under testenv/
	env     string // variable naming a running one
	portEnv string // variable giving the scripts the (first) port
	ports   int    // consecutive free ports the scripts need from that one
	extra   func(port int) []string
	tools   [][2]string // what the scripts run (tool, why), checked before a start

	mu   sync.Mutex
	addr string // while started here
	dir  string // its state dir
	refs int    // tests using it (when not kept by Run)
	err  error  // a failed start, reported to every later test without retrying
}

var (
	kafka = &server{
		kind: "kafka", env: KafkaEnv, portEnv: "CNSTREAM_KAFKA_PORT", ports: 2,
		tools: [][2]string{
			{"java", "Apache Kafka runs on it"},
			{"mvn", "testenv/kafka/fetch resolves Kafka's jars with it"},
			{"kcat", "testenv/kafka/start checks the broker's readiness with it"},
			{"flock", "testenv/kafka/fetch runs one download at a time with it"},
			{"setsid", "testenv/kafka/start runs the broker in a session of its own"},
		},
	}
	nats = &server{
		kind: "nats", env: NATSEnv, portEnv: "CNSTREAM_NATS_PORT", ports: 1,
		tools: [][2]string{
			{"go", "testenv/nats/fetch builds nats-server with it"},
			{"curl", "testenv/nats/start checks the server's readiness with it"},
			{"flock", "testenv/nats/fetch runs one build at a time with it"},
			{"setsid", "testenv/nats/start runs the server in a session of its own"},
		},
		// The monitoring port (/healthz) is chosen free as well.
		extra: func(client int) []string {
			monitor := freePorts(1)
			for monitor == client {
				monitor = freePorts(1)
			}
			return []string{"CNSTREAM_NATS_MONITOR_PORT=" + strconv.Itoa(monitor)}
		},
	}

	keptMu sync.Mutex
	kept   bool // set by Run: started brokers live until Run returns
)

// Kafka returns the bootstrap address list (host:port[,host:port...]) of a Kafka broker
// for the test: $CNSTREAM_KAFKA if set, else one started for this test process.
func Kafka(t testing.TB) string {
	t.Helper()
	return kafka.get(t)
}

// NATS returns the URL (nats://host:port) of a NATS server with JetStream for the
// test: $CNSTREAM_NATS if set, else one started for this test process.
func NATS(t testing.TB) string {
	t.Helper()
	return nats.get(t)
}

// Run runs the tests of a package (from its TestMain) and keeps the brokers they start
// until all are done, then stops them. It returns the exit code for os.Exit.
func Run(m *testing.M) int {
	keptMu.Lock()
	kept = true
	keptMu.Unlock()
	code := m.Run()
	for _, s := range []*server{kafka, nats} {
		s.mu.Lock()
		if s.addr != "" {
			if err := s.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "brokers: %v\n", err)
				if code == 0 {
					code = 1
				}
			}
		}
		s.mu.Unlock()
	}
	return code
}

func isKept() bool {
	keptMu.Lock()
	defer keptMu.Unlock()
	return kept
}

func (s *server) get(t testing.TB) string {
	t.Helper()
	if addr := strings.TrimSpace(os.Getenv(s.env)); addr != "" {
		if err := reachable(s.kind, addr); err != nil {
			t.Fatalf("brokers: %s=%s is set but that %s cannot be reached: %v "+
				"(start one with testenv/%s/start, or unset %s to let the test start its own)",
				s.env, addr, s.kind, err, s.kind, s.env)
		}
		return addr
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		t.Fatalf("brokers: %v", s.err)
	}
	if s.addr == "" {
		for _, tool := range s.tools {
			need.Tool(t, tool[0], tool[1])
		}
		if err := s.start(); err != nil {
			s.err = err
			t.Fatalf("brokers: %v", err)
		}
	}
	if !isKept() {
		s.refs++
		t.Cleanup(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.refs--
			if s.refs == 0 && s.addr != "" && !isKept() {
				if err := s.stop(); err != nil {
					t.Errorf("brokers: %v", err)
				}
			}
		})
	}
	return s.addr
}

// start runs testenv/<kind>/start on free ports in a new temporary dir. s.mu is held.
func (s *server) start() error {
	script, err := scriptPath(s.kind, "start")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cnstream-"+s.kind+"-")
	if err != nil {
		return fmt.Errorf("cannot start %s: %v", s.kind, err)
	}
	port := freePorts(s.ports)
	env := append(os.Environ(), s.portEnv+"="+strconv.Itoa(port))
	if s.extra != nil {
		env = append(env, s.extra(port)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "--dir", dir, "--watch-pid", strconv.Itoa(os.Getpid()))
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err = cmd.Run()
	addr := strings.TrimSpace(stdout.String())
	if err == nil && addr == "" {
		err = errors.New("it printed no address")
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer after %v", startTimeout)
		}
		// Whatever it got to start must not outlive the failure.
		if stop, serr := scriptPath(s.kind, "stop"); serr == nil {
			_ = exec.Command(stop, "--dir", dir, "--keep").Run()
		}
		_ = os.Remove(dir) // only when empty: a started broker's logs stay for the reader

		return fmt.Errorf("cannot start %s with %s: %v (set %s to use a running one)\n%s",
			s.kind, script, err, s.env, indent(stderr.String()))
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "brokers: started %s at %s in %v\n", s.kind, addr, time.Since(t0).Round(time.Millisecond))
	}
	s.addr, s.dir = addr, dir
	return nil
}

// stop runs testenv/<kind>/stop on the broker started here. s.mu is held.
func (s *server) stop() error {
	addr, dir := s.addr, s.dir
	s.addr, s.dir = "", ""
	script, err := scriptPath(s.kind, "stop")
	if err != nil {
		return err
	}
	out, err := exec.Command(script, "--dir", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("stopping %s at %s with %s: %v\n%s", s.kind, addr, script, err, indent(string(out)))
	}
	return nil
}

// scriptPath finds testenv/<kind>/<name> of this repository: from the working
// directory up (go test runs in the package's folder), else beside this source file.
func scriptPath(kind, name string) (string, error) {
	rel := filepath.Join("testenv", kind, name)
	var tried []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			p := filepath.Join(d, rel)
			if isExecutable(p) {
				return p, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
		tried = append(tried, "above "+wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", kind, name)
		if isExecutable(p) {
			return filepath.Clean(p), nil
		}
		tried = append(tried, p)
	}
	return "", fmt.Errorf("cannot find the script %s (looked %s); run the tests inside the cnstream repository or set %s",
		rel, strings.Join(tried, " and in "), map[string]string{"kafka": KafkaEnv, "nats": NATSEnv}[kind])
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// freePorts returns the first of n consecutive ports on 127.0.0.1 that nothing
// listens on now (the kernel's choice for the first). A port could still be taken
// before the broker binds it; the start script then fails saying which.
func freePorts(n int) int {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			break
		}
		first := l.Addr().(*net.TCPAddr).Port
		ok := first+n-1 <= 65535
		var held []net.Listener
		for p := first + 1; ok && p < first+n; p++ {
			h, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, h)
		}
		l.Close()
		for _, h := range held {
			h.Close()
		}
		if ok {
			return first
		}
	}
	// Let the script try its default and report a clash clearly.
	return map[int]int{1: 14222, 2: 19092}[n]
}

// reachable checks that something accepts TCP connections at the first address of a
// broker's address list.
func reachable(kind, addr string) error {
	hostport := strings.Split(addr, ",")[0]
	if kind == "nats" {
		u, err := url.Parse(strings.Split(addr, ",")[0])
		if err != nil || u.Host == "" {
			return fmt.Errorf("not a NATS URL (want nats://host:port)")
		}
		hostport = u.Host
	}
	c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "\t(no output)"
	}
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}
