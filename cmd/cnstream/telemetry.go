package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/cnstream/cnstream/assemble"
	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/telemetry"
)

// TelemetryConfig: the HTTP endpoint (Prometheus metrics, health,
// readiness) and OTLP export.
type TelemetryConfig struct {
	Listen string     `yaml:"listen"` // default 127.0.0.1:9464; port 0 picks a free port (logged); "off" turns the endpoint off
	OTLP   OTLPConfig `yaml:"otlp"`
	// Pprof serves Go's profiles (net/http/pprof: CPU, heap, allocations,
	// goroutines) under /debug/pprof/ on the endpoint, for finding where
	// CPU and memory go. Default false: a heap profile holds whatever is in
	// memory (command lines, event fields), so only turn it on where the
	// endpoint is reachable by those who may see the events.
	Pprof bool `yaml:"pprof"`
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
			return fieldErr("telemetry.otlp.endpoint", "%q: want http://host:port or https://host:port (OTLP/HTTP)", telemetry.RedactURL(e))
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

// listenTelemetry opens the telemetry endpoint's listener (nil when it is
// off). run calls it first, so that a second instance on the same port
// fails at once, before it subscribes or connects to a sink.
func listenTelemetry(c *Config) (net.Listener, error) {
	addr := c.Telemetry.listen()
	if addr == "" {
		return nil, nil
	}
	ln, err := telemetry.Listen(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: set telemetry.listen in the configuration to another port, to 127.0.0.1:0 for any free port, or to off", err)
	}
	return ln, nil
}

// telemetryConfig maps the telemetry: section of c to the library's
// configuration, serving on ln (nil: no endpoint).
func telemetryConfig(c *Config, ln net.Listener, host string, log *slog.Logger) telemetry.Config {
	o := c.Telemetry.OTLP
	cfg := telemetry.Config{Listener: ln, Host: host, Logger: log,
		OTLP: telemetry.OTLP{Endpoint: o.Endpoint, Headers: o.Headers, Interval: time.Duration(o.Interval),
			NoTraces: o.Traces != nil && !*o.Traces}}
	if c.Telemetry.Pprof {
		cfg.Handlers = map[string]http.Handler{
			"GET /debug/pprof/":        http.HandlerFunc(pprof.Index),
			"GET /debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
			"GET /debug/pprof/profile": http.HandlerFunc(pprof.Profile),
			"GET /debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
			"GET /debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
		}
	}
	return cfg
}

// readinessOf is the readiness of a running pipeline: the process-events
// subscription acknowledged (when subscribed), and every sink that can
// tell (sink.Pinger) reachable.
func readinessOf(in *assemble.Input, sinks []pipeline.SinkConfig) func(ctx context.Context) telemetry.Readiness {
	var checks []telemetry.Check
	if in.Subscribed {
		checks = append(checks, telemetry.Check{Name: "subscription", Check: in.Ready})
	}
	for _, s := range sinks {
		checks = append(checks, telemetry.SinkCheck(s.Name, s.Sink))
	}
	return telemetry.Checks(checks...)
}
