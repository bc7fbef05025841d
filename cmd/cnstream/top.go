package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/cnstream/cnstream/pipeline"
	"github.com/cnstream/cnstream/telemetry"
	"github.com/cnstream/cnstream/telemetry/promtext"
)

const topSynopsis = `top [--url URL] [--interval D] [--once]

Shows a running "cnstream run" live, like top: it scrapes the telemetry
endpoint's /metrics and /readyz every interval and shows rates between two
scrapes. The header has the readiness (with the reason of every failing
check), uptime, resident memory and CPU; then the source (datagrams and
events per second, datagrams per recvmmsg call, kernel drops, ENOBUFS, the
receive queue's fill), the transform (gaps, missing, malformed, forged,
filtered; the process table and enrichment misses), and one row per sink:

  deliv/s        events delivered per second
  queue fill     the fuller of events of queue.events and bytes of queue.bytes
  drop fail      totals dropped by the queue policy, failed after retries
  retry undel    totals of retried writes, and undelivered at shutdown
  write p50 p99  batch write duration over the interval (all outcomes)
  event p99      kernel timestamp to acknowledgement, over the interval

Counts are humanized (12.3k, 1.2M); "-" means no data in the interval.
It fits 80 columns. Keys: q or Ctrl-C quits (SIGINT and SIGTERM too). An
unreachable endpoint is shown and retried every interval. With --once it
prints one frame after two scrapes --interval apart, without clearing the
screen, and exits 1 if the endpoint is unreachable.`

type topOptions struct {
	url      string // base URL, without a trailing slash
	interval time.Duration
	once     bool
}

func parseTop(args []string, stderr io.Writer) (*topOptions, error) {
	fs := newFlagSet("top [--url URL] [--interval D] [--once]", topSynopsis, stderr)
	o := &topOptions{}
	fs.StringVar(&o.url, "url", "http://"+defaultListen, "telemetry endpoint of the cnstream run to watch (its telemetry.listen)")
	fs.DurationVar(&o.interval, "interval", time.Second, "time between scrapes")
	fs.BoolVar(&o.once, "once", false, "print one frame (two scrapes --interval apart) and exit")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	u, err := topBaseURL(o.url)
	if err != nil {
		return nil, usageErr("--url %q: %v", o.url, err)
	}
	o.url = u
	if o.interval < 10*time.Millisecond {
		return nil, usageErr("--interval %v: must be at least 10ms", o.interval)
	}
	return o, nil
}

// topBaseURL accepts http(s)://host:port, host:port, and either with
// /metrics at the end.
func topBaseURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("want http://host:port (the run's telemetry.listen)")
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/metrics")
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimSuffix(u.String(), "/"), nil
}

func topCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTop(args, stderr)
	if err != nil {
		return err
	}
	out, _ := stdout.(*os.File)
	tty := out != nil && term.IsTerminal(int(out.Fd()))
	v := topView{URL: o.url, Interval: o.interval,
		Bold: tty && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"}
	sc := newTopScraper(o.url, o.interval)
	if o.once {
		return topOnce(ctx, sc, v, o.interval, stdout)
	}
	return topLive(ctx, sc, v, o.interval, out, tty, stdout)
}

// topOnce prints one frame, from two scrapes interval apart.
func topOnce(ctx context.Context, sc *topScraper, v topView, interval time.Duration, stdout io.Writer) error {
	first := sc.scrape(ctx)
	if first.Err != nil {
		return first.Err
	}
	select {
	case <-ctx.Done():
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case <-time.After(interval):
	}
	second := sc.scrape(ctx)
	if second.Err != nil {
		return second.Err
	}
	v.Prev, v.Cur = first, second
	_, err := io.WriteString(stdout, strings.Join(renderTop(v), "\n")+"\n")
	return err
}

// ANSI sequences of the live view.
const (
	ansiHome       = "\x1b[H"
	ansiClear      = "\x1b[2J"
	ansiHideCursor = "\x1b[?25l"
	ansiShowCursor = "\x1b[?25h"
	ansiBold       = "\x1b[1m"
	ansiReverse    = "\x1b[7m"
	ansiReset      = "\x1b[0m"
)

