// Package sinktest is the conformance suite every sink passes, in the manner
// of testing/slogtest: a backend's tests call Run with a Harness that makes a
// fresh sink and reads back what its backend holds.
//
// # What it checks
//
// Run checks the contract of sink.Sink as a consumer sees it: an empty batch
// is a no-op; an acknowledged batch is readable before Close; events are
// read back in the order they were written within each ordering key (the
// host by default); nothing acknowledged is lost or read back twice, and
// every event read back equals the one written; Close flushes; WriteBatch
// after Close returns sink.ErrClosed; a cancelled or expired context makes
// WriteBatch return the context's error promptly without corrupting what was
// written before; and, when the harness can break its backend for real, a
// failure surfaces as an error from WriteBatch while everything acknowledged
// before it stays readable, whole.
//
// # Events
//
// The events come from a Generator: reproducible for a seed, every kind of
// schema.Event version 1, from several hosts, with realistic ids and
// enrichment on some. Backends' own tests and benchmarks use it too. Check
// compares events read back with the events written, by id, and is usable
// on its own.
//
// # Concurrency
//
// Run runs its subtests one at a time and calls the harness from the
// subtest's goroutine only, so a harness may keep the last backend it made
// in a variable. A Generator is not safe for concurrent use.
package sinktest
