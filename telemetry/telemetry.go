package telemetry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
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
)

// Scope is the instrumentation scope of Meter and Tracer.
const Scope = "github.com/cnstream/cnstream"

// Config describes the telemetry. Its zero value serves no endpoint and
// exports nothing: the meter provider still collects.
type Config struct {
	// Listener is the endpoint's (see Listen). Default nil: no endpoint.
	Listener net.Listener
	// ServiceName and Host are the service.name and host.name resource
	// attributes. Default "cnstream" and none.
	ServiceName, Host string
	// OTLP is the collector to push to. Default: none.
	OTLP OTLP
	// Limits bound the endpoint's connections. Default DefaultLimits.
	Limits Limits
	// Logger receives the endpoint's address and export errors. Default:
	// none.
	Logger *slog.Logger
	// Handlers are more paths the endpoint serves, under the same limits:
	// a net/http ServeMux pattern ("GET /audit") -> its handler. A pattern
	// that clashes with /metrics, /healthz or /readyz (or another pattern)
	// makes Start fail. Default none.
	Handlers map[string]http.Handler
}

// OTLP is a collector taking OpenTelemetry metrics and traces over
// OTLP/HTTP.
type OTLP struct {
	// Endpoint is http(s)://[user:password@]host:port; the paths
	// /v1/metrics and /v1/traces are added, the user information becomes
	// basic authentication (unless Headers has an Authorization). Default
	// "": no OTLP.
	Endpoint string
	// Headers are sent with every export. Default none.
	Headers map[string]string
	// Interval is the metrics export interval. Default 10 s.
	Interval time.Duration
	// NoTraces leaves out the spans (one per sink batch). Default false:
	// traces are exported with an Endpoint.
	NoTraces bool
}

// Limits bound the endpoint's connections: a client that sends its request
// slowly, reads the answer slowly or keeps idle connections open cannot
// hold the endpoint (and its file descriptors).
type Limits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxConns                      int // connections served at once; more wait to be accepted
}

// DefaultLimits are the endpoint's limits when Config.Limits is zero.
var DefaultLimits = Limits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second,
	Idle: 60 * time.Second, MaxConns: 32}

// Telemetry is the running telemetry: the providers and the endpoint.
type Telemetry struct {
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider // nil without OTLP traces
	srv    *http.Server
	ln     net.Listener
	served chan error

	mu    sync.Mutex
	ready func(ctx context.Context) Readiness // set once the program runs
	alive bool
}

// Listen opens the endpoint's listener on addr (host:port; port 0 picks a
// free one). The error says when another process holds the port.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return ln, nil
}

// ListenError is Listen's error.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string {
	hint := ""
	if errors.Is(e.Err, syscall.EADDRINUSE) {
		hint = " (another cnstream run on this host?)"
	}
	return fmt.Sprintf("telemetry endpoint: cannot listen on %s: %v%s", e.Addr, e.Err, hint)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Start sets up the meter provider (Prometheus, OTLP), the tracer provider
// (OTLP) and, with a Listener, serves the endpoint on it; it closes the
// Listener when it fails.
func Start(ctx context.Context, cfg Config) (*Telemetry, error) {
	ln := cfg.Listener
	fail := func(err error) (*Telemetry, error) {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	service := cfg.ServiceName
	if service == "" {
		service = "cnstream"
	}
	lim := cfg.Limits
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	t := &Telemetry{}
	o := cfg.OTLP
	endpoint, headers := otlpEndpoint(o)
	secrets := otlpSecrets(o, headers)
	// OpenTelemetry's own errors (an export that failed) go to the log,
	// not to the standard logger, without the OTLP credentials.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry export failed", "err", scrubErr(err, secrets)) }))
	attrs := []attribute.KeyValue{attribute.String("service.name", service)}
	if cfg.Host != "" {
		attrs = append(attrs, attribute.String("host.name", cfg.Host))
	}
	res := resource.NewSchemaless(attrs...)
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
			return fail(fmt.Errorf("telemetry: otlp metrics to %s: %w", RedactURL(o.Endpoint), scrubErr(err, secrets)))
		}
		interval := o.Interval
		if interval == 0 {
			interval = 10 * time.Second
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp, sdkmetric.WithInterval(interval))))
		if !o.NoTraces {
			texp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint+"/v1/traces"), otlptracehttp.WithHeaders(headers))
			if err != nil {
				return fail(fmt.Errorf("telemetry: otlp traces to %s: %w", RedactURL(o.Endpoint), scrubErr(err, secrets)))
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
	paths := "/metrics /healthz /readyz"
	for _, pattern := range slices.Sorted(maps.Keys(cfg.Handlers)) {
		if err := handle(mux, pattern, cfg.Handlers[pattern]); err != nil {
			if t.tp != nil {
				_ = t.tp.Shutdown(ctx)
			}
			_ = t.mp.Shutdown(ctx)
			return fail(err)
		}
		paths += " " + pattern
	}
	t.ln = ln
	t.srv = newHTTPServer(mux, lim)
	t.served = make(chan error, 1)
	go func() { t.served <- t.srv.Serve(limitListener(ln, lim.MaxConns)) }()
	log.Info("telemetry endpoint", "addr", ln.Addr().String(), "paths", paths)
	return t, nil
}

