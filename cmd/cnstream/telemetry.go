package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cnstream/cnstream/sink"
	"github.com/cnstream/cnstream/source"
)

// TelemetryConfig: the HTTP endpoint (Prometheus metrics, health,
// readiness) and OTLP export.
type TelemetryConfig struct {
	Listen string     `yaml:"listen"` // default 127.0.0.1:9464; port 0 picks a free port (logged); "off" turns the endpoint off
	OTLP   OTLPConfig `yaml:"otlp"`
}

// OTLPConfig: OpenTelemetry metrics and traces pushed over OTLP/HTTP.
type OTLPConfig struct {
	Endpoint string            `yaml:"endpoint"` // http(s)://[user:password@]host:port of a collector (paths /v1/metrics, /v1/traces are added; user information becomes basic authentication); default: no OTLP
	Headers  map[string]string `yaml:"headers"`  // sent with every export (tokens: use ${VAR})
	Interval Duration          `yaml:"interval"` // metrics export interval, default 10s
	Traces   *bool             `yaml:"traces"`   // a span per sink batch; default true with an endpoint
}

// LogConfig: cnstream's own log (log/slog on stderr).
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

const defaultListen = "127.0.0.1:9464"

func (t TelemetryConfig) listen() string {
	switch t.Listen {
	case "":
		return defaultListen
	case "off":
		return ""
	}
	return t.Listen
}

func (t TelemetryConfig) validate() error {
	if l := t.listen(); l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil || port == "" {
			return fieldErr("telemetry.listen", "%q: want host:port (127.0.0.1:9464), or off", t.Listen)
		}
	}
	if e := t.OTLP.Endpoint; e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fieldErr("telemetry.otlp.endpoint", "%q: want http://host:port or https://host:port (OTLP/HTTP)", redactURL(e))
		}
	}
	if t.OTLP.Interval < 0 {
		return fieldErr("telemetry.otlp.interval", "%v is negative", t.OTLP.Interval)
	}
	return nil
}

func (l LogConfig) validate() error {
	if _, err := l.level(); err != nil {
		return fieldErr("log.level", "%v", err)
	}
	switch l.Format {
	case "", "text", "json":
	default:
		return fieldErr("log.format", "%q: want text or json", l.Format)
	}
	return nil
}

func (l LogConfig) level() (slog.Level, error) {
	switch strings.ToLower(l.Level) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: want debug, info, warn or error", l.Level)
}

// newLogger returns the slog logger of l, writing to w.
func (l LogConfig) newLogger(w io.Writer) *slog.Logger {
	lvl, _ := l.level() // validated
	opts := &slog.HandlerOptions{Level: lvl}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// telemetry is what runPipeline exports: the meter and tracer providers,
// and the HTTP endpoint.
type telemetry struct {
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider // nil without OTLP traces
	srv    *http.Server
	ln     net.Listener
	log    *slog.Logger
	served chan error

	mu    sync.Mutex
	ready func(ctx context.Context) readiness // set once the pipeline is built
	alive bool
}

func (t *telemetry) Meter() metric.Meter { return t.mp.Meter("github.com/cnstream/cnstream") }

func (t *telemetry) Tracer() trace.Tracer {
	if t.tp == nil {
		return nil
	}
	return t.tp.Tracer("github.com/cnstream/cnstream")
}

// httpLimits bound the telemetry endpoint's connections: a client that
// sends its request slowly, reads the answer slowly or keeps idle
// connections open cannot hold the endpoint (and its file descriptors).
type httpLimits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxConns                      int // connections served at once; more wait to be accepted
}

var telemetryLimits = httpLimits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second,
	Idle: 60 * time.Second, MaxConns: 32}

// newHTTPServer returns a server of h with the limits of lim.
func newHTTPServer(h http.Handler, lim httpLimits) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: lim.ReadHeader, ReadTimeout: lim.Read,
		WriteTimeout: lim.Write, IdleTimeout: lim.Idle, MaxHeaderBytes: 16 << 10}
}

