package main

import (
	"fmt"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/transform"
	"github.com/cnstream/cnstream/transform/enrich"
)

// readHost reads the machine's identity (hostname, machine id, boot id).
func readHost() (schema.Host, error) { return enrich.ReadHost("/proc") }

// newClock returns the wall clock for kernel timestamps, refreshed every 10 s.
func newClock() (transform.WallClock, error) {
	c, err := enrich.NewClock(enrich.ClockConfig{})
	if err != nil {
		return nil, fmt.Errorf("read clocks: %w", err)
	}
	return c, nil
}

// newEnricher returns a process table seeded from /proc.
func newEnricher(o *tailOptions) (*enrich.Table, error) {
	t, err := enrich.New(enrich.Config{MaxEntries: o.maxProcs, AncestorDepth: o.ancestors})
	if err != nil {
		return nil, err
	}
	if err := t.Seed("/proc"); err != nil {
		return nil, fmt.Errorf("seed the process table from /proc: %w", err)
	}
	return t, nil
}
