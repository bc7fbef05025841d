package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/cnstream/cnstream/schema"
)

// printer writes events as readable lines or as event v1 JSON lines. It
// builds each line in a reused buffer: a thread storm runs at 150k events/s
// and the printer must keep up.
type printer struct {
	w      *bufio.Writer
	json   bool
	count  uint64       // stop after this many events (0: never)
	id     *schema.CbID // show only raw messages of this id
	buf    []byte
	events uint64 // events printed (loss records not counted)
}

func (p *printer) done() bool { return p.count > 0 && p.events >= p.count }

// print writes e unless the printer is done or e is a raw message of
// another id than the one asked for.
func (p *printer) print(e *schema.Event) {
	if p.done() {
		return
	}
	if e.Kind == schema.KindRaw && p.id != nil && (e.Stream.Idx != p.id.Idx || e.Stream.Val != p.id.Val) {
		return
	}
	b := p.buf[:0]
	if p.json {
		b = schema.AppendJSON(b, e)
	} else {
		b = appendText(b, e)
	}
	b = append(b, '\n')
	p.buf = b
	_, _ = p.w.Write(b) // a write error surfaces at Flush
	if !e.Kind.IsLoss() {
		p.events++
	}
}

func streamText(b []byte, s *schema.Stream) []byte {
	b = fmt.Appendf(b, "stream %d:%d", s.Idx, s.Val)
	if s.Idx == schema.ProcID.Idx && s.Val == schema.ProcID.Val && s.Sender == 0 {
		return fmt.Appendf(b, " cpu=%d", s.CPU)
	}
	return fmt.Appendf(b, " sender=%d", s.Sender)
}

// appendText appends the readable line of e.
func appendText(b []byte, e *schema.Event) []byte {
	switch e.Kind {
	case schema.KindGap:
		b = append(b, "--- GAP "...)
		b = streamText(b, e.Stream)
		b = fmt.Appendf(b, ": expected seq %d, got %d: %d missing", e.Gap.Expected, e.Gap.Got, e.Gap.Missing)
		if e.Gap.Reason != "" {
			b = append(b, " ("...)
			b = appendEscaped(b, e.Gap.Reason)
			b = append(b, ')')
		}
		return b
	case schema.KindCorrupt:
		b = append(b, "--- CORRUPT spool "...)
		b = appendEscaped(b, e.Corrupt.File)
		b = fmt.Appendf(b, " at %d: %d bytes skipped (", e.Corrupt.Offset, e.Corrupt.Bytes)
		b = appendEscaped(b, e.Corrupt.Reason)
		return append(b, ')')
	case schema.KindOverrun:
		return fmt.Appendf(b, "--- DROPPED %d datagrams in the kernel: receive queue full (ENOBUFS x%d); see the gap lines per stream", e.Overrun.KernelDrops, e.Overrun.ENOBUFS)
	case schema.KindForged:
		return fmt.Appendf(b, "--- FORGED %d datagrams rejected: kernel-owned connector id or group from a userspace sender", e.Forged.Count)
	case schema.KindMalformed:
		b = fmt.Appendf(b, "--- MALFORMED datagram of %d bytes from port %d: ", len(e.Malformed.Data), e.Malformed.Sender)
		return appendEscaped(b, e.Malformed.Error)
	case schema.KindFiltered:
		b = append(b, "--- FILTERED "...)
		b = streamText(b, e.Stream)
		return fmt.Appendf(b, ": %d events removed by the filter, seq %d..%d", e.Filtered.Count, e.Filtered.First, e.Filtered.Last)
	case schema.KindClosed:
		b = append(b, "--- CLOSED "...)
		b = streamText(b, e.Stream)
		b = fmt.Appendf(b, " epoch=%d at seq %d (first %d): ", e.Stream.Epoch, e.Closed.Last, e.Closed.First)
		return appendEscaped(b, e.Closed.Reason)
	case schema.KindDropped:
		b = fmt.Appendf(b, "--- DROPPED %d events: ", e.Dropped.Count)
		b = appendEscaped(b, e.Dropped.Reason)
		b = append(b, ' ')
		return appendEscaped(b, e.Dropped.Sink)
	}
	b = e.Time.Local().AppendFormat(b, "15:04:05.000000")
	s := e.Stream
	if e.Kind == schema.KindRaw {
		b = fmt.Appendf(b, " raw id=%d:%d seq=%d ack=%d sender=%d group=%d len=%d payload=", s.Idx, s.Val, s.Seq, s.Ack, s.Sender, e.Raw.Group, len(e.Raw.Payload))
		return hex.AppendEncode(b, e.Raw.Payload)
	}
	b = fmt.Appendf(b, " cpu=%d seq=%d %-8s", s.CPU, s.Seq, e.Kind)
	switch {
	case e.Ack != nil:
		b = fmt.Appendf(b, " ack=%d err=%d", s.Ack, e.Ack.Err)
		if e.Ack.Err != 0 {
			b = fmt.Appendf(b, " (%v)", syscall.Errno(e.Ack.Err))
		}
	case e.Fork != nil:
		f := e.Fork
		b = fmt.Appendf(b, " pid=%d tgid=%d ppid=%d ptgid=%d", f.ChildPID, f.ChildTGID, f.ParentPID, f.ParentTGID)
		if f.ChildPID != f.ChildTGID {
			b = append(b, " thread"...)
		}
	case e.Exec != nil:
		b = fmt.Appendf(b, " pid=%d tgid=%d", e.Exec.PID, e.Exec.TGID)
	case e.UID != nil:
		b = fmt.Appendf(b, " pid=%d tgid=%d ruid=%d euid=%d", e.UID.PID, e.UID.TGID, e.UID.Real, e.UID.Effective)
	case e.GID != nil:
		b = fmt.Appendf(b, " pid=%d tgid=%d rgid=%d egid=%d", e.GID.PID, e.GID.TGID, e.GID.Real, e.GID.Effective)
	case e.SID != nil:
		b = fmt.Appendf(b, " pid=%d tgid=%d", e.SID.PID, e.SID.TGID)
	case e.Ptrace != nil:
		t := e.Ptrace
		b = fmt.Appendf(b, " pid=%d tgid=%d", t.PID, t.TGID)
		if t.TracerPID == 0 {
			b = append(b, " detach"...)
		} else {
			b = fmt.Appendf(b, " tracer=%d tracer_tgid=%d", t.TracerPID, t.TracerTGID)
		}
	case e.Comm != nil:
		b = fmt.Appendf(b, " pid=%d tgid=%d comm=%q", e.Comm.PID, e.Comm.TGID, e.Comm.Comm)
	case e.Coredump != nil:
		c := e.Coredump
		b = fmt.Appendf(b, " pid=%d tgid=%d ppid=%d ptgid=%d", c.PID, c.TGID, c.ParentPID, c.ParentTGID)
	case e.Exit != nil:
		x := e.Exit
		b = fmt.Appendf(b, " pid=%d tgid=%d ppid=%d ptgid=%d", x.PID, x.TGID, x.ParentPID, x.ParentTGID)
		switch {
		case x.ExitStatus != nil:
			b = fmt.Appendf(b, " status=%d", *x.ExitStatus)
		case x.Signal != nil:
			b = fmt.Appendf(b, " signal=%s", signalName(*x.Signal))
			if x.CoreDumped {
				b = append(b, " core-dumped"...)
			}
		default:
			b = fmt.Appendf(b, " code=%#x", x.ExitCode)
		}
		if x.PID != x.TGID {
			b = append(b, " thread"...)
		}
	}
	return appendProcessText(b, e.Process)
}

