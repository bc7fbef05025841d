// Package assemble builds the reader half of cnstream from one Config: the
// connector socket (dial, receive buffer, group membership, the
// process-events subscription), the wall clock, the process table and the
// transform. It is a composition root: `cnstream run` and `cnstream tail`
// map their YAML and their flags to a Config and get the same reader; a
// replay or an archiver that needs the machine's identity and clock builds
// them here too. The disk spool belongs to the delivery half: the caller
// opens it and hands the reader its numbering and the streams to resume
// (Transform.Records, Transform.Resume).
//
// # Order
//
// Open dials, checks that the receive buffer was forced to the size asked,
// subscribes to process events, then reads the host identity and seeds the
// process table from /proc: events of processes started while the table
// is seeded wait in the socket's receive queue and are applied after, so
// none is missed.
//
// # Privileges
//
// What a missing capability costs is data, not a log line: each Lack is
// handed to Config.OnLack as soon as it is known (before the step that may
// fail for the same reason, so that a caller can say why) and kept in
// Input.Lacks for the final report. The package writes nothing.
//
// # Ownership
//
// Open starts no goroutine. The Input's Conn is the caller's to close
// (Input.Close); on error Open closes what it opened. Errors keep the text
// of the step that failed (source's dial, join and LISTEN errors, "read
// clocks: ...", "seed the process table from /proc: ...").
package assemble
