package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/cnstream/cnstream/fleet"
	"github.com/cnstream/cnstream/telemetry"
)

const archiveSynopsis = `archive --config FILE

Runs the fleet archiver (the archiver: section of FILE; see
examples/fleet-archiver.yaml): a member of a Kafka consumer group that
reads the events cnstream hosts send to one topic and writes each host and
boot's events into its own tamper-evident archive, <dir>/<hostname>/<boot_id>/
(check one with cnstream verify DIR --key PUB, all with cnstream audit DIR).
Offsets are committed only after the files are fsynced: a crash repeats
records, never skips them, and repeats are dropped by event id (dedupe_window).
Archivers of one group share the topic's partitions: run as many as it has.

The telemetry endpoint (telemetry.listen) serves /metrics (cnstream.archive.*,
docs/METRICS.md), /healthz, /readyz (the brokers reachable) and GET /audit:
the live completeness report per host and boot as JSON. Hosts seen, archives
closed and hosts gone silent (no event for archiver.silence) are logged.
SIGINT or SIGTERM closes (signs) every archive, commits, leaves the group and
prints the final report: per host and boot, events, duplicates removed,
provably lost, unaccounted, silent.`

// Instrument names of cnstream archive (docs/METRICS.md, "Fleet archiver").
const (
	MetricArchiveEvents       = "cnstream.archive.events"
	MetricArchiveProvablyLost = "cnstream.archive.provably_lost"
	MetricArchiveUnaccounted  = "cnstream.archive.unaccounted"
	MetricArchiveSilent       = "cnstream.archive.silent"
	MetricArchiveDuplicates   = "cnstream.archive.duplicates"
	MetricArchiveMessages     = "cnstream.archive.messages"
	MetricArchiveMalformed    = "cnstream.archive.malformed"
	MetricArchiveCommits      = "cnstream.archive.commits"
	MetricArchiveCommitErrors = "cnstream.archive.commit_errors"
	MetricArchiveHostsOpen    = "cnstream.archive.hosts_open"
)

func archiveCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("archive --config FILE", archiveSynopsis, stderr)
	path := fs.String("config", "", "configuration `FILE` with an archiver: section (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageErr("--config FILE is required: a configuration with an archiver: section (examples/fleet-archiver.yaml)")
	}
	c, err := loadConfigFile(*path)
	if err != nil {
		return err
	}
	if c.Archiver == nil {
		return fmt.Errorf("%s has no archiver: section: cnstream archive needs one (examples/fleet-archiver.yaml)", *path)
	}
	log := c.Log.newLogger(stderr)
	for _, w := range c.warnings() {
		log.Warn(w)
	}
	opts, err := c.Archiver.kgoOpts()
	if err != nil {
		return err
	}
	fc := c.Archiver.fleetConfig()
	fc.Opts, fc.Log = opts, log
	arch, err := fleet.New(fc)
	if err != nil {
		return err
	}
	// The telemetry port first: a second archiver on the same port fails
	// here, before it joins the group.
	ln, err := listenTelemetry(c)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	tcfg := telemetryConfig(c, ln, host, log)
	tcfg.ServiceName = "cnstream-archive"
	if tcfg.Handlers == nil {
		tcfg.Handlers = map[string]http.Handler{}
	}
	tcfg.Handlers["GET /audit"] = auditHandler(arch)
	tel, err := telemetry.Start(ctx, tcfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), telemetryGrace)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "err", err)
		}
	}()
	if err := registerArchiveMetrics(tel.Meter(), arch); err != nil {
		return err
	}
	ping, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	defer ping.Close()
	tel.SetReady(telemetry.Checks(telemetry.Check{Name: "kafka", Check: ping.Ping}))

	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		watchHosts(watchCtx, arch, log)
	}()
	log.Info("archiving", "topic", fc.Topic, "group", fc.Group, "dir", fc.Dir)
	runErr := arch.Run(ctx)
	stopWatch()
	<-watched
	tel.SetDone()
	printArchiveReport(stdout, arch.Report(), arch.Stats())
	return runErr
}

// auditHandler serves the archiver's live report as JSON.
func auditHandler(arch *fleet.Archiver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(arch.Report())
	})
}

