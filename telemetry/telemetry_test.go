package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTelemetryServerLimits: the endpoint closes a connection whose request
// header never ends (slowloris), and serves at most MaxConns connections at
// once: another waits until one closes. Start's server has every
// timeout set.
func TestTelemetryServerLimits(t *testing.T) {
	serve := func(lim Limits) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }), lim)
		go srv.Serve(limitListener(ln, lim.MaxConns))
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}

	// Slowloris: half a request header, then nothing.
	addr := serve(Limits{ReadHeader: 300 * time.Millisecond, Read: time.Second, Write: time.Second, Idle: time.Second, MaxConns: 4})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("slow header: %v after %v, want the server to close the connection", err, time.Since(start))
	} else if d := time.Since(start); d > 5*time.Second {
		t.Errorf("slow header: closed after %v, want about 300ms", d)
	}

	// The connection limit: two idle connections hold both places.
	addr = serve(Limits{ReadHeader: 30 * time.Second, Read: 30 * time.Second, Write: 30 * time.Second, Idle: 30 * time.Second, MaxConns: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	get := func(timeout time.Duration) error {
		cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := cl.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(500 * time.Millisecond); err == nil {
		t.Errorf("a third connection was served while two held the limit of 2")
	}
	held[0].Close()
	if err := get(10 * time.Second); err != nil {
		t.Errorf("after a held connection closed: %v, want an answer", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tel, err := Start(t.Context(), Config{Listener: ln, Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if s := tel.srv; s.ReadHeaderTimeout <= 0 || s.ReadTimeout <= 0 || s.WriteTimeout <= 0 || s.IdleTimeout <= 0 || DefaultLimits.MaxConns <= 0 {
		t.Errorf("telemetry server: ReadHeaderTimeout %v, ReadTimeout %v, WriteTimeout %v, IdleTimeout %v, MaxConns %d: want all set",
			s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, DefaultLimits.MaxConns)
	}
}

// TestChecks: /readyz is ready when every check holds, names the ones that
// do not, answers "starting" before SetReady and "stopping" after SetDone,
// and reuses an answer for a second.
func TestChecks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tel, err := Start(t.Context(), Config{Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + tel.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	type answer struct {
		Code int
		Body string
	}
	check := func(path string, want answer) {
		t.Helper()
		code, body := get(path)
		if diff := cmp.Diff(want, answer{code, body}); diff != "" {
			t.Errorf("GET %s (-want +got):\n%s", path, diff)
		}
	}
	check("/readyz", answer{503, `{"ready":false,"checks":[{"name":"pipeline","ok":false,"error":"starting"}]}`})
	calls := 0
	failing := errors.New("down")
	tel.SetReady(Checks(Check{Name: "a"}, Check{Name: "b", Check: func(context.Context) error { calls++; return failing }}))
	check("/healthz", answer{200, `{"status":"alive"}`})
	check("/readyz", answer{503, `{"ready":false,"checks":[{"name":"a","ok":true},{"name":"b","ok":false,"error":"down"}]}`})
	check("/readyz", answer{503, `{"ready":false,"checks":[{"name":"a","ok":true},{"name":"b","ok":false,"error":"down"}]}`})
	rd, err := GetReadiness(t.Context(), http.DefaultClient, "http://"+tel.Addr()+"/readyz")
	if want := (&Readiness{Checks: []CheckResult{{Name: "a", OK: true}, {Name: "b", Error: "down"}}}); err != nil || !cmp.Equal(want, rd) {
		t.Errorf("GetReadiness = %+v, %v; want %+v", rd, err, want)
	}
	if calls != 1 {
		t.Errorf("check ran %d times for three requests within a second, want 1", calls)
	}
	tel.SetReady(Checks(Check{Name: "a", Check: func(context.Context) error { return nil }}))
	check("/readyz", answer{200, `{"ready":true,"checks":[{"name":"a","ok":true}]}`})
	tel.SetDone()
	check("/healthz", answer{503, `{"status":"stopping"}`})
	check("/readyz", answer{503, `{"ready":false,"checks":[{"name":"pipeline","ok":false,"error":"stopping"}]}`})
}

// TestSecretsScrubbed: the OTLP endpoint's password becomes basic
// authentication, and neither it nor a header's token shows in an error.
func TestSecretsScrubbed(t *testing.T) {
	o := OTLP{Endpoint: "https://user:hunter2@collector:4318/", Headers: map[string]string{"X-Token": "Bearer s3cr3t-token"}}
	endpoint, headers := otlpEndpoint(o)
	if endpoint != "https://collector:4318" {
		t.Errorf("endpoint %q, want it without user information", endpoint)
	}
	if headers["Authorization"] == "" {
		t.Errorf("no Authorization header from the user information: %v", headers)
	}
	err := scrubErr(fmt.Errorf("post %s with %s: refused", o.Endpoint, headers["X-Token"]), otlpSecrets(o, headers))
	for _, secret := range []string{"hunter2", "s3cr3t-token"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows %q: %v", secret, err)
		}
	}
	if got := RedactURL(o.Endpoint); got != "https://user:xxxxx@collector:4318/" {
		t.Errorf("RedactURL = %q", got)
	}
	var ln *ListenError
	if _, err := Listen("127.0.0.1:-1"); !errors.As(err, &ln) || !strings.HasPrefix(err.Error(), "telemetry endpoint: cannot listen on 127.0.0.1:-1: ") {
		t.Errorf("Listen on a bad address: %v", err)
	}
}

// TestHandlers: Config.Handlers are served on the endpoint beside
// /metrics, under the method of their pattern; a pattern clashing with
// the endpoint's own, or a nil handler, makes Start fail (and close the
// listener) instead of panicking.
func TestHandlers(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tel, err := Start(t.Context(), Config{Listener: ln, Handlers: map[string]http.Handler{
		"GET /audit": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, map[string]int{"hosts": 2}) }),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	get := func(method, path string) (int, string) {
		req, err := http.NewRequest(method, "http://"+tel.Addr()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("GET", "/audit"); code != http.StatusOK || strings.TrimSpace(body) != `{"hosts":2}` {
		t.Errorf("GET /audit: %d %q, want 200 {\"hosts\":2}", code, body)
	}
	if code, _ := get("POST", "/audit"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /audit: %d, want 405", code)
	}
	if code, body := get("GET", "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("GET /metrics beside a handler: %d, want 200 with the Go metrics", code)
	}

	for name, h := range map[string]map[string]http.Handler{
		"clash": {"GET /metrics": http.NotFoundHandler()},
		"nil":   {"GET /audit": nil},
		"bad":   {"GET audit": http.NotFoundHandler()},
	} {
		ln, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if tel, err := Start(t.Context(), Config{Listener: ln, Handlers: h}); err == nil {
			tel.Shutdown(context.Background())
			t.Errorf("%s: Start succeeded, want an error", name)
			continue
		}
		// The listener was closed: the port can be listened on again.
		ln2, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s: the listener was not closed: %v", name, err)
			continue
		}
		ln2.Close()
	}
}
