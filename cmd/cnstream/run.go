package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cnstream/cnstream/assemble"
	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/pipeline/spool"
	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/telemetry"
	"github.com/cnstream/cnstream/transform/enrich"
)

const runSynopsis = `run [--config FILE]

Runs the pipeline: process events from the kernel connector, sequenced and
enriched, to the configured sinks, each behind a bounded queue. Without
--config it runs the embedded default: every process event, enriched, to
rotating JSON-lines files under ./cnstream-data/ ("cnstream run --print-default"
shows it). SIGINT or SIGTERM stops it in order: the subscription is
cancelled, queues are flushed, sinks closed within pipeline.drain_timeout
(the process exits at most 3 s after it: 2 s for the sinks' Close, 1 s for
the telemetry's last export); what could not be delivered is reported and
makes the exit status 1. With spool.dir (the embedded default sets it),
file, kafka and nats sinks take their events from a disk spool: what they
had not acknowledged at exit is delivered first by the next run.`

const validateSynopsis = `validate FILE

Checks a configuration without running it: YAML syntax, unknown keys,
values, environment references (${VAR}, ${VAR:-default}, ${VAR:?message}).
Errors name the file, the line and the field.`

// telemetryGrace is what the telemetry's shutdown (the endpoint, the last
// metric and trace export) adds to the pipeline's bound: `cnstream run`
// exits at most pipeline.drain_timeout + pipeline.ShutdownGrace +
// telemetryGrace after SIGINT or SIGTERM, the final report included.
const telemetryGrace = 1 * time.Second

// loadConfigFile reads path, or the embedded default when path is empty.
func loadConfigFile(path string) (*Config, error) {
	if path == "" {
		return LoadConfig("(embedded default)", defaultConfig)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return LoadConfig(path, text)
}

func validateCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate FILE", validateSynopsis, stderr)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return usageErr("validate takes one FILE")
	}
	c, err := loadConfigFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var names []string
	for _, s := range c.Sinks {
		names = append(names, s.Name+" ("+s.Type+")")
	}
	fmt.Fprintf(stdout, "%s: ok: %d sink(s): %s\n", fs.Arg(0), len(c.Sinks), strings.Join(names, ", "))
	for _, w := range c.warnings() {
		fmt.Fprintf(stdout, "%s: warning: %s\n", fs.Arg(0), w)
	}
	return nil
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run [--config FILE]", runSynopsis, stderr)
	path := fs.String("config", "", "configuration `FILE` (default: the embedded default)")
	printDefault := fs.Bool("print-default", false, "print the embedded default configuration and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *printDefault {
		_, err := stdout.Write(defaultConfig)
		return err
	}
	c, err := loadConfigFile(*path)
	if err != nil {
		return err
	}
	return runPipeline(ctx, c, stdout, stderr)
}

