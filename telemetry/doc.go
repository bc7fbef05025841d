// Package telemetry is cnstream's observability endpoint: an OpenTelemetry
// meter provider exposed as Prometheus text on /metrics and, optionally,
// pushed with traces over OTLP/HTTP; /healthz (alive until SetDone) and
// /readyz (the readiness checks the program sets). `cnstream run` uses it;
// any other long-running producer of events (a replay, the fleet archiver)
// can too.
//
// # Lifecycle
//
// Listen opens the endpoint's socket first, so that a second instance on
// the same port fails before it connects to anything. Start sets up the
// providers and serves the endpoint on the listener (one goroutine);
// Shutdown stops the endpoint and flushes the exporters. SetReady turns
// /readyz from "starting" to the checks once the program runs; SetDone
// turns /healthz and /readyz to "stopping" at shutdown. Config.Handlers
// adds the program's own paths to the endpoint (the fleet archiver's
// GET /audit), served under the same limits.
//
// # Limits
//
// The HTTP server has every timeout set and serves at most Limits.MaxConns
// connections at once (others wait to be accepted): a slow or idle client
// cannot hold the endpoint or its file descriptors.
//
// # Secrets
//
// The OTLP endpoint's user information becomes a basic Authorization
// header and is never shown: errors name the endpoint with its password
// replaced by xxxxx, and export errors (reported through OpenTelemetry's
// global error handler, which Start sets to Config.Logger) have every
// header value and the password scrubbed.
//
// # Readiness
//
// Readiness runs its checks in parallel, each within PingTimeout, and
// reuses an answer for a second so that a scraper cannot flood the
// brokers. SinkCheck pings a sink that can tell (sink.Pinger).
package telemetry
