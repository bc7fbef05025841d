package promtext

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Set is one scrape: the samples of each family, by name as exposed
// (cnstream_sink_delivered_total).
type Set map[string][]Sample

// Sample is one series.
type Sample struct {
	Labels  map[string]string
	Value   float64  // counter, gauge, untyped
	Buckets []Bucket // histogram: cumulative, by ascending bound, +Inf last
}

// Bucket is a histogram bucket: the count of observations at most LE.
type Bucket struct{ LE, Count float64 }

// Scrape gets url (an endpoint's /metrics) with c and parses it.
func Scrape(ctx context.Context, c *http.Client, url string) (Set, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Parse reads the Prometheus text format. Summaries are left out.
func Parse(r io.Reader) (Set, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m := make(Set, len(fams))
	for name, f := range fams {
		for _, mt := range f.GetMetric() {
			s := Sample{Labels: make(map[string]string, len(mt.GetLabel()))}
			for _, l := range mt.GetLabel() {
				s.Labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.Value = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.Value = mt.GetGauge().GetValue()
			case dto.MetricType_UNTYPED:
				s.Value = mt.GetUntyped().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.Buckets = buckets(mt.GetHistogram())
			default:
				continue
			}
			m[name] = append(m[name], s)
		}
	}
	return m, nil
}

func buckets(h *dto.Histogram) []Bucket {
	var bs []Bucket
	for _, b := range h.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if b.CumulativeCountFloat != nil {
			c = b.GetCumulativeCountFloat()
		}
		bs = append(bs, Bucket{b.GetUpperBound(), c})
	}
	slices.SortFunc(bs, func(a, b Bucket) int { return cmpFloat(a.LE, b.LE) })
	if len(bs) == 0 || !math.IsInf(bs[len(bs)-1].LE, 1) {
		n := float64(h.GetSampleCount())
		if h.SampleCountFloat != nil {
			n = h.GetSampleCountFloat()
		}
		bs = append(bs, Bucket{math.Inf(1), n})
	}
	return bs
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Matches says whether the sample has every label of match (name, value
// pairs).
func (s *Sample) Matches(match ...string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		if s.Labels[match[i]] != match[i+1] {
			return false
		}
	}
	return true
}

// Value is the sum of the samples of name with the labels of match (name,
// value pairs): other labels are summed over. ok is false without any.
func (m Set) Value(name string, match ...string) (v float64, ok bool) {
	for i := range m[name] {
		if s := &m[name][i]; s.Matches(match...) {
			v, ok = v+s.Value, true
		}
	}
	return v, ok
}

// Histogram is the sum of the histograms of name with the labels of match,
// bucket by bucket (for example the outcomes of a sink's write duration).
func (m Set) Histogram(name string, match ...string) []Bucket {
	var sum []Bucket
	for i := range m[name] {
		s := &m[name][i]
		if !s.Matches(match...) || s.Buckets == nil {
			continue
		}
		if sum == nil {
			sum = slices.Clone(s.Buckets)
			continue
		}
		for _, b := range s.Buckets {
			if j := slices.IndexFunc(sum, func(x Bucket) bool { return x.LE == b.LE }); j >= 0 {
				sum[j].Count += b.Count
			}
		}
	}
	return sum
}

// Quantile is PromQL's histogram_quantile on cumulative buckets (+Inf
// last): linear interpolation within the bucket holding the rank, the
// lower bound of the first bucket taken as 0, and the highest finite bound
// when the rank is in the +Inf bucket. NaN without observations.
func Quantile(q float64, bs []Bucket) float64 {
	if len(bs) < 2 || !math.IsInf(bs[len(bs)-1].LE, 1) || math.IsNaN(q) {
		return math.NaN()
	}
	if q < 0 {
		return math.Inf(-1)
	}
	if q > 1 {
		return math.Inf(1)
	}
	// Counts must not go down with the bound (a scrape racing a record can
	// show that): take the running maximum, as Prometheus does.
	bs = slices.Clone(bs)
	for i := 1; i < len(bs); i++ {
		bs[i].Count = max(bs[i].Count, bs[i-1].Count)
	}
	total := bs[len(bs)-1].Count
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	b, _ := slices.BinarySearchFunc(bs, rank, func(x Bucket, r float64) int { return cmpFloat(x.Count, r) })
	for b > 0 && bs[b-1].Count >= rank { // first bucket with count >= rank
		b--
	}
	if b == len(bs)-1 {
		return bs[len(bs)-2].LE
	}
	if b == 0 && bs[0].LE <= 0 {
		return bs[0].LE
	}
	start, end, count := 0.0, bs[b].LE, bs[b].Count
	if b > 0 {
		start = bs[b-1].LE
		count -= bs[b-1].Count
		rank -= bs[b-1].Count
	}
	return start + (end-start)*(rank/count)
}

// Delta is cur - prev bucket by bucket: the observations between two
// scrapes. A count that went down (a restart) counts from zero.
func Delta(prev, cur []Bucket) []Bucket {
	if cur == nil {
		return nil
	}
	d := slices.Clone(cur)
	if len(prev) != len(cur) {
		return d
	}
	for i := range d {
		if prev[i].LE != d[i].LE || prev[i].Count > d[i].Count {
			return slices.Clone(cur)
		}
		d[i].Count -= prev[i].Count
	}
	return d
}

// Kind is the kind of an instrument, as far as its Prometheus name
// depends on it.
type Kind int

const (
	Gauge Kind = iota
	Counter
	Histogram
)

// Name is the name under which the OpenTelemetry Prometheus exporter
// (go.opentelemetry.io/otel/exporters/prometheus, with its default
// translation: prometheus/otlptranslator, underscores and suffixes) exposes
// an instrument: each run of characters other than [a-zA-Z0-9:] in the name
// becomes one underscore; the unit's word is appended unless the name has
// it already ("By" bytes, "s" seconds, "ms" milliseconds, another unit as
// written; none for "1" or an annotation in braces such as "{event}"); a
// counter ends in _total, a gauge of unit "1" in _ratio. A histogram's
// family has the plain name (its series add _bucket, _sum, _count). Units
// of the form "x/y" are not translated.
func Name(name, unit string, kind Kind) string {
	isSep := func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':')
	}
	words := strings.FieldsFunc(name, isSep)
	suffix := unit
	switch {
	case unit == "1" || strings.ContainsAny(unit, "{}"):
		suffix = ""
	case unit == "By":
		suffix = "bytes"
	case unit == "s":
		suffix = "seconds"
	case unit == "ms":
		suffix = "milliseconds"
	}
	suffix = strings.Join(strings.FieldsFunc(suffix, isSep), "_")
	if suffix != "" && !slices.Contains(words, suffix) {
		words = append(words, suffix)
	}
	var last string
	switch {
	case kind == Counter:
		last = "total"
	case kind == Gauge && unit == "1":
		last = "ratio"
	}
	if last != "" {
		words = append(slices.DeleteFunc(words, func(w string) bool { return w == last }), last)
	}
	return strings.Join(words, "_")
}

// Label is the label an attribute key becomes: characters other than
// [a-zA-Z0-9_] replaced by underscores (sink.name: sink_name).
func Label(key string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, key)
}
