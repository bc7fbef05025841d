// Package stdout is the sink that writes events as JSON lines
// (schema.AppendJSON, one object and a newline per event) to an io.Writer,
// os.Stdout by default: for tailing, piping into jq, and tests.
//
// # Buffering and acknowledgement
//
// WriteBatch encodes into a buffer of its own and writes it to the writer
// whenever it holds Config.BufferSize bytes, and at the end of the batch:
// a batch is acknowledged (WriteBatch returns nil) once all of it has been
// written to the writer, and, if the writer has a Flush() error method (a
// *bufio.Writer), flushed. Nothing stays buffered between batches, so Close
// has nothing to flush; it does not close the writer, which the caller owns.
//
// # Errors and loss
//
// A failed write returns the writer's error, wrapped (errors.Is works on an
// *os.File's errno, e.g. EPIPE or ENOSPC). Part of the batch may have been
// written, possibly ending in part of a line: a writer is a stream this
// sink cannot take back, so consumers must skip a line that does not
// decode, and dedupe on the event id when the pipeline retries the batch.
// Stats counts events, bytes, batches and errors.
//
// # Concurrency
//
// WriteBatch and Close may be called from any goroutine; they take turns
// (Close waits for a WriteBatch in progress, or gives up when its ctx ends;
// a write blocked in the writer, e.g. a pipe nobody reads, is not
// interrupted).
// The writer is written by WriteBatch only, one call at a time. The sink
// starts no goroutine and does not keep the events after WriteBatch
// returns. A ctx that ends makes WriteBatch return its error before the
// next write to the writer.
package stdout
