package main

import (
	"runtime/debug"
)

// runGCPercent is the collector's target of cnstream run: the heap may grow by half of what is live before a
// collection instead of doubling (Go's default, GOGC=100). Measured with
// the Kafka sink at 200k events/s (docs/BENCHMARKS.md, "Kafka and JetStream
// throughput, and memory"): peak RSS 150-165 MiB -> 110-132 MiB, burst
// drain 161.7 -> 132.4 MiB, at the same CPU per event within the noise
// (4.26 -> 4.00 us paced, 3.38 -> 3.29 us in the burst drain). The fleet
// archiver (cnstream archive) keeps Go's default: not measured there.
const runGCPercent = 50

// tuneGC sets runGCPercent unless the environment chose the collector's
// settings (GOGC or GOMEMLIMIT): those win, as Go documents them. It
// returns the percent in effect now and whether tuneGC set it.
func tuneGC(getenv func(string) string) (percent int, set bool) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p, false
	}
	debug.SetGCPercent(runGCPercent)
	return runGCPercent, true
}