// appendProcessText appends what enrichment knows of the subject process.
func appendProcessText(b []byte, p *schema.Process) []byte {
	if p == nil {
		return b
	}
	if p.ExecID != "" {
		b = append(b, " exec_id="...)
		b = appendEscaped(b, p.ExecID)
	}
	if p.Source == "gone" {
		return append(b, " [process gone before it could be read]"...)
	}
	if p.Comm != "" {
		b = fmt.Appendf(b, " comm=%q", p.Comm)
	}
	if p.Exe != "" {
		b = append(b, " exe="...)
		b = appendEscaped(b, p.Exe)
	}
	if len(p.Cmdline) > 0 {
		b = fmt.Appendf(b, " cmdline=%q", strings.Join(p.Cmdline, " "))
		if p.Redacted > 0 {
			b = fmt.Appendf(b, " redacted=%d", p.Redacted)
		}
	}
	if p.Cwd != "" {
		b = append(b, " cwd="...)
		b = appendEscaped(b, p.Cwd)
	}
	if p.UID != nil {
		b = fmt.Appendf(b, " uid=%d", *p.UID)
		if p.User != "" {
			b = append(b, '(')
			b = appendEscaped(b, p.User)
			b = append(b, ')')
		}
	}
	if p.Login != nil && p.Login.AUID != nil {
		b = fmt.Appendf(b, " auid=%d", *p.Login.AUID)
	}
	if p.NS != nil && len(p.NS.Differs) > 0 {
		b = append(b, " ns="...)
		b = append(b, strings.Join(p.NS.Differs, ",")...)
	}
	if c := p.Container; c != nil {
		id := c.ID
		if len(id) > 12 {
			id = id[:12]
		}
		b = append(b, " container="...)
		b = appendEscaped(b, c.Runtime)
		b = append(b, ':')
		b = appendEscaped(b, id)
		if c.PodUID != "" {
			b = append(b, " pod="...)
			b = appendEscaped(b, c.PodUID)
		}
	}
	if len(p.Ancestors) > 0 {
		b = append(b, " parents="...)
		for i, a := range p.Ancestors {
			if i > 0 {
				b = append(b, '<')
			}
			b = strconv.AppendUint(b, uint64(a.PID), 10)
			if a.Comm != "" {
				b = append(b, '(')
				b = appendEscaped(b, a.Comm)
				b = append(b, ')')
			}
		}
	}
	return b
}

// appendEscaped appends s with Go-style escapes (as strconv.Quote writes
// them, without the quotes) for everything that is not printable text: C0
// and C1 controls, DEL, bidi overrides and isolates (U+202A-U+202E,
// U+2066-U+2069) and other format characters, and each byte of invalid
// UTF-8 (\xff); a backslash is doubled, so that an escape in the output
// always comes from here. Process names, paths and command lines are chosen
// by whoever starts the process: written raw, an ESC or a CR could rewrite
// the reader's terminal, a U+202E reorder what it shows. %q (comm, cmdline)
// escapes the same runes.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, '\\', 'x', hexDigit[c>>4], hexDigit[c&0xf])
		case r == '\\':
			b = append(b, '\\', '\\')
		case strconv.IsPrint(r):
			b = append(b, s[i:i+size]...)
		default:
			q := strconv.QuoteRune(r)
			b = append(b, q[1:len(q)-1]...)
		}
		i += size
	}
	return b
}

const hexDigit = "0123456789abcdef"

func signalName(sig int) string {
	s := syscall.Signal(sig).String()
	if strings.HasPrefix(s, "signal ") {
		return strconv.Itoa(sig)
	}
	return strconv.Itoa(sig) + " (" + s + ")"
}