// limitListener accepts at most n connections at once: Accept waits for
// one to close (golang.org/x/net/netutil.LimitListener, without the
// dependency).
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// listenTelemetry opens the telemetry endpoint's listener (nil when it is
// off). run calls it first, so that a second instance on the same port
// fails at once, before it subscribes or connects to a sink.
func listenTelemetry(c *Config) (net.Listener, error) {
	addr := c.Telemetry.listen()
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = " (another cnstream run on this host?)"
		}
		return nil, fmt.Errorf("telemetry endpoint: cannot listen on %s: %w%s: set telemetry.listen in the configuration to another port, to 127.0.0.1:0 for any free port, or to off", addr, err, hint)
	}
	return ln, nil
}

// otlpEndpoint returns the OTLP endpoint without its user information, and
// the headers to send: those configured, plus basic authentication from the
// user information unless an Authorization header is set.
func otlpEndpoint(o OTLPConfig) (string, map[string]string) {
	u, err := url.Parse(o.Endpoint)
	if err != nil || u.User == nil {
		return strings.TrimRight(o.Endpoint, "/"), o.Headers
	}
	h := maps.Clone(o.Headers)
	if h == nil {
		h = map[string]string{}
	}
	hasAuth := false
	for k := range h {
		hasAuth = hasAuth || strings.EqualFold(k, "authorization")
	}
	if !hasAuth {
		pw, _ := u.User.Password()
		h["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
	}
	u.User = nil
	return strings.TrimRight(u.String(), "/"), h
}

// otlpSecrets are the strings an export error must not show.
func otlpSecrets(o OTLPConfig, headers map[string]string) []string {
	var s []string
	for _, v := range headers {
		if v != "" {
			s = append(s, v)
			if _, cred, ok := strings.Cut(v, " "); ok && len(cred) >= 3 {
				s = append(s, cred) // the token of "Bearer <token>"
			}
		}
	}
	if user, pw := userinfo(o.Endpoint); pw != "" {
		s = append(s, pw)
	} else if user != "" {
		s = append(s, user)
	}
	return s
}

// scrubbedError is an error whose message has its secrets replaced; the
// error it wraps stays reachable.
type scrubbedError struct {
	err     error
	secrets []string
}

func (e *scrubbedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

func (e *scrubbedError) Unwrap() error { return e.err }

func scrubErr(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	return &scrubbedError{err: err, secrets: secrets}
}

// startTelemetry sets up the meter provider (Prometheus, OTLP), the tracer
// provider (OTLP) and, unless ln is nil (the endpoint is off), the HTTP
// endpoint on ln; it closes ln when it fails.
func startTelemetry(ctx context.Context, c *Config, ln net.Listener, host string, log *slog.Logger) (*telemetry, error) {
	fail := func(err error) (*telemetry, error) {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	t := &telemetry{log: log}
	o := c.Telemetry.OTLP
	endpoint, headers := otlpEndpoint(o)
	secrets := otlpSecrets(o, headers)
	// OpenTelemetry's own errors (an export that failed) go to the log,
	// not to the standard logger, without the OTLP credentials.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry export failed", "err", scrubErr(err, secrets)) }))
	res := resource.NewSchemaless(attribute.String("service.name", "cnstream"), attribute.String("host.name", host))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return fail(fmt.Errorf("telemetry: prometheus exporter: %w", err))
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	if o.Endpoint != "" {
		mexp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(endpoint+"/v1/metrics"), otlpmetrichttp.WithHeaders(headers))
		if err != nil {
			return fail(fmt.Errorf("telemetry: otlp metrics to %s: %w", redactURL(o.Endpoint), scrubErr(err, secrets)))
		}
		interval := time.Duration(o.Interval)
		if interval == 0 {
			interval = 10 * time.Second
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(interval))))
		if o.Traces == nil || *o.Traces {
			texp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint+"/v1/traces"), otlptracehttp.WithHeaders(headers))
			if err != nil {
				return fail(fmt.Errorf("telemetry: otlp traces to %s: %w", redactURL(o.Endpoint), scrubErr(err, secrets)))
			}
			t.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp))
		}
	}
	t.mp = sdkmetric.NewMeterProvider(opts...)

	if ln == nil {
		return t, nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", t.healthz)
	mux.HandleFunc("GET /readyz", t.readyz)
	t.ln = ln
	t.srv = newHTTPServer(mux, telemetryLimits)
	t.served = make(chan error, 1)
	go func() { t.served <- t.srv.Serve(limitListener(ln, telemetryLimits.MaxConns)) }()
	log.Info("telemetry endpoint", "addr", ln.Addr().String(), "listen", c.Telemetry.listen(), "paths", "/metrics /healthz /readyz")
	return t, nil
}

