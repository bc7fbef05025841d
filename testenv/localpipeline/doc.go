// Package localpipeline holds no code: it is the home of the end-to-end test
// of testenv/local-pipeline, the topology of docker-compose.yml started from
// real parts without Docker (Apache Kafka from its Maven jars, nats-server
// with JetStream, cnstream built from this tree with
// examples/container.yaml, Prometheus from Debian with
// deploy/compose/prometheus.yml).
//
// The test runs `local-pipeline up` on free ports, spawns processes on the
// host and finds their exec and exit events in Kafka (read with kcat) and in
// JetStream (nats.go), checks that Prometheus has scraped cnstream's
// delivered counters at least as far as the events read back, then runs
// `down` and checks that every process of the state dir is gone. It needs
// root (the process-events connector), java, kcat, curl, go and prometheus;
// without them it skips, except in CI (CI set), where it fails.
package localpipeline