// runPipeline builds the stages of c and runs them until ctx ends.
func runPipeline(ctx context.Context, c *Config, stdout, stderr io.Writer) error {
	if len(c.Sinks) == 0 && c.Archiver != nil {
		return errors.New("this configuration has an archiver: section and no sinks: it is the fleet archiver's, run it with cnstream archive --config FILE")
	}
	log := c.Log.newLogger(stderr)
	if p, set := tuneGC(os.Getenv); set {
		log.Debug("collector target set (GOGC and GOMEMLIMIT unset)", "gogc", p)
	}
	for _, w := range c.warnings() {
		log.Warn(w)
	}
	// The telemetry port first: a second instance on the same port fails
	// here, before it connects to a sink or subscribes.
	ln, err := listenTelemetry(c)
	if err != nil {
		return err
	}
	sinks, err := buildSinks(c, stdout)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	closeAll := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range sinks {
			_ = s.Sink.Close(cctx)
		}
	}
	host, err := enrich.ReadHost("/proc")
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		closeAll()
		return err
	}
	// One numbering of the run's records for the spool, the transform and
	// the delivery; the spool before the subscription, so that a second
	// instance on the same spool.dir fails before it listens.
	recs := schema.NewRecords("", host)
	sp, err := openSpool(c, recs, log)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		closeAll()
		return err
	}
	closeSpool := func() { // until the pipeline owns it
		if sp != nil {
			_ = sp.Close()
		}
	}
	tel, err := telemetry.Start(ctx, telemetryConfig(c, ln, host.Hostname, log))
	if err != nil {
		closeSpool()
		closeAll()
		return err
	}
	// The whole shutdown has one bound from the signal: the pipeline's
	// drain_timeout + pipeline.ShutdownGrace, then telemetryGrace for the
	// telemetry's shutdown (its last export): what is left of the bound, not
	// a fresh timeout.
	drain := time.Duration(c.Pipeline.DrainTimeout)
	if drain <= 0 {
		drain = 10 * time.Second // pipeline.Config's default
	}
	stopped := make(chan time.Time, 1)
	stopAfter := context.AfterFunc(ctx, func() { stopped <- time.Now() })
	defer func() {
		deadline := time.Now().Add(telemetryGrace) // Run ended on its own (the source failed)
		if !stopAfter() {                          // ctx ended: the bound runs from then
			deadline = (<-stopped).Add(drain + pipeline.ShutdownGrace + telemetryGrace)
		}
		sctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()
	// What a missing capability costs, said at start and in the report.
	acfg := readerConfig(c, host)
	acfg.OnLack = func(l assemble.Lack) { warnLack(log, l) }
	acfg.Transform.Records = recs
	if sp != nil {
		acfg.Transform.Resume = sp.Resume()
	}
	in, err := assemble.Open(ctx, acfg)
	if err != nil {
		closeSpool()
		closeAll()
		return err
	}
	var heard []string
	if in.Subscribed {
		heard = append(heard, "process events")
	}
	for _, g := range c.Source.Groups {
		heard = append(heard, fmt.Sprintf("group %d", g))
	}
	p, err := pipeline.New(in.PipelineConfig(pipeline.Config{Sinks: sinks, DrainTimeout: time.Duration(c.Pipeline.DrainTimeout),
		Meter: tel.Meter(), Tracer: tel.Tracer(), Logger: log, Spool: sp}))
	if err != nil {
		in.Close()
		closeSpool()
		closeAll()
		return err
	}
	if sp != nil {
		logSpool(log, c, sp, len(acfg.Transform.Resume))
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name)
	}
	tel.SetReady(readinessOf(in, sinks))
	telemetryAt := ""
	if a := tel.Addr(); a != "" {
		telemetryAt = "; telemetry on http://" + a
	}
	fmt.Fprintf(stderr, "cnstream run: listening to %s; sinks: %s%s\n", strings.Join(heard, ", "), strings.Join(names, ", "), telemetryAt)
	log.Info("running", "sources", strings.Join(heard, ", "), "sinks", strings.Join(names, ", "), "telemetry", tel.Addr())
	runErr := p.Run(ctx)
	tel.SetDone()
	st := p.Stats()
	fmt.Fprintf(stderr, "cnstream run: %d events (%d records of loss: %d gaps, %d missing, %d kernel drops, %d malformed, %d forged), %d filtered\n",
		st.Transform.Events, st.Transform.Records, st.Transform.Gaps, st.Transform.Missing, st.Transform.Drops, st.Transform.Malformed, st.Transform.Forged, st.Transform.Filtered)
	if st.Unread > 0 {
		fmt.Fprintf(stderr, "cnstream run: %d datagrams still queued in the socket at the drain deadline: read and discarded, not delivered\n", st.Unread)
	}
	for _, s := range st.Sinks {
		kept := ""
		if s.Kept > 0 {
			kept = fmt.Sprintf(", %d kept in the spool for the next run", s.Kept)
		}
		fmt.Fprintf(stderr, "cnstream run: sink %s: %d delivered in %d batches, %d retries, %d failed, %d dropped by policy, %d undelivered%s\n",
			s.Name, s.Delivered, s.Batches, s.Retries, s.Failed, s.PolicyDropped, s.Undelivered, kept)
	}
	if sp != nil {
		fmt.Fprintf(stderr, "cnstream run: spool %s: %s\n", c.Spool.Dir, spoolReport(sp.Stats()))
	}
	for _, l := range in.Lacks {
		fmt.Fprintf(stderr, "cnstream run: ran without %s\n", lackCost(l))
	}
	return runErr
}

// openSpool opens the disk spool of c with a cursor per sink of policy
// spool; nil without spool.dir or without such a sink. An error names
// spool.dir: another process holding it, permissions, a full disk.
func openSpool(c *Config, recs *schema.Records, log *slog.Logger) (*spool.Spool, error) {
	names := c.spooledSinks()
	if c.Spool.Dir == "" || len(names) == 0 {
		return nil, nil
	}
	cfg := c.Spool.spoolConfig()
	cfg.Records, cfg.Logger = recs, log
	sp, err := spool.Open(cfg, names)
	if err != nil {
		return nil, fmt.Errorf("spool.dir %q: %w", c.Spool.Dir, err)
	}
	return sp, nil
}

// logSpool says at start what the spool holds: the records each sink gets
// first (not acknowledged by the previous run) and the streams resumed.
func logSpool(log *slog.Logger, c *Config, sp *spool.Spool, resumed int) {
	st := sp.Stats()
	var backlog []string
	for _, name := range c.spooledSinks() {
		if cur := sp.Cursor(name); cur != nil {
			n, _ := cur.Backlog()
			backlog = append(backlog, fmt.Sprintf("%s=%d", name, n))
		}
	}
	log.Info("spool opened: each sink gets what the previous run did not deliver first, in order, with its ids",
		"dir", c.Spool.Dir, "bytes", st.Bytes, "segments", st.Segments, "to_deliver", strings.Join(backlog, ","),
		"resumed_streams", resumed, "corrupt", st.Corrupt)
}

