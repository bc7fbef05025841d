// Package archtest holds no code: its test checks that no package of the
// module imports one above it in the data flow of docs (DESIGN.md):
//
//	schema <- source <- transform <- pipeline -> sink (the interface) <- sink/<backend>
//
// The rules, one per layer, are the table in archtest_test.go:
//
//   - schema imports nothing of the project;
//   - source imports schema only;
//   - transform/... imports schema, source and transform/...;
//   - sink (the Sink interface) imports schema; each sink/<backend> imports
//     schema, sink and its own subpackages, never another backend, pipeline,
//     transform, source or cmd;
//   - pipeline/... imports schema, source, transform/..., sink (the
//     interface, never a backend) and pipeline/...;
//   - only cmd/... and testenv/... import testenv/... (tests may: the
//     rules are about the code that ships, the imports of non-test files);
//   - golang.org/x/sys/unix is imported by source (and testenv) only.
//
// A package that matches no rule fails the test too: a new package states
// its place in the data flow by adding a line to the table.
//
// The imports are read with `go list -json` for GOOS linux and darwin, so
// files split by platform are both checked.
package archtest
