// Package schema holds the wire formats cnstream reads and writes: netlink
// message framing, the connector's cn_msg, and the process-events connector's
// proc_event, with decoders and encoders for each.
//
// # Decoding
//
// Datagrams come from the kernel or from any root process, so every decoder
// treats its input as hostile: it reads field by field (never by casting the
// buffer), checks every length against the bytes actually present, and
// returns a typed error (*FormatError, matching ErrShort, ErrLength or
// ErrUnknownType with errors.Is) instead of panicking. Decoded values that
// carry bytes (NetlinkMessage.Data, CnMsg.Data) alias the input buffer; copy
// them before the buffer is reused.
//
// # Byte order
//
// Netlink and the connector use host byte order. The package decodes and
// encodes with the byte order of the machine it runs on (little endian on
// amd64 and arm64).
//
// # Encoding
//
// Every decoded struct has an encoder producing the bytes the kernel would
// send; Decode(Encode(x)) == x is checked by fuzz tests seeded from real
// datagrams captured on a Linux 6.18 kernel (testdata/).
//
// schema does no I/O.
package schema
