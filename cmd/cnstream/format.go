package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/cnstream/cnstream/schema"
	"github.com/cnstream/cnstream/transform"
)

// printer writes transform records as readable lines or JSON lines. It
// builds each line in a reused buffer: the thread storm runs at 150k
// events/s and the printer must keep up.
type printer struct {
	w      *bufio.Writer
	o      *tailOptions
	offset time.Duration
	buf    []byte
	events uint64 // events printed (loss lines not counted)
}

func (p *printer) done() bool { return p.o.count > 0 && p.events >= p.o.count }

// record is the transform emit callback.
func (p *printer) record(r *transform.Record) {
	if p.done() {
		return
	}
	switch r.Kind {
	case transform.KindProc:
		if !p.want(r.Proc.What.String()) {
			return
		}
	case transform.KindRaw:
		if p.o.id != nil && r.Cn.ID != *p.o.id {
			return
		}
		if !p.want("raw") {
			return
		}
	}
	b := p.buf[:0]
	if p.o.json {
		b = p.appendJSON(b, r)
	} else {
		b = p.appendText(b, r)
	}
	b = append(b, '\n')
	p.buf = b
	_, _ = p.w.Write(b) // a write error surfaces at Flush
	if r.Kind == transform.KindProc || r.Kind == transform.KindRaw {
		p.events++
	}
}

func (p *printer) want(kind string) bool { return p.o.kinds == nil || p.o.kinds[kind] }

func (p *printer) wall(monoNS uint64) time.Time {
	return time.Unix(0, int64(monoNS)+int64(p.offset))
}

func streamText(b []byte, k transform.StreamKey) []byte {
	b = fmt.Appendf(b, "stream %d:%d", k.Idx, k.Val)
	if k.Idx == schema.ProcID.Idx && k.Val == schema.ProcID.Val && k.Sender == 0 {
		return fmt.Appendf(b, " cpu=%d", k.CPU)
	}
	return fmt.Appendf(b, " sender=%d", k.Sender)
}

func (p *printer) appendText(b []byte, r *transform.Record) []byte {
	switch r.Kind {
	case transform.KindGap:
		b = append(b, "--- GAP "...)
		b = streamText(b, r.Stream)
		return fmt.Appendf(b, ": expected seq %d, got %d: %d missing", r.Obs.Expected, r.Seq, r.Obs.Missing)
	case transform.KindOverrun:
		if r.Drops == 0 && r.ENOBUFS == 0 {
			return append(b, "--- OVERRUN netlink reported data loss (NLMSG_OVERRUN)"...)
		}
		return fmt.Appendf(b, "--- DROPPED %d datagrams in the kernel: receive queue full (ENOBUFS x%d); see the gap lines per stream", r.Drops, r.ENOBUFS)
	case transform.KindForged:
		return fmt.Appendf(b, "--- FORGED %d datagrams rejected: kernel-owned connector id or group from a userspace sender", r.Count)
	case transform.KindMalformed:
		return fmt.Appendf(b, "--- MALFORMED datagram of %d bytes from port %d: %v", len(r.Data), r.Addr.PortID, r.Err)
	case transform.KindNetlinkError:
		return fmt.Appendf(b, "--- NETLINK ERROR from port %d: %v", r.Addr.PortID, syscall.Errno(-r.Errno))
	case transform.KindRaw:
		b = time.Now().AppendFormat(b, "15:04:05.000000")
		b = fmt.Appendf(b, " raw id=%s seq=%d ack=%d sender=%d group=%d len=%d payload=", r.Cn.ID, r.Cn.Seq, r.Cn.Ack, r.Addr.PortID, r.Addr.Group(), len(r.Cn.Data))
		return hex.AppendEncode(b, r.Cn.Data)
	}
	ev := &r.Proc
	b = p.wall(ev.TimestampNS).AppendFormat(b, "15:04:05.000000")
	b = fmt.Appendf(b, " cpu=%d seq=%d %-8s", ev.CPU, r.Cn.Seq, ev.What)
	switch ev.What {
	case schema.ProcEventNone:
		b = fmt.Appendf(b, " ack=%d err=%d", r.Cn.Ack, ev.Ack.Err)
		if ev.Ack.Err != 0 {
			b = fmt.Appendf(b, " (%v)", syscall.Errno(ev.Ack.Err))
		}
	case schema.ProcEventFork:
		f := ev.Fork
		b = fmt.Appendf(b, " pid=%d tgid=%d ppid=%d ptgid=%d", f.ChildPID, f.ChildTGID, f.ParentPID, f.ParentTGID)
		if f.ChildPID != f.ChildTGID {
			b = append(b, " thread"...)
		}
	case schema.ProcEventExec:
		b = fmt.Appendf(b, " pid=%d tgid=%d", ev.Exec.PID, ev.Exec.TGID)
	case schema.ProcEventUID:
		b = fmt.Appendf(b, " pid=%d tgid=%d ruid=%d euid=%d", ev.ID.PID, ev.ID.TGID, ev.ID.Real, ev.ID.Effective)
	case schema.ProcEventGID:
		b = fmt.Appendf(b, " pid=%d tgid=%d rgid=%d egid=%d", ev.ID.PID, ev.ID.TGID, ev.ID.Real, ev.ID.Effective)
	case schema.ProcEventSID:
		b = fmt.Appendf(b, " pid=%d tgid=%d", ev.SID.PID, ev.SID.TGID)
	case schema.ProcEventPtrace:
		t := ev.Ptrace
		b = fmt.Appendf(b, " pid=%d tgid=%d", t.PID, t.TGID)
		if t.TracerPID == 0 {
			b = append(b, " detach"...)
		} else {
			b = fmt.Appendf(b, " tracer=%d tracer_tgid=%d", t.TracerPID, t.TracerTGID)
		}
	case schema.ProcEventComm:
		b = fmt.Appendf(b, " pid=%d tgid=%d comm=%q", ev.Comm.PID, ev.Comm.TGID, ev.Comm.Name())
	case schema.ProcEventCoredump:
		c := ev.Coredump
		b = fmt.Appendf(b, " pid=%d tgid=%d ppid=%d ptgid=%d", c.PID, c.TGID, c.ParentPID, c.ParentTGID)
	case schema.ProcEventExit:
		e := ev.Exit
		b = fmt.Appendf(b, " pid=%d tgid=%d ppid=%d ptgid=%d", e.PID, e.TGID, e.ParentPID, e.ParentTGID)
		switch {
		case e.Exited():
			b = fmt.Appendf(b, " status=%d", e.Status())
		case e.Signaled():
			b = fmt.Appendf(b, " signal=%s", signalName(e.Signal()))
			if e.CoreDumped() {
				b = append(b, " core-dumped"...)
			}
		default:
			b = fmt.Appendf(b, " code=%#x", e.ExitCode)
		}
		if e.PID != e.TGID {
			b = append(b, " thread"...)
		}
	}
	return b
}

