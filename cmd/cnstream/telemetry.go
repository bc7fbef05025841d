package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
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
	Listen string     `yaml:"listen"` // default 127.0.0.1:9464; "off" turns the endpoint off
	OTLP   OTLPConfig `yaml:"otlp"`
}

// OTLPConfig: OpenTelemetry metrics and traces pushed over OTLP/HTTP.
type OTLPConfig struct {
	Endpoint string            `yaml:"endpoint"` // http(s)://host:port of a collector (paths /v1/metrics, /v1/traces are added); default: no OTLP
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
			return fieldErr("telemetry.otlp.endpoint", "%q: want http://host:port or https://host:port (OTLP/HTTP)", e)
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

// startTelemetry sets up the meter provider (Prometheus, OTLP), the tracer
// provider (OTLP) and, unless it is off, the HTTP listener.
func startTelemetry(ctx context.Context, c *Config, host string, log *slog.Logger) (*telemetry, error) {
	t := &telemetry{log: log}
	// OpenTelemetry's own errors (an export that failed) go to the log,
	// not to the standard logger.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry export failed", "err", err) }))
	res := resource.NewSchemaless(attribute.String("service.name", "cnstream"), attribute.String("host.name", host))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promExp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExp)}
	o := c.Telemetry.OTLP
	if o.Endpoint != "" {
		mexp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(strings.TrimRight(o.Endpoint, "/")+"/v1/metrics"), otlpmetrichttp.WithHeaders(o.Headers))
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metrics to %s: %w", o.Endpoint, err)
		}
		interval := time.Duration(o.Interval)
		if interval == 0 {
			interval = 10 * time.Second
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(interval))))
		if o.Traces == nil || *o.Traces {
			texp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(strings.TrimRight(o.Endpoint, "/")+"/v1/traces"), otlptracehttp.WithHeaders(o.Headers))
			if err != nil {
				return nil, fmt.Errorf("telemetry: otlp traces to %s: %w", o.Endpoint, err)
			}
			t.tp = sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(texp))
		}
	}
	t.mp = sdkmetric.NewMeterProvider(opts...)

	addr := c.Telemetry.listen()
	if addr == "" {
		return t, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = t.mp.Shutdown(context.Background())
		return nil, fmt.Errorf("telemetry.listen %s: %w (set telemetry.listen to another address, or off)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", t.healthz)
	mux.HandleFunc("GET /readyz", t.readyz)
	t.ln = ln
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	t.served = make(chan error, 1)
	go func() { t.served <- t.srv.Serve(ln) }()
	log.Info("telemetry endpoint", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
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