// watchHosts logs what changes in the report, once a second and once more
// when ctx ends: a host and boot seen for the first time, its archive
// opened again after a close (the fleet package logs the closes, with
// why), a host gone silent or sending again.
func watchHosts(ctx context.Context, arch *fleet.Archiver, log *slog.Logger) {
	type state struct{ open, silent bool }
	type key struct{ host, boot string }
	seen := map[key]state{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; ; {
		for _, h := range arch.Report().Hosts {
			k := key{h.Hostname, h.BootID}
			old, known := seen[k]
			now := state{h.Open, h.Silent}
			seen[k] = now
			switch {
			case !known:
				log.Info("host seen", "host", h.Hostname, "boot", h.BootID, "dir", h.Dir, "open", h.Open)
			case !old.open && h.Open:
				log.Info("host archive opened again", "host", h.Hostname, "boot", h.BootID, "dir", h.Dir)
			}
			switch {
			case now.silent && !old.silent:
				log.Warn("host silent", "host", h.Hostname, "boot", h.BootID, "last_event", h.LastEvent)
			case known && old.silent && !now.silent:
				log.Info("host sending again", "host", h.Hostname, "boot", h.BootID)
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
		}
	}
}

// registerArchiveMetrics adds the archiver's instruments to m, read from
// Report and Stats at each collection.
func registerArchiveMetrics(m metric.Meter, arch *fleet.Archiver) error {
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	events := gauge(MetricArchiveEvents, "{event}", "Distinct events in a host and boot's archive (attributes host, boot).")
	lost := gauge(MetricArchiveProvablyLost, "{event}", "Events of a host and boot stated lost by gap and dropped records.")
	unacc := gauge(MetricArchiveUnaccounted, "{event}", "Sequence numbers of a host and boot that no event or record accounts for.")
	silent := gauge(MetricArchiveSilent, "{host}", "1 while a host has sent no event for archiver.silence (attribute host).")
	open := gauge(MetricArchiveHostsOpen, "{archive}", "Host archives this archiver holds open.")
	dups := counter(MetricArchiveDuplicates, "{event}", "Events not written: their id was in the host's dedupe window.")
	msgs := counter(MetricArchiveMessages, "{message}", "Kafka records polled.")
	malformed := counter(MetricArchiveMalformed, "{message}", "Kafka records that are not events (kept in <dir>/_malformed).")
	commits := counter(MetricArchiveCommits, "{commit}", "Offset commits that succeeded.")
	commitErrs := counter(MetricArchiveCommitErrors, "{commit}", "Offset commits that failed (the records come again, deduplicated).")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("archive metrics: %w", err)
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := arch.Stats()
		o.ObserveInt64(open, int64(st.HostsOpen))
		o.ObserveInt64(dups, int64(st.Duplicates))
		o.ObserveInt64(msgs, int64(st.Messages))
		o.ObserveInt64(malformed, int64(st.Malformed))
		o.ObserveInt64(commits, int64(st.Commits))
		o.ObserveInt64(commitErrs, int64(st.CommitErrors))
		// A host is silent when all its boots are (an old boot stays
		// silent for ever once the host rebooted).
		hostSilent := map[string]bool{}
		for _, h := range arch.Report().Hosts {
			at := metric.WithAttributes(attribute.String("host", h.Hostname), attribute.String("boot", h.BootID))
			o.ObserveInt64(events, int64(h.Events), at)
			o.ObserveInt64(lost, int64(h.ProvablyLost), at)
			o.ObserveInt64(unacc, int64(h.Unaccounted), at)
			s, ok := hostSilent[h.Hostname]
			hostSilent[h.Hostname] = h.Silent && (s || !ok)
		}
		for h, s := range hostSilent {
			v := int64(0)
			if s {
				v = 1
			}
			o.ObserveInt64(silent, v, metric.WithAttributes(attribute.String("host", h)))
		}
		return nil
	}, events, lost, unacc, silent, open, dups, msgs, malformed, commits, commitErrs)
	if err != nil {
		return fmt.Errorf("archive metrics: %w", err)
	}
	return nil
}

// printArchiveReport prints the final report: a row per host and boot.
func printArchiveReport(w io.Writer, r fleet.Report, st fleet.Stats) {
	fmt.Fprintf(w, "archived %d events and loss records of %d messages (%d duplicates removed, %d malformed), %d commits (%d failed)\n",
		st.Events, st.Messages, st.Duplicates, st.Malformed, st.Commits, st.CommitErrors)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tBOOT\tEVENTS\tDUPLICATES REMOVED\tPROVABLY LOST\tUNACCOUNTED\tSILENT\tDIR")
	incomplete := 0
	for _, h := range r.Hosts {
		silent := "no"
		if h.Silent {
			silent = "yes"
		}
		if h.Unaccounted > 0 {
			incomplete++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", h.Hostname, h.BootID, h.Events, h.DuplicatesRemoved,
			h.ProvablyLost, h.Unaccounted, silent, h.Dir)
	}
	tw.Flush()
	if incomplete > 0 {
		fmt.Fprintf(w, "%d hosts and boots have unaccounted events: holes in their streams no gap or dropped record explains\n", incomplete)
	}
}