// topLive redraws a frame every interval until q, Ctrl-C, SIGINT or
// SIGTERM. With stdin a terminal it is put in raw mode (keys without
// Enter), and restored on the way out.
func topLive(ctx context.Context, sc *topScraper, v topView, interval time.Duration, out *os.File, tty bool, stdout io.Writer) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := int(os.Stdin.Fd())
	if term.IsTerminal(in) {
		state, err := term.MakeRaw(in)
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer func() {
			if rerr := term.Restore(in, state); rerr != nil && err == nil {
				err = fmt.Errorf("terminal: restore: %w", rerr)
			}
		}()
	}
	quit := make(chan struct{})
	go readTopKeys(os.Stdin, quit) // blocked in read until a key or exit: stdin cannot be interrupted
	if tty {
		io.WriteString(stdout, ansiHideCursor)
		defer io.WriteString(stdout, ansiShowCursor)
	}
	// Raw mode turns off the terminal's newline translation: lines end in
	// \r\n, and the last one without, so that a full screen does not scroll.
	defer io.WriteString(stdout, "\r\n")

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		res := make(chan *topSnapshot, 1)
		go func() { res <- sc.scrape(ctx) }()
		select {
		case <-ctx.Done():
			return nil
		case <-quit:
			return nil
		case s := <-res:
			v.Prev, v.Cur = v.Cur, s
			if s.Err != nil || (v.Prev != nil && v.Prev.Err != nil) {
				v.Prev = nil // rates start again after an outage
			}
		}
		v.Width, v.Height = 0, 0
		if tty {
			if w, h, err := term.GetSize(int(out.Fd())); err == nil {
				v.Width, v.Height = w, h
			}
		}
		frame := ansiHome + ansiClear + strings.Join(renderTop(v), "\r\n")
		if _, err := io.WriteString(stdout, frame); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-quit:
			return nil
		case <-ticker.C:
		}
	}
}

