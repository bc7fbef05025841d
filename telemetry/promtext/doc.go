// Package promtext reads what a telemetry endpoint serves on /metrics (the
// Prometheus text format) into samples that can be summed over labels, and
// computes what a dashboard would: histogram quantiles as PromQL's
// histogram_quantile does, and the observations between two scrapes. Name
// and Label translate OpenTelemetry instrument names and attribute keys as
// the OpenTelemetry Prometheus exporter does, so that a reader names the
// families from the constants the instruments are created with (pipeline's
// Metric... names) instead of writing them out again.
//
// `cnstream top` is built on it; tests that scrape a running cnstream and
// the fleet archiver's monitoring can use it the same way.
//
// # Contract
//
// Everything is pure: Parse reads a reader, Scrape does one GET. A Set is
// not changed by its methods; the buckets they return are fresh slices.
package promtext