func signalName(sig int) string {
	s := syscall.Signal(sig).String()
	if strings.HasPrefix(s, "signal ") {
		return strconv.Itoa(sig)
	}
	return strconv.Itoa(sig) + " (" + s + ")"
}

// appendJSON writes one JSON object for r. Field names are documented in
// README.md ("cnstream tail --json").
func (p *printer) appendJSON(b []byte, r *transform.Record) []byte {
	b = append(b, `{"kind":`...)
	switch r.Kind {
	case transform.KindGap:
		b = append(b, `"gap"`...)
		b = appendStreamJSON(b, r.Stream)
		b = appendU(b, "expected", uint64(r.Obs.Expected))
		b = appendU(b, "got", uint64(r.Seq))
		b = appendU(b, "missing", r.Obs.Missing)
		return append(b, '}')
	case transform.KindOverrun:
		b = append(b, `"overrun"`...)
		b = appendU(b, "kernel_drops", r.Drops)
		b = appendU(b, "enobufs", r.ENOBUFS)
		if r.Drops == 0 && r.ENOBUFS == 0 {
			b = append(b, `,"nlmsg_overrun":true`...)
		}
		return append(b, '}')
	case transform.KindForged:
		b = append(b, `"forged"`...)
		b = appendU(b, "count", r.Count)
		return append(b, '}')
	case transform.KindMalformed:
		b = append(b, `"malformed"`...)
		b = appendU(b, "sender", uint64(r.Addr.PortID))
		b = appendU(b, "len", uint64(len(r.Data)))
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Err.Error())
		b = append(b, `,"data_hex":"`...)
		b = hex.AppendEncode(b, r.Data)
		return append(b, `"}`...)
	case transform.KindNetlinkError:
		b = append(b, `"netlink_error"`...)
		b = appendU(b, "sender", uint64(r.Addr.PortID))
		b = append(b, `,"errno":`...)
		b = strconv.AppendInt(b, int64(-r.Errno), 10)
		return append(b, '}')
	case transform.KindRaw:
		b = append(b, `"raw","time":"`...)
		b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
		b = appendCnJSON(b, r)
		b = appendU(b, "sender", uint64(r.Addr.PortID))
		b = appendU(b, "group", uint64(r.Addr.Group()))
		b = appendU(b, "len", uint64(len(r.Cn.Data)))
		b = append(b, `,"payload_hex":"`...)
		b = hex.AppendEncode(b, r.Cn.Data)
		return append(b, `"}`...)
	}
	ev := &r.Proc
	b = append(b, '"')
	b = append(b, ev.What.String()...)
	b = append(b, `","time":"`...)
	b = p.wall(ev.TimestampNS).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendU(b, "mono_ns", ev.TimestampNS)
	b = appendCnJSON(b, r)
	b = appendU(b, "cpu", uint64(ev.CPU))
	switch ev.What {
	case schema.ProcEventNone:
		b = appendU(b, "err", uint64(ev.Ack.Err))
	case schema.ProcEventFork:
		f := ev.Fork
		b = appendU(b, "pid", uint64(f.ChildPID))
		b = appendU(b, "tgid", uint64(f.ChildTGID))
		b = appendU(b, "parent_pid", uint64(f.ParentPID))
		b = appendU(b, "parent_tgid", uint64(f.ParentTGID))
	case schema.ProcEventExec:
		b = appendU(b, "pid", uint64(ev.Exec.PID))
		b = appendU(b, "tgid", uint64(ev.Exec.TGID))
	case schema.ProcEventUID, schema.ProcEventGID:
		b = appendU(b, "pid", uint64(ev.ID.PID))
		b = appendU(b, "tgid", uint64(ev.ID.TGID))
		b = appendU(b, "real", uint64(ev.ID.Real))
		b = appendU(b, "effective", uint64(ev.ID.Effective))
	case schema.ProcEventSID:
		b = appendU(b, "pid", uint64(ev.SID.PID))
		b = appendU(b, "tgid", uint64(ev.SID.TGID))
	case schema.ProcEventPtrace:
		t := ev.Ptrace
		b = appendU(b, "pid", uint64(t.PID))
		b = appendU(b, "tgid", uint64(t.TGID))
		b = appendU(b, "tracer_pid", uint64(t.TracerPID))
		b = appendU(b, "tracer_tgid", uint64(t.TracerTGID))
	case schema.ProcEventComm:
		b = appendU(b, "pid", uint64(ev.Comm.PID))
		b = appendU(b, "tgid", uint64(ev.Comm.TGID))
		b = append(b, `,"comm":`...)
		b = appendJSONString(b, ev.Comm.Name())
	case schema.ProcEventCoredump:
		c := ev.Coredump
		b = appendU(b, "pid", uint64(c.PID))
		b = appendU(b, "tgid", uint64(c.TGID))
		b = appendU(b, "parent_pid", uint64(c.ParentPID))
		b = appendU(b, "parent_tgid", uint64(c.ParentTGID))
	case schema.ProcEventExit:
		e := ev.Exit
		b = appendU(b, "pid", uint64(e.PID))
		b = appendU(b, "tgid", uint64(e.TGID))
		b = appendU(b, "parent_pid", uint64(e.ParentPID))
		b = appendU(b, "parent_tgid", uint64(e.ParentTGID))
		b = appendU(b, "exit_code", uint64(e.ExitCode))
		if e.Exited() {
			b = appendU(b, "exit_status", uint64(e.Status()))
		}
		if e.Signaled() {
			b = appendU(b, "signal", uint64(e.Signal()))
			b = append(b, `,"core_dumped":`...)
			b = strconv.AppendBool(b, e.CoreDumped())
		}
		b = append(b, `,"exit_signal":`...)
		b = strconv.AppendInt(b, int64(int32(e.ExitSignal)), 10)
	}
	return append(b, '}')
}

func appendCnJSON(b []byte, r *transform.Record) []byte {
	b = append(b, `,"id":"`...)
	b = strconv.AppendUint(b, uint64(r.Cn.ID.Idx), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(r.Cn.ID.Val), 10)
	b = append(b, '"')
	b = appendU(b, "seq", uint64(r.Cn.Seq))
	return appendU(b, "ack", uint64(r.Cn.Ack))
}

func appendStreamJSON(b []byte, k transform.StreamKey) []byte {
	b = append(b, `,"id":"`...)
	b = strconv.AppendUint(b, uint64(k.Idx), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(k.Val), 10)
	b = append(b, '"')
	b = appendU(b, "cpu", uint64(k.CPU))
	return appendU(b, "sender", uint64(k.Sender))
}

func appendU(b []byte, key string, v uint64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendUint(b, v, 10)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