// Addr is the endpoint's address, "" when it is off.
func (t *telemetry) Addr() string {
	if t.ln == nil {
		return ""
	}
	return t.ln.Addr().String()
}

func (t *telemetry) setReady(f func(ctx context.Context) readiness) {
	t.mu.Lock()
	t.ready, t.alive = f, true
	t.mu.Unlock()
}

func (t *telemetry) setDone() {
	t.mu.Lock()
	t.alive = false
	t.mu.Unlock()
}

// shutdown stops the endpoint and flushes the exporters.
func (t *telemetry) shutdown(ctx context.Context) error {
	var errs []error
	if t.srv != nil {
		errs = append(errs, t.srv.Shutdown(ctx))
		if err := <-t.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if t.tp != nil {
		errs = append(errs, t.tp.Shutdown(ctx))
	}
	errs = append(errs, t.mp.Shutdown(ctx))
	return errors.Join(errs...)
}

func (t *telemetry) healthz(w http.ResponseWriter, _ *http.Request) {
	t.mu.Lock()
	alive := t.alive
	t.mu.Unlock()
	status, code := "alive", http.StatusOK
	if !alive {
		status, code = "stopping", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"status": status})
}

func (t *telemetry) readyz(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	f, alive := t.ready, t.alive
	t.mu.Unlock()
	var rd readiness
	switch {
	case f == nil:
		rd.Checks = []check{{Name: "pipeline", Error: "starting"}}
	case !alive:
		rd.Checks = []check{{Name: "pipeline", Error: "stopping"}}
	default:
		rd = f(r.Context())
	}
	rd.Ready = true
	for _, c := range rd.Checks {
		rd.Ready = rd.Ready && c.OK
	}
	code := http.StatusOK
	if !rd.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, rd)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// readiness is /readyz's answer.
type readiness struct {
	Ready  bool    `json:"ready"`
	Checks []check `json:"checks"`
}

type check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// pingTimeout bounds a sink's readiness check.
const pingTimeout = 2 * time.Second

// readinessOf returns the readiness check of a running pipeline: the
// process-events subscription acknowledged (when subscribed), and every sink
// that can tell (sink.Pinger) reachable. Checks run in parallel, and an
// answer is reused for a second so that a scraper cannot flood the brokers.
func readinessOf(conn *source.Conn, subscribed bool, sinks []namedSink) func(ctx context.Context) readiness {
	var (
		mu   sync.Mutex
		last readiness
		at   time.Time
	)
	return func(ctx context.Context) readiness {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && time.Since(at) < time.Second {
			return last
		}
		var rd readiness
		if subscribed {
			c := check{Name: "subscription", OK: conn.Stats().Subscription.Active}
			if !c.OK {
				c.Error = "the process-events subscription is not acknowledged"
			}
			rd.Checks = append(rd.Checks, c)
		}
		checks := make([]check, len(sinks))
		var wg sync.WaitGroup
		for i, s := range sinks {
			checks[i] = check{Name: "sink " + s.name, OK: true}
			p, ok := s.sink.(sink.Pinger)
			if !ok {
				continue
			}
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, pingTimeout)
				defer cancel()
				if err := p.Ping(pctx); err != nil {
					checks[i] = check{Name: "sink " + s.name, Error: err.Error()}
				}
			})
		}
		wg.Wait()
		rd.Checks = append(rd.Checks, checks...)
		last, at = rd, time.Now()
		return rd
	}
}

type namedSink struct {
	name string
	sink sink.Sink
}