// spoolReport is the end-of-run line of the spool: its size, and its
// counters that are not zero.
func spoolReport(st spool.Stats) string {
	b := fmt.Sprintf("%d bytes in %d segments, %d records appended", st.Bytes, st.Segments, st.Appended)
	for _, c := range []struct {
		n    uint64
		what string
	}{
		{st.WriteErrors, "writes failed"},
		{st.WriteLost, "events lost to failed writes"},
		{st.FullDropped, "events dropped when full (drop_oldest, summed over sinks)"},
		{st.FullWaits, "appends waited for room (block)"},
		{st.Corrupt, "corrupt regions skipped"},
	} {
		if c.n > 0 {
			b += fmt.Sprintf(", %d %s", c.n, c.what)
		}
	}
	if st.LastError != "" {
		b += "; last error: " + st.LastError
	}
	return b
}

// readerConfig maps the source: and transform: sections of c to the
// reader half's configuration.
func readerConfig(c *Config, host schema.Host) assemble.Config {
	mask, _ := assemble.ParseKernelFilter(c.Source.KernelFilter) // validated
	filter, _ := c.Transform.Filter.filter()                     // validated
	redactor, _ := c.Transform.Redact.redactor()                 // validated
	ancestors := 4
	if a := c.Transform.Ancestors; a != nil {
		ancestors = *a
		if ancestors == 0 {
			ancestors = -1 // none; 0 is the library's default
		}
	}
	return assemble.Config{Host: host,
		Source: assemble.Source{NoProcessEvents: !c.Source.processEvents(), Groups: c.Source.Groups, UserspaceGroups: c.Source.UserspaceGroups,
			ReadBuffer: int(c.Source.ReadBuffer), NoENOBUFS: c.Source.NoENOBUFS, Batch: c.Source.Batch,
			DatagramBytes: c.Source.datagramSize(), KernelFilter: mask},
		Transform: assemble.Transform{NoEnrich: c.Transform.Enrich != nil && !*c.Transform.Enrich, Ancestors: ancestors,
			MaxProcesses: c.Transform.MaxProcesses, Filter: filter,
			Redact: redactor, NoRedact: redactor == nil}}
}

// warnLack logs at start what running without a capability costs.
func warnLack(log *slog.Logger, l assemble.Lack) {
	switch l.Capability {
	case assemble.CapSysPtrace:
		log.Warn("running without CAP_SYS_PTRACE: events of processes of other users, or with capabilities cnstream lacks, carry no exe and cwd (reading /proc/PID/exe and cwd needs ptrace read access); grant it as deploy/systemd/cnstream.service does")
	case assemble.CapNetAdmin:
		log.Warn("running without CAP_NET_ADMIN: the receive buffer is not forced to the size asked (SO_RCVBUFFORCE refused) but capped by net.core.rmem_max: more kernel drops in bursts; every drop is reported",
			"bytes", l.ReadBuffer, "requested", l.ReadBufferRequested, "why", l.Hint)
	}
}

// lackCost says, for the final report, what running without a capability
// cost.
func lackCost(l assemble.Lack) string {
	if l.Capability == assemble.CapNetAdmin {
		return fmt.Sprintf("CAP_NET_ADMIN: receive buffer %d bytes, not the forced %d: bursts drop more (the kernel drops above include them)", l.ReadBuffer, l.ReadBufferRequested)
	}
	return "CAP_SYS_PTRACE: exe and cwd of other users' processes were not recorded"
}

func buildSinks(c *Config, stdoutW io.Writer) ([]pipeline.SinkConfig, error) {
	var out []pipeline.SinkConfig
	for _, sc := range c.Sinks {
		s, err := sc.open(stdoutW)
		if err != nil {
			for _, o := range out {
				_ = o.Sink.Close(context.Background())
			}
			return nil, fmt.Errorf("sink %q: %w", sc.Name, err)
		}
		policy, _ := pipeline.ParsePolicy(c.policy(sc))
		batchEvents, batchBytes := sc.batchDefaults()
		out = append(out, pipeline.SinkConfig{Name: sc.Name, Type: sc.Type, Sink: s,
			QueueEvents: sc.Queue.Events, QueueBytes: int64(sc.Queue.Bytes), Policy: policy,
			BatchEvents: batchEvents, BatchBytes: batchBytes, Linger: time.Duration(sc.Batch.Linger),
			Retry: pipeline.RetryConfig{Initial: time.Duration(sc.Retry.Initial), Max: time.Duration(sc.Retry.Max), MaxElapsed: time.Duration(sc.Retry.MaxElapsed)}})
	}
	return out, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