// handle registers h on mux at pattern; a bad or clashing pattern (which
// ServeMux reports by panicking) or a nil handler is an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	if h == nil {
		return fmt.Errorf("telemetry: handler %q is nil", pattern)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("telemetry: handler %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// Meter is the meter of the provider the endpoint and OTLP export.
func (t *Telemetry) Meter() metric.Meter { return t.mp.Meter(Scope) }

// Tracer is the OTLP tracer, nil without OTLP traces.
func (t *Telemetry) Tracer() trace.Tracer {
	if t.tp == nil {
		return nil
	}
	return t.tp.Tracer(Scope)
}

// Addr is the endpoint's address, "" without an endpoint.
func (t *Telemetry) Addr() string {
	if t.ln == nil {
		return ""
	}
	return t.ln.Addr().String()
}

// SetReady makes /readyz answer with ready's checks, and /healthz alive.
func (t *Telemetry) SetReady(ready func(ctx context.Context) Readiness) {
	t.mu.Lock()
	t.ready, t.alive = ready, true
	t.mu.Unlock()
}

// SetDone makes /healthz and /readyz answer "stopping".
func (t *Telemetry) SetDone() {
	t.mu.Lock()
	t.alive = false
	t.mu.Unlock()
}

// Shutdown stops the endpoint and flushes the exporters.
func (t *Telemetry) Shutdown(ctx context.Context) error {
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

func (t *Telemetry) healthz(w http.ResponseWriter, _ *http.Request) {
	t.mu.Lock()
	alive := t.alive
	t.mu.Unlock()
	status, code := "alive", http.StatusOK
	if !alive {
		status, code = "stopping", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"status": status})
}

func (t *Telemetry) readyz(w http.ResponseWriter, r *http.Request) {
	t.mu.Lock()
	f, alive := t.ready, t.alive
	t.mu.Unlock()
	var rd Readiness
	switch {
	case f == nil:
		rd.Checks = []CheckResult{{Name: "pipeline", Error: "starting"}}
	case !alive:
		rd.Checks = []CheckResult{{Name: "pipeline", Error: "stopping"}}
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

// newHTTPServer returns a server of h with the limits of lim.
func newHTTPServer(h http.Handler, lim Limits) *http.Server {
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

// otlpEndpoint returns the OTLP endpoint without its user information, and
// the headers to send: those configured, plus basic authentication from the
// user information unless an Authorization header is set.
func otlpEndpoint(o OTLP) (string, map[string]string) {
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
func otlpSecrets(o OTLP, headers map[string]string) []string {
	var s []string
	for _, v := range headers {
		if v != "" {
			s = append(s, v)
			if _, cred, ok := strings.Cut(v, " "); ok && len(cred) >= 3 {
				s = append(s, cred) // the token of "Bearer <token>"
			}
		}
	}
	if user, pw := Userinfo(o.Endpoint); pw != "" {
		s = append(s, pw)
	} else if user != "" {
		s = append(s, user)
	}
	return s
}

// Userinfo returns the user and password of a URL (with or without a
// scheme; also of one url.Parse refuses), "" when it has none: what
// redaction must hide.
func Userinfo(raw string) (user, password string) {
	if !strings.Contains(raw, "://") {
		raw = "x://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		// An unparsable URL may still hold user information.
		_, rest, _ := strings.Cut(raw, "://")
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			user, password, _ = strings.Cut(rest[:i], ":")
		}
		return user, password
	}
	password, _ = u.User.Password()
	return u.User.Username(), password
}

// RedactURL returns raw with the password of its user information (or the
// user, when it has no password: a token) replaced by xxxxx.
func RedactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	i := strings.LastIndex(rest, "@")
	if i < 0 {
		return raw
	}
	user, _, hasPw := strings.Cut(rest[:i], ":")
	if !hasPw {
		user = "xxxxx"
	} else {
		user += ":xxxxx"
	}
	return scheme + "://" + user + rest[i:]
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