// readTopKeys closes quit on q, Q, Ctrl-C (a byte in raw mode) or Ctrl-D.
// At the end of stdin (not a terminal) it returns: only signals stop top.
func readTopKeys(r io.Reader, quit chan<- struct{}) {
	b := make([]byte, 64)
	for {
		n, err := r.Read(b)
		for _, c := range b[:n] {
			switch c {
			case 'q', 'Q', 0x03, 0x04:
				close(quit)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// topScraper gets /metrics and /readyz of one endpoint.
type topScraper struct {
	base   string
	client *http.Client
}

func newTopScraper(base string, interval time.Duration) *topScraper {
	// /readyz can take the sinks' 2 s ping timeout.
	return &topScraper{base: base, client: &http.Client{Timeout: max(5*time.Second, interval)}}
}

// topSnapshot is one scrape.
type topSnapshot struct {
	At       time.Time
	Metrics  promtext.Set
	Ready    *telemetry.Readiness // nil when /readyz did not answer with its JSON
	ReadyErr error                // why Ready is nil
	Err      error                // /metrics failed: unreachable, or not a metrics endpoint
}

func (sc *topScraper) scrape(ctx context.Context) *topSnapshot {
	s := &topSnapshot{}
	var wg sync.WaitGroup
	wg.Go(func() { s.Ready, s.ReadyErr = telemetry.GetReadiness(ctx, sc.client, sc.base+"/readyz") })
	s.Metrics, s.Err = promtext.Scrape(ctx, sc.client, sc.base+"/metrics")
	s.At = time.Now()
	wg.Wait()
	if s.Err != nil {
		s.Err = fmt.Errorf("unreachable: %w", s.Err)
	}
	return s
}

// The families top reads, by their Prometheus names: pipeline's instrument
// names (pipeline/metrics.go, the one place they are written) translated as
// the OpenTelemetry Prometheus exporter does, with the unit and the kind each
// instrument is registered with there. TestTopMetricNames checks them
// against a real scrape of cnstream run.
var (
	promSourceDatagrams   = promtext.Name(pipeline.MetricSourceDatagrams, "{datagram}", promtext.Counter)
	promSourceReads       = promtext.Name(pipeline.MetricSourceReads, "{call}", promtext.Counter)
	promSourceKernelDrops = promtext.Name(pipeline.MetricSourceKernelDrops, "{datagram}", promtext.Counter)
	promSourceENOBUFS     = promtext.Name(pipeline.MetricSourceENOBUFS, "{error}", promtext.Counter)
	promSourceForged      = promtext.Name(pipeline.MetricSourceForged, "{datagram}", promtext.Counter)
	promSourceTruncated   = promtext.Name(pipeline.MetricSourceTruncated, "{datagram}", promtext.Counter)
	promSourceQueueUsage  = promtext.Name(pipeline.MetricSourceQueueUsage, "By", promtext.Gauge)
	promSourceQueueLimit  = promtext.Name(pipeline.MetricSourceQueueLimit, "By", promtext.Gauge)

	promTransformEvents    = promtext.Name(pipeline.MetricTransformEvents, "{event}", promtext.Counter)
	promTransformGaps      = promtext.Name(pipeline.MetricTransformGaps, "{gap}", promtext.Counter)
	promTransformMissing   = promtext.Name(pipeline.MetricTransformMissing, "{event}", promtext.Counter)
	promTransformMalformed = promtext.Name(pipeline.MetricTransformMalformed, "{message}", promtext.Counter)
	promTransformFiltered  = promtext.Name(pipeline.MetricTransformFiltered, "{event}", promtext.Counter)

	promEnrichProcesses = promtext.Name(pipeline.MetricEnrichProcesses, "{process}", promtext.Gauge)
	promEnrichMisses    = promtext.Name(pipeline.MetricEnrichMisses, "{read}", promtext.Counter)

	promSinkQueueEvents    = promtext.Name(pipeline.MetricSinkQueueEvents, "{event}", promtext.Gauge)
	promSinkQueueMaxEvents = promtext.Name(pipeline.MetricSinkQueueMaxEvents, "{event}", promtext.Gauge)
	promSinkQueueBytes     = promtext.Name(pipeline.MetricSinkQueueBytes, "By", promtext.Gauge)
	promSinkQueueMaxBytes  = promtext.Name(pipeline.MetricSinkQueueMaxBytes, "By", promtext.Gauge)
	promSinkDelivered      = promtext.Name(pipeline.MetricSinkDelivered, "{event}", promtext.Counter)
	promSinkDropped        = promtext.Name(pipeline.MetricSinkDropped, "{event}", promtext.Counter)
	promSinkFailed         = promtext.Name(pipeline.MetricSinkFailed, "{event}", promtext.Counter)
	promSinkRetries        = promtext.Name(pipeline.MetricSinkRetries, "{retry}", promtext.Counter)
	promSinkUndelivered    = promtext.Name(pipeline.MetricSinkUndelivered, "{event}", promtext.Counter)
	promSinkWriteDuration  = promtext.Name(pipeline.MetricSinkWriteDuration, "s", promtext.Histogram)
	promEventLatency       = promtext.Name(pipeline.MetricEventLatency, "s", promtext.Histogram)

	// The sink attributes, as labels.
	promSinkName = promtext.Label(string(pipeline.AttrSinkName))
	promSinkType = promtext.Label(string(pipeline.AttrSinkType))
)

// promSinkFamilies are the families with one series per sink.
var promSinkFamilies = []string{
	promSinkQueueEvents,
	promSinkQueueMaxEvents,
	promSinkQueueBytes,
	promSinkQueueMaxBytes,
	promSinkDelivered,
	promSinkDropped,
	promSinkFailed,
	promSinkRetries,
	promSinkUndelivered,
	promSinkWriteDuration,
	promEventLatency,
}

type topSink struct{ name, typ string }

// sinks are the sinks named by the labels of the per-sink families
// (promSinkFamilies), by name.
func topSinks(m promtext.Set) []topSink {
	seen := map[topSink]bool{}
	var out []topSink
	for _, name := range promSinkFamilies {
		ss := m[name]
		for i := range ss {
			k := topSink{ss[i].Labels[promSinkName], ss[i].Labels[promSinkType]}
			if k.name != "" && !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	slices.SortFunc(out, func(a, b topSink) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.typ, b.typ)
	})
	return out
}

// topView is what a frame shows: two scrapes (Prev nil: the first, no
// rates yet) and how to show them.
type topView struct {
	URL       string
	Interval  time.Duration
	Prev, Cur *topSnapshot
	Width     int  // columns of the terminal (0: unknown); the frame fits min(Width, 80)
	Height    int  // rows of the terminal (0: no limit); longer frames are cut
	Bold      bool // ANSI bold and reverse video
}

// topWidth is the width every frame fits in.
const topWidth = 80

// Columns of the sink table: name, type, then numbers right-aligned.
var topColumns = []struct {
	head1, head2 string
	width        int
	left         bool
}{
	{"", "SINK", 15, true},
	{"", "TYPE", 6, true},
	{"deliv", "/s", 6, false},
	{"queue", "fill", 5, false},
	{"", "drop", 5, false},
	{"", "fail", 5, false},
	{"", "retry", 5, false},
	{"", "undel", 5, false},
	{"write", "p50", 6, false},
	{"write", "p99", 6, false},
	{"event", "p99", 6, false},
}

// renderTop returns the lines of one frame, each at most 80 columns (and
// the terminal's width) wide: a pure function of the view.
func renderTop(v topView) []string {
	width := topWidth
	if v.Width > 0 {
		width = min(width, v.Width)
	}
	var lines []string
	add := func(s string) { lines = append(lines, s) }
	hl := func(s, attr string) string {
		if v.Bold {
			return attr + s + ansiReset
		}
		return s
	}

	cur := v.Cur
	if cur == nil || cur.Err != nil {
		add(truncate("cnstream top  "+v.URL, width))
		if cur != nil {
			add(hl(truncate(cur.Err.Error(), width), ansiReverse))
		}
		add(truncate(fmt.Sprintf("retrying every %v; q quits", v.Interval), width))
		return fitHeight(lines, v.Height, width)
	}
	m := cur.Metrics
	prev := v.Prev
	if prev != nil && prev.Err != nil {
		prev = nil
	}
	// A restarted instance: its counters started again.
	if prev != nil {
		a, aok := prev.Metrics.Value("process_start_time_seconds")
		b, bok := m.Value("process_start_time_seconds")
		if aok != bok || a != b {
			prev = nil
		}
	}
	var pm promtext.Set
	var dt float64
	if prev != nil {
		pm, dt = prev.Metrics, cur.At.Sub(prev.At).Seconds()
		if dt <= 0 {
			prev, pm = nil, nil
		}
	}
	// delta of a counter between the scrapes; ok false without both.
	delta := func(name string, match ...string) (float64, bool) {
		c, ok := m.Value(name, match...)
		if !ok || pm == nil {
			return 0, false
		}
		p, _ := pm.Value(name, match...)
		if c < p {
			return c, true // reset
		}
		return c - p, true
	}
	rate := func(name string, match ...string) string {
		d, ok := delta(name, match...)
		if !ok {
			return "-"
		}
		return human(d / dt)
	}
	total := func(name string, match ...string) string {
		c, ok := m.Value(name, match...)
		if !ok {
			return "-"
		}
		return human(c)
	}

	// Header: where, readiness, the process.
	head := "cnstream top  " + v.URL
	if st, ok := m.Value("process_start_time_seconds"); ok && st > 0 {
		up := cur.At.Sub(time.Unix(0, int64(st*1e9)))
		head += "  up " + fmtUptime(up)
	}
	if rss, ok := m.Value("process_resident_memory_bytes"); ok {
		head += "  rss " + humanBytes(rss)
	}
	if d, ok := delta("process_cpu_seconds_total"); ok {
		head += fmt.Sprintf("  cpu %.1f%%", d/dt*100)
	}
	add(truncate(head, width))
	switch rd := cur.Ready; {
	case rd == nil:
		add(truncate("readiness unknown: "+errString(cur.ReadyErr), width))
	case rd.Ready:
		add("ready")
	default:
		var failing []string
		for _, c := range rd.Checks {
			if !c.OK {
				failing = append(failing, c.Name+": "+c.Error)
			}
		}
		if len(failing) == 0 {
			failing = append(failing, "no check failed, yet not ready")
		}
		const shown = 3
		for i, f := range failing {
			if i == shown {
				add(fmt.Sprintf("NOT READY: %d more failing checks", len(failing)-shown))
				break
			}
			for j, l := range wrap("NOT READY: "+f, width, 2) {
				if j == 0 {
					l = hl(l, ansiReverse)
				}
				add(l)
			}
		}
	}
	add("")

	// Source.
	src := []string{
		rate(promSourceDatagrams) + " datagrams/s",
		rate(promTransformEvents) + " events/s",
	}
	perRead := "-"
	if dg, ok := delta(promSourceDatagrams); ok {
		if rd, _ := delta(promSourceReads); rd > 0 {
			perRead = human(dg / rd)
		}
	}
	src = append(src, perRead+" datagrams/read")
	fill := "-"
	if u, ok := m.Value(promSourceQueueUsage); ok {
		if l, _ := m.Value(promSourceQueueLimit); l > 0 {
			fill = fmtPercent(u/l*100) + " of " + humanBytes(l)
		}
	}
	src = append(src, "rcvq "+fill,
		"kernel drops "+total(promSourceKernelDrops)+" ("+rate(promSourceKernelDrops)+"/s)",
		"ENOBUFS "+total(promSourceENOBUFS))
	if t, _ := m.Value(promSourceTruncated); t > 0 {
		src = append(src, "truncated "+human(t))
	}
	lines = append(lines, flow("source", src, width)...)

	// Transform and enrichment.
	tr := []string{
		"gaps " + total(promTransformGaps),
		"missing " + total(promTransformMissing),
		"malformed " + total(promTransformMalformed),
		"forged " + total(promSourceForged),
		"filtered " + total(promTransformFiltered),
	}
	if _, ok := m.Value(promEnrichProcesses); ok {
		tr = append(tr, "processes "+total(promEnrichProcesses),
			"enrich misses "+total(promEnrichMisses))
	} else {
		tr = append(tr, "enrichment off")
	}
	lines = append(lines, flow("transform", tr, width)...)
	add("")

	// Sinks.
	sinks := topSinks(m)
	if len(sinks) == 0 {
		add("no sinks in the metrics")
		return fitHeight(lines, v.Height, width)
	}
	h1, h2 := make([]string, len(topColumns)), make([]string, len(topColumns))
	for i, c := range topColumns {
		h1[i], h2[i] = c.head1, c.head2
	}
	add(truncate(tableRow(h1), width))
	add(hl(truncate(tableRow(h2), width), ansiBold))
	for _, s := range sinks {
		l := []string{promSinkName, s.name, promSinkType, s.typ}
		fill := "-"
		if qe, ok := m.Value(promSinkQueueEvents, l...); ok {
			var f float64
			if me, _ := m.Value(promSinkQueueMaxEvents, l...); me > 0 {
				f = qe / me
			}
			qb, _ := m.Value(promSinkQueueBytes, l...)
			if mb, _ := m.Value(promSinkQueueMaxBytes, l...); mb > 0 {
				f = max(f, qb/mb)
			}
			fill = fmtPercent(f * 100)
		}
		quant := func(name string, q float64) string {
			if pm == nil {
				return "-"
			}
			return fmtSeconds(promtext.Quantile(q, promtext.Delta(pm.Histogram(name, l...), m.Histogram(name, l...))))
		}
		add(truncate(tableRow([]string{
			s.name, s.typ,
			rate(promSinkDelivered, l...),
			fill,
			total(promSinkDropped, l...),
			total(promSinkFailed, l...),
			total(promSinkRetries, l...),
			total(promSinkUndelivered, l...),
			quant(promSinkWriteDuration, 0.5),
			quant(promSinkWriteDuration, 0.99),
			quant(promEventLatency, 0.99),
		}), width))
	}
	return fitHeight(lines, v.Height, width)
}

func errString(err error) string {
	if err == nil {
		return "no answer"
	}
	return err.Error()
}

// tableRow lays cells out in topColumns, cutting what does not fit.
func tableRow(cells []string) string {
	var b strings.Builder
	for i, c := range topColumns {
		if i > 0 {
			b.WriteByte(' ')
		}
		s := truncate(cells[i], c.width)
		pad := strings.Repeat(" ", c.width-utf8.RuneCountInString(s))
		if c.left {
			b.WriteString(s + pad)
		} else {
			b.WriteString(pad + s)
		}
	}
	return strings.TrimRight(b.String(), " ")
}

// flow lays out label and fields separated by two spaces, wrapping onto
// lines indented past the label.
func flow(label string, fields []string, width int) []string {
	const indent = 11
	prefix := label + strings.Repeat(" ", max(1, indent-len(label)))
	var lines []string
	line := prefix
	for _, f := range fields {
		switch {
		case line == prefix:
			line += f
		case utf8.RuneCountInString(line)+2+utf8.RuneCountInString(f) <= width:
			line += "  " + f
		default:
			lines = append(lines, truncate(line, width))
			line = strings.Repeat(" ", indent) + f
		}
	}
	return append(lines, truncate(line, width))
}

// wrap breaks s at spaces into at most n lines of width runes, the lines
// after the first indented by two; what does not fit ends in an ellipsis.
func wrap(s string, width, n int) []string {
	var lines []string
	for s != "" && len(lines) < n {
		if len(lines) > 0 {
			s = "  " + s
		}
		r := []rune(s)
		if len(r) <= width {
			return append(lines, s)
		}
		cut := width // no space to break at: mid-word
		if i := strings.LastIndex(string(r[:width+1]), " "); i > 2 {
			cut = utf8.RuneCountInString(string(r[:width+1])[:i])
		}
		lines = append(lines, strings.TrimRight(string(r[:cut]), " "))
		s = strings.TrimLeft(string(r[cut:]), " ")
	}
	if s != "" {
		lines[len(lines)-1] = truncate(lines[len(lines)-1]+" "+s, width)
	}
	return lines
}

// fitHeight cuts a frame taller than the terminal, saying so on its last
// line.
func fitHeight(lines []string, height, width int) []string {
	if height <= 0 || len(lines) <= height {
		return lines
	}
	if height == 1 {
		return lines[:1]
	}
	cut := len(lines) - (height - 1)
	return append(lines[:height-1:height-1], truncate(fmt.Sprintf("… %d more lines: a taller terminal shows them", cut), width))
}

// truncate cuts s to n runes, the last one an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// human formats a count or rate in at most 5 characters: 7, 6.9, 9999,
// 12.3k, 123k, 1.2M.
func human(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case v < 0:
		return "-" + human(-v)
	case v < 10 && v != math.Trunc(v):
		if s := fmt.Sprintf("%.1f", v); s != "10.0" {
			return s
		}
		return "10"
	case v < 9999.5:
		return fmt.Sprintf("%.0f", v)
	}
	for _, u := range []string{"k", "M", "G", "T", "P"} {
		v /= 1000
		if s := fmt.Sprintf("%.1f", v); v < 99.95 {
			return s + u
		}
		if v < 999.5 {
			return fmt.Sprintf("%.0f%s", v, u)
		}
	}
	return fmt.Sprintf("%.0fP", v)
}

// humanBytes formats bytes with binary units: 512B, 1.5KiB, 97.7MiB, 128MiB.
func humanBytes(v float64) string {
	if math.IsNaN(v) || v < 0 {
		return "-"
	}
	if v < 1024 {
		return fmt.Sprintf("%.0fB", v)
	}
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 99.95 {
			s := fmt.Sprintf("%.1f", v)
			return strings.TrimSuffix(s, ".0") + u
		}
		if v < 1023.5 {
			return fmt.Sprintf("%.0f%s", v, u)
		}
	}
	return fmt.Sprintf("%.0fPiB", v/1024)
}

// fmtSeconds formats a latency in at most 6 characters: 96µs, 4.21ms,
// 42.1ms, 421ms, 1.23s, 42.1s.
func fmtSeconds(s float64) string {
	switch {
	case math.IsNaN(s) || s < 0:
		return "-"
	case s < 999.5e-6:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case s < 9.995e-3:
		return fmt.Sprintf("%.2fms", s*1e3)
	case s < 99.95e-3:
		return fmt.Sprintf("%.1fms", s*1e3)
	case s < 999.5e-3:
		return fmt.Sprintf("%.0fms", s*1e3)
	case s < 9.995:
		return fmt.Sprintf("%.2fs", s)
	case s < 99.95:
		return fmt.Sprintf("%.1fs", s)
	}
	return fmt.Sprintf("%.0fs", s)
}

// fmtPercent: 0.0% to 9.9% with a decimal, then whole: 42%, 100%.
func fmtPercent(p float64) string {
	if math.IsNaN(p) || math.IsInf(p, 0) {
		return "-"
	}
	if p < 9.95 {
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.0f%%", p)
}

// fmtUptime: 42s, 3m12s, 2h05m, 3d04h.
func fmtUptime(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}
